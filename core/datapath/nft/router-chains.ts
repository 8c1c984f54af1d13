// A router's MidoNet chains in its namespace (`table inet bees-r`, ROUTER_FILTER): the compiled chains of
// core/policy/compile-router.ts, reached from the base chains by one `goto` each (falling off the goto'd chain
// ends the base chain with policy accept = MidoNet's "falls off the top-level chain = ACCEPT"): four for the
// router's own filters, and `port-in`/`port-out` with one `iifname`/`oifname` rule per leg for its ports' filters.
// Address and port groups are named sets of the table.
//
// Incremental: given what was applied before, only the chains whose rules changed are flushed and rewritten, the
// base chains only when the filter ids moved, and chains nothing reaches any more are deleted; a group membership
// change is set elements only (hash sets element by element, interval sets refilled); all in one transaction in
// this router's namespace, so no other router and no host table is touched. The table goes with the namespace
// when the router is removed, and with `delete table` when the router's last filter is unset.
import type { RouterFilters, RouterSet } from '../../policy/compile-router.js';
import { filterViewName, natViewName } from '../../policy/compile-router.js';
import { createHash } from 'node:crypto';
import { nftApply, nftQuery } from './apply.js';
import { deleteTableScript, ref } from './script.js';
import { OWNER_COMMENT, ROUTER_FILTER } from './tables.js';

const T = ref(ROUTER_FILTER);

function baseRules(f: RouterFilters | undefined): Record<string, string[]> {
  const legs = (m: Record<string, string> | undefined, dir: 'iifname' | 'oifname'): string[] =>
    Object.entries(m ?? {})
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([leg, chain]) => `${dir} "${leg}" goto ${chain}`);
  return {
    'port-in': legs(f?.portInbound, 'iifname'),
    'port-out': legs(f?.portOutbound, 'oifname'),
    'in-filter': f?.inbound ? [`goto ${filterViewName(f.inbound)}`] : [],
    'in-nat': f?.inbound ? [`goto ${natViewName(f.inbound, 'in')}`] : [],
    'out-filter': f?.outbound ? [`goto ${filterViewName(f.outbound)}`] : [],
    'out-nat': f?.outbound ? [`goto ${natViewName(f.outbound, 'out')}`] : [],
  };
}

/**
 * An empty chain named after a hash of the filters the table was built from: a full ensureRouter (the periodic
 * resync) finds it and leaves the table alone, so the counters of compiled rules survive; a table removed or
 * damaged behind our back lacks it (or a chain) and is rebuilt.
 */
export const versionChain = (f: RouterFilters): string => `v-${createHash('sha1').update(JSON.stringify(f)).digest('hex').slice(0, 12)}`;

const same = (a: readonly string[] | undefined, b: readonly string[] | undefined): boolean => JSON.stringify(a) === JSON.stringify(b);

const element = (s: RouterSet, e: string): string => (s.type === 'ifname' ? `"${e}"` : e);
const elements = (s: RouterSet, list: readonly string[]): string => `{ ${list.map((e) => element(s, e)).join(', ')} }`;

/** The lines bringing set `name` from `was` (undefined: not there) to `now`. */
function setLines(name: string, was: RouterSet | undefined, now: RouterSet): string[] {
  const lines: string[] = [];
  // auto-merge: a group may hold a prefix and an address inside it.
  const flags = now.interval ? ' flags interval; auto-merge;' : '';
  const remake = was && (was.type !== now.type || !!was.interval !== !!now.interval);
  if (remake) lines.push(`delete set ${T} ${name}`);
  if (!was || remake) {
    lines.push(`add set ${T} ${name} { type ${now.type};${flags} }`);
    if (now.elements.length) lines.push(`add element ${T} ${name} ${elements(now, now.elements)}`);
    return lines;
  }
  if (same(was.elements, now.elements)) return lines;
  if (now.interval) {
    // Merged intervals cannot be deleted element by element: refilled, in the same transaction.
    lines.push(`flush set ${T} ${name}`);
    if (now.elements.length) lines.push(`add element ${T} ${name} ${elements(now, now.elements)}`);
    return lines;
  }
  const before = new Set(was.elements);
  const after = new Set(now.elements);
  const gone = was.elements.filter((e) => !after.has(e));
  const added = now.elements.filter((e) => !before.has(e));
  if (gone.length) lines.push(`delete element ${T} ${name} ${elements(now, gone)}`);
  if (added.length) lines.push(`add element ${T} ${name} ${elements(now, added)}`);
  return lines;
}

/**
 * The script bringing a router namespace from `prev` (what was applied; undefined: unknown, so the table is
 * rebuilt whole) to `next` (undefined: no filter, no table).
 */
export function routerChainsScript(prev: RouterFilters | undefined, next: RouterFilters | undefined): string {
  if (!next) return deleteTableScript(ROUTER_FILTER);
  const lines: string[] = [];
  if (!prev) lines.push(deleteTableScript(ROUTER_FILTER).trimEnd());
  lines.push(`add table ${T} { comment "${OWNER_COMMENT}"; }`);
  // Every set and chain exists before any rule refers to it.
  for (const [name, set] of Object.entries(next.sets ?? {})) lines.push(...setLines(name, prev?.sets?.[name], set));
  for (const name of Object.keys(next.chains)) lines.push(`add chain ${T} ${name}`);
  const version = versionChain(next);
  lines.push(`add chain ${T} ${version}`);
  if (prev && versionChain(prev) !== version) lines.push(`add chain ${T} ${versionChain(prev)}`, `delete chain ${T} ${versionChain(prev)}`);
  for (const [name, rules] of Object.entries(next.chains)) {
    if (prev && same(prev.chains[name], rules)) continue;
    lines.push(`flush chain ${T} ${name}`, ...rules.map((r) => `add rule ${T} ${name} ${r}`));
  }
  const was = baseRules(prev);
  const now = baseRules(next);
  for (const c of ROUTER_FILTER.baseChains) {
    if (prev && same(was[c.name], now[c.name])) continue;
    lines.push(
      `add chain ${T} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`,
      `flush chain ${T} ${c.name}`,
      ...(now[c.name] ?? []).map((r) => `add rule ${T} ${c.name} ${r}`),
    );
  }
  // Flushed first, all of them: a removed chain may jump to another removed one.
  const gone = Object.keys(prev?.chains ?? {}).filter((name) => !(name in next.chains));
  lines.push(...gone.map((name) => `flush chain ${T} ${name}`), ...gone.map((name) => `delete chain ${T} ${name}`));
  // Then the sets no rule refers to any more.
  for (const name of Object.keys(prev?.sets ?? {})) if (!next.sets?.[name]) lines.push(`delete set ${T} ${name}`);
  return lines.join('\n') + '\n';
}

/**
 * A full apply (ensureRouter): nothing when the table holds the version chain of `next` and every chain of it, else
 * the table rebuilt whole; no table without filters.
 */
export async function ensureRouterChains(nsPath: string, next: RouterFilters | undefined, context: string): Promise<void> {
  if (next) {
    const listing = await nftQuery(nsPath, `list chains ${ROUTER_FILTER.family}`, 'nft').catch(() => '');
    const have = new Set<string>();
    let ours = false;
    for (const line of listing.split('\n')) {
      const table = /^table (\S+) (\S+) \{/.exec(line);
      if (table) ours = table[2] === ROUTER_FILTER.name;
      const chain = /^\s+chain (\S+) \{/.exec(line);
      if (chain && ours) have.add(chain[1]!);
    }
    const want = [versionChain(next), ...Object.keys(next.chains), ...ROUTER_FILTER.baseChains.map((c) => c.name)];
    if (want.every((n) => have.has(n))) return;
  }
  await nftApply(nsPath, routerChainsScript(undefined, next), context);
}

/** Apply a router's chains in its namespace `nsPath` (see routerChainsScript). */
export function setRouterChains(
  nsPath: string,
  prev: RouterFilters | undefined,
  next: RouterFilters | undefined,
  context: string,
): Promise<void> {
  return nftApply(nsPath, routerChainsScript(prev, next), context);
}
