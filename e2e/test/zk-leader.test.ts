// The ZooKeeper leader SIGKILLed during an attach storm (issue 12): 3 hosts, each agent connected to all three
// servers of a real ensemble, 36 attaches sent over 4 s, the leader killed 1.5 s in. Every attach either succeeds
// or fails with 503 'unavailable' (the CNI plugin's code 11), none takes longer than the store's operation timeout,
// no write is lost or doubled (zk-leader-storm.ts: storeProblems), the kernels agree with the store, and the FDBs
// and reachability converge. The 20-host version is bench/zk-storm.ts.
import test from 'ava';
import { eventually } from '../../testbed/cluster.js';
import {
  detachFailed,
  fdbProblems,
  kernelProblems,
  percentile,
  seed,
  storeProblems,
  storm,
  StormCluster,
  unreachable,
} from './zk-leader-storm.js';

/** The agents' store operation timeout (core/store/zookeeper.ts default): an attach must end before it, plus slack. */
const BOUND_MS = 25_000;

test('ZooKeeper leader killed during an attach storm: nothing lost or doubled, no hang, converges', async (t) => {
  t.timeout(300_000);
  const c = await StormCluster.start(3, (m) => t.log(m));
  let keep = false;
  t.teardown(() => c.close({ keepLogs: keep }));
  const seeds = await seed(c, '10.62.0.0/22');

  const run = await storm(c, { perHost: 12, spreadMs: 4000, killAfterMs: 1500, attachTimeoutMs: 60_000, afterPerHost: 4 }, (m) => t.log(m));
  const { outcomes } = run;
  const ok = outcomes.filter((o) => o.result);
  const failed = outcomes.filter((o) => !o.result);
  const ms = outcomes.map((o) => o.ms);
  t.log(
    `${ok.length} succeeded, ${failed.length} failed (${[...new Set(failed.map((f) => `${f.status} ${f.code}`))].join(', ') || '-'}); ` +
      `attach p50 ${percentile(ms, 50)} ms, p99 ${percentile(ms, 99)} ms, max ${Math.max(...ms)} ms; ` +
      `leader killed at ${run.killAtMs} ms, new leader at ${run.newLeaderAtMs} ms, agents ready at ${run.readyAgainAtMs} ms`,
  );
  keep = true; // until every assertion below has passed
  t.deepEqual(
    failed.filter((f) => !(f.status === 503 && f.code === 'unavailable')).map((f) => `${f.workloadId}: ${f.status} ${f.code} ${f.message}`),
    [],
    'every failure is 503 unavailable (CNI code 11)',
  );
  t.deepEqual(
    outcomes.filter((o) => o.ms > BOUND_MS).map((o) => `${o.workloadId}: ${o.ms} ms`),
    [],
    'no attach hangs',
  );
  t.true(ok.length > 0, 'attaches succeed around the failover');
  t.deepEqual(
    failed.filter((o) => o.phase === 'after').map((o) => `${o.workloadId}: ${o.message}`),
    [],
    'every attach sent after the failover succeeds',
  );

  await detachFailed(c, outcomes);
  const all = [...seeds, ...outcomes];
  // The store converges at once for writes that returned; detaches queued while the store was away replay soon.
  const store = await eventually(async () => ((await storeProblems(c, all)).length === 0 ? [] : undefined), 30_000, 'store clean').catch(
    () => storeProblems(c, all),
  );
  t.deepEqual(store, [], 'no write lost or doubled, no orphan allocation, no address twice');
  t.deepEqual(await kernelProblems(c, all), [], 'kernels agree with the store');
  const fdb = await eventually(async () => ((await fdbProblems(c)).length === 0 ? [] : undefined), 30_000, 'FDBs converge').catch(() =>
    fdbProblems(c),
  );
  t.deepEqual(fdb, [], 'every host forwards to every remote port');
  t.deepEqual(await unreachable(c, seeds, outcomes), [], 'every successful workload answers from another host');
  keep = false;
});
