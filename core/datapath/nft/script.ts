// Building nft scripts for a table of the registry (tables.ts) without spelling its name, and the operations that
// every feature shares: install base chains only when missing, replace or remove one device's chain of one stage,
// drop a table only when it is provably ours.
import { createHash } from 'node:crypto';
import { isGone } from '../exec.js';
import { nftApply, nftQuery } from './apply.js';
import { chainRuleComments } from './nfnetlink.js';
import { OWNER_COMMENT, STAGES, type BaseChain, type Stage, type Table } from './tables.js';

/** `<family> <name>`, as nft commands name the table. */
export const ref = (t: Table): string => `${t.family} ${t.name}`;

/** The table (with its ownership comment) and the given maps; adding what exists changes nothing. */
export function header(t: Table, maps: readonly string[] = []): string {
  const lines = [`add table ${ref(t)} { comment "${OWNER_COMMENT}"; }`];
  for (const m of maps) {
    const type = t.maps[m];
    if (!type) throw new Error(`nft: table ${ref(t)} declares no map ${m}`);
    lines.push(`add map ${ref(t)} ${m} { type ${type}; }`);
  }
  return lines.join('\n') + '\n';
}

export function baseChain(t: Table, name: string): BaseChain {
  const c = t.baseChains.find((b) => b.name === name);
  if (!c) throw new Error(`nft: table ${ref(t)} declares no base chain ${name}`);
  return c;
}

/**
 * Each fixed rule carries a comment made from its own text, so a listing tells whether exactly these rules are in
 * place whatever form nft prints them in.
 */
const mark = (rule: string): string => `bees:${createHash('sha1').update(rule).digest('hex').slice(0, 8)}`;

/**
 * Create base chain `name` and (re)write its rules: `rules` for a chain a feature owns, else its declared ones.
 * Flushing a chain costs an RCU grace period in the kernel, so fixed chains go through ensureBaseChain.
 */
export function baseChainScript(t: Table, name: string, rules?: readonly string[]): string {
  const c = baseChain(t, name);
  const lines = [
    `add chain ${ref(t)} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`,
    // `add rule` is not idempotent: the chain is rebuilt.
    `flush chain ${ref(t)} ${c.name}`,
    ...(rules ?? c.rules ?? []).map((r) => `add rule ${ref(t)} ${c.name} ${r}${rules ? '' : ` comment "${mark(r)}"`}`),
  ];
  return header(t, c.maps) + lines.join('\n') + '\n';
}

/** Whether a `list chain` output holds every declared rule of `c`. */
export function baseChainComplete(c: BaseChain, listing: string): boolean {
  return (c.rules ?? []).every((r) => listing.includes(`comment "${mark(r)}"`));
}

/**
 * Install a base chain with its declared rules in `netns` unless it is already complete. Checked on every use (a
 * listing costs well under a millisecond) rather than remembered, so a table removed behind our back is rebuilt
 * before a device relies on it.
 */
export async function ensureBaseChain(netns: string | undefined, t: Table, name: string): Promise<void> {
  const c = baseChain(t, name);
  const listing = await nftQuery(netns, `list chain ${ref(t)} ${c.name}`, 'nft').catch(() => '');
  if (baseChainComplete(c, listing)) return;
  await nftApply(netns, baseChainScript(t, name), `could not install chain ${c.name} of table ${ref(t)}`);
}

/**
 * ensureBaseChain for several base chains at once (an attach needs the port-security chain and its policy
 * stages): their rules read by one kernel rule dump each (nfnetlink.ts; `nft list chain` would first read every
 * set element of the table, ~300 ms with a 10,000-address group installed), and those missing or incomplete
 * installed in one transaction.
 */
export async function ensureBaseChains(netns: string | undefined, chains: readonly { table: Table; name: string }[]): Promise<void> {
  const seen = new Map(chains.map((c) => [`${ref(c.table)} ${c.name}`, c]));
  const missing = [...seen.values()].filter((c) => {
    const comments = chainRuleComments(netns, c.table.family, c.table.name, c.name);
    return !baseChainComplete(baseChain(c.table, c.name), comments.map((x) => `comment "${x}"`).join('\n'));
  });
  if (missing.length === 0) return;
  await nftApply(
    netns,
    missing.map((c) => baseChainScript(c.table, c.name)).join(''),
    `could not install chains ${missing.map((c) => c.name).join(', ')}`,
  );
}

/** Name of a device's chain in a stage. */
export const stageChain = (s: Stage, ifname: string): string => s.chain(ifname);

/** The map and the base chain a stage's scripts refer to (creating them adds nothing that exists). */
const stageHeader = (s: Stage): string => header(s.table, baseChain(s.table, s.base).maps);

/**
 * Install or replace one device's chain of one stage: its rules and its map element, one transaction. Only this
 * stage's chain is flushed; the device's chains of other stages stay as they are.
 */
export function stageChainScript(s: Stage, ifname: string, rules: readonly string[]): string {
  const t = ref(s.table);
  const c = stageChain(s, ifname);
  return (
    stageHeader(s) +
    [
      `add chain ${t} ${c}`,
      `flush chain ${t} ${c}`,
      ...rules.map((r) => `add rule ${t} ${c} ${r}`),
      // The element given with its map, not by `add element`: libnftables runs an element command only after
      // dumping every interval set of the ruleset (a big address group made each plug ~300 ms slower).
      `add map ${t} ${s.map} { type ${s.table.maps[s.map]}; elements = { "${ifname}" : jump ${c} }; }`,
      '',
    ].join('\n')
  );
}

/** Remove one device's chain of one stage and its map element; a no-op when absent (add-then-delete). */
export function removeStageChainScript(s: Stage, ifname: string): string {
  const t = ref(s.table);
  const c = stageChain(s, ifname);
  return (
    stageHeader(s) +
    [
      `add chain ${t} ${c}`,
      `add element ${t} ${s.map} { "${ifname}" : jump ${c} }`,
      `delete element ${t} ${s.map} { "${ifname}" }`,
      `flush chain ${t} ${c}`,
      `delete chain ${t} ${c}`,
      '',
    ].join('\n')
  );
}

/** Install (or replace) a device's chain of a stage, its base chain first when missing. */
export async function applyStageChain(
  netns: string | undefined,
  s: Stage,
  ifname: string,
  rules: readonly string[],
  context: string,
): Promise<void> {
  await ensureBaseChain(netns, s.table, s.base);
  await nftApply(netns, stageChainScript(s, ifname, rules), context);
}

/** One device's chain of a stage as nft lists it, or '' when absent. */
export function listStageChain(netns: string | undefined, s: Stage, ifname: string): Promise<string> {
  return nftQuery(netns, `list chain ${ref(s.table)} ${stageChain(s, ifname)}`, 'nft').catch(() => '');
}

/** Chain names per table (`<family> <name>`) in a `list chains` output. */
function chainsByTable(listing: string): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  let current: Set<string> | undefined;
  for (const line of listing.split('\n')) {
    const table = /^table (\S+ \S+) \{/.exec(line);
    if (table) out.set(table[1]!, (current = new Set()));
    const chain = /^\s+chain (\S+) \{/.exec(line);
    if (chain && current) current.add(chain[1]!.replace(/^"|"$/g, ''));
  }
  return out;
}

/**
 * Remove every stage chain (and map element) that any feature holds for these devices, in one transaction: what
 * a port or tunnel leaves behind when it goes, without the caller knowing which features it had. One `list chains`
 * tells which exist, so nothing is created to be deleted, and a namespace without our tables costs no transaction.
 */
export async function forgetDevices(netns: string | undefined, ifnames: readonly string[], context: string): Promise<void> {
  if (ifnames.length === 0) return;
  const families = [...new Set(STAGES.map((s) => s.table.family))];
  const scripts: string[] = [];
  for (const family of families) {
    const listing = await freshChainListing(netns, family);
    const chains = chainsByTable(listing);
    for (const s of STAGES.filter((x) => x.table.family === family)) {
      const have = chains.get(ref(s.table));
      for (const d of ifnames) if (have?.has(stageChain(s, d))) scripts.push(removeStageChainScript(s, d));
    }
  }
  await nftApply(netns, scripts.join(''), context);
}

interface Listing {
  running: Promise<string>;
  /** The listing that starts once `running` is done, shared by every caller that arrived while it ran. */
  next?: Promise<string>;
}
const listings = new Map<string, Listing>();

/**
 * `list chains FAMILY` in `netns` ('' when it fails), started after this call: twenty unplugs at once each asked
 * for one, twenty libnftables runs for the same answer. Callers arriving while a listing runs share the next one
 * (a listing already under way may predate a chain made just before the call, so it is never joined).
 */
function freshChainListing(netns: string | undefined, family: string): Promise<string> {
  const key = `${netns ?? ''}\0${family}`;
  const current = listings.get(key);
  if (!current) return startListing(key, netns, family);
  current.next ??= current.running.then(() => startListing(key, netns, family));
  return current.next;
}

function startListing(key: string, netns: string | undefined, family: string): Promise<string> {
  const state: Listing = { running: nftQuery(netns, `list chains ${family}`, 'nft').catch(() => '') };
  listings.set(key, state);
  // Runs before `next` starts (registered first): the entry goes only when nobody waits for another listing.
  void state.running.then(() => {
    if (listings.get(key) === state && !state.next) listings.delete(key);
  });
  return state.running;
}

/**
 * Delete table `t` without asking whose it is (a no-op when absent): only for a namespace that is wholly ours (a
 * router instance's), where any table of that name is one we made, with or without the comment.
 */
export const deleteTableScript = (t: Table): string => `add table ${ref(t)}\ndelete table ${ref(t)}\n`;

/** Whether a `list table` output is of a table we created: its comment is ours. */
export function ownedListing(listing: string): boolean {
  const head = listing.split('\n').slice(0, 3).join('\n');
  return head.includes(`comment "${OWNER_COMMENT}"`);
}

/**
 * Delete table `t` in `netns` if it exists and carries our ownership comment; a table of that name without it is
 * someone else's and stays. Resolves with what happened.
 */
export async function dropTable(netns: string | undefined, t: Table): Promise<'deleted' | 'absent' | 'foreign'> {
  let listing: string;
  try {
    listing = await nftQuery(netns, `list table ${ref(t)}`, `could not read table ${ref(t)}`);
  } catch (e) {
    if (isGone(e)) return 'absent';
    throw e;
  }
  if (!ownedListing(listing)) return 'foreign';
  await nftApply(netns, `delete table ${ref(t)}\n`, `could not delete table ${ref(t)}`);
  return 'deleted';
}
