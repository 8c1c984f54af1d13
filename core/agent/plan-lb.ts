// Planning of the L4 load balancer on this host (core/datapath/README.md "Load balancing"): from the topology, the
// VIPs this host's clients reach and what the kernel needs around them. Pure, like plan.ts (tested in
// core/test/plan-lb.test.ts); the reconciler applies the spec (core/datapath/nft/lb.ts) and hands the health
// targets to the monitors (core/agent/lb-health.ts).
//
// A LoadBalancer belongs to a router; its VIPs serve the clients on that router's bridges. A host translates for
// the bridges of such a router that have ports here (translation happens on the client's host), so a VIP is only
// ever matched for frames coming in on its own router's bridges: tenants with the same addresses stay apart.
// Members are resolved to ports on the router's bridges (their MAC for the host namespace's neighbours, their host
// for hairpin, health checks and the local traffic policies).
//
// Dual stack: a VIP is served by the members of its own family (a pool may hold both, as a Kubernetes dual-stack
// Service does), on the client bridges that have a gateway of that family; an IPv6 VIP needs the bridge's IPv6
// gateway (its routing table and hairpin SNAT use it).
import type { HealthMonitor, Port } from '../model/types.js';
import { familyOf, inRotation, type LbMember, type LbVip } from '../lb/compile.js';
import { LB_ROUTE_TABLE_BASE, type LbBridgeRouting, type LbHostSpec } from '../datapath/nft/lb.js';
import { bridgeName } from '../datapath/names.js';
import { ipFamily, parseCidr, parseIp } from '../net/ip.js';
import { bareIp, tunnelIpOf, type HostPlan, type Pin, type TopologyView } from './plan.js';

/** A member this host checks: its port is bound here; probed from the router's namespace on this host. */
export interface HealthTarget {
  memberId: string;
  address: string;
  port: number;
  routerId: string;
  monitor: HealthMonitor;
}

export interface HostLb {
  spec: LbHostSpec;
  health: HealthTarget[];
  /** What cannot be served, with why (logged by the reconciler). */
  skipped: string[];
}

function inSubnet(address: string, cidr: string): boolean {
  try {
    const c = parseCidr(cidr, 'cidr');
    const a = parseIp(address, 'address');
    if (a.family !== c.family) return false;
    const bits = a.family === 4 ? 32 : 128;
    const shift = BigInt(bits - c.prefix);
    return a.value >> shift === c.network >> shift;
  } catch {
    return false;
  }
}

/** The load balancer of host `hostId`, given its plan (the bridges and routers realized here). */
export function planLb(view: TopologyView, hostId: string, plan: HostPlan, pins: Iterable<Pin> = []): HostLb {
  const ports = view.list('Port');
  const portsById = new Map(ports.map((p) => [p.id, p]));
  const withLocalPorts = new Set(ports.filter((p) => p.type === 'bridge' && p.hostId === hostId && p.bridgeId).map((p) => p.bridgeId!));
  for (const pin of pins) withLocalPorts.add(pin.bridgeId);
  const pools = view.list('Pool');
  const members = view.list('PoolMember');
  const vips = view.list('Vip');
  const hosts = view.list('Host');
  const peers = hosts
    .filter((h) => h.id !== hostId)
    .map((h) => tunnelIpOf(h))
    .filter((a): a is string => a !== undefined && ipFamily(a) === 4)
    .sort();

  // Grouped once: a pass costs O(objects), not O(load balancers × ports) (Kubernetes makes one per Service).
  const groupBy = <T>(items: readonly T[], key: (x: T) => string | undefined): Map<string, T[]> => {
    const out = new Map<string, T[]>();
    for (const x of items) {
      const k = key(x);
      if (k === undefined) continue;
      const list = out.get(k);
      if (list) list.push(x);
      else out.set(k, [x]);
    }
    return out;
  };
  const routerPorts = groupBy(ports, (p) => (p.type === 'router' && p.peerId ? p.routerId : undefined));
  const bridgePorts = groupBy(ports, (p) => (p.type === 'bridge' && !p.peerId ? p.bridgeId : undefined));
  const poolsOf = groupBy(pools, (p) => p.loadBalancerId);
  const membersOf = groupBy(members, (m) => m.poolId);
  const vipsOf = groupBy(vips, (v) => v.poolId);
  type Leg = { bridgeId: string; vni: number; gateway: string; gateway6?: string; mac: string; subnets: string[] };
  const routerView = new Map<string, { legs: Leg[]; portOf: Map<string, Port> }>();
  /** A router's bridges (through its ports' peers) and the ports on them by address. */
  const viewOf = (routerId: string): { legs: Leg[]; portOf: Map<string, Port> } => {
    const had = routerView.get(routerId);
    if (had) return had;
    const legs: Leg[] = [];
    for (const rp of routerPorts.get(routerId) ?? []) {
      const bridgeId = portsById.get(rp.peerId!)?.bridgeId;
      const bridge = bridgeId ? view.get('Bridge', bridgeId) : undefined;
      const gateway = rp.ips.map(bareIp).find((a) => ipFamily(a) === 4);
      const gateway6 = rp.ips.map(bareIp).find((a) => ipFamily(a) === 6);
      if (!bridge || !gateway) continue;
      const subnets = bridge.subnets.map((s) => s.cidr).filter((c) => !c.includes(':') || gateway6 !== undefined);
      legs.push({ bridgeId: bridge.id, vni: bridge.tunnelKey, gateway, ...(gateway6 ? { gateway6 } : {}), mac: rp.mac, subnets });
    }
    const portOf = new Map<string, Port>();
    for (const l of legs) for (const p of bridgePorts.get(l.bridgeId) ?? []) for (const ip of p.ips) portOf.set(bareIp(ip), p);
    const v = { legs, portOf };
    routerView.set(routerId, v);
    return v;
  };

  const bridges = new Map<string, LbBridgeRouting>();
  const outVips: LbVip[] = [];
  const hairpin = new Set<string>();
  const health: HealthTarget[] = [];
  const skipped: string[] = [];

  for (const lb of [...view.list('LoadBalancer')].sort((a, b) => a.id.localeCompare(b.id))) {
    const router = view.get('Router', lb.routerId);
    if (!lb.adminStateUp || !router || !router.adminStateUp) continue;
    // Members are ports on the router's bridges, found by address.
    const { legs, portOf } = viewOf(router.id);
    const clients = legs.filter((l) => plan.bridges.has(l.bridgeId) && withLocalPorts.has(l.bridgeId));
    const clientNames = clients.map((l) => bridgeName(l.vni)).sort();
    const clientNames6 = clients
      .filter((l) => l.gateway6 !== undefined)
      .map((l) => bridgeName(l.vni))
      .sort();
    const addresses = new Set<string>();
    for (const pool of [...(poolsOf.get(lb.id) ?? [])].sort((a, b) => a.id.localeCompare(b.id))) {
      const all = [...(membersOf.get(pool.id) ?? [])].sort((a, b) => a.id.localeCompare(b.id));
      const model: LbMember[] = all.map((m) => ({
        id: m.id,
        address: m.address,
        port: m.port,
        weight: m.weight,
        // A pool that is down serves nobody: its members are all out of rotation.
        adminStateUp: m.adminStateUp && pool.adminStateUp,
        status: m.status,
        ...(m.backup ? { backup: true } : {}),
      }));
      const isLocal = (m: { address: string }): boolean => portOf.get(m.address)?.hostId === hostId;
      for (const m of model) addresses.add(m.address);
      const monitor = pool.healthMonitorId ? view.get('HealthMonitor', pool.healthMonitorId) : undefined;
      if (monitor?.adminStateUp && plan.routers.has(router.id)) {
        for (const m of all)
          if (isLocal(m)) health.push({ memberId: m.id, address: m.address, port: m.port, routerId: router.id, monitor });
      }
      for (const v of [...(vipsOf.get(pool.id) ?? [])].sort((a, b) => a.id.localeCompare(b.id))) {
        const family = familyOf(v.address);
        const names = family === 6 ? clientNames6 : clientNames;
        if (family === 6 && clientNames6.length < clientNames.length)
          skipped.push(`VIP ${v.id}: IPv6, not served on the bridges of router ${router.id} without an IPv6 gateway`);
        const same = model.filter((m) => familyOf(m.address) === family);
        const serving = v.internalTrafficPolicy === 'local' ? same.filter(isLocal) : same;
        let nodePort: LbVip['nodePort'];
        // Node ports are published on the hosts' (IPv4) underlay addresses, by the VIP of that family.
        if (v.nodePort && family === 4) {
          const remotes = new Map<string, number>();
          for (const m of inRotation(same)) {
            const h = portOf.get(m.address)?.hostId;
            const at = h && h !== hostId ? tunnelIpOf(view.get('Host', h)) : undefined;
            if (at && ipFamily(at) === 4) remotes.set(at, (remotes.get(at) ?? 0) + m.weight);
          }
          nodePort = {
            port: v.nodePort,
            local: v.externalTrafficPolicy === 'local',
            localMembers: serving.filter(isLocal).map((m) => m.id),
            remotes: [...remotes].sort(([a], [b]) => a.localeCompare(b)).map(([address, weight]) => ({ address, weight })),
            peers,
          };
        }
        // Needed here when local clients reach it, or when it is published on this host.
        if (names.length === 0 && !nodePort) continue;
        outVips.push({
          id: v.id,
          address: v.address,
          port: v.port,
          protocol: v.protocol,
          members: serving,
          bridges: names,
          ...(v.sessionPersistence ? { sessionPersistence: v.sessionPersistence } : {}),
          ...(v.affinityTimeoutS ? { affinityTimeoutS: v.affinityTimeoutS } : {}),
          ...(pool.memberRemoval ? { memberRemoval: pool.memberRemoval } : {}),
          ...(nodePort ? { nodePort } : {}),
        });
        for (const m of serving) {
          const p = portOf.get(m.address);
          if (p?.hostId === hostId && p.interfaceName && p.bridgeId && clients.some((l) => l.bridgeId === p.bridgeId))
            hairpin.add(p.interfaceName);
        }
      }
    }
    for (const l of clients) {
      const ifname = bridgeName(l.vni);
      const neighbours = [...addresses]
        .filter((a) => l.subnets.some((s) => inSubnet(a, s)))
        .map((a) => ({ a, p: portOf.get(a) }))
        .filter(({ p }) => p?.bridgeId === l.bridgeId)
        .map(({ a, p }) => ({ address: a, mac: p!.mac.toLowerCase() }))
        .sort((x, y) => x.address.localeCompare(y.address));
      const had = bridges.get(ifname);
      bridges.set(ifname, {
        ifname,
        gateway: l.gateway,
        ...(l.gateway6 ? { gateway6: l.gateway6 } : {}),
        gatewayMac: l.mac.toLowerCase(),
        table: LB_ROUTE_TABLE_BASE + l.vni,
        subnets: l.subnets,
        neighbours: had ? [...had.neighbours, ...neighbours] : neighbours,
      });
    }
  }
  // Bridges only where some VIP is served (a load balancer without VIPs changes nothing in the kernel).
  const used = new Set(outVips.flatMap((v) => v.bridges));
  return {
    spec: {
      bridges: [...bridges.values()].filter((b) => used.has(b.ifname)).sort((a, b) => a.ifname.localeCompare(b.ifname)),
      vips: outVips,
      hairpinPorts: [...hairpin].sort(),
    },
    health: health.sort((a, b) => a.memberId.localeCompare(b.memberId)),
    skipped,
  };
}
