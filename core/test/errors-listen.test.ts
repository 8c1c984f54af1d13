// The one table of error kinds (core/errors.ts) and the one safe socket listener (core/api/listen.ts), which the
// REST API, the workload API and the Docker plugin all use (swarm/test/listen.test.ts shows the plugin's side).
import test from 'ava';
import Fastify from 'fastify';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listen, listenUnix } from '../api/listen.js';
import { ERROR_KINDS, classify, httpStatusOf } from '../errors.js';
import { StoreError } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';

test('error kinds: one status each; every thrown thing classified', (t) => {
  t.deepEqual(Object.fromEntries(Object.entries(ERROR_KINDS).map(([k, v]) => [k, v.status])), {
    invalid: 400,
    not_found: 404,
    conflict: 409,
    exhausted: 409,
    unavailable: 503,
    internal: 500,
  });
  t.deepEqual(classify(new TopologyError('invalid', 'bad cidr', 'subnets[0].cidr')), {
    kind: 'invalid',
    status: 400,
    message: 'bad cidr',
    field: 'subnets[0].cidr',
  });
  t.is(classify(new TopologyError('exhausted', 'full')).status, httpStatusOf('exhausted'));
  t.deepEqual(classify(new StoreError('Unavailable', 'zk down')), { kind: 'unavailable', status: 503, message: 'zk down' });
  t.is(classify(new StoreError('Closed', 'closed')).kind, 'unavailable');
  t.is(classify(new StoreError('NotFound', 'gone')).status, 404);
  t.is(classify(new StoreError('Conflict', 'version')).kind, 'conflict');
  // The web framework's own refusals keep their status.
  t.deepEqual(classify(Object.assign(new Error('too big'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' })), {
    kind: 'invalid',
    status: 413,
    message: 'too big',
  });
  t.deepEqual(classify(new Error('boom')), { kind: 'internal', status: 500, message: 'boom' });
  t.is(classify(Object.assign(new Error('x'), { statusCode: 502 })).kind, 'internal');
});

test('listener: a live server keeps its socket, a stale one is replaced, mode 0600', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-listen-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const sock = join(dir, 'sub', 'api.sock');
  const first = Fastify();
  first.get('/', async () => ({ who: 'first' }));
  t.teardown(() => first.close());
  t.is(await listen(first, `unix:${sock}`), `unix:${sock}`);
  t.is((await stat(sock)).mode & 0o777, 0o600);

  const second = Fastify();
  t.teardown(() => second.close());
  await t.throwsAsync(listenUnix(second, sock), { message: /is in use by another server/ });
  t.is((await first.inject('/')).json<{ who: string }>().who, 'first');

  // A stale socket file (nobody answers on it) is taken over.
  const stale = join(dir, 'stale.sock');
  await writeFile(stale, '');
  await listenUnix(second, stale);
  t.is((await stat(stale)).mode & 0o777, 0o600);
});
