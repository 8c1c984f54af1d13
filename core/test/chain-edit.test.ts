// Rule-level chain edits (core/datapath/nft/chain-edit.ts): after any sequence of random changes applied as edits,
// the kernel's chain is exactly what a full rewrite of the same rules gives (nft's JSON listing, handles aside);
// each edit is one transaction; a chain someone else changed (drift) or an agent that forgot what it wrote gets the
// full rewrite, which removes the foreign rule. And the diff itself, on random sequences.
import test from 'ava';
import { nftApply } from '../datapath/nft/index.js';
import { nftTransactionCounter } from '../datapath/nft/apply.js';
import { chainEditCounter, forgetNamespace, rewriteChains } from '../datapath/nft/chain-edit.js';
import { nftBatch, nftBatchCounter } from '../datapath/nft/nfnetlink.js';
import { newChain, newRule, ruleNetlink } from '../datapath/nft/rule-netlink.js';
import { applyChains, applyPolicyChange, chainsScript } from '../datapath/nft/policy.js';
import { diffRules } from '../datapath/nft/rule-diff.js';
import { DEFAULT_DROP_LOG, compileChain, type CompileContext } from '../policy/compile.js';
import { ETH_IPV4, PROTO_TCP, PROTO_UDP, type PolicyCondition, type PolicyRule } from '../policy/simulate.js';
import { cluster, listedRules } from './datapath-helpers.js';

const CTX: CompileContext = { macOf: () => undefined, chainExists: () => true };

/** A small deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) % n;
  };
}

test('diffRules: applying the diff to the old list gives the new one, within the bound', (t) => {
  const r = rng(7);
  for (let round = 0; round < 400; round++) {
    const old = Array.from({ length: r(40) }, () => `x${r(30)}`);
    const next = [...old];
    for (let e = r(6); e > 0; e--) {
      if (next.length && r(2)) next.splice(r(next.length), 1);
      else next.splice(r(next.length + 1), 0, `y${r(30)}`);
    }
    const d = diffRules(old, next, 1000)!;
    t.truthy(d);
    // Kept rules match, in increasing order; deleting and inserting the rest turns old into next.
    const kept = [...d.oldOf].map((o, n) => [o, n] as const).filter(([o]) => o >= 0);
    for (const [o, n] of kept) t.is(old[o], next[n]);
    t.deepEqual(
      kept.map(([o]) => o),
      kept.map(([o]) => o).sort((a, b) => a - b),
    );
    t.deepEqual(
      old.filter((_, i) => !d.deleted.includes(i)),
      next.filter((_, i) => !d.inserted.includes(i)),
    );
    t.is(kept.length + d.deleted.length, old.length);
    t.is(kept.length + d.inserted.length, next.length);
    t.true(d.deleted.length + d.inserted.length <= 2 * 6, `round ${round}: no longer than the edits made`);
  }
  t.is(diffRules(['a', 'b', 'c'], ['c', 'b', 'a'], 1), undefined, 'beyond the bound');
  t.deepEqual(diffRules(['a', 'b'], ['a', 'x', 'b'], 2)?.inserted, [1]);
});

test('compileChain reuses the texts of a rule only for the same rule object, condition and logging', (t) => {
  const r: PolicyRule = {
    id: 'c1',
    chainId: 'k',
    position: 1,
    action: 'drop',
    condition: { nwProto: PROTO_TCP, tpDst: { start: 22, end: 22 } },
  };
  const plain = compileChain('k', [r], CTX).rules;
  t.is(compileChain('k', [r], CTX).rules[0], plain[0], 'the same string again');
  const logged = compileChain('k', [r], { ...CTX, dropLog: DEFAULT_DROP_LOG }).rules;
  t.is(logged.length, 2, 'the drop log is not taken from the cache');
  t.deepEqual(compileChain('k', [{ ...r, condition: { ...r.condition, tpDst: { start: 23, end: 23 } } }], CTX).rules, [
    plain[0]!.replace('22', '23'),
  ]);
  // A port-id match depends on macOf: never cached.
  const p: PolicyRule = { ...r, id: 'c2', condition: { inPortIds: ['a'] } };
  const mac1 = compileChain('k', [p], { ...CTX, macOf: () => '02:00:00:00:00:01' }).rules;
  const mac2 = compileChain('k', [p], { ...CTX, macOf: () => '02:00:00:00:00:02' }).rules;
  t.notDeepEqual(mac1, mac2);
});

const CONDITIONS: ((i: number) => PolicyCondition)[] = [
  (i) => ({ nwProto: PROTO_TCP, tpDst: { start: 20000 + i, end: 20000 + i } }),
  (i) => ({ nwProto: PROTO_UDP, tpSrc: { start: 1000 + i, end: 2000 + i } }),
  (i) => ({ ethertype: ETH_IPV4, nwSrc: `10.${i % 250}.0.0/16` }),
  (i) => ({ nwDst: `fd00:${i.toString(16)}::/48`, invNwDst: true }),
  (i) => ({ dlSrc: `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}` }),
];
const ACTIONS: PolicyRule['action'][] = ['accept', 'drop', 'return', 'reject'];

test.serial('random edit sequences leave the chain a full rewrite gives, one transaction each; drift rewrites', async (t) => {
  t.timeout(240_000);
  const c = await cluster(t, 1);
  const ns = c.h.hosts[0]!.netns;
  const r = rng(20261202);
  let serial = 0;
  const rule = (): PolicyRule => {
    const i = serial++;
    return {
      id: `e${i}`,
      chainId: 'edit',
      position: 0,
      action: ACTIONS[r(ACTIONS.length)]!,
      condition: CONDITIONS[r(CONDITIONS.length)]!(i),
    };
  };
  let rules: PolicyRule[] = Array.from({ length: 60 }, rule);
  const compiled = () =>
    compileChain(
      'edit',
      rules.map((x, i) => ({ ...x, position: i })),
      CTX,
    );
  /** The same rules written whole into a chain of another name: what the edited chain must list. */
  const reference = async (): Promise<unknown[]> => {
    const ref = {
      ...compileChain(
        'ref',
        rules.map((x, i) => ({ ...x, chainId: 'ref', position: i })),
        CTX,
      ),
    };
    await nftApply(ns, chainsScript([ref]), 'reference chain');
    return listedRules(c.h, ns, ref.name);
  };
  await applyChains(ns, [compiled()]);

  const edited0 = chainEditCounter.edited;
  for (let step = 0; step < 40; step++) {
    for (let e = 1 + r(4); e > 0; e--) {
      const op = r(3);
      if (op === 0 && rules.length > 20) rules.splice(r(rules.length), 1);
      else if (op === 1) rules.splice(r(rules.length + 1), 0, rule());
      else rules[r(rules.length)] = rule(); // a rule changed: same place, new text
    }
    const tx = nftTransactionCounter.count;
    const batches = nftBatchCounter.count;
    await applyChains(ns, [compiled()]);
    t.is(nftTransactionCounter.count, tx, `step ${step}: no libnftables transaction`);
    t.is(nftBatchCounter.count, batches + 1, `step ${step}: one nfnetlink transaction`);
    t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference(), `step ${step}`);
  }
  t.is(chainEditCounter.edited - edited0, 40, 'every step was an edit');

  // Nothing committed since our last edit (the generation it made is still current): no dump to check the chain.
  rules.splice(5, 1);
  await applyChains(ns, [compiled()]);
  const dumped = chainEditCounter.dumped;
  rules.splice(7, 0, rule());
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.dumped, dumped, 'trusted by generation');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // The agent's path: a policy change that carries only the chain is an edit too.
  rules.splice(2, 1, rule());
  const edited = chainEditCounter.edited;
  await applyPolicyChange(ns, { zones: [], sets: [], chains: [compiled()], bindings: [], removeChains: [], removeSets: [] });
  t.is(chainEditCounter.edited, edited + 1, 'applyPolicyChange edits');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // Drift: someone inserts a rule into our chain. The next change rewrites it whole, without theirs.
  await c.h.exec(ns, ['nft', 'insert', 'rule', 'bridge', 'bees', 'c-edit', 'counter', 'comment', '"foreign"']);
  rules.splice(3, 0, rule());
  const rewritten = chainEditCounter.rewritten;
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.rewritten, rewritten + 1, 'a chain someone else changed is rewritten');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // The first edit after a full rewrite reads the handles from the kernel, then edits.
  rules.splice(10, 1);
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.rewritten, rewritten + 1, 'edited after the rewrite');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // Drift by deletion of one of our rules (by handle, as another tool would).
  const listing = await c.h.exec(ns, ['nft', '-a', 'list', 'chain', 'bridge', 'bees', 'c-edit']);
  const handle = /# handle (\d+)/.exec(listing.stdout.split('\n').filter((l) => l.includes('comment'))[5]!)![1]!;
  await c.h.exec(ns, ['nft', 'delete', 'rule', 'bridge', 'bees', 'c-edit', 'handle', handle]);
  rules.push(rule());
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.rewritten, rewritten + 2, 'a deleted rule is drift too');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // An agent that forgot what it wrote (restart) rewrites.
  forgetNamespace(ns);
  rules.splice(0, 1);
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.rewritten, rewritten + 3, 'no record: rewritten');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());

  // A large change is rewritten, not edited.
  rules = Array.from({ length: 60 }, rule);
  await applyChains(ns, [compiled()]);
  t.is(chainEditCounter.rewritten, rewritten + 4, 'a large diff is rewritten');
  t.deepEqual(await listedRules(c.h, ns, 'c-edit'), await reference());
});

test.serial('a full rewrite is one nfnetlink batch: what libnftables writes, handles kept, failure harmless', async (t) => {
  t.timeout(240_000);
  const c = await cluster(t, 1);
  const ns = c.h.hosts[0]!.netns;
  const r = rng(20261203);
  // Port-id matches of two ports make anonymous sets, which take handles between the rules.
  const ctx: CompileContext = { ...CTX, macOf: (id) => (id === 'pa' ? '02:00:00:00:00:0a' : '02:00:00:00:00:0b') };
  const make = (i: number): PolicyRule => ({
    id: `b${i}`,
    chainId: 'bulk',
    position: 0,
    action: ACTIONS[r(ACTIONS.length)]!,
    condition: i % 97 === 0 ? { inPortIds: ['pa', 'pb'] } : CONDITIONS[r(CONDITIONS.length)]!(i),
  });
  // 10,000 rules: a batch of ~3 MB, beyond the socket's default send buffer.
  const rules = Array.from({ length: 10_000 }, (_, i) => make(i));
  const compiled = (chainId: string, of = rules) =>
    compileChain(
      chainId,
      of.map((x, i) => ({ ...x, chainId, position: i })),
      ctx,
    );
  /** `listing` is what libnftables writes of `of` (into chain c-bref). */
  const sameAsLibnftables = async (listing: unknown[], of: PolicyRule[], step: string) => {
    await nftApply(ns, chainsScript([compiled('bref', of)]), 'reference chain');
    t.deepEqual(listing, await listedRules(c.h, ns, 'c-bref'), step);
  };

  const tx = nftTransactionCounter.count;
  const batches = nftBatchCounter.count;
  const byNetlink = chainEditCounter.rewrittenByNetlink;
  await applyChains(ns, [compiled('bulk')]);
  t.is(nftTransactionCounter.count, tx, 'no libnftables transaction');
  t.is(nftBatchCounter.count, batches + 1, 'one nfnetlink transaction');
  t.is(chainEditCounter.rewrittenByNetlink, byNetlink + 1);
  const written = [...rules];
  const afterWrite = await listedRules(c.h, ns, 'c-bulk');

  // The next edit knows the handles written and the generation of that commit: no dump.
  const dumped = chainEditCounter.dumped;
  const edited = chainEditCounter.edited;
  rules.splice(5_000, 1);
  rules.splice(10, 0, make(10_001));
  rules.push(make(10_002));
  await applyChains(ns, [compiled('bulk')]);
  t.is(chainEditCounter.edited, edited + 1, 'an edit');
  t.is(chainEditCounter.dumped, dumped, 'no dump of the handles');

  // Another commit of ours through nfnetlink that names another chain (as a plug's batch does): the generation moved
  // by one, through us, so the handles are still trusted.
  await nftBatch(ns, [newChain('c-unrelated')], 'an unrelated chain');
  rules.splice(20, 1);
  await applyChains(ns, [compiled('bulk')]);
  t.is(chainEditCounter.edited, edited + 2, 'an edit');
  t.is(chainEditCounter.dumped, dumped, 'no dump after an unrelated commit of ours');
  // A commit of ours that adds a rule to the chain itself: checked by a dump, found changed, rewritten.
  await nftBatch(ns, [newRule('c-bulk', ruleNetlink('counter comment "stray"')!)], 'a stray rule');
  rules.splice(30, 1);
  const rewritten = chainEditCounter.rewritten;
  await applyChains(ns, [compiled('bulk')]);
  t.is(chainEditCounter.dumped, dumped + 1, 'checked');
  t.is(chainEditCounter.rewritten, rewritten + 1, 'the stray rule is drift');
  const afterEdit = await listedRules(c.h, ns, 'c-bulk');
  await sameAsLibnftables(afterWrite, written, 'the bulk write');
  await sameAsLibnftables(afterEdit, rules, 'the edits after the bulk write');

  // A batch the kernel refuses (its last rule looks up a set that does not exist: ENOENT) leaves the chain as it
  // was, and the caller gets false to try libnftables.
  const before = await listedRules(c.h, ns, 'c-bulk');
  const good = compiled('bulk');
  t.false(await rewriteChains(ns, [{ ...good, rules: [...good.rules.slice(1), 'ether saddr @no-such-set counter drop'] }]), 'refused');
  t.deepEqual(await listedRules(c.h, ns, 'c-bulk'), before, 'the old chain intact');
  await nftApply(ns, 'delete chain bridge bees c-bref\ndelete chain bridge bees c-unrelated\n', 'remove the reference');
});
