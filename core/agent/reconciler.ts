// Level-triggered reconciliation: from the cached topology, compute what this host's kernel must hold (virtual
// bridges with their remote ports, router instances with their legs and neighbours) and converge the datapath to
// it. Runs after every relevant change (coalesced) and periodically; converging healthy state changes nothing, so
// a restarted agent picks up where the old one left without disturbing traffic.
import { performance } from 'node:perf_hooks';
import type { Bridge, Host, Port, Router } from '../model/types.js';
import type { DesiredBridge, DesiredRouter, Inventory, PlugResult, PlugSpec, RouterNeighbour, RouterRoute } from '../datapath/types.js';
import { parseCidr } from '../net/ip.js';
import type { TopologyCache } from './cache.js';
import { SharedExclusiveLock } from './locks.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { TopologyError } from '../topology/errors.js';
import { traceLine, type Trace } from './trace.js';

/** What the reconciler needs of a datapath (LinuxDatapath implements it). */
export interface HostDatapath {
  ensureBridge(b: DesiredBridge): Promise<void>;
  removeBridge(vni: number): Promise<void>;
  plug(p: PlugSpec): Promise<PlugResult>;
  unplug(hostIfname: string): Promise<void>;
  checkPlug(p: PlugSpec): Promise<string[]>;
  ensureRouter(r: DesiredRouter): Promise<void>;
  /** Optional fast path: change only the permanent neighbours of a router ensureRouter has set up. */
  setRouterNeighbours?(id: string, add: RouterNeighbour[], remove: RouterNeighbour[]): Promise<void>;
  removeRouter(id: string): Promise<void>;
  inventory(): Promise<Inventory>;
  sweep(desired: Partial<Inventory>): Promise<void>;
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

export class Reconciler {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Errors of the last pass, for `status`. */
  lastError: string | undefined;
  passes = 0;
  private readonly lock = new SharedExclusiveLock();
  private readonly keyed = new KeyedMutex();
  /** Ports being plugged whose creation the cache has not seen yet: their bridge and veth are desired anyway. */
  private readonly pins = new Map<string, { bridgeId: string; hostIfname: string }>();
  /**
   * What was last converged, per bridge and router, as JSON: a pass skips objects whose desired state has not
   * changed since, so a pass after one port's change costs one kernel update, not one per object. A forced pass
   * (the periodic resync) ignores it and re-reads the kernel, repairing anything changed behind our back.
   */
  private readonly applied = new Map<string, string>();
  /** Bridges and routers present after the last sweep; undefined until the first one. */
  private swept: Set<string> | undefined;
  private sweepDue = true;

  constructor(
    private readonly hostId: string,
    private readonly cache: TopologyCache,
    private readonly datapath: HostDatapath,
    readonly underlayMtu: number,
    private readonly log: (msg: string) => void = () => undefined,
  ) {}

  /** Compute the desired state of this host from the cache. Pure: no I/O. */
  plan(): HostPlan {
    const cache = this.cache;
    const me = this.hostId;
    const ports = cache.list('Port');
    const portsById = new Map(ports.map((p) => [p.id, p]));
    const byBridge = new Map<string, Port[]>();
    for (const p of ports) {
      if (p.type !== 'bridge' || !p.bridgeId) continue;
      let list = byBridge.get(p.bridgeId);
      if (!list) byBridge.set(p.bridgeId, (list = []));
      list.push(p);
    }
    const local = ports.filter((p) => p.type === 'bridge' && p.hostId === me && p.bridgeId && p.interfaceName);
    const pinnedPlugs: string[] = [];
    for (const [portId, pin] of this.pins) {
      if (portsById.get(portId)?.hostId === me) this.pins.delete(portId);
      else pinnedPlugs.push(pin.hostIfname);
    }

    // Routers serving bridges with local ports, and through them every bridge those routers join: traffic routed
    // here towards a bridge without local ports still leaves from here, straight to the destination host.
    const routerIds = new Set<string>();
    const bridgeIds = new Set([...local.map((p) => p.bridgeId!), ...[...this.pins.values()].map((p) => p.bridgeId)]);
    for (const bid of [...bridgeIds]) {
      for (const bp of byBridge.get(bid) ?? []) {
        const rp = bp.peerId ? portsById.get(bp.peerId) : undefined;
        if (rp?.type === 'router' && rp.routerId && cache.get('Router', rp.routerId)?.adminStateUp !== false) routerIds.add(rp.routerId);
      }
    }
    const routerPorts = new Map<string, Port[]>();
    for (const p of ports) {
      if (p.type !== 'router' || !p.routerId || !routerIds.has(p.routerId)) continue;
      let list = routerPorts.get(p.routerId);
      if (!list) routerPorts.set(p.routerId, (list = []));
      list.push(p);
      const peer = p.peerId ? portsById.get(p.peerId) : undefined;
      if (peer?.bridgeId) bridgeIds.add(peer.bridgeId);
    }

    const bridges = new Map<string, DesiredBridge>();
    for (const bid of bridgeIds) {
      const bridge = cache.get('Bridge', bid);
      if (!bridge || !bridge.adminStateUp) continue;
      bridges.set(bid, this.desiredBridge(bridge, byBridge.get(bid) ?? [], portsById));
    }

    const routers = new Map<string, DesiredRouter>();
    for (const rid of routerIds) {
      const router = cache.get('Router', rid);
      if (!router) continue;
      const r = this.desiredRouter(router, routerPorts.get(rid) ?? [], portsById, byBridge);
      if (r.legs.length > 0) routers.set(rid, r);
    }
    return { bridges, routers, plugs: new Set([...local.map((p) => p.interfaceName!), ...pinnedPlugs]) };
  }

  private desiredBridge(bridge: Bridge, ports: Port[], portsById: Map<string, Port>): DesiredBridge {
    const me = this.hostId;
    const remotes: DesiredBridge['remotes'] = [];
    const flood = new Set<string>();
    const gateways: NonNullable<DesiredBridge['gateways']> = [];
    for (const p of ports) {
      const peer = p.peerId ? portsById.get(p.peerId) : undefined;
      if (peer?.type === 'router') {
        for (const cidr of peer.ips) gateways.push({ ip: bareIp(cidr), mac: peer.mac });
        continue;
      }
      if (!p.hostId || p.hostId === me || !p.interfaceName) continue;
      const hostIp = tunnelIpOf(this.cache.get('Host', p.hostId));
      if (!hostIp) continue;
      remotes.push({ mac: p.mac, ips: p.ips.map(bareIp), hostIp });
      flood.add(hostIp);
    }
    const mtu = bridge.mtu ?? this.underlayMtu - 50;
    return { vni: bridge.tunnelKey, mtu, remotes, floodHosts: [...flood].sort(), gateways };
  }

  private desiredRouter(router: Router, rports: Port[], portsById: Map<string, Port>, byBridge: Map<string, Port[]>): DesiredRouter {
    const legs: DesiredRouter['legs'] = [];
    const neighbours: NonNullable<DesiredRouter['neighbours']> = [];
    const legByPort = new Map<string, number>();
    const subnets: string[] = [];
    let internal = false;
    for (const rp of rports) {
      const peer = rp.peerId ? portsById.get(rp.peerId) : undefined;
      const bridge = peer?.bridgeId ? this.cache.get('Bridge', peer.bridgeId) : undefined;
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
    for (const r of this.cache.list('Route')) {
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
    return {
      id: router.id,
      legs,
      routes,
      neighbours,
      snat: router.snat && !internal,
      hostReachable: internal ? [] : subnets,
    };
  }

  /** Ask for a pass soon; passes never overlap and requests during a pass coalesce into one more pass. */
  trigger(delayMs = 20, force = false): void {
    if (this.stopped) return;
    if (force) {
      this.applied.clear();
      this.sweepDue = true;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runOnce();
    }, delayMs);
  }

  /** One converge pass; resolves when this host matches the topology as cached now. */
  async runOnce(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.converge();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Creating and updating run beside attaches (per-object locks keep two writers of one object apart); removal
   * runs alone, and only when the plan lost a bridge or router since the last sweep, or when a full resync asks.
   * A pass after a port change therefore never holds up attaches on this host.
   */
  private async converge(): Promise<void> {
    const plan = this.plan();
    const errors: string[] = [];
    await this.lock.runShared(async () => {
      for (const b of plan.bridges.values()) {
        await this.ensureBridge(b).catch((e: Error) => errors.push(`bridge vni ${b.vni}: ${e.message}`));
      }
      for (const r of plan.routers.values()) {
        await this.ensureRouter(r).catch((e: Error) => errors.push(`router ${r.id}: ${e.message}`));
      }
    });
    const lost = this.swept === undefined || [...this.swept].some((k) => !keysOf(plan).has(k));
    if (errors.length === 0 && (lost || this.sweepDue)) {
      await this.lock.runExclusive(async () => {
        // Plugs are removed by detach and gc (and stray ones by the forced resync's sweep), never because of a
        // transient cache state; pins keep plugs whose port the cache has not seen yet.
        const now = this.plan();
        this.sweepDue = false;
        await this.datapath
          .sweep({ bridges: [...now.bridges.values()].map((b) => b.vni), routers: [...now.routers.keys()], plugs: [...now.plugs] })
          .catch((e: Error) => errors.push(`sweep: ${e.message}`));
        // What the sweep removed is no longer converged: a later ensure must re-create it, not skip it.
        const kept = keysOf(now);
        for (const key of [...this.applied.keys()]) if (!kept.has(key)) this.applied.delete(key);
        this.swept = errors.length === 0 ? kept : undefined;
      });
    } else if (errors.length === 0) {
      this.swept = keysOf(plan);
    }
    this.passes++;
    this.lastError = errors.length ? errors.join('; ') : undefined;
    if (errors.length) this.log(`reconcile: ${this.lastError}`);
  }

  /**
   * Plug a workload now (attach cannot wait for the next pass): its bridge and the routers on it are converged
   * first, then the veth is made. Runs alongside other plugs, never during a sweep.
   */
  async plugPort(portId: string, bridge: Bridge, spec: PlugSpec, tr?: Trace): Promise<PlugResult> {
    this.pins.set(portId, { bridgeId: bridge.id, hostIfname: spec.hostIfname ?? '' });
    const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> => (tr ? tr.phase(name, fn) : fn());
    const waited = performance.now();
    try {
      return await this.lock.runShared(async () => {
        if (tr) tr.mark('lockWait', performance.now() - waited);
        const plan = await phase('plan', async () => this.plan());
        const desired = plan.bridges.get(bridge.id);
        if (!desired) throw new TopologyError('conflict', `network ${bridge.name} is administratively down`, 'network');
        await phase('ensureBridge', () => this.ensureBridge(desired));
        // A router already serving this bridge learns the new port's neighbour entry in the next pass; meanwhile
        // it resolves local ports by ARP on the local bridge, which works. Only a missing router is made now.
        for (const r of plan.routers.values()) {
          if (!r.legs.some((l) => l.vni === bridge.tunnelKey) || this.applied.has(`router/${r.id}`)) continue;
          // The router's other legs hang on their own bridges, which must exist here first.
          for (const b of plan.bridges.values()) if (r.legs.some((l) => l.vni === b.vni)) await this.ensureBridge(b);
          await this.ensureRouter(r);
        }
        this.trigger();
        return phase('dpPlug', () => this.datapath.plug(spec));
      });
    } catch (err) {
      this.pins.delete(portId);
      throw err;
    }
  }

  private ensureBridge(b: DesiredBridge): Promise<void> {
    return this.converged(`bridge/${b.vni}`, b, () => this.datapath.ensureBridge(b));
  }

  private ensureRouter(r: DesiredRouter): Promise<void> {
    return this.converged(`router/${r.id}`, r, async (prevJson) => {
      // A workload coming or going changes only the neighbours: a full ensureRouter re-reads and rewrites the
      // whole namespace (a dozen processes), which on a busy host competes with the attaches themselves.
      const prev = prevJson === undefined ? undefined : (JSON.parse(prevJson) as DesiredRouter);
      if (prev && this.datapath.setRouterNeighbours && sameButNeighbours(prev, r)) {
        const key = (n: RouterNeighbour): string => `${n.ip}|${n.vni}`;
        const was = new Map((prev.neighbours ?? []).map((n) => [key(n), n]));
        const now = new Map((r.neighbours ?? []).map((n) => [key(n), n]));
        const add = [...now.values()].filter((n) => was.get(key(n))?.mac !== n.mac);
        const remove = [...was.values()].filter((n) => !now.has(key(n)));
        await this.datapath.setRouterNeighbours(r.id, add, remove);
        return;
      }
      await this.datapath.ensureRouter(r);
    });
  }

  /**
   * Run `apply` unless `desired` is what was last applied under `key`; one apply per key at a time. `apply` is
   * given what was last applied (JSON), so it can change only the difference.
   */
  private converged(key: string, desired: unknown, apply: (prevJson: string | undefined) => Promise<void>): Promise<void> {
    return this.keyed.run(key, async () => {
      const json = JSON.stringify(desired);
      const prevJson = this.applied.get(key);
      if (prevJson === json) return;
      this.applied.delete(key);
      const t0 = performance.now();
      await apply(prevJson);
      traceLine(`converge ${key} ${(performance.now() - t0).toFixed(1)}`);
      this.applied.set(key, json);
    });
  }

  async unplugPort(portId: string, hostIfname: string): Promise<void> {
    this.pins.delete(portId);
    await this.lock.runShared(() => this.datapath.unplug(hostIfname));
  }

  checkPlug(spec: PlugSpec): Promise<string[]> {
    return this.lock.runShared(() => this.datapath.checkPlug(spec));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}

/** Two router states differ at most in their neighbours. */
function sameButNeighbours(a: DesiredRouter, b: DesiredRouter): boolean {
  return JSON.stringify({ ...a, neighbours: [] }) === JSON.stringify({ ...b, neighbours: [] });
}

/** Keys of the bridges and routers a plan holds (what a sweep would keep). */
function keysOf(plan: HostPlan): Set<string> {
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
