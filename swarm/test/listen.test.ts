// The Docker plugin listens with core's safe listener: it refuses a socket a live server holds (it used to remove
// the file and take the path over silently) and takes over a stale one, readable by root only.
import test from 'ava';
import Fastify from 'fastify';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen } from '../../core/api/listen.js';
import { startDockerPlugin } from '../driver/daemon.js';

// The plugin touches the agent only when a call comes; none does here, so no agent is needed.
const noAgent = {} as Parameters<typeof startDockerPlugin>[0];

test("the Docker plugin does not steal a live server's socket, and replaces a stale one", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-plugin-listen-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const live = join(dir, 'live.sock');
  const other = Fastify();
  other.get('/', async () => ({ who: 'other' }));
  t.teardown(() => other.close());
  await listen(other, `unix:${live}`);
  await t.throwsAsync(startDockerPlugin(noAgent, { socket: live, dockerSocket: '' }), { message: /is in use by another server/ });
  t.is((await other.inject('/')).json<{ who: string }>().who, 'other');

  const stale = join(dir, 'stale.sock');
  await writeFile(stale, '');
  const plugin = await startDockerPlugin(noAgent, { socket: stale, dockerSocket: '' });
  t.teardown(() => plugin.close());
  t.is((await stat(stale)).mode & 0o777, 0o600);
  t.true((await stat(stale)).isSocket());
});
