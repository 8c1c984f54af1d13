// The ZooKeeper leader SIGKILLed during a 20-host attach storm (issue 12 item 6): the e2e suite
// e2e/test/zk-leader.test.ts at full size. A real 3-server ensemble, 20 harness hosts each with a real agent
// connected to all three servers, `perHost` workload-API attaches per host sent over a few seconds, the leader
// killed in the middle; then a wave after the failover. Reported: how the attaches ended (succeeded, 503
// unavailable, anything else, over the bound), their latency p50/p99 (all, and those the kill interrupted), the
// failover's timeline, and the audit (store: lost/doubled writes, orphan allocations, addresses twice; kernels; FDB
// convergence; reachability).
import { fileURLToPath } from 'node:url';
import { eventually } from '../testbed/cluster.js';
import {
  detachFailed,
  fdbProblems,
  kernelProblems,
  seed,
  storeProblems,
  storm,
  StormCluster,
  unreachable,
  type Outcome,
} from '../e2e/test/zk-leader-storm.js';
import { latencyFigures, type BenchContext, type BenchRow, type BenchSection } from './report.js';

/** An attach longer than this counts as hung (the agents' store operation timeout is 20 s). */
const BOUND_MS = 25_000;

export interface StormFigures {
  hosts: number;
  sent: number;
  ok: number;
  unavailable: number;
  otherErrors: string[];
  overBound: number;
  attachMs: number[];
  /** Attaches in flight when the leader died (sent before, ended after). */
  interruptedMs: number[];
  /** Attaches that failed: how long until they failed. */
  failedMs: number[];
  afterOk: number;
  afterSent: number;
  electionMs: number;
  readyAgainMs: number;
  storeProblems: string[];
  kernelProblems: string[];
  fdbConvergeMs: number;
  fdbProblems: string[];
  unreachable: string[];
}

export async function measure(ctx: BenchContext, hosts: number, perHost: number): Promise<StormFigures> {
  const say = (m: string) => ctx.progress(`zk-storm ${hosts} hosts: ${m}`);
  const c = await StormCluster.start(hosts, say);
  let failed = false;
  try {
    say('seeding the network (one workload per host)');
    const seeds = await seed(c, '10.63.0.0/20');
    const run = await storm(c, { perHost, spreadMs: 6000, killAfterMs: 2000, attachTimeoutMs: 60_000, afterPerHost: 1 }, say);
    const storm1 = run.outcomes.filter((o) => o.phase === 'storm');
    const after = run.outcomes.filter((o) => o.phase === 'after');
    say('detaching the failed attaches (as a runtime would) and auditing');
    await detachFailed(c, run.outcomes);
    const all: Outcome[] = [...seeds, ...run.outcomes];
    const clean = async () => ((await storeProblems(c, all)).length === 0 ? [] : undefined);
    const store = await eventually(clean, 60_000, 'store clean').catch(() => storeProblems(c, all));
    const kernel = await kernelProblems(c, all);
    const f0 = Date.now();
    const fdb = await eventually(async () => ((await fdbProblems(c)).length === 0 ? [] : undefined), 60_000, 'FDB').catch(() =>
      fdbProblems(c),
    );
    const fdbConvergeMs = Date.now() - f0;
    const lost = await unreachable(c, seeds, run.outcomes);
    const isUnavailable = (o: Outcome) => !o.result && o.status === 503 && o.code === 'unavailable';
    const figures: StormFigures = {
      hosts,
      sent: storm1.length,
      ok: storm1.filter((o) => o.result).length,
      unavailable: storm1.filter(isUnavailable).length,
      otherErrors: run.outcomes.filter((o) => !o.result && !isUnavailable(o)).map((o) => `${o.status} ${o.code}: ${o.message}`),
      overBound: run.outcomes.filter((o) => o.ms > BOUND_MS).length,
      attachMs: storm1.map((o) => o.ms),
      interruptedMs: storm1.filter((o) => o.startMs < run.killAtMs && o.spansKill).map((o) => o.ms),
      failedMs: storm1.filter((o) => !o.result).map((o) => o.ms),
      afterOk: after.filter((o) => o.result).length,
      afterSent: after.length,
      electionMs: run.newLeaderAtMs - run.killAtMs,
      readyAgainMs: run.readyAgainAtMs - run.killAtMs,
      storeProblems: store,
      kernelProblems: kernel,
      fdbConvergeMs,
      fdbProblems: fdb,
      unreachable: lost,
    };
    say(JSON.stringify({ ...figures, attachMs: undefined, interruptedMs: undefined, failedMs: undefined }));
    return figures;
  } catch (e) {
    failed = true;
    if (e instanceof Error) e.message += ` (logs kept in ${c.harness.baseDir})`;
    throw e;
  } finally {
    await c.close({ keepLogs: failed });
  }
}

export function section(f: StormFigures, perHost: number): BenchSection {
  const lat = (xs: number[]) => (xs.length ? latencyFigures(xs, 0) : { n: 0 });
  const rows: BenchRow[] = [
    {
      name: `attaches sent during the failover (${f.hosts} hosts × ${perHost})`,
      unit: 'count',
      ours: { sent: f.sent, succeeded: f.ok, unavailable503: f.unavailable, otherErrors: f.otherErrors.length, overBound: f.overBound },
      note: `every failure should be 503 unavailable (CNI code 11); over ${BOUND_MS / 1000} s counts as hung${f.otherErrors.length ? `; other: ${f.otherErrors.slice(0, 3).join('; ')}` : ''}`,
    },
    { name: 'attach latency during the failover, all', unit: 'ms', ours: lat(f.attachMs) },
    { name: 'attach latency, in flight when the leader died', unit: 'ms', ours: lat(f.interruptedMs) },
    { name: 'attach latency, failed ones (how fast they failed)', unit: 'ms', ours: lat(f.failedMs) },
    {
      name: 'failover timeline (from the SIGKILL)',
      unit: 'ms',
      ours: { newLeader: f.electionMs, everyAgentReady: f.readyAgainMs, fdbConvergedAfterAudit: f.fdbConvergeMs },
    },
    {
      name: 'after the failover: one attach per host at once',
      unit: 'count',
      ours: { sent: f.afterSent, succeeded: f.afterOk },
    },
    {
      name: 'audit (0 = clean)',
      unit: 'problems',
      ours: {
        store: f.storeProblems.length,
        kernel: f.kernelProblems.length,
        fdb: f.fdbProblems.length,
        unreachable: f.unreachable.length,
      },
      note:
        [...f.storeProblems, ...f.kernelProblems, ...f.fdbProblems, ...f.unreachable].slice(0, 3).join('; ') ||
        'no write lost or doubled, no orphan allocation, no address twice, kernels agree, FDBs and pings converge',
    },
  ];
  return {
    title: `ZooKeeper leader killed during a ${f.hosts}-host attach storm`,
    method:
      `A 3-server ZooKeeper 3.8 ensemble on loopback (tick 200 ms, forceSync off: a process is killed, not the machine), ` +
      `${f.hosts} harness hosts each with a real agent whose store URL names all three servers. One workload per host ` +
      `seeds the network; then ${perHost} workload-API attaches per host are sent spread over 6 s, and the leader is ` +
      `SIGKILLed 2 s in. Once a new leader serves and every agent is ready, one more attach per host. Failed attaches are ` +
      `detached (as a runtime does after a failed ADD); the audit reads the store (every successful attach has exactly one ` +
      `port, written once, and exactly its addresses; failed ones hold nothing; no address twice), each workload's eth0, ` +
      `every host's FDB, and pings every workload from another host. One run (no reference: no rounds). The CI-sized ` +
      `version is e2e/test/zk-leader.test.ts (3 hosts).`,
    columns: ['figures', '—'],
    rows,
  };
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const hosts = ctx.scale < 0.3 ? Math.max(5, Math.round(20 * ctx.scale)) : 20;
  const perHost = Math.max(3, Math.round(5 * Math.min(1, ctx.scale)));
  return section(await measure(ctx, hosts, perHost), perHost);
}

// `node --import tsx bench/zk-storm.ts` runs this area alone and prints its section.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const out = await run({ scale: Number(process.env.BENCH_SCALE ?? '1'), progress: (m) => process.stderr.write(`bench: ${m}\n`) });
  console.log(JSON.stringify(out, null, 2));
}
