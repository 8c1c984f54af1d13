// Announcing a workload's addresses (core/datapath/announce.ts) from inside its namespace: the packet socket's close
// waits for an RCU grace period, so it happens off the event loop, and every socket is closed in the end.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { announce, announcementsClosed, announcementsClosing } from '../datapath/announce.js';

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

test('an announcement closes its packet socket in the background, and leaves no socket open', async (t) => {
  const ns = `bann-${randomBytes(3).toString('hex')}`;
  ip('netns', 'add', ns);
  t.teardown(() => ip('netns', 'del', ns));
  ip('-n', ns, 'link', 'add', 'a0', 'type', 'veth', 'peer', 'name', 'b0');
  ip('-n', ns, 'link', 'set', 'a0', 'up');
  ip('-n', ns, 'link', 'set', 'b0', 'up');
  const ifindex = (JSON.parse(ip('-n', ns, '-j', 'link', 'show', 'a0')) as { ifindex: number }[])[0]!.ifindex;
  const fds = (): number => readdirSync('/proc/self/fd').length;
  const mac = '02:00:00:00:00:07';
  // Once first: the process keeps a handle on its own namespace and the thread pool, opened on first use.
  announce(`/run/netns/${ns}`, ifindex, [{ ip: '10.9.0.7', mac }]);
  await announcementsClosed();
  const before = fds();
  const problems = announce(`/run/netns/${ns}`, ifindex, [{ ip: '10.9.0.7', mac }]);
  t.deepEqual(problems, []);
  // Returned before the packet socket's close (a grace period long) is done: the event loop did not wait for it.
  t.is(announcementsClosing(), 1);
  await announcementsClosed();
  t.is(announcementsClosing(), 0);
  t.is(fds(), before, 'every socket the announcement opened is closed');
});
