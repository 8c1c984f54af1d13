// The harness itself: hosts reach each other, the outside and the root namespace; processes are killed and
// everything carrying the harness's tag is gone after destroy(), and the leak checker sees what a test leaves.
import test from 'ava';
import { createServer } from 'node:net';
import { Harness } from '../harness/index.js';

test('hosts reach each other, the outside and the root namespace; destroy leaves nothing', async (t) => {
  const h = await Harness.create({ hosts: 2 });
  t.teardown(() => h.destroy());
  t.true(await h.ping(h.host('h1'), h.host('h2').underlayIp));
  t.true(await h.ping(h.host('h2'), h.outsideIp), 'outside through the underlay gateway');
  t.false(await h.ping(h.host('h1'), '198.51.100.1', { timeoutSec: 1 }), 'nothing else is reachable');

  // A server in the root namespace (where ZooKeeper will run) is reachable from a host.
  const server = createServer((s) => s.end('hello\n'));
  await new Promise<void>((r) => server.listen(0, h.rootIp, r));
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;
  const r = await h.exec(h.host('h1'), ['nc', '-w', '2', h.rootIp, String(port)]);
  t.is(r.stdout.trim(), 'hello');

  // Long-running processes are tracked and killed; agents come from a command factory.
  const procs = h.startAgents((host) => ['sleep', `1000${host.index}`]);
  t.is(procs.length, 2);
  const w = await h.addWorkload(h.host('h1'), 'w1');
  t.regex(w, /^\/run\/netns\/e2e/);

  // The leak checker sees additions to a host.
  await h.exec(h.host('h1'), ['ip', 'link', 'add', 'leak0', 'type', 'bridge']);
  t.true((await h.leaks(h.host('h1'))).includes('link leak0 (bridge)'));
  await h.exec(h.host('h1'), ['ip', 'link', 'del', 'leak0']);
  t.deepEqual(await h.allLeaks(), {});

  await h.destroy();
  t.true(
    procs.every((p) => p.exitCode !== null || p.signalCode !== null),
    'processes killed',
  );
  t.deepEqual(await h.remains(), []);
});

test('two harnesses coexist with distinct names and subnets', async (t) => {
  const [a, b] = await Promise.all([Harness.create({ hosts: 1 }), Harness.create({ hosts: 1 })]);
  t.teardown(() => a.destroy());
  t.teardown(() => b.destroy());
  t.not(a.tag, b.tag);
  t.true(await a.ping(a.host('h1'), a.outsideIp));
  t.true(await b.ping(b.host('h1'), b.outsideIp));
});
