// The agent's health monitors (core/agent/lb-health.ts) against the real topology service on the real file store:
// statuses are written by verdict (maxRetries failures → down, one success → up), once per change, and a member
// that is already as the verdict says is not written again. The probe is given (the real TCP and HTTP probes run
// in e2e/test/lb.test.ts against real servers).
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LbHealth } from '../agent/lb-health.js';
import type { HealthTarget } from '../agent/plan-lb.js';
import { codeExpected } from '../lb/health.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

test('expected HTTP codes: single codes, ranges and lists', (t) => {
  t.true(codeExpected(200));
  t.false(codeExpected(404));
  t.true(codeExpected(302, '200-399'));
  t.false(codeExpected(400, '200-399'));
  t.true(codeExpected(204, '200,204'));
  t.false(codeExpected(0, '200'), 'no answer at all');
});

test('statuses are written once per verdict change, not per probe', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-lb-health-'));
  const store = await openStore(`file:${dir}`);
  const topo = new Topology(store);
  const hs = new Map<string, boolean>();
  const health = new LbHealth(
    topo,
    () => '/nonexistent',
    () => undefined,
    () => async (target) => hs.get(target.memberId) ?? false,
  );
  t.teardown(async () => {
    health.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const r = await topo.create('Router', { name: 'r' });
  const lb = await topo.create('LoadBalancer', { routerId: r.id });
  const monitor = await topo.create('HealthMonitor', { type: 'tcp', delay: 1, timeout: 1, maxRetries: 2 });
  const pool = await topo.create('Pool', { loadBalancerId: lb.id, healthMonitorId: monitor.id });
  const m = await topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.5', port: 80, status: 'up' });
  const target: HealthTarget = { memberId: m.id, address: m.address, port: 80, routerId: r.id, monitor };
  const status = async () => (await topo.get('PoolMember', m.id)).status;
  const until = async (ok: () => Promise<boolean>, ms: number) => {
    const end = Date.now() + ms;
    while (!(await ok())) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((res) => setTimeout(res, 20));
    }
  };

  hs.set(m.id, true);
  health.update([target]);
  await new Promise((res) => setTimeout(res, 2500));
  t.is(health.writes, 0, 'the store already says up: nothing written');
  hs.set(m.id, false);
  await until(async () => health.writes === 1, 5000);
  t.is(await status(), 'down');
  await new Promise((res) => setTimeout(res, 2200));
  t.is(health.writes, 1, 'failing on: no more writes');
  hs.set(m.id, true);
  await until(async () => health.writes === 2, 5000);
  t.is(await status(), 'up');
  // The same targets again (every reconciler pass hands them over) keep the running checker and its verdicts.
  health.update([target]);
  await new Promise((res) => setTimeout(res, 1500));
  t.is(health.writes, 2);
  health.update([]);
  hs.set(m.id, false);
  await new Promise((res) => setTimeout(res, 2500));
  t.is(await status(), 'up', 'a member no longer checked here is not written');
});
