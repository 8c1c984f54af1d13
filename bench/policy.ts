// Network functions (issue 10): what MidoNet chains compiled to nftables cost, on the real kernel datapath in
// harness hosts (network namespaces), no agent and no store in the way:
// - compile + apply 1,000 and 10,000 rules (one chain, and spread over 100 chains) into `table bridge bees`, and the
//   time of a one-rule change at that size (only the changed chain is rewritten, so it should not grow with the
//   rule count when the rules are spread; within one big chain it does, since the chain is flushed and rewritten);
// - attach of a workload (veth into the bridge) with a 50-rule chain bound to its port vs with none;
// - forwarding between two workloads through the bridge with 0 rules vs 1,000 linear rules vs one rule looking up
//   a set of 1,000 addresses in the path (ping flood round trip, and a single iperf3 TCP stream).
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LinuxDatapath, type PlugSpec, type PolicyChange } from '../core/datapath/index.js';
import { applyChains, applyPolicyChange, addrGroupScript, bindStage } from '../core/datapath/nft/policy.js';
import { plugName } from '../core/datapath/names.js';
import { nftApply } from '../core/datapath/nft/index.js';
import { addrGroupSet, compileChain, type CompileContext, type CompiledChain, type SetDecl } from '../core/policy/compile.js';
import { PROTO_TCP, type PolicyRule } from '../core/policy/simulate.js';
import { Harness, type HarnessHost } from '../testbed/index.js';
import { versusIptables } from './policy-reference.js';
import {
  interleavedRounds,
  latencyFigures,
  median,
  MIN_ROUNDS,
  pairedRatio,
  roundsSpread,
  roundTo,
  timed,
  type BenchContext,
  type BenchRow,
  type BenchSection,
} from './report.js';

const stats = (xs: number[]) => latencyFigures(xs, 2);
const spread = (xs: number[]) => roundsSpread(xs, 2);
const addrGroupSetDecl = (id: string): SetDecl => ({ name: addrGroupSet(id, 4), type: 'ipv4_addr', interval: true });
const CTX: CompileContext = { macOf: () => undefined, chainExists: () => true };

/**
 * `n` rules spread evenly over `chains` chains named `<prefix>0…`: each drops TCP to its own port (20000 + i), a
 * match no benchmark traffic meets, so a packet sent through one of these chains is tested against every rule.
 */
export function ruleSet(prefix: string, n: number, chains: number): { chainIds: string[]; rules: PolicyRule[] } {
  const chainIds = Array.from({ length: chains }, (_, c) => `${prefix}${c}`);
  const rules: PolicyRule[] = [];
  for (let i = 0; i < n; i++) {
    rules.push({
      id: `${prefix}r${i}`,
      chainId: chainIds[i % chains]!,
      position: i,
      action: 'drop',
      condition: { nwProto: PROTO_TCP, tpDst: { start: 20000 + (i % 40000), end: 20000 + (i % 40000) } },
    });
  }
  return { chainIds, rules };
}

/** Rules grouped by chain once, so compiling one chain does not scan every rule of the set. */
function byChain(rules: readonly PolicyRule[]): Map<string, PolicyRule[]> {
  const m = new Map<string, PolicyRule[]>();
  for (const r of rules) {
    const list = m.get(r.chainId);
    if (list) list.push(r);
    else m.set(r.chainId, [r]);
  }
  return m;
}

const compileAll = (chainIds: readonly string[], grouped: Map<string, PolicyRule[]>): CompiledChain[] =>
  chainIds.map((id) => compileChain(id, grouped.get(id) ?? [], CTX));

/** Our table gone from a harness host (it is bees' own table in a namespace the harness made). */
const dropTable = (ns: string) => nftApply(ns, 'add table bridge bees\ndelete table bridge bees\n', 'could not remove table bridge bees');

/** Size of the chain changed beside each layout. */
const PROBE_RULES = 10;

interface Layout {
  n: number;
  chains: number;
}

/**
 * Full compile + apply of `big` and `small` layouts in two hosts (interleaved rounds, the table removed before each
 * apply), then one-rule changes: a rule added to the first chain, that chain recompiled and replaced alone.
 */
async function applyAndChange(ctx: BenchContext, h: Harness, small: Layout, big: Layout, rounds: number): Promise<BenchRow[]> {
  const [hs, hb] = h.hosts as [HarnessHost, HarnessHost];
  const label = (l: Layout) => `${l.n.toLocaleString('en')} rules in ${l.chains === 1 ? 'one chain' : `${l.chains} chains`}`;
  ctx.progress(`policy: apply ${label(small)} vs ${label(big)}, ${rounds} rounds`);
  const sets = new Map<Layout, ReturnType<typeof ruleSet>>([small, big].map((l) => [l, ruleSet(`b${l.n}x${l.chains}-`, l.n, l.chains)]));
  // A chain of PROBE_RULES rules beside the layout: a change there rewrites the same amount whatever is installed.
  const probe = new Map([small, big].map((l) => [l, ruleSet(`p${l.n}x${l.chains}-`, PROBE_RULES, 1)]));
  const compileMs = new Map<Layout, number[]>([
    [small, []],
    [big, []],
  ]);
  const fullApply = (l: Layout, ns: string) => async () => {
    await dropTable(ns).catch(() => undefined);
    const s = sets.get(l)!;
    return timed(async () => {
      let chains: CompiledChain[] = [];
      compileMs.get(l)!.push(await timed(async () => (chains = compileAll(s.chainIds, byChain(s.rules)))));
      const p = probe.get(l)!;
      await applyChains(ns, [...chains, compileChain(p.chainIds[0]!, p.rules, CTX)]);
    });
  };
  const full = await interleavedRounds(rounds, fullApply(big, hb.netns), fullApply(small, hs.netns));
  // Both tables stay installed; now the change of one rule at each size.
  const grouped = new Map([small, big].map((l) => [l, byChain(sets.get(l)!.rules)]));
  let seq = 0;
  const oneRule = (l: Layout, ns: string) => async () => {
    const s = sets.get(l)!;
    const first = s.chainIds[0]!;
    const list = grouped.get(l)!.get(first)!;
    list.unshift({
      id: `chg${seq++}`,
      chainId: first,
      position: -seq,
      action: 'drop',
      condition: { nwProto: PROTO_TCP, tpDst: { start: 19999, end: 19999 } },
    });
    return timed(() => applyChains(ns, [compileChain(first, list, CTX)]));
  };
  const change = await interleavedRounds(rounds, oneRule(big, hb.netns), oneRule(small, hs.netns));
  const probeChange = (l: Layout, ns: string) => async () => {
    const p = probe.get(l)!;
    const id = p.chainIds[0]!;
    // Replaced, not added: the probe chain keeps its size over the rounds.
    p.rules[0] = { ...p.rules[0]!, id: `chg${seq++}`, condition: { nwProto: PROTO_TCP, tpDst: { start: 19000 + seq, end: 19000 + seq } } };
    return timed(() => applyChains(ns, [compileChain(id, p.rules, CTX)]));
  };
  const small10 = await interleavedRounds(rounds, probeChange(big, hb.netns), probeChange(small, hs.netns));
  await dropTable(hb.netns);
  await dropTable(hs.netns);
  const layoutNote =
    big.chains === 1
      ? 'one chain: the changed chain is all the rules'
      : `${big.chains} chains: the changed chain holds 1/${big.chains} of them`;
  return [
    {
      name: `compile + apply: ${label(big)} vs ${label(small)}`,
      unit: 'ms',
      ours: { ...spread(full.a), 'compile median': roundTo(median(compileMs.get(big)!), 2) },
      reference: { ...spread(full.b), 'compile median': roundTo(median(compileMs.get(small)!), 2) },
      ...pairedRatio(full.a, full.b),
      compares: `the same code at two sizes: time to the kernel (compile, one nft transaction) of ${label(big)} ÷ of ${label(small)}; ${big.n / small.n}× the rules`,
    },
    {
      name: `one-rule change at ${label(big)} vs at ${label(small)}`,
      unit: 'ms',
      ours: spread(change.a),
      reference: spread(change.b),
      ...pairedRatio(change.a, change.b),
      compares: `incrementality: a rule added to one chain, that chain recompiled and replaced alone, at ${big.n.toLocaleString('en')} ÷ at ${small.n.toLocaleString('en')} rules installed (1.0 = does not grow with the rule count)`,
      note: layoutNote,
    },
    {
      name: `one-rule change in a ${PROBE_RULES}-rule chain beside ${label(big)} vs beside ${label(small)}`,
      unit: 'ms',
      ours: spread(small10.a),
      reference: spread(small10.b),
      ...pairedRatio(small10.a, small10.b),
      compares: `incrementality alone: one rule of a ${PROBE_RULES}-rule chain replaced, that chain recompiled and replaced, with ${big.n.toLocaleString('en')} ÷ with ${small.n.toLocaleString('en')} other rules installed (1.0 = does not grow with the rule count)`,
    },
  ];
}

/** An address group of `n` IPv4 addresses (10.100.0.0 onwards), as the agent would install it. */
const addresses = (n: number): string[] => Array.from({ length: n }, (_, i) => `10.${100 + (i >> 16)}.${(i >> 8) & 0xff}.${i & 0xff}`);

/** Address-group sets of `small` and `big` elements: a full replace each, then one member joining. */
async function setElements(ctx: BenchContext, h: Harness, small: number, big: number, rounds: number): Promise<BenchRow[]> {
  const [hs, hb] = h.hosts as [HarnessHost, HarnessHost];
  ctx.progress(`policy: address sets of ${small} vs ${big} elements, ${rounds} rounds`);
  const group = (n: number) => ({ id: `g${n}`, addresses: addresses(n) });
  const full = await interleavedRounds(
    rounds,
    () => timed(() => nftApply(hb.netns, addrGroupScript(group(big)), 'could not install the set')),
    () => timed(() => nftApply(hs.netns, addrGroupScript(group(small)), 'could not install the set')),
  );
  let k = 0;
  const change = (decl: SetDecl, add: string[], remove: string[]): PolicyChange => ({
    zones: [],
    sets: [{ decl, add, remove }],
    chains: [],
    bindings: [],
    removeChains: [],
    removeSets: [],
  });
  // A member outside the group's range joins, then leaves (the agent's delta for one address, applyPolicyChange).
  const joined = new Map<number, string[]>([
    [big, []],
    [small, []],
  ]);
  const join = (n: number, ns: string) => () => {
    const ip = `10.200.${k >> 8}.${k++ & 0xff}`;
    joined.get(n)!.push(ip);
    return timed(() => applyPolicyChange(ns, change(addrGroupSetDecl(`g${n}`), [ip], [])));
  };
  const one = await interleavedRounds(rounds, join(big, hb.netns), join(small, hs.netns));
  const leave = (n: number, ns: string) => () => {
    const ip = joined.get(n)!.pop()!;
    return timed(() => applyPolicyChange(ns, change(addrGroupSetDecl(`g${n}`), [], [ip])));
  };
  const gone = await interleavedRounds(rounds, leave(big, hb.netns), leave(small, hs.netns));
  await dropTable(hb.netns);
  await dropTable(hs.netns);
  const l = (n: number) => n.toLocaleString('en');
  return [
    {
      name: `address set: ${l(big)} vs ${l(small)} elements, whole set replaced`,
      unit: 'ms',
      ours: spread(full.a),
      reference: spread(full.b),
      ...pairedRatio(full.a, full.b),
      compares: `the same code at two sizes: an address group's sets flushed and filled in one nft transaction, ${l(big)} ÷ ${l(small)} addresses`,
    },
    {
      name: `address set: one member joins a set of ${l(big)} vs of ${l(small)}`,
      unit: 'ms',
      ours: spread(one.a),
      reference: spread(one.b),
      ...pairedRatio(one.a, one.b),
      compares: `incrementality: one element added to a set of ${l(big)} ÷ of ${l(small)} (1.0 = does not grow with the set)`,
      note:
        'added as `add set … { elements = … }` in the nft transaction: an `add element` command made libnftables 1.0.6 ' +
        'dump every interval set of the ruleset first (13–19× here before, 170–270 ms at 10,000); what still grows, by a few ms, was not measured apart (kernel or nft)',
    },
    {
      name: `address set: one member leaves a set of ${l(big)} vs of ${l(small)}`,
      unit: 'ms',
      ours: spread(gone.a),
      reference: spread(gone.b),
      ...pairedRatio(gone.a, gone.b),
      compares: `incrementality: one element deleted from a set of ${l(big)} ÷ of ${l(small)} (1.0 = does not grow with the set)`,
      note: 'deleted through one nfnetlink batch (policy-elements.ts); `delete element` through libnftables dumps every interval set first',
    },
  ];
}

const mac = (): string => `02:${[...randomBytes(5)].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;

interface Plugged {
  netns: string;
  hostIfname: string;
  ip: string;
}

async function plugWorkload(h: Harness, dp: LinuxDatapath, host: HarnessHost, vni: number, ip: string): Promise<Plugged> {
  const netns = await h.addWorkload(host, `w${randomBytes(3).toString('hex')}`);
  const spec: PlugSpec = { vni, netns, ifname: 'eth0', mac: mac(), ips: [`${ip}/16`], portSecurity: true };
  const r = await dp.plug(spec);
  return { netns, hostIfname: r.hostIfname, ip };
}

type AttachKind = 'shared' | 'new' | 'plain';

/**
 * Attach with a 50-rule chain on the port vs a plain attach, two ways: the port's chain already installed (bound to
 * another port of the host, as a security group's or a network's chain is: the attach carries only its binding),
 * and the port bringing a chain of its own (the first port of that chain on the host: compiled, installed and
 * bound in the plug's transaction). The three kinds run in each round, in an order that rotates.
 */
async function attach(
  ctx: BenchContext,
  h: Harness,
  dp: LinuxDatapath,
  host: HarnessHost,
  vni: number,
  rounds: number,
  perRound: number,
): Promise<BenchRow[]> {
  ctx.progress(`policy: attach with 50 rules (chain installed, chain new) vs none, ${rounds} rounds of ${perRound} attaches each`);
  // The shared chain, installed once and held by a resident port.
  const resident = await plugWorkload(h, dp, host, vni, '10.61.255.254');
  const shared = ruleSet('sh-', 50, 1);
  await applyPolicyChange(host.netns, {
    zones: [],
    sets: [],
    chains: [compileChain(shared.chainIds[0]!, shared.rules, CTX)],
    bindings: [{ ifname: resident.hostIfname, stage: 'port-outbound', chainId: shared.chainIds[0]! }],
    removeChains: [],
    removeSets: [],
  });
  let n = 0;
  const cpuMs: Record<AttachKind, number[]> = { shared: [], new: [], plain: [] };
  const attachOnce = async (kind: AttachKind): Promise<number> => {
    const i = n++;
    const netns = await h.addWorkload(host, `a${randomBytes(3).toString('hex')}`);
    const spec: PlugSpec = { vni, netns, ifname: 'eth0', mac: mac(), ips: [`10.61.${1 + (i >> 8)}.${i & 0xff}/16`], portSecurity: true };
    const ifname = plugName(netns, 'eth0');
    const change = (chains: CompiledChain[], chainId: string): PolicyChange => ({
      zones: [],
      sets: [],
      chains,
      bindings: [{ ifname, stage: 'port-outbound', chainId }],
      removeChains: [],
      removeSets: [],
    });
    let hostIfname = '';
    // CPU of the process (its threads too: libnftables, the pool threads sending netlink) over the attach: a loaded
    // machine stretches the wall time of a step by whatever else runs, much less the CPU it takes.
    const cpu0 = process.cpuUsage();
    // A new chain is compiled inside the timing (the agent compiles at plan time, on every attach that needs it).
    const ms = await timed(async () => {
      if (kind === 'plain') hostIfname = (await dp.plug(spec)).hostIfname;
      else if (kind === 'shared') hostIfname = (await dp.plug({ ...spec, policy: change([], shared.chainIds[0]!) })).hostIfname;
      else {
        const { chainIds, rules } = ruleSet(`at${i}-`, 50, 1);
        hostIfname = (await dp.plug({ ...spec, policy: change([compileChain(chainIds[0]!, rules, CTX)], chainIds[0]!) })).hostIfname;
      }
    });
    const used = process.cpuUsage(cpu0);
    cpuMs[kind].push((used.user + used.system) / 1000);
    // Detached outside the timing: the next attach starts from the same state. A chain of its own goes with it (the
    // agent's next pass removes a chain no binding reaches); the shared one stays with the resident port.
    if (kind === 'new') {
      await applyPolicyChange(host.netns, {
        zones: [],
        sets: [],
        chains: [],
        bindings: [{ ifname: hostIfname, stage: 'port-outbound', chainId: null }],
        removeChains: [`at${i}-0`],
        removeSets: [],
      });
    }
    await dp.unplug(hostIfname);
    await h.removeWorkload(netns);
    return ms;
  };
  const kinds: AttachKind[] = ['shared', 'new', 'plain'];
  // One attach of each kind first, not counted: the agent is a long-running process, and the first call of a
  // path pays for loading and compiling its code (the netlink encoder's first chain: ~8 ms of CPU, then ~0.3).
  for (const kind of kinds) await attachOnce(kind);
  for (const kind of kinds) cpuMs[kind].length = 0;
  const per: Record<AttachKind, number[][]> = { shared: [], new: [], plain: [] };
  for (let r = 0; r < rounds; r++) {
    // Each kind goes first, second and last in turn, so drift of a shared machine favours none.
    for (const kind of [...kinds.slice(r % 3), ...kinds.slice(0, r % 3)]) {
      const xs: number[] = [];
      for (let k = 0; k < perRound; k++) xs.push(await attachOnce(kind));
      per[kind].push(xs);
    }
  }
  await dp.unplug(resident.hostIfname);
  await h.removeWorkload(resident.netns);
  const plain = per.plain.map(median);
  const row = (kind: 'shared' | 'new', name: string, compares: string, note: string): BenchRow => ({
    name,
    unit: 'ms',
    ours: { ...stats(per[kind].flat()), 'CPU ms p50': roundTo(median(cpuMs[kind]), 2) },
    reference: { ...stats(per.plain.flat()), 'CPU ms p50': roundTo(median(cpuMs.plain), 2) },
    ...pairedRatio(per[kind].map(median), plain),
    compares,
    note,
  });
  return [
    row(
      'shared',
      'attach: veth into the bridge, port bound to an installed 50-rule chain vs plain attach',
      "the cost of a port filter at attach, as the agent attaches: the port's 50-rule chain already installed on the " +
        'host (a chain shared by ports, bound to another port here), the plug carrying only its binding ' +
        '(PlugSpec.policy) ÷ plug alone, median per round; the datapath calls the agent makes, not a whole CNI ADD',
      'goal in issue 10: ≤ 1.1×. The agent installs a chain once per host (core/agent/plan.ts policyDelta: only ' +
        'chains it has not applied) and removes it with its last binding. Since 2026-12-02 13:30 the plug sends the ' +
        "port's anti-spoofing chain and its binding (a stage chain with one `goto`, its verdict-map element) as one " +
        'nfnetlink batch, one kernel transaction, no libnftables (nft/rule-netlink.ts, nft/port-binding.ts), ' +
        'presuming the bound chain installed (a missing one fails the batch whole and the careful path runs); a batch ' +
        'asks the kernel to acknowledge its last message only. `CPU ms p50`: process CPU per attach, less blurred by ' +
        'load than wall time. Six runs at load 4.5–8.3 (the last of 10 rounds of 20): +0.18–0.34 ms of CPU over a ' +
        'plain attach (1.09–1.16×), wall 0.74–2.10×, median 1.07; before, the same hour at load 13–20 (binding batch beside the port security as nft text, ' +
        'a kernel lookup of the chain): +0.39–0.74 ms (1.14–1.28×), wall 0.85–1.51×. What remains: the binding ' +
        "messages, one rule dump more (the stage's base chain checked), the kernel validating the new jumps. Not " +
        'counted: the agent compiling the chains at plan time',
    ),
    row(
      'new',
      'attach: veth into the bridge + a new 50-rule chain bound to the port vs plain attach',
      'the first port of a chain on the host: plug carrying the compiled 50-rule chain and its binding ÷ plug alone, ' + 'median per round',
      'Since 2026-12-02 the chain goes as netlink expressions (nft/rule-netlink.ts, encoded from the compiled text ' +
        'as nft encodes it) in the one nfnetlink batch of the plug, with the port security and the binding: no ' +
        'libnftables. Six runs at load 4.5–8.3: +1.3–2.2 ms of CPU over a plain attach (1.6–2.1×), wall 1.1–2.4×, ' +
        'median 1.6. ' +
        'Measured apart before the port security joined the batch (three alternating runs at load ~15, by refusing ' +
        "the chains to the encoder): the netlink chain gained nothing over the text in the port security's nft " +
        'transaction (CPU over plain +1.84–2.32 vs +1.44–1.91 ms): libnftables parsed 50 such rules in ~0.4 ms (not ' +
        'the ~2.8 ms measured before, under load 30), the encoder takes ~0.2 ms. Most of what remains is the kernel ' +
        'taking 50 counted rules (~0.3 ms for the batch alone, more with the jump validation) and the compile (~0.2 ' +
        "ms). 1.1× needs the chain off the attach path: the agent installing the chains a host's bridges' ports use " +
        'before a port needs them',
    ),
  ];
}

/** Average round trip (ms) of a ping flood, `count` echoes. */
async function pingFlood(h: Harness, from: string, to: string, count: number): Promise<number> {
  const r = await h.exec(from, ['ping', '-n', '-q', '-f', '-c', String(count), '-W', '1', to]);
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (r.code !== 0 || !m) throw new Error(`ping flood to ${to} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  return Number(m[1]) * 1000;
}

async function iperf(h: Harness, from: string, to: string, seconds: number): Promise<number> {
  const r = await h.exec(from, ['iperf3', '-c', to, '-p', '5201', '-t', String(seconds), '-J']);
  const j = JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  const bps = j.end?.sum_received?.bits_per_second;
  if (!bps) throw new Error(`iperf3 to ${to} failed: ${j.error ?? (r.stderr.trim() || `exit ${r.code}`)}`);
  return bps / 1e9;
}

/** Forwarding through the bridge: three pairs of workloads, the receiver's port filter differing. */
async function forwarding(
  ctx: BenchContext,
  h: Harness,
  dp: LinuxDatapath,
  host: HarnessHost,
  vni: number,
  rounds: number,
  rules: number,
): Promise<BenchRow[]> {
  const pings = Math.max(500, Math.round(5000 * ctx.scale));
  const seconds = Math.max(2, Math.round(4 * ctx.scale));
  ctx.progress(
    `policy: forwarding with 0 vs ${rules} rules vs a ${rules}-address set, ${rounds} rounds (${pings} pings, ${seconds} s iperf3)`,
  );
  const pair = async (k: number) => ({
    src: await plugWorkload(h, dp, host, vni, `10.60.${k}.1`),
    dst: await plugWorkload(h, dp, host, vni, `10.60.${k}.2`),
  });
  const [none, linear, setted] = [await pair(0), await pair(1), await pair(2)];
  // Linear: `rules` rules none of which matches, then the packet passes. Set: one rule whose source address set
  // (an address group of `rules` addresses) never holds the sender.
  const lin = ruleSet('fw-lin-', rules, 1);
  const group = { id: 'fwset', addresses: Array.from({ length: rules }, (_, i) => `10.99.${i >> 8}.${i & 0xff}`) };
  const setRule: PolicyRule = { id: 'fw-set-r', chainId: 'fw-set', position: 0, action: 'drop', condition: { ipAddrGroupSrc: group.id } };
  await nftApply(host.netns, addrGroupScript(group), 'could not install the address set');
  await applyChains(host.netns, [
    compileChain('fw-lin-0', lin.rules, CTX),
    compileChain('fw-set', [setRule], CTX),
    compileChain('fw-none', [], CTX),
  ]);
  await bindStage(host.netns, 'port-outbound', none.dst.hostIfname, 'fw-none');
  await bindStage(host.netns, 'port-outbound', linear.dst.hostIfname, 'fw-lin-0');
  await bindStage(host.netns, 'port-outbound', setted.dst.hostIfname, 'fw-set');
  for (const p of [none, linear, setted]) {
    if (!(await h.pingEventually(p.src.netns, p.dst.ip))) throw new Error(`no path ${p.src.ip} -> ${p.dst.ip}`);
    const srv = h.spawn(p.dst.netns, ['iperf3', '-s', '-p', '5201'], { logName: `iperf-${p.dst.ip}` });
    void srv;
  }
  for (const p of [none, linear, setted]) {
    const end = Date.now() + 10_000;
    while ((await h.exec(p.dst.netns, ['sh', '-c', 'ss -ltn | grep -q ":5201 "'])).code !== 0 && Date.now() < end) {
      await new Promise((res) => setTimeout(res, 100));
    }
  }
  const rows: BenchRow[] = [];
  for (const [label, p, what] of [
    [`${rules} linear rules`, linear, `${rules} rules each tested and missed`],
    [`one rule, ${rules}-address set`, setted, `one set lookup that misses`],
  ] as const) {
    const rtt = await interleavedRounds(
      rounds,
      () => pingFlood(h, p.src.netns, p.dst.ip, pings),
      () => pingFlood(h, none.src.netns, none.dst.ip, pings),
    );
    rows.push({
      name: `round trip (ping flood): ${label} vs no rules in the path`,
      unit: 'µs (average RTT per round)',
      ours: spread(rtt.a),
      reference: spread(rtt.b),
      ...pairedRatio(rtt.a, rtt.b),
      compares: `the per-packet cost of a port filter: workload to workload through one bridge, the receiver's port-outbound chain with ${what} ÷ an empty chain; lower is better`,
    });
    const tp = await interleavedRounds(
      rounds,
      () => iperf(h, p.src.netns, p.dst.ip, seconds),
      () => iperf(h, none.src.netns, none.dst.ip, seconds),
    );
    rows.push({
      name: `TCP single stream (iperf3): ${label} vs no rules in the path`,
      unit: 'Gbit/s',
      ours: spread(tp.a),
      reference: spread(tp.b),
      ...pairedRatio(tp.a, tp.b),
      compares: `the same path as above with iperf3 (TCP with segmentation offload: fewer, larger packets than the ping flood); ${what} ÷ an empty chain; higher is better`,
    });
  }
  return rows;
}

const attachesPerRound = (ctx: BenchContext): number => Math.max(3, Math.round(10 * ctx.scale));

async function oneBridge(h: Harness): Promise<{ host: HarnessHost; dp: LinuxDatapath; vni: number }> {
  const host = h.hosts[0]!;
  const dp = new LinuxDatapath({ underlayIp: host.underlayIp, hostNetns: host.netns, routerNsPrefix: host.routerNsPrefix });
  const vni = 0x100000 + randomBytes(2).readUInt16BE();
  await dp.ensureBridge({ vni, remotes: [], floodHosts: [], gateways: [] });
  return { host, dp, vni };
}

/** The attach rows alone (the rest of the section takes minutes): for re-measuring them on their own. */
export async function attachRows(ctx: BenchContext): Promise<BenchRow[]> {
  const h = await Harness.create({ hosts: 1 });
  try {
    const { host, dp, vni } = await oneBridge(h);
    return await attach(ctx, h, dp, host, vni, Math.max(MIN_ROUNDS, Math.round(5 * ctx.scale)), attachesPerRound(ctx));
  } finally {
    await h.destroy();
  }
}

/** The rows comparing our chain loads with iptables-restore (bench/policy-reference.ts), at both sizes and backends. */
async function iptablesRows(ctx: BenchContext, small: number, big: number, rounds: number, h?: Harness): Promise<BenchRow[]> {
  const own = h ?? (await Harness.create({ hosts: 2 }));
  try {
    const rows: BenchRow[] = [];
    for (const backend of ['nft', 'legacy'] as const)
      for (const n of [small, big]) rows.push(...(await versusIptables(ctx, own, backend, n, rounds)));
    return rows;
  } finally {
    if (!h) await own.destroy();
  }
}

const ROW_SETS: Record<string, { what: string; mine: (r: BenchRow) => boolean; measure: (ctx: BenchContext) => Promise<BenchRow[]> }> = {
  attach: { what: 'the attach rows', mine: (r) => r.name.startsWith('attach: '), measure: attachRows },
  iptables: {
    what: 'the iptables rows',
    mine: (r) => r.name.includes(': ours vs iptables-'),
    measure: (ctx) => iptablesRows(ctx, 1000, 10_000, Math.max(MIN_ROUNDS, Math.round(5 * ctx.scale))),
  },
};

/**
 * `BENCH_POLICY_ROWS=attach` (or `iptables`): those rows alone, measured now, in the section of the previous results
 * (bench/results.json) whose other rows stay as they were, each re-measured row saying when and under what load.
 */
async function rowsOnly(ctx: BenchContext, which: string): Promise<BenchSection> {
  const set = ROW_SETS[which];
  if (!set) throw new Error(`BENCH_POLICY_ROWS must be one of ${Object.keys(ROW_SETS).join(', ')}`);
  const file = join(dirname(fileURLToPath(import.meta.url)), 'results.json');
  const old = (
    JSON.parse(readFileSync(file, 'utf8')) as { sections: (BenchSection & { area: string; measuredAt: string; scale: number })[] }
  ).sections.find((x) => x.area === 'policy');
  if (!old) throw new Error(`BENCH_POLICY_ROWS=${which} needs an earlier policy section in bench/results.json`);
  const load = loadavg()[0]!.toFixed(1);
  const at = new Date().toISOString();
  const fresh = (await set.measure(ctx)).map((r) => ({
    ...r,
    note:
      `${r.note ?? ''} Re-measured on their own at ${at} (BENCH_SCALE=${ctx.scale}, ${cpus().length} cores, load ` +
      `average ${load} at the start); the section's other rows are from the run above`,
  }));
  const { area: _area, measuredAt, scale, ...section } = old;
  void _area;
  // The section's date becomes today's: the rows not re-measured say when they were. A section already partly
  // re-measured keeps the date of its oldest rows and names every set re-measured since.
  const prior = /^Rows other than (.+?) measured (\S+), BENCH_SCALE=([\d.]+)\. /.exec(section.method);
  const sets = prior ? [...new Set([...prior[1]!.split(' and '), set.what])] : [set.what];
  const method = prior ? section.method.slice(prior[0].length) : section.method;
  section.method = `Rows other than ${sets.join(' and ')} measured ${prior?.[2] ?? measuredAt}, BENCH_SCALE=${prior?.[3] ?? scale}. ${method}`;
  const rows = old.rows.filter((r) => !set.mine(r));
  const at0 = old.rows.findIndex(set.mine);
  rows.splice(at0 < 0 ? rows.length : at0, 0, ...fresh);
  return { ...section, rows };
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  if (process.env.BENCH_POLICY_ROWS) return rowsOnly(ctx, process.env.BENCH_POLICY_ROWS);
  const rounds = Math.max(MIN_ROUNDS, Math.round(5 * ctx.scale));
  // The sizes issue 10 names, whatever the scale (an apply of 10,000 rules takes seconds, not minutes); a tiny
  // scale (the test) shrinks them.
  const big = ctx.scale < 0.05 ? 1000 : 10_000;
  const small = ctx.scale < 0.05 ? 100 : 1000;
  const load = loadavg()[0]!.toFixed(1);
  const h = await Harness.create({ hosts: 2 });
  try {
    const rows: BenchRow[] = [];
    rows.push(...(await applyAndChange(ctx, h, { n: small, chains: 1 }, { n: big, chains: 1 }, rounds)));
    rows.push(...(await applyAndChange(ctx, h, { n: small, chains: 100 }, { n: big, chains: 100 }, rounds)));
    rows.push(...(await setElements(ctx, h, small, big, rounds)));
    rows.push(...(await iptablesRows(ctx, small, big, rounds, h)));
    const { host, dp, vni } = await oneBridge(h);
    rows.push(...(await attach(ctx, h, dp, host, vni, rounds, attachesPerRound(ctx))));
    rows.push(...(await forwarding(ctx, h, dp, host, vni, rounds, 1000)));
    return {
      title: 'Network functions: chains compiled to nftables',
      columns: ['subject', 'baseline'],
      method:
        'One harness (2 hosts as network namespaces), the real nftables datapath of `core/datapath/nft/policy.ts` driven ' +
        'directly (no agent, no store). Rules are TCP-port drops that no benchmark traffic matches, so every packet ' +
        'is tested against all of them. Apply: compile + one nft transaction into `table bridge bees`, the table removed ' +
        'before each full apply; address sets: an address group of 1,000 or 10,000 IPv4 addresses replaced, then one ' +
        "address added then removed (the agent's delta, `applyPolicyChange`); one-rule change: a rule added to the first chain, that chain alone recompiled and replaced. " +
        'Reference: the same TCP-port drops in one chain loaded by `iptables-restore --noflush` (a process per load, as ' +
        "kube-proxy's and Calico's iptables modes load theirs) through iptables-nft and iptables-legacy, and one rule " +
        'inserted at the head by `iptables -I`, each side in its own host (bench/policy-reference.ts). ' +
        'Attach: `LinuxDatapath.plug` (veth into a Linux bridge) with or without a 50-rule chain bound to the port, ' +
        "the chain already installed (its binding carried in the plug's own transaction, `PlugSpec.policy`) or brought by " +
        'the attach (chain and binding in that transaction), the three kinds in rotating order in each round. ' +
        'Forwarding: three workload pairs on one bridge, the receiving port filtered by ' +
        'an empty chain, 1,000 linear rules, or one rule looking up a 1,000-address set; ping -f average RTT and iperf3 ' +
        'single stream. Every ratio from interleaved rounds (the side going first alternates). ' +
        `Run on ${cpus().length} cores shared with other jobs (load average ${load} at the start): absolute times are ` +
        'inflated and noisy, compare the ratios.',
      rows,
    };
  } finally {
    await h.destroy();
  }
}
