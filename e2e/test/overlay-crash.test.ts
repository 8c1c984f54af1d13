// Agent crash: kill -9 the agent of one host during a ping flood between workloads on two hosts (one on the killed
// host). The datapath keeps forwarding (zero loss), the host's liveness record vanishes once its ZooKeeper session
// expires and returns after restart, and the restarted agent converges without removing anything live.
import test from 'ava';
import { clusterSnapshot, snapshotDiff, stableSnapshot } from '../lib/snapshot.js';
import { eventually, startCluster } from '../../testbed/cluster.js';

test('kill -9 of an agent during a ping flood: zero loss, liveness goes and returns, restart removes nothing live', async (t) => {
  // A 200 ms tick bounds the agent's session at 4 s, so expiry is seen quickly.
  const c = await startCluster({ hosts: 3, zkTickMs: 200 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const [h1, h2, h3] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0], (typeof c.hosts)[0]];
  const create = { subnets: [{ cidr: '10.60.0.0/24' }, { cidr: 'fd00:60::/64' }] };
  const w1 = await c.attach(h1, 'w1', { network: 'n', create });
  const w2 = await c.attach(h2, 'w2', { network: 'n' });
  t.true(await c.pingEventually(w2.netns, w1.ip4!), 'w2 -> w1 before the crash');
  t.true(await c.pingEventually(w1.netns, w2.ip6!), 'w1 -> w2 over IPv6 before the crash');
  // Let every agent settle (a pass after the last attach), then take the reference state.
  const before = await stableSnapshot(c.harness);
  const live = async () => Object.keys(await h3.api.hostLiveness());
  t.true((await live()).includes(h1.hostId));

  // 100 echoes per second for 25 s: spans the kill, the session expiry and the restart.
  const count = 2500;
  const flood = c.harness.exec(w2.netns, ['ping', '-n', '-q', '-c', String(count), '-i', '0.01', '-W', '1', w1.ip4!]);
  await new Promise((r) => setTimeout(r, 1000));
  await c.killAgent(h1);
  const goneAt = Date.now();
  // The session expires within 4 s (20 ticks of 200 ms); the minute is a hang guard.
  await eventually(async () => !(await live()).includes(h1.hostId), 60_000, 'liveness record of the killed host vanishes', 200);
  t.log(`liveness record gone ${Date.now() - goneAt} ms after kill -9`);
  t.true(await c.ping(w1.netns, w2.ip4!), 'w1 still reaches w2 with its agent down');
  await c.startAgent(h1);
  await eventually(async () => (await live()).includes(h1.hostId), 60_000, 'liveness record returns after restart', 200);

  const r = await flood;
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  t.truthy(m, r.stdout + r.stderr);
  t.is(Number(m![1]), count);
  t.is(Number(m![2]), count, `no echo lost: ${r.stdout.trim()}`);
  t.regex(r.stdout, / 0% packet loss/);

  // Converged again, and the kernel holds exactly what it held before the crash.
  const w3 = await c.attach(h1, 'w3', { network: 'n' });
  t.true(await c.pingEventually(w2.netns, w3.ip4!), 'the restarted agent attaches and programs new workloads');
  await c.detach(w3);
  // At least this long, so that a restarted agent removing something live a moment later is seen.
  await new Promise((r) => setTimeout(r, 1500));
  const after = await eventually(
    async () => {
      const s = await clusterSnapshot(c.harness);
      return Object.keys(snapshotDiff(before, s)).length === 0 ? s : undefined;
    },
    60_000,
    'kernel state equal to before the crash',
  ).catch(async () => clusterSnapshot(c.harness));
  t.deepEqual(snapshotDiff(before, after), {});
  t.true((await c.ping(w2.netns, w1.ip4!)) && (await c.ping(w1.netns, w2.ip6!)), 'still connected after restart');
});
