// The L4 load balancer in a host namespace: tables `ip bees-lb` and, for IPv6 VIPs, `ip6 bees-lb` (compiled by
// core/lb/compile.ts) and what the kernel needs around it for a DNAT done on a bridge by br_netfilter (core/datapath/README.md "Load balancing"):
// per client bridge a policy route table and permanent neighbours, rp_filter off, hairpin on member ports; and,
// when members leave, their conntrack entries cut. The agent's reconciler drives it (core/agent/plan-lb.ts plans);
// applyLoadBalancers() takes the whole desired state of one host namespace and changes only the difference from
// what it applied last (a full pass re-reads the kernel and removes whatever of ours is not wanted).
import { compileLb, familyOf, leavingMembers, type LbBridge, type LbFamily, type LbVip } from '../../lb/compile.js';
import { BRIDGE_PREFIX } from '../names.js';
import { inNetns, ipBatch, run } from '../exec.js';
import { bridgeZones, cutMember, vipsInKernel } from './lb-removal.js';
import { nftApply, nftQuery } from './apply.js';
import { dropTable } from './script.js';
import { HOST_LB, HOST_LB6, type Table } from './tables.js';
import { getLink, listLinks, listNeighbours, listRules, withNetlink } from '../netlink/index.js';
import { deleteNeighbour, replaceNeighbour } from '../netlink/neighbour.js';

/** Route tables of client bridges: this base + the bridge's VNI (24 bits), away from main/local/default. */
export const LB_ROUTE_TABLE_BASE = 0x62000000;
/** Priority of the `iif <bridge>` policy rules (before main at 32766). */
export const LB_RULE_PRIORITY = 10_500;

/** A client bridge with what its policy route table and neighbours are made of. */
export interface LbBridgeRouting extends LbBridge {
  /** Route table id (e.g. LB_ROUTE_TABLE_BASE + VNI). */
  table: number;
  /** The bridge's subnets (CIDR, both families): same-bridge members are reached on-link. */
  subnets: readonly string[];
  /** The anycast gateway MAC (the router leg's). */
  gatewayMac: string;
  /**
   * Every member on this bridge's subnets, with its MAC: the host namespace has no address to ARP (or solicit
   * neighbours) from.
   */
  neighbours: readonly { address: string; mac: string }[];
}

export interface LbHostSpec {
  bridges: readonly LbBridgeRouting[];
  vips: readonly LbVip[];
  /** Host ends of the local ports of members: `hairpin on`, so a member's own connection can go back out. */
  hairpinPorts: readonly string[];
}

export interface LbApplyOptions {
  /** Re-read the kernel and rewrite everything (the periodic resync, a restarted agent): nothing else is trusted. */
  full?: boolean;
}

/** The last state applied per namespace: the base of the next incremental apply. */
const applied = new Map<string, LbHostSpec>();
/** The VIPs last applied per namespace, kept across full applies: which members left is told from them. */
const lastVips = new Map<string, readonly LbVip[]>();

/** Chains and sets of our table from a `list table` output (base chains apart). */
export function parseExisting(listing: string): { chains: Set<string>; sets: Set<string> } {
  const chains = new Set<string>();
  const sets = new Set<string>();
  for (const line of listing.split('\n')) {
    const c = /^\s+chain (\S+) \{/.exec(line);
    if (c && !HOST_LB.baseChains.some((b) => b.name === c[1])) chains.add(c[1]!);
    const s = /^\s+set (\S+) \{/.exec(line);
    if (s) sets.add(s[1]!);
  }
  return { chains, sets };
}

/** `ip -force -batch`: every line is tried; failures (a device already gone) are not errors here. */
async function ipTolerant(netns: string | undefined, lines: string[]): Promise<void> {
  if (lines.length === 0) return;
  await run(inNetns(netns, ['ip', '-force', '-batch', '-']), { input: lines.join('\n') + '\n', context: 'load balancer' }).catch(
    () => undefined,
  );
}

interface RuleJson {
  priority?: number;
  iif?: string;
  table?: string | number;
}
interface NeighJson {
  dst: string;
  dev: string;
  lladdr?: string;
}

/** The kernel's policy rules, read in-process: a full apply (every periodic resync) runs this on every host. */
async function kernelRules(netns: string | undefined, family: LbFamily): Promise<RuleJson[]> {
  try {
    return await withNetlink(netns, (s) => listRules(s, family));
  } catch (e) {
    throw new Error(`could not list policy rules: ${(e as Error).message}`);
  }
}

/** Permanent neighbour entries on our bridges (`bb-*`) of the host namespace, read in-process. */
async function kernelBridgeNeighbours(netns: string | undefined): Promise<NeighJson[]> {
  try {
    return await withNetlink(netns, async (s) => {
      const names = new Map((await listLinks(s)).filter((l) => l.name.startsWith(BRIDGE_PREFIX)).map((l) => [l.index, l.name]));
      if (names.size === 0) return [];
      return (await listNeighbours(s))
        .filter((n) => n.permanent && names.has(n.index))
        .map((n) => ({ dst: n.ip, dev: names.get(n.index)!, ...(n.mac ? { lladdr: n.mac } : {}) }));
    });
  } catch (e) {
    throw new Error(`could not list neighbours: ${(e as Error).message}`);
  }
}

const neighKey = (dev: string, address: string): string => `${dev}|${address}`;
function wantedNeighbours(spec: LbHostSpec): Map<string, { dev: string; address: string; mac: string }> {
  const out = new Map<string, { dev: string; address: string; mac: string }>();
  for (const b of spec.bridges) {
    out.set(neighKey(b.ifname, b.gateway), { dev: b.ifname, address: b.gateway, mac: b.gatewayMac });
    if (b.gateway6) out.set(neighKey(b.ifname, b.gateway6), { dev: b.ifname, address: b.gateway6, mac: b.gatewayMac });
    for (const n of b.neighbours) out.set(neighKey(b.ifname, n.address), { dev: b.ifname, address: n.address, mac: n.mac });
  }
  return out;
}

/** `ip [-6] -batch`: policy rules and route flushes carry no address the tool could tell the family from. */
async function ipFamilyBatch(netns: string | undefined, family: LbFamily, lines: string[], context: string): Promise<void> {
  if (family === 4) return ipBatch(netns, lines, context);
  if (lines.length === 0) return;
  await run(inNetns(netns, ['ip', '-6', '-batch', '-']), { input: lines.join('\n') + '\n', context });
}

const FAMILIES: readonly LbFamily[] = [4, 6];
const gatewayOf = (b: LbBridgeRouting, family: LbFamily): string | undefined => (family === 4 ? b.gateway : b.gateway6);

/**
 * Policy rules, route tables, neighbours, rp_filter and hairpin of the client bridges: made for `spec`, and removed
 * where `prev` (or, without it, the kernel) has them and `spec` does not. Per family: a bridge gets IPv6 policy
 * routing when it has an IPv6 gateway (dual stack), the same table number in the IPv6 routing tables.
 *
 * What is new is made at once; what goes is removed by the function returned, which the caller runs after its nft
 * commit: a member leaving keeps its neighbour entry until no VIP chain sends to it any more, and the commit that
 * takes it out of rotation is not held up by the removal. Neighbour entries are changed through netlink in-process
 * (a member change spawns no process).
 */
async function routing(netns: string | undefined, spec: LbHostSpec, prev: LbHostSpec | undefined): Promise<() => Promise<void>> {
  // The policy rules in force: those applied last (an incremental apply trusts them, as it trusts the table: a
  // member change then spawns no process at all), or the kernel's (a full apply).
  const rulesOf = new Map<LbFamily, RuleJson[]>();
  for (const f of FAMILIES)
    rulesOf.set(
      f,
      prev
        ? prev.bridges
            .filter((b) => gatewayOf(b, f) !== undefined)
            .map((b) => ({ priority: LB_RULE_PRIORITY, iif: b.ifname, table: b.table }))
        : await kernelRules(netns, f),
    );
  const want = new Map(spec.bridges.map((b) => [b.ifname, b]));
  const dropOf = new Map<LbFamily, string[]>();
  for (const f of FAMILIES) {
    const drop: string[] = [];
    for (const r of rulesOf.get(f)!) {
      if (r.priority !== LB_RULE_PRIORITY || !r.iif) continue;
      const table = Number(r.table);
      if (!(table >= LB_ROUTE_TABLE_BASE && table < LB_ROUTE_TABLE_BASE + 0x1000000)) continue;
      const b = want.get(r.iif);
      if (b?.table === table && gatewayOf(b, f) !== undefined) continue;
      drop.push(`rule del priority ${LB_RULE_PRIORITY} iif ${r.iif} table ${table}`, `route flush table ${table}`);
    }
    dropOf.set(f, drop);
  }
  // Neighbours: from what was applied last, or (full) from the kernel's permanent entries on our bridges.
  const nowN = wantedNeighbours(spec);
  const wasN = prev
    ? wantedNeighbours(prev)
    : new Map(
        (await kernelBridgeNeighbours(netns)).map((n) => [neighKey(n.dev, n.dst), { dev: n.dev, address: n.dst, mac: n.lladdr ?? '' }]),
      );
  const goneN = [...wasN].filter(([k]) => !nowN.has(k)).map(([, n]) => n);
  const drop = dropOf.get(4)!;
  const wasHairpin = new Set(prev?.hairpinPorts ?? []);
  for (const p of wasHairpin) if (!spec.hairpinPorts.includes(p)) drop.push(`link set dev ${p} type bridge_slave hairpin off`);

  const lines = new Map<LbFamily, string[]>(FAMILIES.map((f) => [f, []]));
  const fresh: string[] = [];
  for (const b of spec.bridges) {
    const was = prev?.bridges.find((x) => x.ifname === b.ifname);
    for (const f of FAMILIES) {
      const gateway = gatewayOf(b, f);
      if (gateway === undefined) continue;
      const out = lines.get(f)!;
      const have = rulesOf.get(f)!.some((r) => r.iif === b.ifname && r.priority === LB_RULE_PRIORITY && Number(r.table) === b.table);
      if (!have) out.push(`rule add iif ${b.ifname} lookup ${b.table} priority ${LB_RULE_PRIORITY}`);
      const routesSame =
        was && was.table === b.table && gatewayOf(was, f) === gateway && JSON.stringify(was.subnets) === JSON.stringify(b.subnets);
      if (!routesSame || !have) {
        for (const s of b.subnets) if (familyOf(s) === f) out.push(`route replace ${s} dev ${b.ifname} scope link table ${b.table}`);
        out.push(`route replace ${f === 4 ? 'default' : '::/0'} via ${gateway} dev ${b.ifname} onlink table ${b.table}`);
        if (f === 4) fresh.push(b.ifname);
      }
    }
  }
  const v4 = lines.get(4)!;
  const newN = [...nowN].filter(([k, n]) => wasN.get(k)?.mac !== n.mac).map(([, n]) => n);
  for (const p of spec.hairpinPorts) if (!wasHairpin.has(p)) v4.push(`link set dev ${p} type bridge_slave hairpin on`);
  await ipBatch(netns, v4, 'load balancer: could not set up routing of client bridges');
  await ipFamilyBatch(netns, 6, lines.get(6)!, 'load balancer: could not set up IPv6 routing of client bridges');
  await setNeighbours(netns, newN, []);
  for (const b of fresh) {
    await run(inNetns(netns, ['sysctl', '-qw', `net.ipv4.conf.${b}.rp_filter=0`]), { context: `load balancer: rp_filter of ${b}` });
  }
  return async () => {
    // Best effort, as `ip -force -batch` was: a device already gone takes its entries with it.
    await setNeighbours(netns, [], goneN).catch(() => undefined);
    await ipTolerant(netns, drop);
    if (dropOf.get(6)!.length)
      await run(inNetns(netns, ['ip', '-6', '-force', '-batch', '-']), {
        input: dropOf.get(6)!.join('\n') + '\n',
        context: 'load balancer',
      }).catch(() => undefined);
  };
}

/** Permanent neighbours on bridges of the host namespace, made and removed through netlink in-process. */
async function setNeighbours(
  netns: string | undefined,
  add: readonly { dev: string; address: string; mac: string }[],
  remove: readonly { dev: string; address: string }[],
): Promise<void> {
  if (add.length === 0 && remove.length === 0) return;
  await withNetlink(netns, async (s) => {
    const indexes = new Map<string, number | undefined>();
    const indexOf = async (dev: string): Promise<number | undefined> => {
      if (!indexes.has(dev)) indexes.set(dev, (await getLink(s, dev))?.index);
      return indexes.get(dev);
    };
    for (const n of remove) {
      const index = await indexOf(n.dev);
      if (index !== undefined) await deleteNeighbour(s, index, n.address);
    }
    for (const n of add) {
      const index = await indexOf(n.dev);
      if (index === undefined) throw new Error(`load balancer: no device ${n.dev} for neighbour ${n.address}`);
      await replaceNeighbour(s, index, n.address, n.mac);
    }
  });
}

const tableOf = (family: LbFamily): Table => (family === 4 ? HOST_LB : HOST_LB6);
const hasFamily = (spec: LbHostSpec | undefined, family: LbFamily): boolean =>
  (spec?.vips ?? []).some((v) => familyOf(v.address) === family);

/**
 * Make the load balancer of host namespace `netns` what `spec` says (routing first, so a VIP is never translated
 * before its frames can be re-routed; then per family one nft transaction holding only the chains that changed,
 * the IPv6 table only while some VIP is IPv6). Members that left rotation get no new connections from that commit
 * on; their conntrack entries are deleted when the VIP's memberRemoval is 'cut' or the member is down. An empty
 * spec removes everything.
 */
export async function applyLoadBalancers(netns: string | undefined, spec: LbHostSpec, opts: LbApplyOptions = {}): Promise<void> {
  const key = netns ?? '';
  if (spec.vips.length === 0 && spec.bridges.length === 0) {
    if (applied.get(key) || opts.full) await removeLoadBalancers(netns, applied.get(key));
    applied.set(key, spec);
    return;
  }
  const prev = opts.full ? undefined : applied.get(key);
  const had = applied.get(key);
  applied.delete(key);
  const dropOld = await routing(netns, spec, prev);
  const list = (table: Table) => nftQuery(netns, `list table ${table.family} ${table.name}`, 'nft').catch(() => '');
  // What the kernel listed, for a restarted agent's read-back of the members in rotation (lb-removal.ts).
  const listings: string[] = [];
  const remembered = lastVips.has(key);
  for (const family of FAMILIES) {
    const table = tableOf(family);
    // The IPv4 table is kept whenever anything is served (as before dual stack); the IPv6 one only for IPv6 VIPs.
    if (family === 6 && !hasFamily(spec, 6)) {
      if (!remembered) listings.push(await list(table));
      if (opts.full || hasFamily(had, 6)) await dropTable(netns, table);
      continue;
    }
    const base = family === 6 && !hasFamily(prev, 6) ? undefined : prev;
    // Incremental: the chains and sets applied last are what the table holds (no listing of a table that grows with
    // the VIPs); otherwise the kernel's listing says what to remove.
    const listing = base ? undefined : await list(table);
    if (listing !== undefined) listings.push(listing);
    const existing = listing === undefined ? undefined : parseExisting(listing);
    await nftApply(netns, compileLb(spec, existing, base, family), `load balancer: could not apply table ${table.family} ${table.name}`);
  }
  await dropOld();
  applied.set(key, spec);
  const before = lastVips.get(key) ?? vipsInKernel(listings.join('\n'));
  const cuts = leavingMembers(before, spec.vips).filter((l) => l.action === 'cut');
  if (cuts.length) {
    // Only in the zones of the VIP's own client bridges: another tenant may have the same VIP and member address.
    const zones = await bridgeZones(netns);
    const bridges = (vipId: string) => [...before, ...spec.vips].filter((v) => v.id === vipId).flatMap((v) => v.bridges);
    for (const l of cuts) await cutMember(netns, l, bridges(l.vipId), zones);
  }
  lastVips.set(key, spec.vips);
}

/** Forget what was applied in `netns`, as a restarted agent has (its next apply re-reads the kernel). */
export function forgetApplied(netns: string | undefined): void {
  applied.delete(netns ?? '');
  lastVips.delete(netns ?? '');
}

/**
 * Remove the load balancer of `netns`: its tables (if ours), its policy rules and route tables, the permanent
 * neighbours on our bridges, hairpin of the ports it set.
 */
export async function removeLoadBalancers(netns: string | undefined, prev?: LbHostSpec): Promise<void> {
  const key = netns ?? '';
  applied.delete(key);
  lastVips.delete(key);
  await dropTable(netns, HOST_LB);
  await dropTable(netns, HOST_LB6);
  await (
    await routing(netns, { bridges: [], vips: [], hairpinPorts: [] }, prev)
  )();
}
