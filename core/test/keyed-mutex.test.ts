import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedMutex, Mutex } from '../util/keyed-mutex.js';

/** A job that records when it starts and ends, and takes `ms` in between. */
function job(log: string[], name: string, ms: number, fail = false) {
  return async () => {
    log.push(`${name}+`);
    await sleep(ms);
    log.push(`${name}-`);
    if (fail) throw new Error(`${name} failed`);
    return name;
  };
}

test('jobs of one key run one at a time, in the order they were queued', async (t) => {
  const m = new KeyedMutex();
  const log: string[] = [];
  // The first job is the slowest: without the lock the others would start and finish before it.
  const results = await Promise.all([m.run('k', job(log, 'a', 30)), m.run('k', job(log, 'b', 10)), m.run('k', job(log, 'c', 1))]);
  t.deepEqual(results, ['a', 'b', 'c']);
  t.deepEqual(log, ['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
  t.is(m.pending, 0, 'a key with nothing queued is forgotten');
});

test('jobs of different keys run side by side', async (t) => {
  const m = new KeyedMutex();
  const log: string[] = [];
  await Promise.all([m.run('x', job(log, 'x', 30)), m.run('y', job(log, 'y', 1))]);
  t.deepEqual(log, ['x+', 'y+', 'y-', 'x-']);
});

test('a job that throws releases the key, and only its caller sees the error', async (t) => {
  const m = new KeyedMutex();
  const log: string[] = [];
  const failing = m.run('k', job(log, 'a', 10, true));
  const next = m.run('k', job(log, 'b', 1));
  await t.throwsAsync(failing, { message: 'a failed' });
  t.is(await next, 'b');
  t.deepEqual(log, ['a+', 'a-', 'b+', 'b-']);
  // A synchronous throw inside fn is a rejection too, and does not block the key either.
  await t.throwsAsync(
    m.run('k', () => {
      throw new Error('sync');
    }),
    { message: 'sync' },
  );
  t.is(await m.run('k', async () => 'after'), 'after');
  await m.idle('k');
  t.is(m.pending, 0);
});

test('idle waits for the work queued so far, without failing when it failed', async (t) => {
  const m = new Mutex();
  const log: string[] = [];
  const failing = m.run(job(log, 'a', 20, true)).catch(() => undefined);
  await m.idle();
  t.deepEqual(log, ['a+', 'a-']);
  await failing;
});
