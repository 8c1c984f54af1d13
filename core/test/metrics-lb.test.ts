// bees_lb_member_healthy: the verdicts of the health monitors run on this host (core/agent/lb-health.ts), as the
// agent exports them (core/agent/metrics.ts), labelled by pool and member. LbHealth runs on the real topology
// service and file store; the probe is given (the real TCP and HTTP probes run in e2e/test/lb.test.ts).
import test from 'ava';
import { AgentMetrics } from '../agent/metrics.js';
import { lbHealthFixture } from '../testing/lb-health-fixture.js';

test("bees_lb_member_healthy follows the verdicts of this host's health monitors, by pool and member", async (t) => {
  const { topo, health, up, pool, target } = await lbHealthFixture(t);
  const a = await topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.5', port: 80 });
  const b = await topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.6', port: 80 });
  const members = new Map([a, b].map((m) => [m.id, m]));
  const metrics = new AgentMetrics(
    { localPorts: () => 0, storeUp: () => 1, storeConnectionResets: () => 0 },
    {
      localPorts: () => [],
      linkStats: () => Promise.resolve(new Map()),
      dropRuleIds: () => new Set(),
      ruleCounters: () => Promise.resolve([]),
      storeSeq: () => Promise.resolve(0),
      appliedSeq: () => 0,
      // As the agent gives it: the pool from the member (its cache there, the store here).
      lbMembers: () =>
        health.verdicts().map((v) => ({ poolId: members.get(v.memberId)!.poolId, memberId: v.memberId, healthy: v.status === 'up' })),
    },
  );
  const series = async () =>
    (await metrics.text())
      .split('\n')
      .filter((l) => l.startsWith('bees_lb_member_healthy{'))
      .sort();
  const line = (m: { id: string }, v: number) => `bees_lb_member_healthy{pool="${pool.id}",member="${m.id}"} ${v}`;
  const until = async (want: string[], ms = 6000) => {
    const end = Date.now() + ms;
    for (;;) {
      const have = await series();
      if (JSON.stringify(have) === JSON.stringify([...want].sort())) return have;
      if (Date.now() > end) return have;
      await new Promise((res) => setTimeout(res, 50));
    }
  };

  t.deepEqual(await series(), [], 'no series before a monitor runs');
  up.set(a.id, true);
  health.update([target(a), target(b)]);
  // a: one success is up; b: two failures (maxRetries) are down.
  t.deepEqual(await until([line(a, 1), line(b, 0)]), [line(a, 1), line(b, 0)].sort());
  up.set(a.id, false);
  up.set(b.id, true);
  t.deepEqual(await until([line(a, 0), line(b, 1)]), [line(a, 0), line(b, 1)].sort());
  // A member no longer checked here (its port left the host, or the pool went) leaves the metric.
  health.update([target(b)]);
  t.deepEqual(await until([line(b, 1)]), [line(b, 1)]);
});
