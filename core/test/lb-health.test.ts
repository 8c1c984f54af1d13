// The agent's health monitors (core/agent/lb-health.ts) against the real topology service on the real file store:
// statuses are written by verdict (maxRetries failures → down, one success → up), once per change, and a member
// that is already as the verdict says is not written again. The probe is given (the real TCP and HTTP probes run
// in e2e/test/lb.test.ts against real servers).
import test from 'ava';
import { codeExpected } from '../lb/health.js';
import { lbHealthFixture } from '../testing/lb-health-fixture.js';

test('expected HTTP codes: single codes, ranges and lists', (t) => {
  t.true(codeExpected(200));
  t.false(codeExpected(404));
  t.true(codeExpected(302, '200-399'));
  t.false(codeExpected(400, '200-399'));
  t.true(codeExpected(204, '200,204'));
  t.false(codeExpected(0, '200'), 'no answer at all');
});

test('statuses are written once per verdict change, not per probe', async (t) => {
  const { topo, health, up: hs, pool, target: targetOf } = await lbHealthFixture(t);
  const m = await topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.5', port: 80, status: 'up' });
  const target = targetOf(m);
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
