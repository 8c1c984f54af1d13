// An EndpointSlice controller for the test API server, playing kube-controller-manager's: for each Service with
// a selector, slices labelled kubernetes.io/service-name listing the matching pods that have an IP, with
// ready/serving/terminating from the pods' Ready condition and deletionTimestamp, one slice per distinct set of
// resolved ports (named targetPorts resolve per pod). Slices of deleted or selector-less Services are removed.
// Per address family, as the real one: a slice of addressType IPv4 or IPv6 for each family of the Service
// (`spec.ipFamilies`; without it, the family of its ClusterIP, or both for a headless Service), each listing the
// pods' address of that family (`status.podIPs`); a pod without one is left out of that family's slices. A Service
// with no endpoints has an empty slice per family.
// Not done: maxEndpointsPerSlice splitting, topology hints, trafficDistribution.
import { createHash } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';

export const MANAGED_BY = 'endpointslice-controller.k8s.io';
const SERVICE_NAME = 'kubernetes.io/service-name';
const MANAGED_BY_LABEL = 'endpointslice.kubernetes.io/managed-by';

export class EndpointSliceController {
  private readonly discovery: k8s.DiscoveryV1Api;
  private readonly services: k8s.Informer<k8s.V1Service> & k8s.ObjectCache<k8s.V1Service>;
  private readonly pods: k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>;
  private running: Promise<void> = Promise.resolve();
  private queued = false;
  readonly errors: unknown[] = [];

  constructor(kc: k8s.KubeConfig) {
    const core = kc.makeApiClient(k8s.CoreV1Api);
    this.discovery = kc.makeApiClient(k8s.DiscoveryV1Api);
    this.services = k8s.makeInformer(kc, '/api/v1/services', () => core.listServiceForAllNamespaces());
    this.pods = k8s.makeInformer(kc, '/api/v1/pods', () => core.listPodForAllNamespaces());
    for (const inf of [this.services, this.pods] as k8s.Informer<k8s.KubernetesObject>[]) {
      for (const ev of ['add', 'update', 'delete'] as const) inf.on(ev, () => this.kick());
      inf.on('error', (e) => this.errors.push(e));
    }
  }

  async start(): Promise<void> {
    await this.services.start();
    await this.pods.start();
    this.kick();
  }

  async stop(): Promise<void> {
    await this.pods.stop();
    await this.services.stop();
    await this.running;
  }

  /** Resolves when every change seen so far has been written. */
  async settled(): Promise<void> {
    while (this.queued) await this.running;
    await this.running;
  }

  /** Coalesce bursts of events into one full reconcile; small clusters only. */
  private kick(): void {
    if (this.queued) return;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      try {
        await this.reconcileAll();
      } catch (e) {
        this.errors.push(e);
      }
    });
  }

  private async reconcileAll(): Promise<void> {
    const existing = (await this.discovery.listEndpointSliceForAllNamespaces({ labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` })).items;
    const desired = new Map<string, k8s.V1EndpointSlice>();
    for (const svc of this.services.list()) {
      if (!svc.spec?.selector || svc.spec.type === 'ExternalName') continue;
      for (const slice of this.slicesFor(svc)) desired.set(`${slice.metadata!.namespace}/${slice.metadata!.name}`, slice);
    }
    for (const cur of existing) {
      const key = `${cur.metadata!.namespace}/${cur.metadata!.name}`;
      const want = desired.get(key);
      if (!want) {
        await this.discovery
          .deleteNamespacedEndpointSlice({ namespace: cur.metadata!.namespace!, name: cur.metadata!.name! })
          .catch(notFoundOk);
        continue;
      }
      desired.delete(key);
      if (same(cur, want)) continue;
      await this.discovery.replaceNamespacedEndpointSlice({
        namespace: cur.metadata!.namespace!,
        name: cur.metadata!.name!,
        body: {
          ...want,
          metadata: {
            ...want.metadata,
            ...(cur.metadata!.resourceVersion !== undefined ? { resourceVersion: cur.metadata!.resourceVersion } : {}),
          },
        },
      });
    }
    for (const slice of desired.values()) {
      await this.discovery.createNamespacedEndpointSlice({ namespace: slice.metadata!.namespace!, body: slice });
    }
  }

  private slicesFor(svc: k8s.V1Service): k8s.V1EndpointSlice[] {
    return addressTypesOf(svc).flatMap((family) => this.slicesOfFamily(svc, family));
  }

  private slicesOfFamily(svc: k8s.V1Service, family: AddressType): k8s.V1EndpointSlice[] {
    const ns = svc.metadata!.namespace!;
    const selector = svc.spec!.selector!;
    const groups = new Map<string, { ports: k8s.DiscoveryV1EndpointPort[]; endpoints: k8s.V1Endpoint[] }>();
    for (const pod of this.pods.list(ns)) {
      const labels = pod.metadata?.labels ?? {};
      if (!Object.entries(selector).every(([k, v]) => labels[k] === v)) continue;
      const ip = podIpsOf(pod).find((a) => familyOf(a) === family);
      const phase = pod.status?.phase;
      if (!ip || phase === 'Succeeded' || phase === 'Failed') continue;
      const ports = (svc.spec!.ports ?? []).map((p) => ({
        name: p.name ?? '',
        port: resolvePort(p, pod),
        protocol: p.protocol ?? 'TCP',
      }));
      const sig = JSON.stringify(ports);
      let g = groups.get(sig);
      if (!g) groups.set(sig, (g = { ports: ports.filter((p): p is typeof p & { port: number } => p.port !== undefined), endpoints: [] }));
      const podReady = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      const terminating = pod.metadata?.deletionTimestamp !== undefined;
      const publish = svc.spec!.publishNotReadyAddresses === true;
      g.endpoints.push({
        addresses: [ip],
        conditions: { ready: publish || (podReady && !terminating), serving: publish || podReady, terminating },
        ...(pod.spec?.nodeName ? { nodeName: pod.spec.nodeName } : {}),
        targetRef: { kind: 'Pod', namespace: ns, name: pod.metadata!.name!, uid: pod.metadata!.uid! },
      });
    }
    if (groups.size === 0) groups.set('', { ports: [], endpoints: [] }); // a Service with no endpoints still has a slice
    return [...groups.entries()].map(([sig, g]) => ({
      apiVersion: 'discovery.k8s.io/v1',
      kind: 'EndpointSlice',
      metadata: {
        name: `${svc.metadata!.name}-${createHash('sha256').update(`${family}|${sig}`).digest('hex').slice(0, 5)}`,
        namespace: ns,
        labels: { [SERVICE_NAME]: svc.metadata!.name!, [MANAGED_BY_LABEL]: MANAGED_BY },
        ownerReferences: [
          {
            apiVersion: 'v1',
            kind: 'Service',
            name: svc.metadata!.name!,
            uid: svc.metadata!.uid!,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      addressType: family,
      endpoints: g.endpoints.sort((a, b) => a.targetRef!.name!.localeCompare(b.targetRef!.name!)),
      ports: g.ports,
    }));
  }
}

type AddressType = 'IPv4' | 'IPv6';

const familyOf = (ip: string): AddressType => (ip.includes(':') ? 'IPv6' : 'IPv4');

/**
 * The address types a Service's slices carry: its `ipFamilies` (the API server fills them for every Service with a
 * ClusterIP); without them, the family of its ClusterIP, or both for a headless one (the real controller assumes
 * dual stack there rather than drop endpoints of a family it cannot know).
 */
function addressTypesOf(svc: k8s.V1Service): AddressType[] {
  const families = (svc.spec?.ipFamilies ?? []).filter((f): f is AddressType => f === 'IPv4' || f === 'IPv6');
  if (families.length) return [...new Set(families)];
  const clusterIp = svc.spec?.clusterIP;
  if (clusterIp && clusterIp !== 'None') return [familyOf(clusterIp)];
  return ['IPv4', 'IPv6'];
}

/** A pod's addresses: `status.podIPs`, or its `podIP` alone from a writer that sets only that. */
function podIpsOf(pod: k8s.V1Pod): string[] {
  const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).filter((ip): ip is string => !!ip);
  const single = pod.status?.podIP;
  return single && !ips.includes(single) ? [single, ...ips] : ips;
}

function resolvePort(p: k8s.V1ServicePort, pod: k8s.V1Pod): number | undefined {
  const target = p.targetPort ?? p.port;
  if (typeof target === 'number') return target;
  if (/^\d+$/.test(target)) return Number(target);
  for (const c of pod.spec?.containers ?? []) {
    const hit = c.ports?.find((cp) => cp.name === target && (cp.protocol ?? 'TCP') === (p.protocol ?? 'TCP'));
    if (hit) return hit.containerPort;
  }
  return undefined; // the pod does not declare the named port: the slice lists it without that port
}

/** Key-order-independent JSON: listed slices come back through client-node's serializer in its own key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function same(cur: k8s.V1EndpointSlice, want: k8s.V1EndpointSlice): boolean {
  const norm = (s: k8s.V1EndpointSlice): string =>
    canonical({ labels: s.metadata?.labels, endpoints: s.endpoints ?? [], ports: s.ports ?? [], addressType: s.addressType });
  return norm(cur) === norm(want);
}

function notFoundOk(e: unknown): void {
  if ((e as { code?: number }).code !== 404) throw e;
}
