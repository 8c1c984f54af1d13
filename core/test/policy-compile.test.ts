// The compiler's rule texts (no kernel): attribution on every rule, MidoNet's action mapping, disjoint expansion
// of conditions nft cannot say in one expression, and refusal of what it cannot compile. The kernel's agreement
// with the simulator is policy-kernel.test.ts.
import test from 'ava';
import { CompileError, compileChain, type CompileContext } from '../policy/compile.js';
import { PROTO_ICMP, PROTO_TCP, type PolicyCondition, type PolicyRule } from '../policy/simulate.js';
import { chainsScript } from '../datapath/nft/policy.js';

const ctx: CompileContext = { macOf: (id) => (id === 'p1' ? '02:AA:00:00:00:01' : undefined), chainExists: (id) => id !== 'gone' };
let n = 0;
const rule = (action: PolicyRule['action'], condition: PolicyCondition = {}, extra: Partial<PolicyRule> = {}): PolicyRule => ({
  id: `r${++n}`,
  chainId: 'c',
  position: n,
  action,
  condition,
  ...extra,
});

test('every rule carries a counter and its id; actions map as MidoNet on a bridge', (t) => {
  const rules = [
    rule('accept'),
    rule('drop'),
    rule('reject'),
    rule('return'),
    rule('continue'),
    rule('jump', {}, { jumpChainId: 'other' }),
  ];
  const out = compileChain('c', rules, ctx);
  t.is(out.name, 'c-c');
  t.deepEqual(out.rules, [
    `counter accept comment "r=${rules[0]!.id}"`,
    `counter drop comment "r=${rules[1]!.id}"`,
    `counter drop comment "r=${rules[2]!.id}"`, // reject on a bridge is a drop
    `counter return comment "r=${rules[3]!.id}"`,
    `counter comment "r=${rules[4]!.id}"`,
    `counter jump c-other comment "r=${rules[5]!.id}"`,
  ]);
  t.deepEqual(out.jumps, ['other']);
  t.regex(chainsScript([out]), /add chain bridge bees c-other\n/, 'the jump target exists in the same transaction');
});

test('rules are ordered by position; jumps to missing chains, rev NAT and nonheader rules compile away', (t) => {
  const late = rule('drop');
  const early = { ...rule('accept'), position: late.position - 1 };
  const out = compileChain(
    'c',
    [late, early, rule('jump', {}, { jumpChainId: 'gone' }), rule('rev_dnat'), rule('accept', { fragmentPolicy: 'nonheader' })],
    ctx,
  );
  t.deepEqual(out.rules, [`counter accept comment "r=${early.id}"`, `counter drop comment "r=${late.id}"`]);
});

test('inverted addresses also match non-IP frames, as two disjoint rules; contradictions are pruned', (t) => {
  const r1 = rule('drop', { nwSrc: '10.0.0.0/24', invNwSrc: true });
  t.deepEqual(compileChain('c', [r1], ctx).rules, [
    `ether type != ip counter drop comment "r=${r1.id}"`,
    `ip saddr != 10.0.0.0/24 counter drop comment "r=${r1.id}"`,
  ]);
  // ICMP type needs IPv4: the "not IPv4" alternative cannot hold with it.
  const r2 = rule('accept', { nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 }, nwSrc: '10.0.0.0/24', invNwSrc: true });
  t.is(compileChain('c', [r2], ctx).rules.length, 1);
  const r3 = rule('accept', { ipAddrGroupSrc: 'g', ethertype: 0x0800 });
  t.deepEqual(compileChain('c', [r3], ctx).rules, [`ether type 0x800 ip saddr @iag-g-v4 counter accept comment "r=${r3.id}"`]);
  const r4 = rule('drop', { ipAddrGroupDst: 'g', invIpAddrGroupDst: true });
  t.is(compileChain('c', [r4], ctx).rules.length, 3);
});

test('ports by MAC, groups as sets, return flow as the mark bit, ICMP type/code from the port slots', (t) => {
  const r = rule('accept', { inPortIds: ['p1'], portGroupDst: 'pg', matchReturnFlow: true });
  const out = compileChain('c', [r], ctx);
  t.deepEqual(out.rules, [
    `meta mark & 0x80000000 == 0x80000000 ether daddr @pg-pg ether saddr 02:aa:00:00:00:01 counter accept comment "r=${r.id}"`,
  ]);
  t.deepEqual(out.sets, [{ name: 'pg-pg', type: 'ether_addr' }]);
  const f = rule('accept', { matchForwardFlow: true, nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 }, tpDst: { start: 0, end: 0 } });
  t.deepEqual(compileChain('c', [f], ctx).rules, [
    `meta mark & 0x80000000 == 0 meta l4proto 1 icmp type 8 icmp code 0 counter accept comment "r=${f.id}"`,
  ]);
  const p = rule('accept', { nwProto: PROTO_TCP, tpDst: { start: 80, end: 90 }, invTpDst: true });
  t.deepEqual(compileChain('c', [p], ctx).rules, [`meta l4proto 6 th dport != 80-90 counter accept comment "r=${p.id}"`]);
});

test('of two inverted compares on adjacent header fields, the second is a one-value range nft does not merge', (t) => {
  const text = (c: PolicyCondition): string[] => compileChain('c', [rule('drop', c)], ctx).rules.map((x) => x.replace(/ counter.*/, ''));
  const A = '02:00:00:00:00:0a';
  t.deepEqual(text({ inPortIds: ['p1'], invInPorts: true, ethertype: 0x86dd, invEthertype: true }), [
    'ether saddr != 02:aa:00:00:00:01 ether type != 0x86dd-0x86dd',
  ]);
  t.deepEqual(text({ dlSrc: A, invDlSrc: true, nwSrc: '10.0.0.0/8', invNwSrc: true }), [
    `ether saddr != ${A} ether type != 0x800-0x800`,
    `ether saddr != ${A} ip saddr != 10.0.0.0/8`,
  ]);
  // daddr and type are not adjacent: only saddr, between them, becomes a range.
  t.deepEqual(text({ outPortIds: ['p1'], invOutPorts: true, ethertype: 0x800, invEthertype: true, dlSrc: A, invDlSrc: true }), [
    `ether daddr != 02:aa:00:00:00:01 ether type != 0x800 ether saddr != ${A}-${A}`,
  ]);
  t.deepEqual(text({ nwProto: PROTO_TCP, tpSrc: { start: 1, end: 1 }, invTpSrc: true, tpDst: { start: 2, end: 2 }, invTpDst: true }), [
    'meta l4proto 6 th sport != 1 th dport != 2-2',
  ]);
  // Alone, or next to a non-inverted compare (nft merges only equal operators), a compare stays a compare.
  t.deepEqual(text({ dlSrc: A, invDlSrc: true, ethertype: 0x800 }), [`ether type 0x800 ether saddr != ${A}`]);
});

test('what cannot be compiled is refused, naming the rule', (t) => {
  const bad = [rule('accept', { tpDst: { start: 1, end: 2 } }), rule('accept', { inPortIds: ['unknown'] }), rule('dnat')];
  for (const b of bad) t.throws(() => compileChain('c', [b], ctx), { instanceOf: CompileError, message: new RegExp(`rule ${b.id}`) });
});
