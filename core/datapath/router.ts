// A distributed virtual router instance on this host: a network namespace with one leg into each local virtual
// bridge of the router. Every host gives the legs the same gateway IPs and MAC (anycast gateway), so traffic
// between bridges is routed on the host where it enters and then tunnelled straight to the destination host.
// The router never resolves addresses (it has permanent neighbours for every port of its bridges), and reaches
// the outside through an uplink veth to the host namespace, where it is masqueraded.
import { existsSync, readFileSync } from 'node:fs';
import { familyOf, normalizeMac } from './addresses.js';
import type { HostContext } from './bridge.js';
import { inNetns, isGone, run } from './exec.js';
import {
  createVeth,
  deleteAddress,
  deleteLink,
  deleteRoute,
  getLink,
  inNamespace,
  listAddresses,
  listFdb,
  listLinks,
  listNeighbours,
  listRoutes,
  replaceAddress,
  replaceRoute,
  setBridgeFdb,
  setLink,
  withNetlink,
  type NetlinkSocket,
} from './netlink/index.js';
import { deleteNeighbour, replaceNeighbour } from './netlink/neighbour.js';
import { ensureRouterChains, setHostMasquerade, setRouterChains, setRouterSnat } from './nft/index.js';
import type { RouterFilters } from '../policy/compile-router.js';
import { checkVni, legName, routerLegName, routerNsName, ROUTER_UPLINK, UPLINK_PREFIX, uplinkName } from './names.js';
import {
  checkRouterId,
  desiredRouterState,
  diffRouter,
  namespaceState,
  planRouter,
  uplinkSlot,
  UPLINK_NET,
  type Change,
  type NamespaceState,
} from './router-state.js';
import type { DesiredRouter, RouterNeighbour } from './types.js';

export { uplinkHostAddress } from './router-state.js';
export const NETNS_DIR = '/run/netns';

export interface RouterContext extends HostContext {
  routerNsPrefix: string;
}

/** Read one namespace through one netlink socket; errors keep the caller's context. */
async function readNamespace(
  netns: string | undefined,
  context: string,
  fn: (s: NetlinkSocket) => Promise<NamespaceState>,
): Promise<NamespaceState> {
  try {
    return await withNetlink(netns, fn);
  } catch (e) {
    if (isGone(e)) throw e;
    throw new Error(`${context}: ${(e as Error).message}`);
  }
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
 * bridges): a few netlink requests in its namespace, no process, instead of a full ensureRouter (which reads
 * everything). This runs for every attach and detach on a routed network. Removing an entry that is not
 * there is not an error.
 */
export async function setRouterNeighbours(
  ctx: RouterContext,
  id: string,
  add: RouterNeighbour[],
  remove: RouterNeighbour[],
): Promise<void> {
  checkRouterId(id);
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

/**
 * Converge the router instance: its desired state (router-state.ts) against the host's and its namespace's as read
 * through netlink; only the difference is applied.
 */
export async function ensureRouter(ctx: RouterContext, r: DesiredRouter): Promise<void> {
  // Validate everything before touching the kernel.
  const plan = planRouter(r);
  const ns = routerNsName(ctx.routerNsPrefix, r.id);
  const nsPath = `${NETNS_DIR}/${ns}`;
  const what = `router ${r.id}`;

  if (!existsSync(nsPath)) {
    await run(['ip', 'netns', 'add', ns], { context: `${what}: could not create namespace ${ns}` }).catch((e) => {
      if (!/File exists/.test(String(e))) throw e;
    });
  }
  // Read in-process (netlink): the periodic resync re-reads every router on every host. One socket per namespace.
  const [hostNow, nsNow] = await Promise.all([
    readNamespace(ctx.netns, `${what}: could not read the host's interfaces, routes and FDB`, async (s) =>
      namespaceState(await listLinks(s), await listAddresses(s), await listRoutes(s, 4), [], await listFdb(s)),
    ),
    readNamespace(nsPath, `${what}: could not read ${ns}`, async (s) =>
      namespaceState(await listLinks(s), await listAddresses(s), await listRoutes(s), await readOr(listNeighbours(s))),
    ),
  ]);
  const bridgeMtu = (bridge: string): number => {
    const l = hostNow.links.get(bridge);
    if (!l) throw new Error(`${what}: bridge ${bridge} does not exist on this host (ensureBridge first)`);
    return l.mtu;
  };
  const slot = plan.needUplink ? uplinkSlot(r.id, hostNow) : undefined;
  if (plan.needUplink && slot === undefined) throw new Error(`${what}: no free uplink address in ${UPLINK_NET}`);
  // A converged router (every periodic resync) differs in nothing: no request, no process.
  const changes = diffRouter(desiredRouterState(plan, bridgeMtu, slot), hostNow, nsNow);
  if (changes.length > 0) {
    await applyChanges(ctx.netns, nsPath, changes, {
      host: `${what}: could not set up its legs/uplink`,
      ns: `${what}: could not configure ${ns}`,
    });
  }

  const sysctl = ['sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.accept_dad=0'];
  const snat = plan.snat;
  await Promise.all([
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

/** One change through netlink; `index` resolves a link name of the change's namespace, `forget` drops those known. */
async function viaNetlink(
  s: NetlinkSocket,
  c: Change,
  index: (name: string) => Promise<number>,
  nsPath: string,
  forget: () => void,
): Promise<void> {
  switch (c.op) {
    case 'link-del':
      forget();
      await deleteLink(s, c.name);
      return;
    case 'veth-add': {
      forget();
      const mtu = c.mtu !== undefined ? { mtu: c.mtu } : {};
      await createVeth(s, {
        name: c.name,
        ...mtu,
        peer: { name: c.peer, netns: nsPath, ...mtu, ...(c.peerMac ? { mac: c.peerMac } : {}) },
      });
      return;
    }
    case 'link-set':
      await setLink(s, c.name, {
        ...(c.mtu !== undefined ? { mtu: c.mtu } : {}),
        ...(c.master !== undefined ? { master: await index(c.master) } : {}),
        ...(c.up ? { up: true } : {}),
        ...(c.noAddrGen ? { noIpv6AddrGen: true } : {}),
      });
      return;
    case 'link-mac':
      await setLink(s, c.name, { mac: c.mac });
      return;
    case 'addr-add':
      await replaceAddress(s, await index(c.dev), c.cidr, { nodad: c.nodad });
      return;
    case 'addr-del':
      await deleteAddress(s, await index(c.dev), c.cidr);
      return;
    case 'neigh-set':
      await replaceNeighbour(s, await index(c.dev), c.ip, c.mac);
      return;
    case 'neigh-del':
      await deleteNeighbour(s, await index(c.dev), c.ip);
      return;
    case 'fdb-pin':
      await setBridgeFdb(s, await index(c.dev), c.mac);
      return;
    case 'route-set':
    case 'route-del': {
      const { family, dst, type, dev } = c.route;
      // A typed route (blackhole, prohibit) names no device; a desired unicast one may leave it to the kernel.
      const r = {
        dst,
        family,
        type,
        ...(c.op === 'route-set' ? { gateway: c.route.gateway } : {}),
        oif: dev === undefined ? undefined : await index(dev),
      };
      await (c.op === 'route-set' ? replaceRoute(s, r) : deleteRoute(s, r));
      return;
    }
  }
}

/** Make `changes` in order, each through netlink, on one socket per namespace. */
async function applyChanges(
  hostNetns: string | undefined,
  nsPath: string,
  changes: Change[],
  context: { host: string; ns: string },
): Promise<void> {
  await withNetlink(hostNetns, (hs) =>
    withNetlink(nsPath, async (rs) => {
      const sockets = { host: hs, ns: rs };
      // Link indexes by name, looked up when first needed; forgotten when links come or go.
      const indexes = { host: new Map<string, number>(), ns: new Map<string, number>() };
      const index = async (where: 'host' | 'ns', name: string): Promise<number> => {
        let i = indexes[where].get(name);
        if (i === undefined) {
          i = (await getLink(sockets[where], name))?.index;
          if (i === undefined) throw new Error(`no link ${name}`);
          indexes[where].set(name, i);
        }
        return i;
      };
      for (const c of changes) {
        try {
          await viaNetlink(
            sockets[c.where],
            c,
            (name) => index(c.where, name),
            nsPath,
            () => {
              indexes.host.clear();
              indexes.ns.clear();
            },
          );
        } catch (e) {
          throw new Error(`${context[c.where]}: ${(e as Error).message}`, { cause: e });
        }
      }
    }),
  );
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
  checkRouterId(id);
  const ns = routerNsName(ctx.routerNsPrefix, id);
  await setRouterChains(`${NETNS_DIR}/${ns}`, prev, next, `router ${id}: could not set its chains in ${ns}`);
}

/** Remove the router instance: its namespace (legs and uplink go with it). */
export async function removeRouter(ctx: RouterContext, id: string): Promise<void> {
  checkRouterId(id);
  const ns = routerNsName(ctx.routerNsPrefix, id);
  const nsPath = `${NETNS_DIR}/${ns}`;
  // Deleting the host ends first avoids relying on namespace teardown timing for name reuse.
  const hostEnds = [uplinkName(id)];
  if (existsSync(nsPath)) {
    const inner = await withNetlink(nsPath, listLinks).catch((e: unknown) => {
      if (isGone(e)) return [];
      throw new Error(`router ${id}: could not read ${ns}: ${(e as Error).message}`, { cause: e });
    });
    for (const l of inner) if (l.name.startsWith('l-')) hostEnds.push(legName(id, parseInt(l.name.slice(2), 16)));
  }
  // A link already gone (or never made) is "gone", not an error.
  await withNetlink(ctx.netns, async (s) => {
    for (const n of hostEnds) await deleteLink(s, n);
  }).catch((e: unknown) => {
    throw new Error(`router ${id}: could not delete its legs: ${(e as Error).message}`, { cause: e });
  });
  await run(['ip', 'netns', 'del', ns], { context: `router ${id}: could not delete namespace ${ns}` }).catch((e) => {
    if (!isGone(e)) throw e;
  });
}
