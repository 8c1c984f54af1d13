// The Linux datapath: what the per-host agent calls to make the kernel carry the virtual topology. Every method
// takes desired state and converges (tolerating what already exists), and only ever touches objects of ours:
// links named bb-/bx-/bv/bp/bl/bu…, the nft tables of nft/tables.ts that carry our comment, and router namespaces
// under our prefix.
import { readdirSync } from 'node:fs';
import { familyOf } from './addresses.js';
import { IFB_PREFIX } from './bandwidth.js';
import { ensureBridge, removeBridge, updateBridgeRemotes } from './bridge.js';
import { ipBatch } from './exec.js';
import { listLinks, withNetlink } from './netlink/index.js';
import { ensureHostFirewall, prepareHostFirewall, removeHostFirewall } from './host-firewall.js';
import { dropHostMasquerade, dropTable, forgetDevices, HOST_BRIDGE, HOST_CT } from './nft/index.js';
import {
  BRIDGE_PREFIX,
  isPlugName,
  LEG_PREFIX,
  legName,
  PLUG_PEER_PREFIX,
  PLUG_PREFIX,
  routerNsName,
  UPLINK_PREFIX,
  uplinkName,
  vniOfBridgeName,
  vxlanName,
} from './names.js';
import { checkPlug, plug, preparePlug, unplug } from './plug.js';
import { applyPolicyChange } from './nft/policy.js';
import { ensureRouter, NETNS_DIR, removeRouter, setRouterFilters, setRouterNeighbours, type RouterContext } from './router.js';
import type { RouterFilters } from '../policy/compile-router.js';
import { applyLoadBalancers, removeLoadBalancers, type LbHostSpec } from './nft/lb.js';
import { DEFAULT_TUNNEL_PORT } from '../model/defaults.js';
import { FastPathHolder } from './fastpath/holder.js';
import type {
  BridgeRemotesDelta,
  DatapathOptions,
  DesiredBridge,
  DesiredRouter,
  FastPathStatus,
  FastPort,
  Inventory,
  PlugResult,
  PlugSpec,
  PolicyChange,
  RouterNeighbour,
} from './types.js';

interface LinkJson {
  ifname: string;
  linkinfo?: { info_kind?: string };
}

/** The links of the namespace, read in-process: the sweep of every periodic resync lists them twice. */
async function listLinkKinds(netns: string | undefined): Promise<LinkJson[]> {
  try {
    const links = await withNetlink(netns, (s) => listLinks(s));
    return links.map((l) => ({ ifname: l.name, ...(l.kind ? { linkinfo: { info_kind: l.kind } } : {}) }));
  } catch (e) {
    throw new Error(`could not list links: ${(e as Error).message}`);
  }
}

export class LinuxDatapath {
  private readonly ctx: RouterContext;
  private readonly fast: FastPathHolder;

  constructor(opts: DatapathOptions) {
    familyOf(opts.underlayIp, 'underlay address');
    const tunnelPort = opts.tunnelPort ?? DEFAULT_TUNNEL_PORT;
    if (!Number.isInteger(tunnelPort) || tunnelPort < 1 || tunnelPort > 65535) throw new Error(`invalid tunnel port ${tunnelPort}`);
    const underlayMtu = opts.underlayMtu ?? 1500;
    if (!Number.isInteger(underlayMtu) || underlayMtu < 626) throw new Error(`invalid underlay MTU ${underlayMtu}`);
    const prefix = opts.routerNsPrefix ?? 'br-';
    if (!/^[A-Za-z0-9_.-]{1,40}$/.test(prefix)) throw new Error(`invalid router namespace prefix "${prefix}"`);
    this.ctx = { netns: opts.hostNetns, underlayIp: opts.underlayIp, tunnelPort, underlayMtu, routerNsPrefix: prefix };
    this.fast = new FastPathHolder(opts.hostNetns, opts.fastPath !== false, opts.log ?? (() => {}));
  }

  /** MTU given to a bridge and its ports when the model sets none. */
  get defaultMtu(): number {
    return this.ctx.underlayMtu - 50;
  }

  async ensureBridge(b: DesiredBridge): Promise<void> {
    await prepareHostFirewall(this.ctx.netns);
    await ensureBridge(this.ctx, b);
    // After the tunnel FDB: a remote MAC on the fast path must already be known to the VXLAN device.
    await this.fast.ensureBridge(
      b.vni,
      vxlanName(b.vni),
      b.remotes.map((r) => r.mac),
    );
  }

  async setBridgeRemotes(vni: number, delta: BridgeRemotesDelta): Promise<void> {
    // A MAC leaves the fast path before its tunnel entry, and joins it after.
    this.fast.updateRemotes(vni, [], delta.macs.remove);
    await updateBridgeRemotes(this.ctx, vni, delta);
    this.fast.updateRemotes(vni, delta.macs.add, []);
  }

  removeBridge(vni: number): Promise<void> {
    this.fast.removeBridge(vni);
    return removeBridge(this.ctx, vni);
  }

  plug(p: PlugSpec): Promise<PlugResult> {
    this.dropBound(p.policy);
    return plug(this.ctx, p);
  }

  /** Ports getting a filter leave the fast path before the filter is committed (their frames must meet it). */
  private dropBound(change: PolicyChange | undefined): void {
    for (const b of change?.bindings ?? []) if (b.chainId !== null) this.fast.dropPort(b.ifname);
  }

  /** Keep these MACs' frames on the bridge path until released (`bees trace --probe` traces them there). */
  holdFastPath(macs: string[]): void {
    this.fast.hold(macs);
  }

  releaseFastPath(macs: string[]): Promise<void> {
    return this.fast.release(macs);
  }

  /** Load the fast path now (the agent calls it at start, so that no attach waits for the verifier). */
  prepareFastPath(): Promise<void> {
    return this.fast.prepare();
  }

  setFastPath(ports: FastPort[]): Promise<void> {
    return this.fast.setPorts(ports);
  }

  fastPathStatus(): FastPathStatus {
    return this.fast.status();
  }

  preparePlug(p: PlugSpec): Promise<void> {
    return preparePlug(this.ctx, p);
  }

  unplug(hostIfname: string): Promise<void> {
    // Before the veth goes: its ifindex may be the next device's.
    this.fast.forgetDevice(hostIfname);
    return unplug(this.ctx, hostIfname);
  }

  checkPlug(p: PlugSpec): Promise<string[]> {
    return checkPlug(this.ctx, p);
  }

  async ensureRouter(r: DesiredRouter): Promise<void> {
    await prepareHostFirewall(this.ctx.netns);
    return ensureRouter(this.ctx, r);
  }

  removeRouter(id: string): Promise<void> {
    return removeRouter(this.ctx, id);
  }

  setRouterNeighbours(id: string, add: RouterNeighbour[], remove: RouterNeighbour[]): Promise<void> {
    return setRouterNeighbours(this.ctx, id, add, remove);
  }

  setRouterFilters(id: string, prev: RouterFilters | undefined, next: RouterFilters | undefined): Promise<void> {
    return setRouterFilters(this.ctx, id, prev, next);
  }

  applyPolicy(change: PolicyChange): Promise<void> {
    this.dropBound(change);
    return applyPolicyChange(this.ctx.netns, change);
  }

  applyLoadBalancers(spec: LbHostSpec, opts: { full: boolean }): Promise<void> {
    return applyLoadBalancers(this.ctx.netns, spec, opts);
  }

  /** The namespace (path) of a router instance on this host: health checks run there. */
  routerNetns(routerId: string): string {
    return `${NETNS_DIR}/${routerNsName(this.ctx.routerNsPrefix, routerId)}`;
  }

  /** What of ours exists on this host. */
  async inventory(): Promise<Inventory> {
    const links = await listLinkKinds(this.ctx.netns);
    const bridges: number[] = [];
    const plugs: string[] = [];
    for (const l of links) {
      const kind = l.linkinfo?.info_kind;
      const vni = vniOfBridgeName(l.ifname);
      if (vni !== undefined && kind === 'bridge') bridges.push(vni);
      if (kind === 'veth' && isPlugName(l.ifname)) plugs.push(l.ifname);
    }
    return { bridges: bridges.sort((a, b) => a - b), plugs: plugs.sort(), routers: this.routerIds() };
  }

  private routerIds(): string[] {
    const p = this.ctx.routerNsPrefix;
    let names: string[] = [];
    try {
      names = readdirSync(NETNS_DIR);
    } catch {
      return [];
    }
    return names
      .filter((n) => n.startsWith(p) && n.length > p.length)
      .map((n) => n.slice(p.length))
      .sort();
  }

  /**
   * Remove whatever of ours is not in `desired`: routers, plugs (and their nft chains), bridges, stray links. With
   * `owned`, only objects listed there are candidates: a name with our prefix proves nothing (the agent passes
   * what its local inventory says it made, core/agent/inventory.ts); without it, everything named like ours is.
   */
  async sweep(desired: Partial<Inventory>, owned?: Partial<Inventory>): Promise<void> {
    // Callers name routers by topology id; namespaces carry a shortened form of it.
    const p = this.ctx.routerNsPrefix;
    const nsIds = (ids: string[]): Set<string> => new Set(ids.flatMap((id) => [id, routerNsName(p, id).slice(p.length)]));
    const keepRouters = nsIds(desired.routers ?? []);
    const keepPlugs = new Set(desired.plugs ?? []);
    const keepBridges = new Set(desired.bridges ?? []);
    const ownedRouters = owned ? nsIds(owned.routers ?? []) : undefined;
    const ownedPlugs = owned ? new Set(owned.plugs ?? []) : undefined;
    const ownedBridges = owned ? new Set(owned.bridges ?? []) : undefined;
    // Host ends of router legs and uplinks are named by a hash of the router id: strays of owned routers only.
    const ownedRouterEnds = owned
      ? new Set((owned.routers ?? []).flatMap((id) => [uplinkName(id), ...[...(ownedBridges ?? [])].map((vni) => legName(id, vni))]))
      : undefined;
    const mayPlug = (n: string): boolean => !ownedPlugs || ownedPlugs.has(n);
    const mayBridge = (vni: number): boolean => !ownedBridges || ownedBridges.has(vni);
    for (const id of this.routerIds()) if (!keepRouters.has(id) && (!ownedRouters || ownedRouters.has(id))) await this.removeRouter(id);
    const links = await listLinkKinds(this.ctx.netns);
    const del: string[] = [];
    /** Devices whose nft chains go with them. */
    const nft: string[] = [];
    for (const l of links) {
      const n = l.ifname;
      const kind = l.linkinfo?.info_kind;
      if (kind === 'veth' && isPlugName(n) && !keepPlugs.has(n)) {
        if (!mayPlug(n)) continue;
        del.push(`link del ${n}`);
        nft.push(n);
        this.fast.forgetDevice(n);
      } else if (kind === 'ifb' && n.startsWith(IFB_PREFIX)) {
        // A shaped plug's ifb (bandwidth.ts): goes with its plug, or as a stray once the plug is gone.
        const owner = `${PLUG_PREFIX}${n.slice(IFB_PREFIX.length)}`;
        const plugGoes = !keepPlugs.has(owner) && mayPlug(owner);
        if (plugGoes) del.push(`link del ${n}`);
      } else if (
        kind === 'veth' &&
        n.startsWith(PLUG_PEER_PREFIX) &&
        !keepPlugs.has(`bv${n.slice(2)}`) &&
        !links.some((x) => x.ifname === `bv${n.slice(2)}`) &&
        mayPlug(`bv${n.slice(2)}`)
      ) {
        del.push(`link del ${n}`);
      } else if (kind === 'bridge' && n.startsWith(BRIDGE_PREFIX)) {
        const vni = vniOfBridgeName(n);
        if (vni !== undefined && !keepBridges.has(vni) && mayBridge(vni)) {
          del.push(`link del ${n}`);
          nft.push(vxlanName(vni));
          this.fast.removeBridge(vni);
        }
      } else if (kind === 'vxlan' && n.startsWith('bx-')) {
        const vni = parseInt(n.slice(3), 16);
        if (!keepBridges.has(vni) && mayBridge(vni)) del.push(`link del ${n}`);
      } else if (
        kind === 'veth' &&
        (n.startsWith(LEG_PREFIX) || n.startsWith(UPLINK_PREFIX)) &&
        keepRouters.size === 0 &&
        (!ownedRouterEnds || ownedRouterEnds.has(n))
      ) {
        // Router ends whose namespace is gone already vanished with it; these are strays of a crash.
        del.push(`link del ${n}`);
      }
    }
    await ipBatch(this.ctx.netns, del, 'could not remove stale links');
    await forgetDevices(this.ctx.netns, nft, 'could not remove stale nft chains');
    // The tables go when nothing of ours needs them (and only if they carry our comment).
    const left = await this.inventory();
    if (left.plugs.length === 0 && left.bridges.length === 0) {
      await dropTable(this.ctx.netns, HOST_BRIDGE);
      await dropTable(this.ctx.netns, HOST_CT);
      // The load balancer's table, policy rules and neighbours go with the last bridge.
      await removeLoadBalancers(this.ctx.netns);
    }
    if (left.routers.length === 0) await dropHostMasquerade(this.ctx.netns);
    // The host firewall's FORWARD chain of ours (host-firewall.ts): re-checked on every sweep (firewall reloads and
    // Docker restarts can remove it), gone with the last bridge and router.
    if (left.bridges.length > 0 || left.routers.length > 0) await ensureHostFirewall(this.ctx.netns, { recheck: true });
    else await removeHostFirewall(this.ctx.netns);
  }
}
