// Rule-level edits of compiled chains: when a chain we wrote changes by a few rules, the kernel gets only the
// difference — the removed rules deleted by handle, the new ones inserted before the handle of the rule that follows
// them — in one nfnetlink batch (one transaction: no packet sees half of it), instead of `flush chain` and every rule
// again (a one-rule change to a 10,000-rule chain cost ~190 ms, bench/policy-reference.ts).
//
// Full rewrites go the same way when every rule has a netlink form (rewriteChains: one batch, flush and every rule),
// else through libnftables.
//
// What we last wrote is remembered per namespace and chain: each rule's text and kernel handle, and the ruleset
// generation of the commit that wrote it. Handles come from the kernel's echo of an edit or a netlink rewrite
// (NLM_F_ECHO), or, after a full rewrite through libnftables (whose handles we do not see), from a dump of the chain
// at its first edit, taken only if the dumped comments are those of the rules we wrote. Before an edit, the
// generation is compared: if anyone (any tool, or a libnftables commit of ours; our nfnetlink commits that do not
// name the chain are known as ours by their generation, own-commits.ts) committed since, the chain's rule handles
// are dumped and must be exactly ours (handles are unique in a table and every changed rule gets a new one).
// Otherwise — drift, no record (agent restart), a large diff, a rule the netlink encoder does not know, new sets —
// the chain is rewritten whole, as before; a failed edit batch (e.g. ENOENT: a handle vanished between the check and
// the commit) too.
import { chainName, type CompiledChain } from '../../policy/compile.js';
import { diffRules } from './rule-diff.js';
import {
  BatchWriter,
  NLM_F_ECHO,
  chainExists,
  chainRuleHandles,
  generation,
  nftBatchEcho,
  nftBatchEchoWritten,
  type BatchMessage,
  type SharedSocket,
} from './nfnetlink.js';
import { NFT_MSG, deleteRule, flushChain, insertRule, newChain, newRule, newTable, ruleHead, ruleNetlink } from './rule-netlink.js';
import { onOwnCommit, ownCommit } from './own-commits.js';
import { HOST_BRIDGE } from './tables.js';

interface Written {
  /** The rule texts of the chain, in order. */
  rules: readonly string[];
  /** Their kernel handles, once known (undefined after a full rewrite until the first edit reads them). */
  handles: bigint[] | undefined;
  /** The generation our last commit of the chain made; -1 when unknown (every check dumps). */
  generation: number;
  /** The sets the rules look up (an edit may not need a set the chain did not have). */
  sets: ReadonlySet<string>;
}

const written = new Map<string, Written>();
const key = (netns: string | undefined, chain: string): string => `${netns ?? ''}\0${chain}`;

// Another commit of ours (a plug's batch, set elements, an edit of another chain) that made generation g right
// after the one a record holds (g - 1) proves nobody else committed in between: the record stays trusted at g,
// unless that commit may have changed its chain (then the next edit checks by a dump).
onOwnCommit({
  interested: (netns) => {
    const prefix = `${netns ?? ''}\0`;
    for (const k of written.keys()) if (k.startsWith(prefix)) return true;
    return false;
  },
  committed: (netns, gen, touches) => {
    const prefix = `${netns ?? ''}\0`;
    for (const [k, w] of written) {
      if (!k.startsWith(prefix) || w.generation === gen) continue;
      if (touches(k.slice(prefix.length))) w.generation = -1;
      else if (w.generation === gen - 1) w.generation = gen;
    }
  },
});

/** An edit is worth it below this many deletions plus insertions (and a quarter of the chain). */
export const MAX_EDITS = 256;
/** Chains shorter than this are rewritten whole: the rewrite is as cheap as a check. */
export const MIN_EDIT_RULES = 16;

/** Counters of what editChains did, for tests and benchmarks (read before and after). */
export const chainEditCounter = { edited: 0, rewritten: 0, dumped: 0, rewrittenByNetlink: 0 };

const commentOf = (text: string): string => /comment "([^"]*)"\s*$/.exec(text)?.[1] ?? '';

/** Forget what we wrote to `chain` (it was removed); the next write of it is a full one. */
export function forgetChain(netns: string | undefined, chain: string): void {
  written.delete(key(netns, chain));
}

/** Forget every chain of a namespace (its table was removed). */
export function forgetNamespace(netns: string | undefined): void {
  const prefix = `${netns ?? ''}\0`;
  for (const k of written.keys()) if (k.startsWith(prefix)) written.delete(k);
}

/**
 * Remember that `chains` were just written whole (flush and every rule) in `netns`. Handles are not known yet: the
 * first edit reads them.
 */
export function recordRewrite(netns: string | undefined, chains: readonly CompiledChain[]): void {
  for (const c of chains) record(netns, c, undefined, -1);
}

function record(netns: string | undefined, c: CompiledChain, handles: bigint[] | undefined, gen: number): void {
  if (c.rules.length < MIN_EDIT_RULES) written.delete(key(netns, c.name));
  else
    written.set(key(netns, c.name), { rules: c.rules, handles, generation: handles ? gen : -1, sets: new Set(c.sets.map((s) => s.name)) });
}

/** The handles of our record of a chain if the kernel's chain is exactly what we wrote, else undefined. */
function verifiedHandles(netns: string | undefined, w: Written, name: string, gen: number, via?: SharedSocket): bigint[] | undefined {
  if (w.handles && w.generation === gen) return w.handles;
  chainEditCounter.dumped++;
  const now = chainRuleHandles(netns, HOST_BRIDGE.family, HOST_BRIDGE.name, name, via);
  if (now.length !== w.rules.length) return undefined;
  if (w.handles) return now.every((r, i) => r.handle === w.handles![i]) ? w.handles : undefined;
  // First edit after a full rewrite: the rules must carry our comments in our order.
  return now.every((r, i) => r.comment === commentOf(w.rules[i]!)) ? now.map((r) => r.handle) : undefined;
}

interface Plan {
  chain: CompiledChain;
  messages: BatchMessage[];
  /** The new chain's handles, undefined where the rule is inserted (from the echo, by message index). */
  handles: (bigint | undefined)[];
  /** For each inserted rule: its index in the new chain and its message's index in the chain's messages. */
  echoes: [number, number][];
}

/** The edit of one chain, or undefined when it must be rewritten whole. */
function planEdit(netns: string | undefined, c: CompiledChain, gen: () => number, via?: SharedSocket): Plan | undefined {
  const w = written.get(key(netns, c.name));
  if (!w || c.rules.length < MIN_EDIT_RULES) return undefined;
  if (c.sets.some((s) => !w.sets.has(s.name))) return undefined;
  const diff = diffRules(w.rules, c.rules, Math.min(MAX_EDITS, Math.max(8, c.rules.length >> 2)));
  if (!diff) return undefined;
  const handles = verifiedHandles(netns, w, c.name, gen(), via);
  if (!handles) return undefined;
  const messages: BatchMessage[] = diff.deleted.map((i) => deleteRule(c.name, handles[i]!));
  const next: (bigint | undefined)[] = new Array<bigint | undefined>(c.rules.length);
  // The kept rule that follows each new index: inserted rules go just before it (or at the end).
  const anchorAfter: (bigint | undefined)[] = new Array<bigint | undefined>(c.rules.length + 1);
  for (let n = 0; n < c.rules.length; n++) if (diff.oldOf[n]! >= 0) next[n] = handles[diff.oldOf[n]!];
  for (let i = c.rules.length - 1; i >= 0; i--) anchorAfter[i] = next[i] ?? anchorAfter[i + 1];
  const echoes: [number, number][] = [];
  for (const i of diff.inserted) {
    const nl = ruleNetlink(c.rules[i]!);
    if (!nl) return undefined;
    messages.push(...(nl.sets ?? []));
    echoes.push([i, messages.length]);
    messages.push(insertRule(c.name, nl, anchorAfter[i + 1]));
  }
  return { chain: c, messages, handles: next, echoes };
}

/**
 * Apply `chains` as rule-level edits where each is a small change of what we last wrote and the kernel still holds
 * exactly that: one nfnetlink transaction for all of them. Returns false (and changes nothing) when any chain needs
 * a full rewrite: the caller then rewrites them all in its own transaction, so a change stays one transaction.
 */
export async function editChains(netns: string | undefined, chains: readonly CompiledChain[], via?: SharedSocket): Promise<boolean> {
  if (chains.length === 0) return false;
  let g: number | undefined;
  const gen = (): number => (g ??= generation(netns, via));
  const plans: Plan[] = [];
  for (const c of chains) {
    const p = planEdit(netns, c, gen, via);
    if (!p) return false;
    plans.push(p);
  }
  const messages = plans.flatMap((p) => p.messages);
  if (messages.length === 0) {
    // Nothing differs, and the kernel holds what we wrote (checked, as of generation gen()): nothing to commit.
    for (const p of plans)
      written.set(key(netns, p.chain.name), {
        ...written.get(key(netns, p.chain.name))!,
        handles: p.handles as bigint[],
        generation: gen(),
      });
    chainEditCounter.edited += chains.length;
    return true;
  }
  let echo;
  try {
    echo = await nftBatchEcho(netns, messages, `could not edit chains ${chains.map((c) => c.chainId).join(', ')}`, undefined, via);
  } catch {
    // Nothing was applied (one transaction); the full rewrite decides.
    for (const c of chains) forgetChain(netns, c.name);
    return false;
  }
  let base = 0;
  const edited = new Set(plans.map((p) => p.chain.name));
  for (const p of plans) {
    for (const [i, m] of p.echoes) p.handles[i] = echo.handles.get(base + m);
    base += p.messages.length;
    const complete = p.handles.every((h) => h !== undefined);
    written.set(key(netns, p.chain.name), {
      rules: p.chain.rules,
      handles: complete ? (p.handles as bigint[]) : undefined,
      generation: complete ? echo.generation : -1,
      sets: new Set(p.chain.sets.map((s) => s.name)),
    });
  }
  ownCommit(netns, echo.generation, (chain) => edited.has(chain));
  chainEditCounter.edited += chains.length;
  return true;
}

/**
 * Write `chains` whole (each flushed, then every rule appended) as one nfnetlink batch, one transaction, when every
 * rule has a netlink form and no chain needs sets: libnftables' parse and evaluation of 10,000 rules cost ~100 ms
 * more than the kernel's work. The table and any missing chain (and jump target) are created in the batch; an
 * existing chain is not added again (that makes the kernel's commit wait, README). Returns false, having applied
 * nothing, when the batch cannot be built or the kernel refuses it: the caller then writes the chains through
 * libnftables.
 *
 * The handles of the rules written are kept, so the next edit needs no dump. Only the first and last rule of each
 * chain ask for an echo (an echo of every rule cost the kernel ~30 ms at 10,000): the kernel gives a table's new
 * rules and sets consecutive handles in batch order (one counter per table, under the commit mutex), so the rules
 * in between are numbered from the first, and the last one's echo checks it; if it does not match, the handles
 * stay unknown and the first edit reads them, as after a libnftables rewrite.
 */
export async function rewriteChains(netns: string | undefined, chains: readonly CompiledChain[], via?: SharedSocket): Promise<boolean> {
  if (chains.length === 0 || chains.some((c) => c.sets.length > 0 || c.name !== chainName(c.chainId))) return false;
  const names = new Set(chains.flatMap((c) => [c.name, ...c.jumps.map(chainName)]));
  const create = [...names].filter((n) => !chainExists(netns, HOST_BRIDGE.family, HOST_BRIDGE.name, n, via)).map(newChain);
  const context = `could not install chains ${chains.map((c) => c.chainId).join(', ')}`;
  // Each rule is encoded and written into the batch at once (BatchWriter: nothing per rule outlives its turn).
  // The kernel echoes the commit's generation when the batch's first message asks for an echo (kernel 6.18; it
  // reads the flags of the message after the batch begin): the table's, which is no more.
  let size = 256;
  for (const c of chains) size += 192 * c.rules.length;
  const w = new BatchWriter(NLM_F_ECHO, size);
  w.add(newTable());
  for (const m of create) w.add(m, false);
  /** Per chain: the message index of its first and last rule, and each rule's handle offset from the first one. */
  const placed: { first: number; last: number; offset: number[] }[] = [];
  for (const c of chains) {
    const kept = c.rules.length >= MIN_EDIT_RULES;
    w.add(flushChain(c.name), false);
    let first = -1;
    let last = -1;
    let handles = 0;
    const offset: number[] = [];
    const where = ruleHead(c.name);
    for (let i = 0; i < c.rules.length; i++) {
      const nl = ruleNetlink(c.rules[i]!);
      if (!nl) return false;
      for (const m of nl.sets ?? []) {
        // An anonymous set takes a handle from the same counter as the rules.
        if (m.type === NFT_MSG.NEWSET && first >= 0) handles++;
        w.add(m, false);
      }
      if (first >= 0) handles++;
      offset.push(handles);
      const at = w.add(newRule(c.name, nl, where), kept && (i === 0 || i === c.rules.length - 1));
      if (first < 0) first = at;
      last = at;
    }
    placed.push({ first, last, offset });
  }
  let reply: Awaited<ReturnType<typeof nftBatchEchoWritten>>;
  try {
    reply = await nftBatchEchoWritten(netns, w, context, via);
  } catch {
    return false;
  }
  chains.forEach((c, k) => {
    const p = placed[k]!;
    let handles: bigint[] | undefined;
    const first = reply.handles.get(p.first);
    const last = reply.handles.get(p.last);
    if (first !== undefined && last === first + BigInt(p.offset[p.offset.length - 1]!)) handles = p.offset.map((o) => first + BigInt(o));
    record(netns, c, handles, handles ? reply.generation : -1);
  });
  ownCommit(netns, reply.generation, (chain) => names.has(chain));
  chainEditCounter.rewrittenByNetlink += chains.length;
  return true;
}
