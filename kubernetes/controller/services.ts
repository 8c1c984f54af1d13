// Services and their EndpointSlices → the router's load balancer: a Pool per (Service, port), a PoolMember per
// endpoint address, a Vip per service address (ClusterIPs, externalIPs, load-balancer ingress IPs) and port. Pure.
// The semantics are kube-proxy's (kubernetes.md §2.4, pkg/proxy): which Services are ours (the service-proxy-name
// and headless labels), endpoint conditions with their nil defaults (ready and serving default true, terminating
// false), ready endpoints first and serving-and-terminating ones only when none is ready (here: backup members, the
// kernel side picks them only while no other member is selectable), sessionAffinity ClientIP with its timeout
// (default 10800 s), internal/externalTrafficPolicy Local. Headless Services (clusterIP None) get no VIP, so
// nothing: they are DNS only. The kernel side (DNAT, affinity, NodePort, conntrack) is core's `lbwire` work.
// Dual stack: one pool per Service port holds the endpoints of both families, with a VIP per ClusterIP; a VIP is
// written only once its pool has a member of its family (or no member at all), as the store requires (a VIP
// over members of the other family only could never answer, core/topology/rules/lb.ts), so the IPv6 VIP of a
// Service whose IPv4 endpoints came first waits for its own; a ClusterIP of a family the pod network has no
// subnet of is never served, and is an error (an Event) instead of a write the store would refuse.
import { stableId } from '../../core/model/ids.js';
import type { Pool, PoolMember, Vip } from '../../core/model/types.js';
import { isIp } from '../../core/net/ip.js';
import { keyOf, type EndpointSlice, type Service } from './objects.js';

export const SERVICE_PROXY_NAME_LABEL = 'service.kubernetes.io/service-proxy-name';
export const HEADLESS_LABEL = 'service.kubernetes.io/headless';
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';
export const DEFAULT_AFFINITY_TIMEOUT_S = 10800;
/** Our name as a service proxy: Services labelled with it are ours even beside kube-proxy. */
export const PROXY_NAME = 'midonet-bees';

export interface ServiceError {
  namespace: string;
  name: string;
  message: string;
}

export interface CompiledServices {
  pools: Pool[];
  members: PoolMember[];
  vips: Vip[];
  errors: ServiceError[];
}

const familyOf = (address: string): 4 | 6 => (address.includes(':') ? 6 : 4);

export const loadBalancerIdOf = (routerId: string): string => stableId('LoadBalancer', 'k8s', routerId);
const poolIdOf = (lbId: string, ns: string, name: string, port: string): string => stableId('Pool', 'k8s', lbId, ns, name, port);

/**
 * Is this Service ours? Alone (kube-proxy replaced): every Service without a service-proxy-name label, as kube-proxy
 * selects them. Beside kube-proxy: only those labelled service-proxy-name=midonet-bees, which kube-proxy skips.
 */
export function isOurs(svc: Service, besideKubeProxy: boolean): boolean {
  const labels = svc.metadata.labels ?? {};
  if (HEADLESS_LABEL in labels) return false;
  const proxy = labels[SERVICE_PROXY_NAME_LABEL];
  return besideKubeProxy ? proxy === PROXY_NAME : proxy === undefined;
}

interface Usable {
  address: string;
  port: number;
  ready: boolean;
  servingTerminating: boolean;
}

/** Every Service's pools, members and VIPs on load balancer `lbId`. */
export function compileServices(
  lbId: string,
  services: readonly Service[],
  slices: readonly EndpointSlice[],
  opts: { besideKubeProxy?: boolean; families?: ReadonlySet<4 | 6> } = {},
): CompiledServices {
  const out: CompiledServices = { pools: [], members: [], vips: [], errors: [] };
  const slicesOf = new Map<string, EndpointSlice[]>();
  for (const s of slices) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc || (s.addressType !== undefined && s.addressType !== 'IPv4' && s.addressType !== 'IPv6')) continue;
    const key = `${s.metadata.namespace ?? 'default'}/${svc}`;
    let list = slicesOf.get(key);
    if (!list) slicesOf.set(key, (list = []));
    list.push(s);
  }
  const sorted = [...services].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  for (const svc of sorted) {
    const spec = svc.spec ?? {};
    if (!isOurs(svc, opts.besideKubeProxy ?? false) || spec.type === 'ExternalName') continue;
    const ns = svc.metadata.namespace ?? 'default';
    const name = svc.metadata.name;
    const clusterIPs = (spec.clusterIPs?.length ? spec.clusterIPs : spec.clusterIP ? [spec.clusterIP] : []).filter((ip) => ip !== 'None');
    if (clusterIPs.length === 0) continue; // headless: no VIP
    const external = spec.type === 'NodePort' || spec.type === 'LoadBalancer';
    const externalIPs = [
      ...(spec.externalIPs ?? []),
      ...(spec.type === 'LoadBalancer'
        ? (svc.status?.loadBalancer?.ingress ?? []).filter((i) => i.ip && (i.ipMode === undefined || i.ipMode === 'VIP')).map((i) => i.ip!)
        : []),
    ];
    const affinity = spec.sessionAffinity === 'ClientIP';
    const timeout = spec.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_S;
    for (const sp of spec.ports ?? []) {
      const proto = (sp.protocol ?? 'TCP').toUpperCase();
      if (proto !== 'TCP' && proto !== 'UDP') {
        out.errors.push({
          namespace: ns,
          name,
          message: `port ${sp.name ?? sp.port}: protocol ${proto} is not supported (TCP and UDP only)`,
        });
        continue;
      }
      const protocol = proto === 'TCP' ? 'tcp' : 'udp';
      const poolId = poolIdOf(lbId, ns, name, sp.name ?? `${sp.port}/${proto}`);
      // UDP has no connection end: a removed endpoint's conntrack entries are cut, or they blackhole (kubernetes#48370).
      out.pools.push({
        id: poolId,
        loadBalancerId: lbId,
        protocol,
        lbMethod: 'random',
        adminStateUp: true,
        memberRemoval: protocol === 'udp' ? 'cut' : 'drain',
      });
      // Endpoints of every slice of the Service, deduplicated by address (a ready copy wins).
      const byAddress = new Map<string, Usable>();
      for (const slice of slicesOf.get(`${ns}/${name}`) ?? []) {
        const port = (slice.ports ?? []).find((p) => (p.name ?? '') === (sp.name ?? '') && (p.protocol ?? 'TCP').toUpperCase() === proto);
        if (port?.port === undefined) continue;
        for (const ep of slice.endpoints ?? []) {
          const c = ep.conditions ?? {};
          const ready = c.ready == null || c.ready;
          const serving = c.serving == null || c.serving;
          const terminating = c.terminating === true;
          for (const address of ep.addresses) {
            if (!isIp(address)) continue;
            const prev = byAddress.get(address);
            if (prev?.ready) continue;
            byAddress.set(address, { address, port: port.port, ready, servingTerminating: serving && terminating });
          }
        }
      }
      for (const u of [...byAddress.values()].sort((a, b) => a.address.localeCompare(b.address))) {
        const m: PoolMember = {
          id: stableId('PoolMember', poolId, u.address, String(u.port)),
          poolId,
          address: u.address,
          port: u.port,
          weight: 1,
          adminStateUp: u.ready || u.servingTerminating,
          status: u.ready || u.servingTerminating ? 'up' : 'down',
        };
        if (!u.ready && u.servingTerminating) m.backup = true;
        out.members.push(m);
      }
      const vip = (address: string, withNodePort: boolean): Vip => {
        const v: Vip = { id: stableId('Vip', poolId, address, String(sp.port)), poolId, address, port: sp.port, protocol };
        if (affinity) {
          v.sessionPersistence = 'source_ip';
          v.affinityTimeoutS = timeout;
        }
        if (withNodePort && external && sp.nodePort) v.nodePort = sp.nodePort;
        if (external && spec.externalTrafficPolicy === 'Local') v.externalTrafficPolicy = 'local';
        if (spec.internalTrafficPolicy === 'Local') v.internalTrafficPolicy = 'local';
        return v;
      };
      const poolMembers = out.members.filter((m) => m.poolId === poolId);
      const servable = (address: string): boolean => {
        const family = familyOf(address);
        if (opts.families && !opts.families.has(family)) {
          const message = `${address}: IPv${family} is not served: the pod network has no IPv${family} subnet`;
          if (!out.errors.some((e) => e.namespace === ns && e.name === name && e.message === message))
            out.errors.push({ namespace: ns, name, message });
          return false;
        }
        return poolMembers.length === 0 || poolMembers.some((m) => familyOf(m.address) === family);
      };
      // The node port goes with the first served IPv4 ClusterIP: NodePorts are published on the hosts' IPv4
      // underlay addresses (core/lb/compile.ts), whatever the Service's primary family.
      let nodePortTaken = false;
      for (const ip of clusterIPs) {
        if (!servable(ip)) continue;
        const withNodePort: boolean = !nodePortTaken && familyOf(ip) === 4;
        out.vips.push(vip(ip, withNodePort));
        nodePortTaken ||= withNodePort;
      }
      for (const ip of externalIPs) if (!clusterIPs.includes(ip) && servable(ip)) out.vips.push(vip(ip, false));
    }
  }
  return out;
}
