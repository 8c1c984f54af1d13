// Planning: what this host's kernel must hold, computed from a snapshot of the topology and a few local facts
// (this host's id, its underlay MTU, the plugs under way). Pure: no I/O, no clock, no state kept between calls, so
// it is tested on its own (core/test/plan.test.ts) and the reconciler only carries the plan out.
//
// A host realizes a virtual bridge only where it serves: where a port of it is bound here, or where a router that
// serves a local port has a leg on it (traffic routed here towards that bridge leaves from here, straight to the
// destination host). Routers are realized on every host that has local ports on one of their bridges.
import type { Bridge, Host, Models, Port, Router } from '../model/types.js';
import type { BridgeRemotesDelta, DesiredBridge, DesiredRouter, PolicyChange, RouterNeighbour, RouterRoute } from '../datapath/types.js';
import { parseCidr } from '../net/ip.js';
import type { CachedKind } from './cache.js';
import { addrGroupElements, chainName, compileChain, type CompileContext, type CompiledChain, type SetDecl } from '../policy/compile.js';
import { DEFAULT_DROP_LOG, logPrefix, type DropLog } from '../policy/compile.js';
import { ADMIN_DOWN, STAGE_ORDER, type PolicyRule, type StageName } from '../policy/simulate.js';
import { compileRouterFilters } from '../policy/compile-router.js';
import { legName, routerLegName } from '../datapath/names.js';

/** The topology as the agent's cache holds it (TopologyCache is one). */
export interface TopologyView {
  get<K extends CachedKind>(kind: K, id: string): Models[K] | undefined;
  list<K extends CachedKind>(kind: K): Models[K][];
  /**
   * The ports grouped as planning reads them, kept current by the view (TopologyCache does): a pass then reads the
   * few bridges this host serves instead of every port in the store (at 100,000 ports a scan per pass cost ~200 ms
   * of CPU, bench/scale). Without it planHost groups `list('Port')` itself.
   */
  portIndex?(): PortIndex;
}

/** Ports by what they belong to; each group in any order. */
export interface PortIndex {
  /** Ports of type 'bridge' on this bridge. */
  ofBridge(bridgeId: string): Iterable<Port>;
  /** Ports of type 'router' of this router. */
  ofRouter(routerId: string): Iterable<Port>;
  /** Ports of type 'bridge' bound to this host. */
  onHost(hostId: string): Iterable<Port>;
}

/** Which groups of the index a port belongs to (the one definition the cache's index and the fallback share). */
export function portGroups(p: Port): { bridge?: string; router?: string; host?: string } {
  if (p.type === 'bridge') return { ...(p.bridgeId ? { bridge: p.bridgeId } : {}), ...(p.hostId ? { host: p.hostId } : {}) };
  if (p.type === 'router' && p.routerId) return { router: p.routerId };
  return {};
}

/** An index of `ports` built in one scan (views without their own). */
export function indexPorts(ports: Iterable<Port>): PortIndex {
  const groups = { bridge: new Map<string, Port[]>(), router: new Map<string, Port[]>(), host: new Map<string, Port[]>() };
  for (const p of ports) {
    for (const [g, key] of Object.entries(portGroups(p)) as [keyof typeof groups, string][]) {
      let list = groups[g].get(key);
      if (!list) groups[g].set(key, (list = []));
      list.push(p);
    }
  }
  return {
    ofBridge: (id) => groups.bridge.get(id) ?? [],
    ofRouter: (id) => groups.router.get(id) ?? [],
    onHost: (id) => groups.host.get(id) ?? [],
  };
}

/** A workload port being plugged here whose creation the cache has not seen yet. */
export interface Pin {
  bridgeId: string;
  hostIfname: string;
  /** The port being plugged: its filters apply from the plug on when the cache knows it already (a re-plug). */
  portId?: string;
  /** A new port as it is being written: its filters and group memberships apply before the cache shows it. */
  port?: Port;
}

export interface LocalFacts {
  hostId: string;
  /** MTU of this host's underlay: a bridge without its own MTU gets 50 bytes less (the VXLAN overhead). */
  underlayMtu: number;
  /** Plugs under way: their bridge and veth are desired even before the cache shows their port. */
  pins?: Iterable<Pin>;
  /** Log new connections accepted by rules (the agent's `--flow-log`); off when absent. */
  acceptLog?: DropLog;
}

export interface HostPlan {
  bridges: Map<string, DesiredBridge>;
  routers: Map<string, DesiredRouter>;
  /** Host-side interface names of the ports bound here. */
  plugs: Set<string>;
}

/** The underlay address a host is reached on for tunnels. */
export function tunnelIpOf(host: Host | undefined): string | undefined {
  if (!host) return undefined;
  return host.tunnelZones[0]?.ip ?? host.addresses[0];
}

export function bareIp(ipOrCidr: string): string {
  const slash = ipOrCidr.indexOf('/');
  return slash < 0 ? ipOrCidr : ipOrCidr.slice(0, slash);
}

/** The desired state of host `facts.hostId` for the topology `view`. */
export function planHost(view: TopologyView, facts: LocalFacts): HostPlan {
  const me = facts.hostId;
  const pins = [...(facts.pins ?? [])];
  const index = view.portIndex?.() ?? indexPorts(view.list('Port'));
  const portsById = { get: (id: string) => view.get('Port', id) };
  // Only the bridges this host serves are read: grouped lazily, once each.
  const bridgePorts = new Map<string, Port[]>();
  const byBridge = {
    get(id: string): Port[] {
      let list = bridgePorts.get(id);
      if (!list) bridgePorts.set(id, (list = [...index.ofBridge(id)]));
      return list;
    },
  };
  const local = [...index.onHost(me)].filter((p) => p.bridgeId && p.interfaceName);

  // Routers serving bridges with local ports, and through them every bridge those routers join: traffic routed
  // here towards a bridge without local ports still leaves from here, straight to the destination host.
  const routerIds = new Set<string>();
  const bridgeIds = new Set([...local.map((p) => p.bridgeId!), ...pins.map((p) => p.bridgeId)]);
  for (const bid of [...bridgeIds]) {
    for (const bp of byBridge.get(bid) ?? []) {
      const rp = bp.peerId ? portsById.get(bp.peerId) : undefined;
      if (rp?.type === 'router' && rp.routerId && view.get('Router', rp.routerId)?.adminStateUp !== false) routerIds.add(rp.routerId);
    }
  }
  const routerPorts = new Map<string, Port[]>();
  for (const rid of routerIds) {
    const list = [...index.ofRouter(rid)];
    routerPorts.set(rid, list);
    for (const p of list) {
      const peer = p.peerId ? portsById.get(p.peerId) : undefined;
      if (peer?.bridgeId) bridgeIds.add(peer.bridgeId);
    }
  }

  const bridges = new Map<string, DesiredBridge>();
  for (const bid of bridgeIds) {
    const bridge = view.get('Bridge', bid);
    if (!bridge || !bridge.adminStateUp) continue;
    bridges.set(bid, desiredBridge(view, facts, bridge, byBridge.get(bid) ?? [], portsById));
  }

  const routers = new Map<string, DesiredRouter>();
  for (const rid of routerIds) {
    const router = view.get('Router', rid);
    if (!router) continue;
    const r = desiredRouter(view, router, routerPorts.get(rid) ?? [], portsById, byBridge);
    if (r.legs.length > 0) routers.set(rid, r);
  }
  return { bridges, routers, plugs: new Set([...local.map((p) => p.interfaceName!), ...pins.map((p) => p.hostIfname)]) };
}

/** A bridge as this host holds it: an FDB entry per remote port, a flood entry per other host, router gateways. */
/** Ports by id: the view itself, or a map of them. */
type PortLookup = Pick<Map<string, Port>, 'get'>;

function desiredBridge(view: TopologyView, facts: LocalFacts, bridge: Bridge, ports: Port[], portsById: PortLookup): DesiredBridge {
  const remotes: DesiredBridge['remotes'] = [];
  const flood = new Set<string>();
  const gateways: NonNullable<DesiredBridge['gateways']> = [];
  for (const p of ports) {
    const peer = p.peerId ? portsById.get(p.peerId) : undefined;
    if (peer?.type === 'router') {
      for (const cidr of peer.ips) gateways.push({ ip: bareIp(cidr), mac: peer.mac });
      continue;
    }
    if (!p.hostId || p.hostId === facts.hostId || !p.interfaceName) continue;
    const hostIp = tunnelIpOf(view.get('Host', p.hostId));
    if (!hostIp) continue;
    remotes.push({ mac: p.mac, ips: p.ips.map(bareIp), hostIp });
    flood.add(hostIp);
  }
  const mtu = bridge.mtu ?? facts.underlayMtu - 50;
  return { vni: bridge.tunnelKey, mtu, remotes, floodHosts: [...flood].sort(), gateways };
}

/** A router instance: a leg per bridge it is linked to, a neighbour per port on those bridges, its routes. */
function desiredRouter(
  view: TopologyView,
  router: Router,
  rports: Port[],
  portsById: PortLookup,
  byBridge: Pick<Map<string, Port[]>, 'get'>,
): DesiredRouter {
  const legs: DesiredRouter['legs'] = [];
  const neighbours: NonNullable<DesiredRouter['neighbours']> = [];
  const legByPort = new Map<string, number>();
  const subnets: string[] = [];
  let internal = false;
  for (const rp of rports) {
    const peer = rp.peerId ? portsById.get(rp.peerId) : undefined;
    const bridge = peer?.bridgeId ? view.get('Bridge', peer.bridgeId) : undefined;
    if (!bridge || !bridge.adminStateUp) continue;
    legs.push({ vni: bridge.tunnelKey, mac: rp.mac, addresses: rp.ips });
    legByPort.set(rp.id, bridge.tunnelKey);
    internal ||= bridge.internal === true;
    // The uplink to the host is IPv4 link-local: the host reaches IPv4 workloads (probes, published ports).
    for (const s of bridge.subnets) if (!s.cidr.includes(':')) subnets.push(s.cidr);
    for (const p of byBridge.get(bridge.id) ?? []) {
      if (p.peerId || !p.hostId) continue;
      for (const ip of p.ips) neighbours.push({ ip: bareIp(ip), mac: p.mac, vni: bridge.tunnelKey });
    }
  }
  const routes: RouterRoute[] = [];
  for (const r of view.list('Route')) {
    if (r.routerId !== router.id) continue;
    if (r.nextHop === 'blackhole' || r.nextHop === 'reject') {
      routes.push({ dst: r.dst, type: r.nextHop });
      continue;
    }
    if (r.nextHop !== 'port' || !r.nextHopPortId) continue;
    const vni = legByPort.get(r.nextHopPortId);
    if (vni === undefined) continue;
    // Routes to a leg's own subnet are connected routes the kernel already has.
    if (!r.nextHopGateway && isConnected(r.dst, portsById.get(r.nextHopPortId))) continue;
    routes.push(r.nextHopGateway ? { dst: r.dst, via: r.nextHopGateway, vni } : { dst: r.dst, vni });
  }
  const filters = routerFilters(view, router, legByPort, rports);
  // Floating IPs and SNAT targets of its chains are routed from the host into this router, like its subnets.
  const extra = internal || !filters ? [] : filters.addresses.map((a) => `${a}/32`);
  return {
    id: router.id,
    legs,
    routes,
    neighbours,
    snat: router.snat && !internal,
    hostReachable: internal ? [] : [...subnets, ...extra],
    ...(filters ? { filters } : {}),
  };
}

/** A router's chains compiled for its namespace (core/policy/compile-router.ts); undefined without filters. */
function routerFilters(view: TopologyView, router: Router, legByPort: Map<string, number>, rports: readonly Port[]) {
  const portFilters = rports.filter((p) => legByPort.has(p.id) && (p.inboundFilterId || p.outboundFilterId));
  if (!router.inboundFilterId && !router.outboundFilterId && portFilters.length === 0) return undefined;
  const rulesByChain = new Map<string, PolicyRule[]>();
  for (const r of view.list('Rule') as PolicyRule[]) {
    let list = rulesByChain.get(r.chainId);
    if (!list) rulesByChain.set(r.chainId, (list = []));
    list.push(r);
  }
  return compileRouterFilters(
    router,
    {
      chains: new Map(view.list('Chain').map((c) => [c.id, c])),
      rulesByChain,
      ifnameOf: (portId) => {
        const vni = legByPort.get(portId);
        return vni === undefined ? undefined : routerLegName(vni);
      },
      ipAddrGroups: new Map(view.list('IpAddrGroup').map((g) => [g.id, g])),
      ports: view.list('Port'),
    },
    portFilters,
  );
}

/**
 * When a router differs from what was applied only in its chains (and neighbours), the chains to go from and to;
 * undefined when the whole router must be re-applied (or the chains did not change).
 */
export function filtersDelta(
  prev: DesiredRouter | undefined,
  next: DesiredRouter,
): { prev: DesiredRouter['filters']; next: DesiredRouter['filters'] } | undefined {
  if (!prev) return undefined;
  const strip = (r: DesiredRouter) => JSON.stringify({ ...r, neighbours: [], filters: undefined });
  if (strip(prev) !== strip(next) || JSON.stringify(prev.filters) === JSON.stringify(next.filters)) return undefined;
  return { prev: prev.filters, next: next.filters };
}

/**
 * How to bring a router from `prev` (what was last applied) to `next`: when only its neighbours differ, the
 * neighbour entries to add (new or with a changed MAC) and remove; undefined when the whole router must be
 * re-applied. A workload coming or going changes only the neighbours, and a full apply rewrites the namespace.
 */
export function neighbourDelta(
  prev: DesiredRouter | undefined,
  next: DesiredRouter,
): { add: RouterNeighbour[]; remove: RouterNeighbour[] } | undefined {
  if (!prev || !sameButNeighbours(prev, next)) return undefined;
  const key = (n: RouterNeighbour): string => `${n.ip}|${n.vni}`;
  const was = new Map((prev.neighbours ?? []).map((n) => [key(n), n]));
  const now = new Map((next.neighbours ?? []).map((n) => [key(n), n]));
  const add = [...now.values()].filter((n) => was.get(key(n))?.mac !== n.mac);
  const remove = [...was.values()].filter((n) => !now.has(key(n)));
  return { add, remove };
}

/** Two router states differ at most in their neighbours. */
function sameButNeighbours(a: DesiredRouter, b: DesiredRouter): boolean {
  return JSON.stringify({ ...a, neighbours: [] }) === JSON.stringify({ ...b, neighbours: [] });
}

/**
 * How to bring a bridge from `prev` (what was last applied) to `next` when only its remote ports and flood hosts
 * differ (a workload came or went on another host, the common change): the entries to add and remove; undefined
 * when the whole bridge must be re-applied. An empty delta changes nothing.
 */
export function bridgeDelta(prev: DesiredBridge | undefined, next: DesiredBridge): BridgeRemotesDelta | undefined {
  if (!prev) return undefined;
  const strip = (b: DesiredBridge) => JSON.stringify({ ...b, remotes: [], floodHosts: [] });
  if (strip(prev) !== strip(next)) return undefined;
  const mac = (m: string) => m.toLowerCase();
  const neighboursOf = (b: DesiredBridge) => new Map(b.remotes.flatMap((r) => r.ips.map((ip) => [ip, mac(r.mac)] as const)));
  const tunnelOf = (b: DesiredBridge) =>
    new Map(b.remotes.map((r) => [`${mac(r.mac)}|${r.hostIp}`, { mac: mac(r.mac), hostIp: r.hostIp }]));
  const wasN = neighboursOf(prev);
  const nowN = neighboursOf(next);
  const wasT = tunnelOf(prev);
  const nowT = tunnelOf(next);
  const wasM = new Set([...wasT.values()].map((e) => e.mac));
  const nowM = new Set([...nowT.values()].map((e) => e.mac));
  const wasF = new Set(prev.floodHosts);
  const nowF = new Set(next.floodHosts);
  return {
    neighbours: {
      add: [...nowN].filter(([ip, m]) => wasN.get(ip) !== m).map(([ip, m]) => ({ ip, mac: m })),
      remove: [...wasN.keys()].filter((ip) => !nowN.has(ip)),
    },
    tunnel: {
      add: [...nowT].filter(([k]) => !wasT.has(k)).map(([, e]) => e),
      remove: [...wasT].filter(([k]) => !nowT.has(k)).map(([, e]) => e),
    },
    macs: { add: [...nowM].filter((m) => !wasM.has(m)), remove: [...wasM].filter((m) => !nowM.has(m)) },
    flood: { add: [...nowF].filter((h) => !wasF.has(h)), remove: [...wasF].filter((h) => !nowF.has(h)) },
  };
}

/** Keys of the bridges and routers a plan holds (what a sweep would keep). */
export function keysOf(plan: HostPlan): Set<string> {
  return new Set([...[...plan.bridges.values()].map((b) => `bridge/${b.vni}`), ...[...plan.routers.keys()].map((id) => `router/${id}`)]);
}

function isConnected(dst: string, routerPort: Port | undefined): boolean {
  if (!routerPort) return false;
  try {
    const d = parseCidr(dst, 'dst');
    return routerPort.ips.some((cidr) => {
      const leg = parseCidr(cidr, 'ip');
      return leg.family === d.family && leg.prefix === d.prefix && leg.network === d.network;
    });
  } catch {
    return false;
  }
}

/**
 * The chains, groups and conntrack zones this host's ports need (chains-lb.md §2.3–2.7): every filter of a local
 * port and of its bridge bound on the port's interface, the compiled chains they reach (with every chain jumped
 * to), the group sets those chains look up, and a conntrack zone per bridge realized here.
 */
export interface HostPolicy {
  /** Compiled chains by chain id: the transitive closure of the chains bound here. */
  chains: Map<string, CompiledChain>;
  /** Local interface → stage → chain id (a stage without a filter is absent). */
  bindings: Map<string, Partial<Record<StageName, string>>>;
  /** Group sets the chains refer to: declaration and elements (sorted). */
  sets: Map<string, { decl: SetDecl; elements: string[] }>;
  /** Bridge VNI → conntrack zone. */
  zones: Map<number, number>;
  /** Chains that could not be compiled, with why (they are bound to nothing: the port's traffic is dropped). */
  errors: string[];
}

/**
 * The conntrack zone of a bridge: from its VNI, so every host agrees without coordination and a restarted agent
 * finds the zones it set. Zones are 16-bit and VNIs 24-bit: VNIs 65535 apart share a zone (then their tenants
 * must not reuse addresses); the topology allocates tunnel keys from 1 upwards, so that is far off.
 */
export function zoneOf(vni: number): number {
  return ((vni - 1) % 0xffff) + 1;
}

/** The chain a compile failure is bound to instead: drops everything, so a broken policy fails closed. */
export const BROKEN_CHAIN = 'broken';

/** The policy of host `facts.hostId` for the topology `view` (pure, like planHost). */
export function planPolicy(
  view: TopologyView,
  facts: LocalFacts,
  bridges: Iterable<DesiredBridge> = [],
  routers: Iterable<DesiredRouter> = [],
): HostPolicy {
  const me = facts.hostId;
  // Read once: the reconciler passes its pins as a Map iterator, which a second loop would find empty.
  const pins = [...(facts.pins ?? [])];
  const cached = view.list('Port');
  const known = new Set(cached.map((p) => p.id));
  // Ports being plugged whose creation the cache has not seen: as they are being written.
  const ports = [...cached, ...pins.flatMap((pin) => (pin.port && !known.has(pin.port.id) ? [pin.port] : []))];
  const portsById = new Map(ports.map((p) => [p.id, p]));
  const chains = new Map(view.list('Chain').map((c) => [c.id, c]));
  const rules = view.list('Rule') as PolicyRule[];
  const rulesByChain = new Map<string, PolicyRule[]>();
  for (const r of rules) {
    let list = rulesByChain.get(r.chainId);
    if (!list) rulesByChain.set(r.chainId, (list = []));
    list.push(r);
  }
  const bindings = new Map<string, Partial<Record<StageName, string>>>();
  let anyDown = false;
  // `down`: the port is administratively down (MidoNet: it drops everything in and out, ARP and ND included). Its
  // own two stages go to the drop chain ADMIN_DOWN instead of its filters: a toggle is one port's bindings, and the
  // port forwards again when they return, without a re-plug (core/datapath/README.md, "Admin state").
  const bind = (ifname: string, bridgeId: string, port: Port | undefined, down = port?.adminStateUp === false): void => {
    const bridge = view.get('Bridge', bridgeId);
    const b: Partial<Record<StageName, string>> = {};
    const set = (stage: StageName, id: string | undefined): void => {
      if (id !== undefined) b[stage] = id;
    };
    anyDown ||= down;
    set('port-inbound', down ? ADMIN_DOWN : port?.inboundFilterId);
    set('bridge-inbound', bridge?.inboundFilterId);
    set('bridge-outbound', bridge?.outboundFilterId);
    set('port-outbound', down ? ADMIN_DOWN : port?.outboundFilterId);
    if (Object.keys(b).length) bindings.set(ifname, b);
  };
  for (const p of ports) {
    if (p.type === 'bridge' && p.hostId === me && p.bridgeId && p.interfaceName) bind(p.interfaceName, p.bridgeId, p);
  }
  // A router's leg is the bridge's interior port towards it (chains-lb.md §1.6 step 4): the bridge's filters apply
  // to frames between the bridge and the router as to any port's, and so do the interior port's own filters.
  const bridgeByVni = new Map(view.list('Bridge').map((b) => [b.tunnelKey, b]));
  for (const r of routers) {
    for (const leg of r.legs) {
      const bridge = bridgeByVni.get(leg.vni);
      if (!bridge) continue;
      const interior = ports.find((p) => p.bridgeId === bridge.id && p.peerId && portsById.get(p.peerId)?.routerId === r.id);
      // Either end of the link being down cuts it: the router port's traffic all crosses this leg.
      const routerPort = interior?.peerId ? portsById.get(interior.peerId) : undefined;
      bind(legName(r.id, leg.vni), bridge.id, interior, interior?.adminStateUp === false || routerPort?.adminStateUp === false);
    }
  }
  for (const pin of pins) {
    if (bindings.has(pin.hostIfname) || !pin.hostIfname) continue;
    const port = pin.portId ? portsById.get(pin.portId) : undefined;
    bind(pin.hostIfname, pin.bridgeId, port?.bridgeId === pin.bridgeId ? port : undefined);
  }

  // Closure of the bound chains over jumps; a bound chain that is missing is bound as an empty one (accept).
  const needed = new Set<string>();
  const queue = [...bindings.values()].flatMap((b) => Object.values(b)).filter((id) => id !== ADMIN_DOWN);
  while (queue.length) {
    const id = queue.pop()!;
    if (needed.has(id)) continue;
    needed.add(id);
    for (const r of rulesByChain.get(id) ?? []) {
      if (r.action === 'jump' && r.jumpChainId && chains.has(r.jumpChainId)) queue.push(r.jumpChainId);
    }
  }
  const ctx: CompileContext = {
    // An interior port's frames carry its router port's MAC (the anycast gateway's).
    macOf: (id) => {
      const p = portsById.get(id);
      const peer = p?.peerId ? portsById.get(p.peerId) : undefined;
      return peer?.type === 'router' ? peer.mac : p?.mac;
    },
    chainExists: (id) => chains.has(id),
    // Drops logged with their rule id, read back by the agent's flow log (core/datapath/flow-log.ts).
    dropLog: DEFAULT_DROP_LOG,
    ...(facts.acceptLog ? { acceptLog: facts.acceptLog } : {}),
  };
  const compiled = new Map<string, CompiledChain>();
  const errors: string[] = [];
  for (const id of [...needed].sort()) {
    try {
      compiled.set(id, compileChain(id, rulesByChain.get(id) ?? [], ctx));
    } catch (e) {
      // Fail closed: the chain drops everything (its counter says so) until its rules compile again.
      errors.push(`chain ${id}: ${(e as Error).message}`);
      compiled.set(id, { chainId: id, name: chainName(id), rules: [`counter drop comment "r=${BROKEN_CHAIN}"`], sets: [], jumps: [] });
    }
  }

  if (anyDown) compiled.set(ADMIN_DOWN, adminDownChain(ctx.dropLog));

  const sets = new Map<string, { decl: SetDecl; elements: string[] }>();
  for (const c of compiled.values()) {
    for (const decl of c.sets) {
      if (sets.has(decl.name)) continue;
      sets.set(decl.name, { decl, elements: setElements(view, decl.name, ports) });
    }
  }
  const zones = new Map<number, number>();
  for (const b of bridges) zones.set(b.vni, zoneOf(b.vni));
  return { chains: compiled, bindings, sets, zones, errors };
}

/**
 * The chain of a down port's stages: drops every frame, counted and logged as rule ADMIN_DOWN (what `bees trace`
 * names, core/policy/simulate.ts), so `bees port drops` says why. One per host, shared by every down port.
 */
function adminDownChain(log: DropLog | undefined): CompiledChain {
  const logRule = log
    ? [`limit rate ${log.ratePerSecond}/second log prefix "${logPrefix('drop', ADMIN_DOWN)}" group ${log.group} comment "l=${ADMIN_DOWN}"`]
    : [];
  return {
    chainId: ADMIN_DOWN,
    name: chainName(ADMIN_DOWN),
    rules: [...logRule, `counter drop comment "r=${ADMIN_DOWN}"`],
    sets: [],
    jumps: [],
  };
}

/** Elements of a group set named as compile.ts names them: a port group's member MACs, an address group's addresses. */
function setElements(view: TopologyView, name: string, ports: readonly Port[]): string[] {
  const pg = /^pg-(.+)$/.exec(name);
  if (pg) {
    const id = pg[1]!;
    return [...new Set(ports.filter((p) => p.portGroupIds?.includes(id)).map((p) => p.mac.toLowerCase()))].sort();
  }
  const ag = /^iag-(.+)-v([46])$/.exec(name);
  if (ag) {
    const g = view.get('IpAddrGroup', ag[1]!);
    if (!g) return [];
    const { v4, v6 } = addrGroupElements(g);
    return [...(ag[2] === '4' ? v4 : v6)].sort();
  }
  return [];
}

/**
 * What to change in the kernel to go from policy `prev` (last applied; undefined: unknown, so everything is
 * written whole) to `next`: only the chains whose rules changed, only the set elements that changed, only the
 * bindings that moved, zones of bridges come and gone, then chains and sets nothing needs any more.
 */
export function policyDelta(prev: HostPolicy | undefined, next: HostPolicy): PolicyChange {
  const change: PolicyChange = { zones: [], sets: [], chains: [], bindings: [], removeChains: [], removeSets: [] };
  // Every bridge has its zone, filters or not: br_netfilter conntracks every bridged frame, and in one zone two
  // tenants' identical tuples would be one connection (a VIP's DNAT applied to the other tenant's flow).
  const zonesOf = (p: HostPolicy | undefined): Map<number, number> => p?.zones ?? new Map<number, number>();
  const pz = zonesOf(prev);
  const nz = zonesOf(next);
  for (const [vni, zone] of nz) if (pz.get(vni) !== zone || !prev) change.zones.push({ vni, zone });
  for (const vni of pz.keys()) if (!nz.has(vni)) change.zones.push({ vni, zone: null, was: pz.get(vni)! });
  for (const [name, s] of next.sets) {
    const was = prev?.sets.get(name);
    if (!was) {
      change.sets.push({ decl: s.decl, elements: s.elements });
      continue;
    }
    const before = new Set(was.elements);
    const after = new Set(s.elements);
    const add = s.elements.filter((e) => !before.has(e));
    const remove = was.elements.filter((e) => !after.has(e));
    if (add.length || remove.length) change.sets.push({ decl: s.decl, add, remove });
  }
  for (const [id, c] of next.chains) {
    const was = prev?.chains.get(id);
    if (!was || JSON.stringify(was) !== JSON.stringify(c)) change.chains.push(c);
  }
  const stagesOf = (p: HostPolicy | undefined, ifname: string) => p?.bindings.get(ifname) ?? {};
  const ifnames = new Set([...next.bindings.keys(), ...(prev?.bindings.keys() ?? [])]);
  for (const ifname of [...ifnames].sort()) {
    const was = stagesOf(prev, ifname);
    const now = stagesOf(next, ifname);
    for (const stage of STAGE_ORDER) {
      if (now[stage] !== undefined && (!prev || now[stage] !== was[stage])) change.bindings.push({ ifname, stage, chainId: now[stage] });
      else if (now[stage] === undefined && was[stage] !== undefined) change.bindings.push({ ifname, stage, chainId: null });
    }
  }
  for (const id of prev?.chains.keys() ?? []) if (!next.chains.has(id)) change.removeChains.push(id);
  for (const name of prev?.sets.keys() ?? []) if (!next.sets.has(name)) change.removeSets.push(name);
  return change;
}

export const emptyChange = (c: PolicyChange): boolean =>
  c.zones.length + c.sets.length + c.chains.length + c.bindings.length + c.removeChains.length + c.removeSets.length === 0;
