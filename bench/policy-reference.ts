// The reference beside our chain compiler (issue 10: "ours beside a reference in one run"): the same N TCP-port
// drops in one chain loaded the way kube-proxy's and Calico's iptables modes load theirs, with `iptables-restore
// --noflush` (a process per load), through both of Debian's backends: iptables-nft (rules become nftables rules,
// added incrementally) and iptables-legacy (the whole filter table is rebuilt and swapped by the kernel). Then one
// rule inserted at the head of that chain: ours recompiles the chain and applies the difference (policy.ts
// applyChains: a rule-level edit by handle, chain-edit.ts), the reference runs `iptables -I`. Each side in its own harness host, interleaved rounds.
import { applyChains } from '../core/datapath/nft/policy.js';
import { nftApply } from '../core/datapath/nft/index.js';
import { generation } from '../core/datapath/nft/nfnetlink.js';
import { compileChain, type CompileContext } from '../core/policy/compile.js';
import { PROTO_TCP, type PolicyRule } from '../core/policy/simulate.js';
import type { Harness, HarnessHost } from '../testbed/index.js';
import { interleavedRounds, pairedRatio, roundsSpread, timed, type BenchContext, type BenchRow } from './report.js';

const CTX: CompileContext = { macOf: () => undefined, chainExists: () => true };
const CHAIN = 'BEES-BENCH';
const portOf = (i: number) => 20000 + (i % 40000);
/** Untimed loads per side before the timed rounds (see versusIptables). */
const WARM_LOADS = 5;

/** `iptables-restore` input: one chain in the filter table holding `n` TCP-port drops (the same ports as ours). */
function restoreInput(n: number): string {
  const lines = ['*filter', `:${CHAIN} - [0:0]`];
  for (let i = 0; i < n; i++) lines.push(`-A ${CHAIN} -p tcp --dport ${portOf(i)} -j DROP`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

function oursRules(n: number, chainId: string): PolicyRule[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `ir${i}`,
    chainId,
    position: i,
    action: 'drop' as const,
    condition: { nwProto: PROTO_TCP, tpDst: { start: portOf(i), end: portOf(i) } },
  }));
}

async function must(h: Harness, host: HarnessHost, argv: string[], input?: string): Promise<void> {
  const r = await h.exec(host, argv, input);
  if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
}

/** Our side and one iptables backend at `n` rules in one chain: a full load, then one rule inserted at the head. */
export async function versusIptables(
  ctx: BenchContext,
  h: Harness,
  backend: 'nft' | 'legacy',
  n: number,
  rounds: number,
): Promise<BenchRow[]> {
  const [ours, ref] = h.hosts as [HarnessHost, HarnessHost];
  const tool = `iptables-${backend}`;
  const label = n.toLocaleString('en');
  ctx.progress(`policy: ${label} rules in one chain, ours vs ${tool}-restore, ${rounds} rounds`);
  const input = restoreInput(n);
  const chainId = `iref${n}`;
  // New rule objects for every load: compileChain keeps a rule's texts per rule object (as the agent's store cache
  // keeps an unchanged rule's object), and a load should compile them all, as after an agent start.
  let rules = oursRules(n, chainId);
  const clearRef = async () => {
    await h.exec(ref, [tool, '-F', CHAIN]);
    await h.exec(ref, [tool, '-X', CHAIN]);
  };
  const clearOurs = async () => {
    await nftApply(ours.netns, 'add table bridge bees\ndelete table bridge bees\n', 'could not remove table bridge bees').catch(
      () => undefined,
    );
    // The removal's teardown finished before the load is timed, as the reference's `iptables -X` process finishes
    // before its restore: libnftables' socket is closed on a pool thread, not waited for, and that close waits in
    // the kernel (under the commit mutex) for the table's destruction, an RCU grace period, which the load's commit
    // then waited for (~6 ms of a 1,000-rule load). A request on a socket of its own closed here waits for it.
    generation(ours.netns);
  };
  // Untimed loads per side first (WARM_LOADS): the agent is a long-running process whose compiler, encoder and
  // batch code are hot (every attach runs them for its port's chains). Without them the first rounds measured V8
  // tiering that code up: a 1,000-rule load took ~45, 30, 22, 20, 17 ms in its first five rounds, ~8-10 after, and
  // the section measured first paid it alone. The reference's process per load has nothing to warm but the page
  // cache.
  for (let w = 0; w < WARM_LOADS; w++) {
    await clearOurs();
    await applyChains(ours.netns, [compileChain(chainId, oursRules(n, chainId), CTX)]);
    await clearRef();
    await must(h, ref, [`${tool}-restore`, '--noflush'], input);
  }
  const load = await interleavedRounds(
    rounds,
    async () => {
      await clearOurs();
      const fresh = (rules = oursRules(n, chainId));
      return timed(() => applyChains(ours.netns, [compileChain(chainId, fresh, CTX)]));
    },
    async () => {
      await clearRef();
      return timed(() => must(h, ref, [`${tool}-restore`, '--noflush'], input));
    },
  );
  // Both chains stay loaded; one more rule at the head, a new port each time.
  let k = 0;
  const head: PolicyRule[] = [];
  const insert = await interleavedRounds(
    rounds,
    () => {
      head.unshift({
        id: `ih${k}`,
        chainId,
        position: -1 - k,
        action: 'drop',
        condition: { nwProto: PROTO_TCP, tpDst: { start: 10000 + k, end: 10000 + k } },
      });
      k++;
      return timed(() => applyChains(ours.netns, [compileChain(chainId, [...head, ...rules], CTX)]));
    },
    () => timed(() => must(h, ref, [tool, '-I', CHAIN, '1', '-p', 'tcp', '--dport', String(19000 + k), '-j', 'DROP'])),
  );
  await clearOurs();
  await clearRef();
  const what =
    backend === 'nft'
      ? 'iptables-nft (rules become nftables rules in the kernel, added incrementally)'
      : 'iptables-legacy (the whole filter table rebuilt in user space and swapped in the kernel)';
  return [
    {
      name: `load ${label} rules in one chain: ours vs ${tool}-restore`,
      unit: 'ms',
      ours: roundsSpread(load.a, 2),
      reference: roundsSpread(load.b, 2),
      ...pairedRatio(load.a, load.b),
      compares: `ours (MidoNet rules compiled, then written as one nfnetlink batch, one transaction: policy.ts applyChains → chain-edit.ts rewriteChains; libnftables only for rules without a netlink form) ÷ the same ${label} TCP-port drops loaded by \`${tool}-restore --noflush\` (a process per load, as kube-proxy and Calico's iptables mode run it) through ${what}; lower is better`,
    },
    {
      name: `one rule inserted at the head of ${label}: ours vs ${tool} -I`,
      unit: 'ms',
      ours: roundsSpread(insert.a, 2),
      reference: roundsSpread(insert.b, 2),
      ...pairedRatio(insert.a, insert.b),
      compares: `ours (the chain recompiled, then only the difference applied: one rule inserted before the handle of the old head, one nfnetlink transaction, as the agent changes a chain; compile included, the unchanged rules' texts reused from the last compile as for the agent's unchanged rule objects) ÷ \`${tool} -I\` of one rule (a process); lower is better`,
    },
  ];
}
