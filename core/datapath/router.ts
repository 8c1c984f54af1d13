// A distributed virtual router instance on this host: a network namespace with one leg into each local virtual
// bridge of the router. Every host gives the legs the same gateway IPs and MAC (anycast gateway), so traffic
// between bridges is routed on the host where it enters and then tunnelled straight to the destination host.
// The router never resolves addresses (it has permanent neighbours for every port of its bridges), and reaches
// the outside through an uplink veth to the host namespace, where it is masqueraded.
import { existsSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { checkDestination, familyOf, normalizeMac, parseCidr } from './addresses.js';
import { canonicalIp } from '../net/ip.js';
import type { HostContext } from './bridge.js';
import { bridgeBatch, inNetns, ipBatch, isGone, run, runJson } from './exec.js';
import {
  getLink,
  inNamespace,
  listAddresses,
  listFdb,
  listLinks,
  listNeighbours,
  listRoutes,
  canonicalDestination,
  withNetlink,
  type Link,
  type NetlinkSocket,
} from './netlink/index.js';
import { deleteNeighbour, replaceNeighbour } from './netlink/neighbour.js';
import { ensureRouterChains, setHostMasquerade, setRouterChains, setRouterSnat } from './nft/index.js';
import type { RouterFilters } from '../policy/compile-router.js';
import { bridgeName, checkVni, legName, routerLegName, routerNsName, ROUTER_UPLINK, UPLINK_PREFIX, uplinkName } from './names.js';
import type { DesiredRouter, RouterNeighbour } from './types.js';

export const NETNS_DIR = '/run/netns';
/** Uplinks get a /30 of this range per router: .1 in the router, .2 on the host. */
const UPLINK_NET = '169.254.0.0/16';
/** Slot holding 169.254.169.254 (cloud metadata), never used. */
const METADATA_SLOT = (169 * 256 + 252) / 4;
const SLOTS = 16384;

interface AddrJson {
  ifname: string;
  mtu?: number;
  flags?: string[];
  address?: string;
  master?: string;
  linkinfo?: { info_kind?: string };
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}
interface NeighJson {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}
interface RouteJson {
  /** Not printed by ip: which listing the route came from. */
  family?: 4 | 6;
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
}

export interface RouterContext extends HostContext {
  routerNsPrefix: string;
}

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

function checkId(id: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(id ?? '')) throw new Error(`invalid router id "${id}"`);
}

/** Route destinations as `ip -j route` prints them, so desired and present routes compare. */
function normDst(dst: string): string {
  if (dst === 'default' || dst === '0.0.0.0/0' || dst === '::/0') return 'default';
  const m = /^(.*)\/(32|128)$/.exec(dst);
  if (m && ((m[2] === '32' && familyOf(m[1]!) === 4) || (m[2] === '128' && familyOf(m[1]!) === 6))) return m[1]!;
  return dst;
}

type Names = Map<number, Link>;

/**
 * Read through one netlink socket of `netns` and one listing of its links (by index), whatever `fn` reads with them;
 * errors keep the caller's context.
 */
async function readNamespace<T>(
  netns: string | undefined,
  context: string,
  fn: (s: NetlinkSocket, links: Names) => Promise<T>,
): Promise<T> {
  try {
    return await withNetlink(netns, async (s) => fn(s, new Map((await listLinks(s)).map((l) => [l.index, l]))));
  } catch (e) {
    if (isGone(e)) throw e;
    throw new Error(`${context}: ${(e as Error).message}`);
  }
}

const SCOPES: Record<number, string> = { 0: 'global', 200: 'site', 253: 'link', 254: 'host', 255: 'nowhere' };

/** Links with their addresses, as `ip -j addr show` prints them (the fields read here). */
async function addrsJson(s: NetlinkSocket, links: Names): Promise<AddrJson[]> {
  const byLink = new Map<number, AddrJson>();
  for (const l of links.values()) {
    const master = l.masterIndex === undefined ? undefined : links.get(l.masterIndex)?.name;
    byLink.set(l.index, {
      ifname: l.name,
      mtu: l.mtu,
      address: l.mac,
      flags: l.up ? ['UP'] : [],
      ...(master ? { master } : {}),
      addr_info: [],
    });
  }
  for (const a of await listAddresses(s)) {
    byLink.get(a.index)?.addr_info!.push({
      family: a.family === 4 ? 'inet' : 'inet6',
      local: a.ip,
      prefixlen: a.prefix,
      scope: SCOPES[a.scope] ?? String(a.scope),
    });
  }
  return [...byLink.values()];
}

const ROUTE_TYPES: Record<number, string> = {
  1: 'unicast',
  2: 'local',
  3: 'broadcast',
  4: 'anycast',
  5: 'multicast',
  6: 'blackhole',
  7: 'unreachable',
  8: 'prohibit',
  9: 'throw',
  10: 'nat',
};
const RTPROT_KERNEL = 2;

/** Routes of the main table of one family, as `ip -j route show table main` prints them (the fields read here). */
async function routesJson(s: NetlinkSocket, links: Names, family: 4 | 6): Promise<RouteJson[]> {
  return (await listRoutes(s, family)).map((r) => ({
    family,
    dst: normDst(r.dst),
    ...(r.gateway ? { gateway: r.gateway } : {}),
    ...(r.oif !== undefined && links.has(r.oif) ? { dev: links.get(r.oif)!.name } : {}),
    protocol: r.protocol === RTPROT_KERNEL ? 'kernel' : String(r.protocol),
    type: ROUTE_TYPES[r.type] ?? String(r.type),
  }));
}

/** Permanent neighbour entries, as `ip -j neigh show nud permanent` prints them. */
async function permanentNeighboursJson(s: NetlinkSocket, links: Names): Promise<NeighJson[]> {
  return (await listNeighbours(s))
    .filter((n) => n.permanent && links.has(n.index))
    .map((n) => ({ dst: n.ip, dev: links.get(n.index)!.name, ...(n.mac ? { lladdr: n.mac } : {}) }));
}

async function readOr<T>(p: Promise<T[]>): Promise<T[]> {
  try {
    return await p;
  } catch (e) {
    if (isGone(e)) return [];
    throw e;
  }
}

/**
 * Only the permanent neighbours of a router already in place change (a workload came or went on one of its
 * bridges): a few netlink requests in its namespace, no process, instead of a full ensureRouter (which reads and
 * rewrites everything). This runs for every attach and detach on a routed network. Removing an entry that is not
 * there is not an error.
 */
export async function setRouterNeighbours(
  ctx: RouterContext,
  id: string,
  add: RouterNeighbour[],
  remove: RouterNeighbour[],
): Promise<void> {
  checkId(id);
  for (const n of [...remove, ...add]) {
    familyOf(n.ip, `neighbour of router ${id}`);
    checkVni(n.vni);
  }
  if (add.length === 0 && remove.length === 0) return;
  const nsPath = `${NETNS_DIR}/${routerNsName(ctx.routerNsPrefix, id)}`;
  try {
    await withNetlink(nsPath, async (s) => {
      const legs = new Map<number, number>();
      const leg = async (vni: number): Promise<number> => {
        let index = legs.get(vni);
        if (index === undefined) {
          index = (await getLink(s, routerLegName(vni)))?.index;
          if (index === undefined) throw new Error(`no leg ${routerLegName(vni)} on bridge ${vni}`);
          legs.set(vni, index);
        }
        return index;
      };
      for (const n of remove) await deleteNeighbour(s, await leg(n.vni), n.ip);
      for (const n of add) await replaceNeighbour(s, await leg(n.vni), n.ip, normalizeMac(n.mac));
    });
  } catch (e) {
    throw new Error(`router ${id}: could not update neighbours: ${(e as Error).message}`, { cause: e });
  }
}

export async function ensureRouter(ctx: RouterContext, r: DesiredRouter): Promise<void> {
  checkId(r.id);
  const ns = routerNsName(ctx.routerNsPrefix, r.id);
  const nsPath = `${NETNS_DIR}/${ns}`;
  const what = `router ${r.id}`;
  // Validate everything before touching the kernel.
  const legs = r.legs.map((l) => {
    checkVni(l.vni);
    l.addresses.forEach((a) => parseCidr(a, `gateway address of ${what} on ${l.vni}`));
    return { ...l, mac: normalizeMac(l.mac), host: legName(r.id, l.vni), inner: routerLegName(l.vni) };
  });
  if (new Set(legs.map((l) => l.vni)).size !== legs.length) throw new Error(`${what}: two legs on one bridge`);
  const legOf = (vni: number, ctxt: string): string => {
    const l = legs.find((x) => x.vni === vni);
    if (!l) throw new Error(`${what}: ${ctxt} refers to bridge ${vni}, which has no leg`);
    return l.inner;
  };
  const routes = (r.routes ?? []).map((rt) => {
    checkDestination(rt.dst);
    if (rt.via) familyOf(rt.via, `next hop of route ${rt.dst}`);
    if (!rt.via && rt.vni === undefined && !rt.type) throw new Error(`${what}: route ${rt.dst} needs a next hop or a leg`);
    return { ...rt, dev: rt.vni !== undefined ? legOf(rt.vni, `route ${rt.dst}`) : undefined };
  });
  const neighbours = (r.neighbours ?? []).map((n) => {
    familyOf(n.ip, `neighbour of ${what}`);
    return { ip: n.ip, mac: normalizeMac(n.mac), dev: legOf(n.vni, `neighbour ${n.ip}`) };
  });
  const hostReachable = r.hostReachable ?? [];
  hostReachable.forEach((c) => parseCidr(c, `host-reachable subnet of ${what}`));
  const snat = r.snat ?? false;
  const needUplink = snat || hostReachable.length > 0;

  if (!existsSync(nsPath)) {
    await run(['ip', 'netns', 'add', ns], { context: `${what}: could not create namespace ${ns}` }).catch((e) => {
      if (!/File exists/.test(String(e))) throw e;
    });
  }
  // Read in-process (netlink), in the form `ip -j` prints: the periodic resync re-reads every router on every host.
  // One socket and one link listing per namespace for everything read there.
  const [onHost, inRouter] = await Promise.all([
    readNamespace(ctx.netns, `${what}: could not read the host's interfaces, routes and FDB`, async (s, names) => ({
      addrs: await addrsJson(s, names),
      routes: await routesJson(s, names, 4),
      fdb: (await listFdb(s)).filter((f) => !f.self && f.static && !f.permanent).map((f) => `${names.get(f.index)?.name ?? ''} ${f.mac}`),
    })),
    readNamespace(nsPath, `${what}: could not read ${ns}`, async (s, names) => ({
      addrs: await addrsJson(s, names),
      neigh: await readOr(permanentNeighboursJson(s, names)),
      routes4: await routesJson(s, names, 4),
      routes6: await routesJson(s, names, 6),
    })),
  ]);
  const { addrs: hostAddrs, routes: hostRoutes, fdb: hostFdb } = onHost;
  const { addrs: nsAddrs, neigh: nsNeigh, routes4: nsRoutes4, routes6: nsRoutes6 } = inRouter;
  const host: string[] = [];
  const inner: string[] = ['link set dev lo up'];
  const fdb: string[] = [];
  const hostHas = new Set(hostAddrs.map((a) => a.ifname));
  const nsLinks = new Map(nsAddrs.map((a) => [a.ifname, a]));

  // Legs.
  for (const l of legs) {
    if (!hostHas.has(l.host) || !nsLinks.has(l.inner)) {
      if (hostHas.has(l.host)) host.push(`link del ${l.host}`);
      if (nsLinks.has(l.inner)) inner.unshift(`link del ${l.inner}`);
      host.push(`link add ${l.host} type veth peer name ${l.inner} address ${l.mac} netns ${nsPath}`);
    }
    const brLink = hostAddrs.find((a) => a.ifname === bridgeName(l.vni));
    if (!brLink) throw new Error(`${what}: bridge ${bridgeName(l.vni)} does not exist on this host (ensureBridge first)`);
    host.push(`link set dev ${l.host} mtu ${brLink.mtu}`);
    inner.push(`link set dev ${l.inner} mtu ${brLink.mtu}`);
    host.push(`link set dev ${l.host} addrgenmode none`, `link set dev ${l.host} master ${bridgeName(l.vni)}`, `link set dev ${l.host} up`);
    // The gateway MAC is local on every host: pin it to the leg so nothing floods it.
    if (!hostFdb.includes(`${l.host} ${normalizeMac(l.mac)}`)) fdb.push(`fdb replace ${l.mac} dev ${l.host} master static`);
    // Setting a MAC (even the same one) flushes the leg's neighbours, permanent ones included: only when it differs.
    if (nsLinks.get(l.inner)?.address !== l.mac) inner.push(`link set dev ${l.inner} address ${l.mac}`);
    inner.push(`link set dev ${l.inner} up`);
    const have = nsLinks.get(l.inner)?.addr_info?.filter((a) => a.scope !== 'link') ?? [];
    const want = new Set(
      l.addresses.map((a) => {
        const c = parseCidr(a);
        return `${c.ip}/${c.prefix}`;
      }),
    );
    for (const a of have) if (!want.has(`${a.local}/${a.prefixlen}`)) inner.push(`addr del ${a.local}/${a.prefixlen} dev ${l.inner}`);
    for (const a of l.addresses) inner.push(`addr replace ${a} dev ${l.inner}${parseCidr(a).family === 6 ? ' nodad' : ''}`);
  }
  for (const name of nsLinks.keys()) {
    if (name.startsWith('l-') && !legs.some((l) => l.inner === name)) inner.unshift(`link del ${name}`);
  }

  // Uplink.
  const up = uplinkName(r.id);
  let slot: number | undefined;
  const hostUp = hostAddrs.find((a) => a.ifname === up);
  if (needUplink) {
    slot = hostUp?.addr_info?.map((a) => slotOf(a.local)).find((s) => s !== undefined);
    if (slot === undefined) {
      const used = new Set(
        hostAddrs
          .filter((a) => a.ifname.startsWith(UPLINK_PREFIX))
          .flatMap((a) => a.addr_info ?? [])
          .map((a) => slotOf(a.local)),
      );
      const start = firstSlotOf(r.id);
      for (let i = 0; i < SLOTS && slot === undefined; i++) {
        const s = (start + i) % SLOTS;
        if (s !== 0 && s !== METADATA_SLOT && !used.has(s)) slot = s;
      }
      if (slot === undefined) throw new Error(`${what}: no free uplink address in ${UPLINK_NET}`);
    }
    const rip = slotAddr(slot, 1);
    const hip = slotAddr(slot, 2);
    if (!hostUp || !nsLinks.has(ROUTER_UPLINK)) {
      if (hostUp) host.push(`link del ${up}`);
      host.push(`link add ${up} type veth peer name ${ROUTER_UPLINK} netns ${nsPath}`);
    }
    host.push(`link set dev ${up} addrgenmode none`, `addr replace ${hip}/30 dev ${up}`, `link set dev ${up} up`);
    const wantHost = new Set(hostReachable.map(normDst));
    for (const rt of hostRoutes) {
      if (rt.dev === up && rt.protocol !== 'kernel' && !wantHost.has(rt.dst)) host.push(`route del ${rt.dst} dev ${up}`);
    }
    for (const c of hostReachable) host.push(`route replace ${c} via ${rip} dev ${up}`);
    // The uplink is IPv4 only: no IPv6 link-local address, so the kernel adds no multicast state to it later.
    inner.push(`link set dev ${ROUTER_UPLINK} addrgenmode none`);
    inner.push(
      `addr replace ${rip}/30 dev ${ROUTER_UPLINK}`,
      `link set dev ${ROUTER_UPLINK} up`,
      `route replace default via ${hip} dev ${ROUTER_UPLINK}`,
    );
  } else if (hostUp) {
    host.push(`link del ${up}`);
  }

  // Neighbours: permanent, from the topology.
  const wantNeigh = new Map(neighbours.map((n) => [`${n.ip}|${n.dev}`, n]));
  for (const n of nsNeigh) {
    if (n.dev?.startsWith('l-') && !wantNeigh.has(`${n.dst}|${n.dev}`)) inner.push(`neigh del ${n.dst} dev ${n.dev}`);
  }
  for (const n of neighbours) {
    const have = nsNeigh.find((x) => x.dst === n.ip && x.dev === n.dev);
    if (!have || have.lladdr !== n.mac) inner.push(`neigh replace ${n.ip} lladdr ${n.mac} dev ${n.dev} nud permanent`);
  }

  // Routes from the model; everything else not installed by the kernel is stale.
  const wantRoutes = new Set(
    routes.map((rt) => `${familyOf(rt.dst === 'default' ? (rt.via ?? '0.0.0.0') : rt.dst.split('/')[0]!)}|${normDst(rt.dst)}`),
  );
  if (needUplink) wantRoutes.add('4|default');
  for (const [fam, list] of [
    [4, nsRoutes4],
    [6, nsRoutes6],
  ] as const) {
    for (const rt of list) {
      if (rt.protocol === 'kernel' || rt.type === 'multicast' || rt.type === 'local') continue;
      if (fam === 6 && rt.dst.startsWith('fe80')) continue;
      if (!wantRoutes.has(`${fam}|${rt.dst}`)) {
        const dst = rt.dst === 'default' ? (fam === 4 ? '0.0.0.0/0' : '::/0') : rt.dst;
        inner.push(`route del ${rt.type && rt.type !== 'unicast' ? `${rt.type} ` : ''}${dst}`);
      }
    }
  }
  for (const rt of routes) {
    const fam = rt.dst === 'default' ? (rt.via ? familyOf(rt.via) : 4) : familyOf(rt.dst.split('/')[0]!);
    const dst = rt.dst === 'default' ? (fam === 4 ? '0.0.0.0/0' : '::/0') : rt.dst;
    if (rt.type === 'blackhole') inner.push(`route replace blackhole ${dst}`);
    else if (rt.type === 'reject') inner.push(`route replace prohibit ${dst}`);
    else inner.push(`route replace ${dst}${rt.via ? ` via ${rt.via}` : ''}${rt.dev ? ` dev ${rt.dev}` : ''}`);
  }

  // A converged router (every periodic resync) holds every line already: then no `ip` process at all.
  if (!host.every((l) => holds(l, hostAddrs, hostRoutes))) await ipBatch(ctx.netns, host, `${what}: could not set up its legs/uplink`);
  const innerHeld = inner.every((l) => holds(l, nsAddrs, [...nsRoutes4, ...nsRoutes6]));
  const sysctl = ['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.accept_dad=0'];
  await Promise.all([
    innerHeld ? undefined : ipBatch(nsPath, inner, `${what}: could not configure ${ns}`),
    bridgeBatch(ctx.netns, fdb, `${what}: could not pin its gateway MACs`),
    sysctlsSet(nsPath, sysctl.slice(2))
      ? undefined
      : run(inNetns(nsPath, sysctl), { context: `${what}: could not enable forwarding in ${ns}` }),
    setRouterSnat(nsPath, ROUTER_UPLINK, snat, `${what}: could not set NAT in ${ns}`),
    // Rebuilt whole unless this version is in place (what was there is unknown); setRouterFilters changes only what
    // differs.
    ensureRouterChains(nsPath, r.filters, `${what}: could not set its chains in ${ns}`),
    snat && !sysctlsSet(ctx.netns, ['net.ipv4.ip_forward=1'])
      ? run(inNetns(ctx.netns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']), {
          context: `${what}: could not enable forwarding on the host`,
        }).then(() => setHostMasquerade(ctx.netns, UPLINK_NET, UPLINK_PREFIX, `${what}: could not set up masquerading on the host`))
      : snat
        ? setHostMasquerade(ctx.netns, UPLINK_NET, UPLINK_PREFIX, `${what}: could not set up masquerading on the host`)
        : undefined,
  ]);
}

/**
 * Whether the kernel, as read (`links` with their addresses, `routes`), already holds what an `ip -batch` line of
 * ensureRouter would set. Only the idempotent settings are recognised; any other line (a creation, a deletion, a
 * neighbour, a MAC change) counts as not held, so the batch runs whole, as before.
 */
function holds(line: string, links: AddrJson[], routes: RouteJson[]): boolean {
  const link = (name: string | undefined): AddrJson | undefined => links.find((l) => l.ifname === name);
  let m = /^link set dev (\S+) (mtu (\d+)|up|addrgenmode none|master (\S+))$/.exec(line);
  if (m) {
    const l = link(m[1]);
    if (!l) return false;
    if (m[3] !== undefined) return l.mtu === Number(m[3]);
    if (m[2] === 'up') return l.flags?.includes('UP') ?? false;
    if (m[4] !== undefined) return l.master === m[4];
    return true; // addrgenmode is set when the link is made, in the batch that makes it
  }
  m = /^addr replace (\S+)\/(\d+) dev (\S+)( nodad)?$/.exec(line);
  if (m) {
    const ip = canonicalIp(m[1]!);
    return link(m[3])?.addr_info?.some((a) => a.local === ip && a.prefixlen === Number(m![2])) ?? false;
  }
  m = /^route replace (?:(blackhole|prohibit) )?(\S+)(?: via (\S+))?(?: dev (\S+))?$/.exec(line);
  if (m) {
    const [, type, dst, via, dev] = m;
    const family = via !== undefined ? familyOf(via) : dst!.includes(':') ? 6 : 4;
    const want = normDst(dst!.includes('/') || dst === 'default' ? canonicalDestination(dst!, family) : canonicalIp(dst!));
    return routes.some(
      (r) =>
        r.family === family &&
        r.dst === want &&
        (r.type ?? 'unicast') === (type ?? 'unicast') &&
        (via === undefined ? r.gateway === undefined : r.gateway === canonicalIp(via)) &&
        (dev === undefined || r.dev === dev),
    );
  }
  return false;
}

/**
 * Whether every `name=value` sysctl already holds its value in the namespace at `netns`, read in-process
 * (/proc/sys/net is the namespace of the thread that opens it): a converged router then costs no `sysctl` process.
 * False when one cannot be read (the `sysctl` run says why).
 */
function sysctlsSet(netns: string | undefined, settings: string[]): boolean {
  try {
    return inNamespace(netns, () =>
      settings.every((kv) => {
        const [name, value] = kv.split('=') as [string, string];
        return readFileSync(`/proc/sys/${name.replaceAll('.', '/')}`, 'utf8').trim() === value;
      }),
    );
  } catch {
    return false;
  }
}

/** Only the chains of a router in place changed: rewrite what differs in its `table inet bees-r`. */
export async function setRouterFilters(
  ctx: RouterContext,
  id: string,
  prev: RouterFilters | undefined,
  next: RouterFilters | undefined,
): Promise<void> {
  checkId(id);
  const ns = routerNsName(ctx.routerNsPrefix, id);
  await setRouterChains(`${NETNS_DIR}/${ns}`, prev, next, `router ${id}: could not set its chains in ${ns}`);
}

/** Remove the router instance: its namespace (legs and uplink go with it). */
export async function removeRouter(ctx: RouterContext, id: string): Promise<void> {
  checkId(id);
  const ns = routerNsName(ctx.routerNsPrefix, id);
  // Deleting the host ends first avoids relying on namespace teardown timing for name reuse.
  const hostEnds = [uplinkName(id)];
  const legs = await runJson<AddrJson[]>(ctx.netns, ['ip', '-j', 'link', 'show'], `router ${id}: could not read host links`);
  const inNs = existsSync(`${NETNS_DIR}/${ns}`)
    ? await runJson<AddrJson[]>(`${NETNS_DIR}/${ns}`, ['ip', '-j', 'link', 'show'], `router ${id}: could not read ${ns}`)
    : [];
  for (const l of inNs) if (l.ifname.startsWith('l-')) hostEnds.push(legName(id, parseInt(l.ifname.slice(2), 16)));
  const del = hostEnds.filter((n) => legs.some((l) => l.ifname === n)).map((n) => `link del ${n}`);
  await ipBatch(ctx.netns, del, `router ${id}: could not delete its legs`);
  await run(['ip', 'netns', 'del', ns], { context: `router ${id}: could not delete namespace ${ns}` }).catch((e) => {
    if (!isGone(e)) throw e;
  });
}
