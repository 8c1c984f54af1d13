// The policy benchmark's premise: its rule sets spread evenly over the chains, compile to one nft rule each, and
// match no benchmark traffic (iperf3 on 5201, ICMP), so every packet is tested against all of them and passes.
import test from 'ava';
import { compileChain } from '../../core/policy/compile.js';
import { ruleSet } from '../policy.js';

test('a benchmark rule set spreads over its chains, one nft rule each, none matching iperf3 or ICMP', (t) => {
  const { chainIds, rules } = ruleSet('x-', 1000, 100);
  t.is(chainIds.length, 100);
  const ctx = { macOf: () => undefined, chainExists: () => true };
  const compiled = chainIds.map((id) => compileChain(id, rules, ctx));
  t.deepEqual([...new Set(compiled.map((c) => c.rules.length))], [10]);
  const ports = rules.map((r) => r.condition.tpDst!.start);
  t.is(new Set(ports).size, 1000, 'each rule its own port');
  t.false(ports.includes(5201));
  t.true(
    compiled.every((c) => c.rules.every((r) => /^meta l4proto 6 th dport \d+ counter drop /.test(r))),
    compiled[0]!.rules[0],
  );
});
