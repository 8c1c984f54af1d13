// A router instance's kernel state as values: what it should be (desired, from a DesiredRouter and the few facts of
// the host it depends on), what it is (current, the netlink reads of the host and the router namespace), and the
// ordered list of changes between them. Pure: router.ts reads, this compares, router.ts applies. A converged router
// yields no change at all, so its periodic resync costs no request and no process.
import { createHash } from 'node:crypto';
import { canonicalIp } from '../net/ip.js';
import { checkDestination, familyOf, normalizeMac, parseCidr } from './addresses.js';
import { bridgeName, checkVni, legName, ROUTER_UPLINK, routerLegName, UPLINK_PREFIX, uplinkName } from './names.js';
import type { Address, FdbEntry, Link, Neighbour, Route } from './netlink/index.js';
import { canonicalDestination, RTN } from './netlink/route.js';
import type { DesiredRouter } from './types.js';

/** Uplinks get a /30 of this range per router: .1 in the router, .2 on the host. */
export const UPLINK_NET = '169.254.0.0/16';
/** Slot holding 169.254.169.254 (cloud metadata), never used. */
const METADATA_SLOT = (169 * 256 + 252) / 4;
const SLOTS = 16384;
/** Inner ends of legs are named l-<vni hex> (names.ts): any other such link in the namespace is a stale leg. */
const LEG_PREFIX = 'l-';

const slotAddr = (slot: number, host: 1 | 2): string => {
  const n = slot * 4 + host;
  return `169.254.${n >> 8}.${n & 255}`;
};
/** Where a router's uplink slot search starts: the same on every host, so the slot usually is too. */
const firstSlotOf = (routerId: string): number => parseInt(createHash('sha1').update(routerId).digest('hex').slice(0, 8), 16) % SLOTS;
/**
 * The host end of a router's uplink as every host gives it unless that slot is taken there by another router: the
 * source address of the host's own traffic to the router's subnets (an orchestrator's "from the node").
 */
export function uplinkHostAddress(routerId: string): string {
  let s = firstSlotOf(routerId);
  while (s === 0 || s === METADATA_SLOT) s = (s + 1) % SLOTS;
  return slotAddr(s, 2);
}
const slotOf = (ip: string): number | undefined => {
  const m = /^169\.254\.(\d+)\.(\d+)$/.exec(ip);
  return m ? (Number(m[1]) * 256 + Number(m[2])) >> 2 : undefined;
};

export type RouteType = 'unicast' | 'blackhole' | 'prohibit';

export interface RouteState {
  family: 4 | 6;
  /** Canonical CIDR ("0.0.0.0/0", "10.1.0.7/32"), as netlink reads it. */
  dst: string;
  type: RouteType;
  gateway?: string;
  /** Output link; a desired route without one matches any. */
  dev?: string;
}

/** One link as read: by name, with its master's name and its addresses (canonical ip/prefix). */
export interface CurrentLink {
  name: string;
  mtu: number;
  mac: string;
  up: boolean;
  master?: string;
  addresses: { cidr: string; linkScope: boolean }[];
}

export interface CurrentRoute {
  family: 4 | 6;
  dst: string;
  /** RTN_* number: 1 unicast, 2 local, 5 multicast, 6 blackhole, 8 prohibit. */
  type: number;
  gateway?: string;
  dev?: string;
  /** Installed by the kernel (connected routes of addresses): never ours to remove. */
  kernel: boolean;
}

/** What the kernel holds in one namespace, in the terms the diff compares. */
export interface NamespaceState {
  links: Map<string, CurrentLink>;
  routes: CurrentRoute[];
  /** Permanent neighbours. */
  neighbours: { ip: string; mac?: string; dev: string }[];
  /** Static bridge FDB entries (the pinned gateway MACs), as "dev mac". */
  fdb: Set<string>;
}

const RTPROT_KERNEL = 2;
const RT_SCOPE_LINK = 253;
const routeType = (t: number): RouteType | undefined =>
  t === RTN.unicast ? 'unicast' : t === RTN.blackhole ? 'blackhole' : t === RTN.prohibit ? 'prohibit' : undefined;

/** Joins the netlink reads of one namespace (by link index) into names. */
export function namespaceState(
  links: Link[],
  addresses: Address[],
  routes: Route[],
  neighbours: Neighbour[] = [],
  fdb: FdbEntry[] = [],
): NamespaceState {
  const byIndex = new Map(links.map((l) => [l.index, l]));
  const name = (i: number | undefined): string | undefined => (i === undefined ? undefined : byIndex.get(i)?.name);
  const out = new Map<string, CurrentLink>();
  for (const l of links) {
    const master = name(l.masterIndex);
    out.set(l.name, { name: l.name, mtu: l.mtu, mac: l.mac, up: l.up, ...(master ? { master } : {}), addresses: [] });
  }
  for (const a of addresses) {
    const l = out.get(name(a.index) ?? '');
    l?.addresses.push({ cidr: `${a.ip}/${a.prefix}`, linkScope: a.scope === RT_SCOPE_LINK });
  }
  return {
    links: out,
    routes: routes.map((r) => {
      const dev = name(r.oif);
      return {
        family: r.family,
        dst: r.dst,
        type: r.type,
        ...(r.gateway ? { gateway: r.gateway } : {}),
        ...(dev ? { dev } : {}),
        kernel: r.protocol === RTPROT_KERNEL,
      };
    }),
    neighbours: neighbours.flatMap((n) => {
      const dev = name(n.index);
      return n.permanent && dev ? [{ ip: n.ip, dev, ...(n.mac ? { mac: n.mac } : {}) }] : [];
    }),
    fdb: new Set(fdb.filter((f) => !f.self && f.static && !f.permanent).map((f) => `${name(f.index) ?? ''} ${f.mac}`)),
  };
}

export const emptyNamespace = (): NamespaceState => ({ links: new Map(), routes: [], neighbours: [], fdb: new Set() });

/** A link as it should be. Addresses are canonical ip/prefix; `exactAddresses`: any other non-link-local goes. */
export interface LinkWant {
  name: string;
  mtu?: number;
  mac?: string;
  master?: string;
  addresses: string[];
  exactAddresses: boolean;
}

/** A veth pair: `name` on the host, `peer` in the router namespace (born there, with `peerMac`). */
export interface VethWant {
  name: string;
  peer: string;
  peerMac?: string;
  /** IPv6 address generation off on these ends (set at creation, before the link is up). */
  noAddrGen: { host: boolean; peer: boolean };
}

export interface RouterWant {
  veths: VethWant[];
  host: {
    links: LinkWant[];
    routes: RouteState[];
    /** Non-kernel routes through this link that `routes` does not name are removed. */
    routesOwnedBy?: string;
    /** Gateway MACs pinned on the bridge (static FDB entries). */
    fdb: { dev: string; mac: string }[];
    /** Veths of ours that must not exist (an uplink no longer needed), by host end and peer. */
    absent: { name: string; peer: string }[];
  };
  ns: {
    links: LinkWant[];
    routes: RouteState[];
    neighbours: { ip: string; mac: string; dev: string }[];
  };
}

/** The validated, normalized router: throws on bad input before anything touches the kernel. */
export interface RouterPlan {
  id: string;
  legs: { vni: number; mac: string; addresses: string[]; host: string; inner: string; bridge: string }[];
  routes: RouteState[];
  neighbours: { ip: string; mac: string; dev: string }[];
  hostReachable: string[];
  snat: boolean;
  needUplink: boolean;
}

export function checkRouterId(id: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(id ?? '')) throw new Error(`invalid router id "${id}"`);
}

const canonicalCidr = (cidr: string, what?: string): string => {
  const c = parseCidr(cidr, what);
  return `${canonicalIp(c.ip)}/${c.prefix}`;
};

export function planRouter(r: DesiredRouter): RouterPlan {
  checkRouterId(r.id);
  const what = `router ${r.id}`;
  const legs = r.legs.map((l) => {
    checkVni(l.vni);
    const addresses = l.addresses.map((a) => canonicalCidr(a, `gateway address of ${what} on ${l.vni}`));
    return {
      vni: l.vni,
      mac: normalizeMac(l.mac),
      addresses,
      host: legName(r.id, l.vni),
      inner: routerLegName(l.vni),
      bridge: bridgeName(l.vni),
    };
  });
  if (new Set(legs.map((l) => l.vni)).size !== legs.length) throw new Error(`${what}: two legs on one bridge`);
  const legOf = (vni: number, ctxt: string): string => {
    const l = legs.find((x) => x.vni === vni);
    if (!l) throw new Error(`${what}: ${ctxt} refers to bridge ${vni}, which has no leg`);
    return l.inner;
  };
  const routes = (r.routes ?? []).map((rt): RouteState => {
    checkDestination(rt.dst);
    if (rt.via) familyOf(rt.via, `next hop of route ${rt.dst}`);
    if (!rt.via && rt.vni === undefined && !rt.type) throw new Error(`${what}: route ${rt.dst} needs a next hop or a leg`);
    const family = rt.dst === 'default' ? (rt.via ? familyOf(rt.via) : 4) : familyOf(rt.dst.split('/')[0]!);
    const dev = rt.vni !== undefined ? legOf(rt.vni, `route ${rt.dst}`) : undefined;
    const type: RouteType = rt.type === 'blackhole' ? 'blackhole' : rt.type === 'reject' ? 'prohibit' : 'unicast';
    return {
      family,
      dst: canonicalDestination(rt.dst, family),
      type,
      // Like `ip route replace blackhole|prohibit DST`: a typed route has no next hop or device.
      ...(type === 'unicast' && rt.via ? { gateway: canonicalIp(rt.via) } : {}),
      ...(type === 'unicast' && dev ? { dev } : {}),
    };
  });
  const neighbours = (r.neighbours ?? []).map((n) => {
    familyOf(n.ip, `neighbour of ${what}`);
    return { ip: canonicalIp(n.ip), mac: normalizeMac(n.mac), dev: legOf(n.vni, `neighbour ${n.ip}`) };
  });
  const hostReachable = (r.hostReachable ?? []).map((c) => canonicalCidr(c, `host-reachable subnet of ${what}`));
  const snat = r.snat ?? false;
  return { id: r.id, legs, routes, neighbours, hostReachable, snat, needUplink: snat || hostReachable.length > 0 };
}

/**
 * The uplink slot of this router on this host: the one its host end holds, else the first free one from its
 * hash-chosen start. Undefined when every slot is taken.
 */
export function uplinkSlot(id: string, host: NamespaceState): number | undefined {
  const mine = host.links
    .get(uplinkName(id))
    ?.addresses.map((a) => slotOf(a.cidr.split('/')[0]!))
    .find((s) => s !== undefined);
  if (mine !== undefined) return mine;
  const used = new Set(
    [...host.links.values()]
      .filter((l) => l.name.startsWith(UPLINK_PREFIX))
      .flatMap((l) => l.addresses.map((a) => slotOf(a.cidr.split('/')[0]!))),
  );
  const start = firstSlotOf(id);
  for (let i = 0; i < SLOTS; i++) {
    const s = (start + i) % SLOTS;
    if (s !== 0 && s !== METADATA_SLOT && !used.has(s)) return s;
  }
  return undefined;
}

/** The desired kernel state of a router on a host whose bridges have these MTUs, its uplink in `slot`. */
export function desiredRouterState(p: RouterPlan, bridgeMtu: (bridge: string) => number, slot: number | undefined): RouterWant {
  const up = uplinkName(p.id);
  const want: RouterWant = {
    veths: p.legs.map((l) => ({ name: l.host, peer: l.inner, peerMac: l.mac, noAddrGen: { host: true, peer: false } })),
    host: {
      // The gateway MAC is local on every host: pinned to the leg so nothing floods it.
      links: p.legs.map((l) => ({ name: l.host, mtu: bridgeMtu(l.bridge), master: l.bridge, addresses: [], exactAddresses: false })),
      routes: [],
      fdb: p.legs.map((l) => ({ dev: l.host, mac: l.mac })),
      absent: [],
    },
    ns: {
      links: [
        { name: 'lo', addresses: [], exactAddresses: false },
        ...p.legs.map((l) => ({ name: l.inner, mtu: bridgeMtu(l.bridge), mac: l.mac, addresses: l.addresses, exactAddresses: true })),
      ],
      routes: [...p.routes],
      neighbours: p.neighbours,
    },
  };
  if (p.needUplink && slot !== undefined) {
    const rip = slotAddr(slot, 1);
    const hip = slotAddr(slot, 2);
    // The uplink is IPv4 only: no IPv6 link-local address, so the kernel adds no multicast state to it later.
    want.veths.push({ name: up, peer: ROUTER_UPLINK, noAddrGen: { host: true, peer: true } });
    want.host.links.push({ name: up, addresses: [`${hip}/30`], exactAddresses: false });
    want.host.routes = p.hostReachable.map((c) => ({ family: 4, dst: c, type: 'unicast', gateway: rip, dev: up }));
    want.host.routesOwnedBy = up;
    want.ns.links.push({ name: ROUTER_UPLINK, addresses: [`${rip}/30`], exactAddresses: false });
    want.ns.routes.push({ family: 4, dst: '0.0.0.0/0', type: 'unicast', gateway: hip, dev: ROUTER_UPLINK });
  } else if (!p.needUplink) {
    want.host.absent.push({ name: up, peer: ROUTER_UPLINK });
  }
  return want;
}

/** A change of one namespace's kernel state, in the order it must be made. */
export type Change = { where: 'host' | 'ns' } & (
  | { op: 'link-del'; name: string }
  /** A veth pair from the host into the router namespace. */
  | { op: 'veth-add'; name: string; peer: string; peerMac?: string; mtu?: number }
  | { op: 'link-set'; name: string; mtu?: number; master?: string; up?: true; noAddrGen?: true }
  /** Setting a MAC (even the same one) flushes the link's neighbours, permanent ones included: only when it differs. */
  | { op: 'link-mac'; name: string; mac: string }
  | { op: 'addr-add'; dev: string; cidr: string; nodad: boolean }
  | { op: 'addr-del'; dev: string; cidr: string }
  | { op: 'route-set'; route: RouteState }
  | { op: 'route-del'; route: { family: 4 | 6; dst: string; type: RouteType; dev?: string } }
  | { op: 'neigh-set'; dev: string; ip: string; mac: string }
  | { op: 'neigh-del'; dev: string; ip: string }
  | { op: 'fdb-pin'; dev: string; mac: string }
);

/** Forget what a namespace holds on links being (re)created or renumbered: it goes with the old link. */
function without(s: NamespaceState, fresh: Set<string>): NamespaceState {
  if (fresh.size === 0) return s;
  const links = new Map(s.links);
  for (const n of fresh) links.delete(n);
  return {
    links,
    routes: s.routes.filter((r) => r.dev === undefined || !fresh.has(r.dev)),
    neighbours: s.neighbours.filter((n) => !fresh.has(n.dev)),
    fdb: new Set([...s.fdb].filter((e) => !fresh.has(e.split(' ')[0]!))),
  };
}

const sameRoute = (want: RouteState, have: CurrentRoute): boolean =>
  have.family === want.family &&
  have.dst === want.dst &&
  routeType(have.type) === want.type &&
  have.gateway === want.gateway &&
  (want.dev === undefined || have.dev === want.dev);

/** Routes of a namespace that are not ours to remove: the kernel's, local and multicast ones, IPv6 link-local. */
const foreign = (r: CurrentRoute): boolean =>
  r.kernel || r.type === RTN.local || r.type === RTN.multicast || (r.family === 6 && r.dst.startsWith('fe80'));

function linkChanges(
  where: 'host' | 'ns',
  want: LinkWant,
  have: CurrentLink | undefined,
  created: VethWant | undefined,
  out: Change[],
): void {
  const noAddrGen = created !== undefined && (where === 'host' ? created.noAddrGen.host : created.noAddrGen.peer);
  if (want.mac !== undefined && have !== undefined && have.mac !== want.mac)
    out.push({ where, op: 'link-mac', name: want.name, mac: want.mac });
  const set: Change & { op: 'link-set' } = { where, op: 'link-set', name: want.name };
  if (want.mtu !== undefined && !created && have?.mtu !== want.mtu) set.mtu = want.mtu;
  if (want.master !== undefined && have?.master !== want.master) set.master = want.master;
  if (noAddrGen) set.noAddrGen = true;
  // Address generation is off before the link comes up (or it would have made its link-local address already).
  if (set.mtu !== undefined || set.master !== undefined || set.noAddrGen) out.push(set);
  const addrs = (have?.addresses ?? []).filter((a) => !a.linkScope);
  if (want.exactAddresses) {
    for (const a of addrs) if (!want.addresses.includes(a.cidr)) out.push({ where, op: 'addr-del', dev: want.name, cidr: a.cidr });
  }
  for (const cidr of want.addresses) {
    if (!have?.addresses.some((a) => a.cidr === cidr)) out.push({ where, op: 'addr-add', dev: want.name, cidr, nodad: cidr.includes(':') });
  }
  if (!have?.up) out.push({ where, op: 'link-set', name: want.name, up: true });
}

function routeChanges(
  where: 'host' | 'ns',
  want: RouteState[],
  have: CurrentRoute[],
  owned: (r: CurrentRoute) => boolean,
  out: Change[],
): void {
  const keys = new Set(want.map((r) => `${r.family}|${r.dst}`));
  for (const r of have) {
    const type = routeType(r.type);
    if (!owned(r) || type === undefined || keys.has(`${r.family}|${r.dst}`)) continue;
    out.push({ where, op: 'route-del', route: { family: r.family, dst: r.dst, type, ...(r.dev ? { dev: r.dev } : {}) } });
  }
  for (const r of want) if (!have.some((h) => sameRoute(r, h))) out.push({ where, op: 'route-set', route: r });
}

/**
 * The changes that take the host and the router namespace from `host`/`ns` (as read) to `want`, in order: stale and
 * broken legs out, veths in, the host's ends, the namespace's links, neighbours, routes. Empty when converged.
 */
export function diffRouter(want: RouterWant, hostNow: NamespaceState, nsNow: NamespaceState): Change[] {
  const out: Change[] = [];
  // A pair is (re)made unless both ends are there.
  const created = want.veths.filter((v) => !hostNow.links.has(v.name) || !nsNow.links.has(v.peer));
  const wantedInner = new Set(want.veths.map((v) => v.peer));
  // Links deleted or made again: what they held (addresses, routes, neighbours, FDB entries) goes with them.
  const gone = new Set(created.flatMap((v) => [v.name, v.peer]));
  for (const name of nsNow.links.keys()) {
    const stale = name.startsWith(LEG_PREFIX) && !wantedInner.has(name);
    if (stale || created.some((v) => v.peer === name)) {
      out.push({ where: 'ns', op: 'link-del', name });
      gone.add(name);
    }
  }
  for (const v of created) if (hostNow.links.has(v.name)) out.push({ where: 'host', op: 'link-del', name: v.name });
  for (const v of want.host.absent) {
    if (hostNow.links.has(v.name)) out.push({ where: 'host', op: 'link-del', name: v.name });
    gone.add(v.name).add(v.peer);
  }
  const host = without(hostNow, gone);
  const ns = without(nsNow, gone);
  // A new MAC flushes the link's neighbours.
  const newMac = want.ns.links.filter((l) => l.mac !== undefined && ns.links.has(l.name) && ns.links.get(l.name)!.mac !== l.mac);
  const nsNeighbours = ns.neighbours.filter((n) => !newMac.some((l) => l.name === n.dev));

  const mtuOf = (links: LinkWant[], name: string): number | undefined => links.find((l) => l.name === name)?.mtu;
  for (const v of want.veths) {
    if (!created.includes(v)) continue;
    const mtu = mtuOf(want.host.links, v.name) ?? mtuOf(want.ns.links, v.peer);
    out.push({
      where: 'host',
      op: 'veth-add',
      name: v.name,
      peer: v.peer,
      ...(v.peerMac ? { peerMac: v.peerMac } : {}),
      ...(mtu ? { mtu } : {}),
    });
  }
  const createdAs = (name: string): VethWant | undefined => created.find((v) => v.name === name || v.peer === name);
  for (const l of want.host.links) {
    linkChanges('host', l, host.links.get(l.name), createdAs(l.name), out);
    for (const f of want.host.fdb) {
      if (f.dev === l.name && !host.fdb.has(`${f.dev} ${f.mac}`)) out.push({ where: 'host', op: 'fdb-pin', dev: f.dev, mac: f.mac });
    }
  }
  const owner = want.host.routesOwnedBy;
  routeChanges('host', want.host.routes, host.routes, (r) => owner !== undefined && r.dev === owner && !r.kernel, out);

  for (const l of want.ns.links) linkChanges('ns', l, ns.links.get(l.name), createdAs(l.name), out);
  const wantN = new Set(want.ns.neighbours.map((n) => `${n.ip}|${n.dev}`));
  for (const n of nsNeighbours) {
    if (n.dev.startsWith(LEG_PREFIX) && !wantN.has(`${n.ip}|${n.dev}`)) out.push({ where: 'ns', op: 'neigh-del', dev: n.dev, ip: n.ip });
  }
  for (const n of want.ns.neighbours) {
    const have = nsNeighbours.find((x) => x.ip === n.ip && x.dev === n.dev);
    if (have?.mac !== n.mac) out.push({ where: 'ns', op: 'neigh-set', ...n });
  }
  // Routes from the model (and the uplink's default); every other route not installed by the kernel is stale.
  routeChanges('ns', want.ns.routes, ns.routes, (r) => !foreign(r), out);
  return out;
}
