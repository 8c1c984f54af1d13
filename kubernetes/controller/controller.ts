// The Kubernetes controller: Namespaces, Pods and NetworkPolicies → port groups and chains (netpol.ts), Services
// and EndpointSlices → the router's load balancer (services.ts), written into the topology (writer.ts) by one
// replica at a time (leader.ts). Level-triggered: any change, and a periodic resync, runs one full pass that
// computes everything from the informers' caches and the store and writes the difference; passes never overlap
// and bursts of events coalesce into one. Errors in an object are reported as Events on it (events.ts).
import * as k8s from '@kubernetes/client-node';
import { hostname } from 'node:os';
import type { Port } from '../../core/model/types.js';
import type { Topology } from '../../core/topology/service.js';
import { TopologyError } from '../../core/topology/errors.js';
import { uplinkHostAddress } from '../../core/datapath/router.js';
import { EventRecorder } from './events.js';
import { Watched } from './informers.js';
import { findKubeProxy, kubeProxyRefusal } from './kube-proxy.js';
import { LeaderElector } from './leader.js';
import { removeStaleNetworks } from './namespace-cleanup.js';
import { compilePolicies, policyNamespace, policyPod } from './netpol.js';
import { keyOf, type EndpointSlice, type Namespace, type NetworkPolicy, type Pod, type Service } from './objects.js';
import { compileServices, loadBalancerIdOf } from './services.js';
import { allocateSubnets, NAMESPACE_NETWORK_OPTION, networkOfNamespace, refKey, type NetworkRef, type TenancyMode } from './tenancy.js';
import { podKeyOfPort, writeMemberships, writePolicy, writeServices, type WriteStats } from './writer.js';

export interface ControllerOptions {
  kc: k8s.KubeConfig;
  topology: Topology;
  /**
   * The pod network: `flat` (default), one tenant and network (bridge) for every pod, created with `podCidrs` if
   * missing; `namespace`, a tenant per Namespace (or as its annotations say) whose network `network` is created
   * with a block of each `podCidrs` pool (tenancy.ts).
   */
  tenancy?: TenancyMode;
  tenant: string;
  network: string;
  podCidrs?: string[];
  /** namespace tenancy: the IPv4 block size of each namespace network (default 24). */
  namespaceSubnetPrefix?: number;
  identity?: string;
  leaseNamespace?: string;
  leaseName?: string;
  leaseDurationS?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  /** Run although kube-proxy is there, serving only Services labelled service-proxy-name=midonet-bees. */
  besideKubeProxy?: boolean;
  /** Also look for kube-proxy's rules on this host (the controller runs with hostNetwork). */
  hostCheck?: boolean;
  resyncMs?: number;
  relistMs?: number;
  /** namespace tenancy: how soon to look again at a deleted Namespace's network that still has ports (ms). */
  cleanupRetryMs?: number;
  log?: (line: string) => void;
}

export class Controller {
  private readonly log: (line: string) => void;
  private readonly namespaces: Watched<Namespace>;
  private readonly pods: Watched<Pod>;
  private readonly policies: Watched<NetworkPolicy>;
  private readonly services: Watched<Service>;
  private readonly slices: Watched<EndpointSlice>;
  private readonly elector: LeaderElector;
  private readonly events: EventRecorder;
  private running: Promise<void> = Promise.resolve();
  private queued = false;
  private resync: NodeJS.Timeout | undefined;
  private cleanupRetry: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Policies last seen, kept while their namespace is being deleted and still has ports (CVE-2024-7598). */
  private readonly seenPolicies = new Map<string, NetworkPolicy>();
  /** Namespace → its network, as last seen (a deleted namespace's pods keep their network until detached). */
  private readonly placement = new Map<string, NetworkRef>();
  readonly identity: string;
  passes = 0;
  lastError: string | undefined;
  lastStats: WriteStats | undefined;

  constructor(private readonly o: ControllerOptions) {
    this.log = o.log ?? ((l) => process.stderr.write(`bees-controller: ${l}\n`));
    this.identity = o.identity ?? `${hostname()}_${process.pid}`;
    const { kc } = o;
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const net = kc.makeApiClient(k8s.NetworkingV1Api);
    const disc = kc.makeApiClient(k8s.DiscoveryV1Api);
    const kick = (): void => this.kick();
    const wo = { log: this.log, ...(o.relistMs !== undefined ? { relistMs: o.relistMs } : {}) };
    this.namespaces = new Watched(kc, '/api/v1/namespaces', () => core.listNamespace(), kick, wo);
    this.pods = new Watched(kc, '/api/v1/pods', () => core.listPodForAllNamespaces(), kick, wo);
    this.policies = new Watched(kc, '/apis/networking.k8s.io/v1/networkpolicies', () => net.listNetworkPolicyForAllNamespaces(), kick, wo);
    this.services = new Watched(kc, '/api/v1/services', () => core.listServiceForAllNamespaces(), kick, wo);
    this.slices = new Watched(kc, '/apis/discovery.k8s.io/v1/endpointslices', () => disc.listEndpointSliceForAllNamespaces(), kick, wo);
    this.events = new EventRecorder(kc, this.identity, this.log);
    this.elector = new LeaderElector(kc, {
      namespace: o.leaseNamespace ?? 'kube-system',
      name: o.leaseName ?? 'midonet-bees-controller',
      identity: this.identity,
      ...(o.leaseDurationS !== undefined ? { leaseDurationS: o.leaseDurationS } : {}),
      ...(o.renewDeadlineMs !== undefined ? { renewDeadlineMs: o.renewDeadlineMs } : {}),
      ...(o.retryPeriodMs !== undefined ? { retryPeriodMs: o.retryPeriodMs } : {}),
      onStartedLeading: kick,
      onStoppedLeading: () => undefined,
      log: this.log,
    });
  }

  private get watched(): Watched<never>[] {
    return [this.namespaces, this.pods, this.policies, this.services, this.slices] as unknown as Watched<never>[];
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  /** The NetworkPolicies the controller's cache holds now (`namespace/name`). */
  cachedPolicies(): string[] {
    return this.policies.list().map(keyOf);
  }

  /** Every cache has listed once. */
  get synced(): boolean {
    return this.watched.every((w) => w.hasSynced);
  }

  /** Refuses (throws) when kube-proxy runs and `besideKubeProxy` is not set; then watches and campaigns. */
  async start(): Promise<void> {
    if (!this.o.besideKubeProxy) {
      const found = await findKubeProxy(this.o.kc, { host: this.o.hostCheck ?? false });
      if (found.length) throw new Error(kubeProxyRefusal(found));
    }
    await Promise.all(this.watched.map((w) => w.start()));
    this.elector.start();
    this.armResync();
  }

  /** Stops; with `release: false` the lease is kept until it expires, as when the process dies. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    this.stopped = true;
    if (this.resync) clearTimeout(this.resync);
    if (this.cleanupRetry) clearTimeout(this.cleanupRetry);
    await this.elector.stop(opts.release ?? true);
    await Promise.all(this.watched.map((w) => w.stop()));
    await this.running;
  }

  /** Resolves once every change seen so far has been through a pass. */
  async settled(): Promise<void> {
    while (this.queued) await this.running;
    await this.running;
  }

  private armResync(): void {
    const every = this.o.resyncMs ?? 30_000;
    if (!every || this.stopped) return;
    this.resync = setTimeout(() => {
      this.kick();
      this.armResync();
    }, every);
  }

  /** Schedules one full pass (coalesced); a no-op unless leading with every cache listed. */
  kick(): void {
    if (this.queued || this.stopped) return;
    this.queued = true;
    this.running = this.running.then(async () => {
      this.queued = false;
      if (!this.elector.isLeader || !this.synced || this.stopped) return;
      try {
        this.lastStats = await this.pass();
        this.passes++;
        this.lastError = undefined;
      } catch (e) {
        this.lastError = (e as Error).message;
        this.log(`pass failed: ${this.lastError}`);
      }
    });
  }

  /** The tenant, the pod network (created if missing and its subnets are known), its router and load balancer. */
  private async ensureNetwork(
    ref: NetworkRef,
    subnets: () => Promise<{ cidrs: string[]; options: Record<string, string> }>,
  ): Promise<{ tenantId: string; bridgeId: string | undefined; lbId: string | undefined; routerId?: string }> {
    const { topology } = this.o;
    const { tenant, network } = ref;
    const t = await topology.ensureTenant(tenant);
    let bridge = await topology.findBridge(tenant, network);
    if (!bridge) {
      const want = await subnets();
      if (want.cidrs.length) {
        try {
          bridge = await topology.create('Bridge', {
            tenantId: t.id,
            name: network,
            subnets: want.cidrs.map((cidr) => ({ cidr })),
            ...(Object.keys(want.options).length ? { options: want.options } : {}),
          });
        } catch (e) {
          if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
          bridge = await topology.findBridge(tenant, network);
        }
      }
    }
    if (!bridge) return { tenantId: t.id, bridgeId: undefined, lbId: undefined };
    const routerName = bridge.options.router ?? 'default';
    if (routerName === 'none') return { tenantId: t.id, bridgeId: bridge.id, lbId: undefined };
    let router = await topology.findRouter(tenant, routerName);
    if (!router) {
      try {
        router = await topology.create('Router', { tenantId: t.id, name: routerName });
      } catch (e) {
        if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
        router = await topology.findRouter(tenant, routerName);
      }
    }
    if (!router) throw new Error(`router ${routerName} of network ${network} could not be made`);
    const lbId = loadBalancerIdOf(router.id);
    if (router.loadBalancerId && router.loadBalancerId !== lbId) {
      throw new Error(`router ${routerName} already has load balancer ${router.loadBalancerId}, not the controller's`);
    }
    try {
      await topology.get('LoadBalancer', lbId);
    } catch (e) {
      if (!(e instanceof TopologyError && e.code === 'not_found')) throw e;
      try {
        await topology.create('LoadBalancer', { id: lbId, routerId: router.id, adminStateUp: true });
      } catch (err) {
        if (!(err instanceof TopologyError && err.code === 'conflict')) throw err;
      }
    }
    if (router.loadBalancerId !== lbId) await topology.update('Router', router.id, { loadBalancerId: lbId });
    return { tenantId: t.id, bridgeId: bridge.id, lbId, routerId: router.id };
  }

  /** The subnets of a new network: flat, the pod CIDRs; namespace, a free block of each pool. */
  private async subnetsOfNew(): Promise<{ cidrs: string[]; options: Record<string, string> }> {
    const pool = this.o.podCidrs ?? [];
    if ((this.o.tenancy ?? 'flat') === 'flat') return { cidrs: pool, options: {} };
    if (!pool.length) return { cidrs: [], options: {} };
    const used = (await this.o.topology.list('Bridge')).flatMap((b) => b.subnets.map((x) => x.cidr));
    return { cidrs: allocateSubnets(pool, used, this.o.namespaceSubnetPrefix), options: { [NAMESPACE_NETWORK_OPTION]: 'true' } };
  }

  /**
   * Every namespace's network, grouped by tenant then network: flat, one; namespace, as tenancy.ts maps them
   * (namespaces gone from the cache keep their last network, for their pods still attached). A namespace whose
   * annotations are invalid gets an Event and no network.
   */
  private async plan(namespaces: Namespace[]): Promise<Map<string, { ref: NetworkRef; namespaces: Set<string> }>> {
    const tenancy = { mode: this.o.tenancy ?? 'flat', tenant: this.o.tenant, network: this.o.network } as const;
    const out = new Map<string, { ref: NetworkRef; namespaces: Set<string> }>();
    const add = (ns: string, ref: NetworkRef): void => {
      const k = refKey(ref);
      let e = out.get(k);
      if (!e) out.set(k, (e = { ref, namespaces: new Set() }));
      e.namespaces.add(ns);
    };
    if (tenancy.mode === 'flat') {
      out.set(refKey(tenancy), { ref: { tenant: tenancy.tenant, network: tenancy.network }, namespaces: new Set() });
      return out;
    }
    for (const n of namespaces) {
      try {
        const ref = networkOfNamespace(tenancy, n.metadata.name, n.metadata.annotations);
        this.placement.set(n.metadata.name, ref);
      } catch (e) {
        await this.events.warn(n, 'Namespace', 'v1', 'NetworkNotMapped', (e as Error).message);
      }
    }
    for (const [ns, ref] of this.placement) add(ns, ref);
    return out;
  }

  /**
   * Namespace tenancy: removes the networks of deleted Namespaces that no longer hold ports (namespace-cleanup.ts),
   * and forgets them here so this pass does not make them again. A network still holding ports is looked at again
   * after `cleanupRetryMs`: a pod's port goes with its CNI DEL, which no API event announces.
   */
  private async cleanNamespaces(
    namespaces: Namespace[],
    networks: Map<string, { ref: NetworkRef; namespaces: Set<string> }>,
    stats: WriteStats,
  ): Promise<void> {
    const cached = new Set(namespaces.map((n) => n.metadata.name));
    const live = new Set([...this.placement].filter(([ns]) => cached.has(ns)).map(([, ref]) => refKey(ref)));
    const { removed, waiting } = await removeStaleNetworks(this.o.topology, live, stats);
    for (const ref of removed) {
      const k = refKey(ref);
      this.log(`removed network ${ref.tenant}/${ref.network}: its namespaces are gone and nothing is attached to it`);
      networks.delete(k);
      for (const [ns, r] of this.placement) if (!cached.has(ns) && refKey(r) === k) this.placement.delete(ns);
    }
    if (waiting.length && !this.cleanupRetry && !this.stopped) {
      this.cleanupRetry = setTimeout(() => {
        this.cleanupRetry = undefined;
        this.kick();
      }, this.o.cleanupRetryMs ?? 2000);
    }
  }

  /** Policies to compile: the current ones, plus deleted ones of a namespace being deleted that still has ports. */
  private policiesInForce(namespaces: Namespace[], ports: readonly Port[]): NetworkPolicy[] {
    const current = this.policies.list();
    const now = new Set(current.map(keyOf));
    const nsState = new Map(namespaces.map((n) => [n.metadata.name, n]));
    const portNamespaces = new Set(ports.map((p) => podKeyOfPort(p)?.split('/')[0]).filter((x): x is string => x !== undefined));
    const out = [...current];
    for (const [key, p] of this.seenPolicies) {
      if (now.has(key)) continue;
      const ns = p.metadata.namespace ?? 'default';
      const state = nsState.get(ns);
      const going = !state || state.metadata.deletionTimestamp !== undefined || state.status?.phase === 'Terminating';
      if (going && portNamespaces.has(ns)) out.push(p);
      else this.seenPolicies.delete(key);
    }
    for (const p of current) this.seenPolicies.set(keyOf(p), p);
    return out;
  }

  private async pass(): Promise<WriteStats> {
    const stats: WriteStats = { created: 0, updated: 0, deleted: 0, ports: 0 };
    const { topology } = this.o;
    const flat = (this.o.tenancy ?? 'flat') === 'flat';
    const namespaces = this.namespaces.list();
    const networks = await this.plan(namespaces);
    if (!flat) await this.cleanNamespaces(namespaces, networks, stats);
    // Per tenant: its networks' bridges, and per load balancer: the namespaces whose Services it carries.
    const tenants = new Map<
      string,
      { tenantId: string; bridgeIds: string[]; routerIds: Set<string>; namespaces: Set<string> | undefined }
    >();
    const balancers = new Map<string, Set<string> | undefined>();
    const bridgesOfBalancer = new Map<string, Set<string>>();
    for (const { ref, namespaces: nss } of networks.values()) {
      let made: Awaited<ReturnType<Controller['ensureNetwork']>>;
      try {
        made = await this.ensureNetwork(ref, () => this.subnetsOfNew());
      } catch (e) {
        // One namespace network that cannot be made (a pool exhausted) must not hold up the others.
        if (flat) throw e;
        for (const n of namespaces.filter((x) => nss.has(x.metadata.name)))
          await this.events.warn(n, 'Namespace', 'v1', 'NetworkNotMapped', `network ${ref.tenant}/${ref.network}: ${(e as Error).message}`);
        continue;
      }
      const { tenantId, bridgeId, lbId, routerId } = made;
      let t = tenants.get(tenantId);
      if (!t) tenants.set(tenantId, (t = { tenantId, bridgeIds: [], routerIds: new Set(), namespaces: flat ? undefined : new Set() }));
      if (bridgeId !== undefined) t.bridgeIds.push(bridgeId);
      if (routerId !== undefined) t.routerIds.add(routerId);
      for (const n of nss) t.namespaces?.add(n);
      if (lbId !== undefined) {
        const b = balancers.get(lbId) ?? (flat ? undefined : new Set<string>());
        for (const n of nss) b?.add(n);
        balancers.set(lbId, b);
        if (bridgeId !== undefined) bridgesOfBalancer.set(lbId, (bridgesOfBalancer.get(lbId) ?? new Set()).add(bridgeId));
      }
    }
    const allPorts = await topology.list('Port');
    const policies = this.policiesInForce(namespaces, allPorts);
    const inScope = (ns: string | undefined, scope: Set<string> | undefined): boolean => !scope || scope.has(ns ?? 'default');
    for (const { tenantId, bridgeIds, routerIds, namespaces: scope } of tenants.values()) {
      const bridges = new Set(bridgeIds);
      const ports = allPorts.filter((p) => p.tenantId === tenantId);
      const portOfPod = new Map<string, Port>();
      for (const p of ports) {
        const k = podKeyOfPort(p);
        if (k && p.type === 'bridge' && bridges.has(p.bridgeId ?? '')) portOfPod.set(k, p);
      }
      const mine = policies.filter((p) => inScope(p.metadata.namespace, scope));
      const pods = this.pods
        .list()
        .filter((p) => !p.spec?.hostNetwork && inScope(p.metadata.namespace, scope))
        .map((p) => policyPod(p, portOfPod.get(keyOf(p))?.id));
      // The node's own traffic comes from the host end of the router's uplink (kubelet's probes: always allowed in).
      const nodeSources = [...routerIds].map(uplinkHostAddress).sort();
      const compiled = compilePolicies(tenantId, mine, pods, namespaces.map(policyNamespace), { nodeSources });
      for (const err of compiled.errors) {
        const p = mine.find((x) => x.metadata.namespace === err.namespace && x.metadata.name === err.name);
        if (p)
          await this.events.warn(
            p,
            'NetworkPolicy',
            'networking.k8s.io/v1',
            'PolicyNotEnforced',
            `part of this policy is not enforced: ${err.message}`,
          );
      }
      if (bridgeIds.length) {
        const ownedGroups = await writePolicy(topology, tenantId, bridgeIds, compiled, stats);
        await writeMemberships(topology, tenantId, ports, compiled.memberships, ownedGroups, stats);
      }
    }
    const services = this.services.list();
    const slices = this.slices.list();
    const bridgeById = new Map((await topology.list('Bridge')).map((b) => [b.id, b]));
    for (const [lbId, scope] of balancers) {
      const mine = services.filter((x) => inScope(x.metadata.namespace, scope));
      // The address families the load balancer's networks have a subnet of: a VIP of another family is refused.
      const families = new Set<4 | 6>();
      for (const id of bridgesOfBalancer.get(lbId) ?? [])
        for (const sub of bridgeById.get(id)?.subnets ?? []) families.add(sub.cidr.includes(':') ? 6 : 4);
      const svc = compileServices(lbId, mine, slices, {
        besideKubeProxy: this.o.besideKubeProxy ?? false,
        ...(families.size ? { families } : {}),
      });
      for (const err of svc.errors) {
        const s = mine.find((x) => x.metadata.namespace === err.namespace && x.metadata.name === err.name);
        if (s) await this.events.warn(s, 'Service', 'v1', 'ServiceNotProxied', err.message);
      }
      await writeServices(topology, lbId, svc, stats);
    }
    return stats;
  }
}
