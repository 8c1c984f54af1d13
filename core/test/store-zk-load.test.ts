// A ZooKeeper store client's first read loads every object (zk/follower.ts): at scale that takes longer than one
// operation's timeout (bench/scale: an agent restarting among 10,000 ports died on it), and must not fail while it
// advances. A real ZooKeeper server; the timeout made short instead of the store made huge.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import type { Op } from '../store/store.js';
import { ZooKeeperStore } from '../store/zookeeper.js';
import { ZooKeeperServer } from '../testing/zookeeper.js';
import { tenant } from './store-conformance.js';

let zk: ZooKeeperServer;
test.before(async () => {
  zk = await ZooKeeperServer.start({ forceSync: false });
});
test.after.always(async () => {
  await zk?.cleanup();
});

test('zk: a first list outlasting the operation timeout succeeds while the load advances', async (t) => {
  const url = `zk://${zk.connectString}/bees-load-${randomUUID().slice(0, 8)}`;
  const writer = await ZooKeeperStore.open(url);
  t.teardown(() => writer.close());
  const count = 60_000;
  for (let i = 0; i < count; i += 500) {
    const ops: Op[] = Array.from({ length: Math.min(500, count - i) }, () => ({
      op: 'create',
      kind: 'Tenant',
      value: tenant(randomUUID()),
    }));
    await writer.commit(ops);
  }
  // 200 ms: less than reading 60,000 objects takes (0.4-1.8 s here, 200 per multiRead), more than one read of them
  // (a read that outlasts it is retried: the load then only takes longer).
  const reader = await ZooKeeperStore.open(url, { opTimeoutMs: 200 });
  t.teardown(() => reader.close());
  const start = Date.now();
  const all = await reader.list('Tenant');
  const took = Date.now() - start;
  t.log(`loaded ${all.length} objects in ${took} ms with a 200 ms operation timeout`);
  t.is(all.length, count);
  t.true(took > 200, `the load took ${took} ms: not longer than the timeout, so this test proves nothing`);
});

test('zk: changes committed while a client loads every object are all in its view afterwards', async (t) => {
  const url = `zk://${zk.connectString}/bees-load-${randomUUID().slice(0, 8)}`;
  const writer = await ZooKeeperStore.open(url);
  t.teardown(() => writer.close());
  const ids = Array.from({ length: 20_000 }, () => randomUUID());
  for (let i = 0; i < ids.length; i += 500) {
    await writer.commit(ids.slice(i, i + 500).map((id) => ({ op: 'create', kind: 'Tenant', value: tenant(id) })));
  }
  // Updates, deletes and creates race the reader's load (read 200 per request, many requests in flight).
  let stop = false;
  let n = 0;
  const churn = Promise.all(
    Array.from({ length: 16 }, async () => {
      while (!stop) {
        const k = n++;
        const id = ids[(k * 7919) % ids.length]!;
        if (k % 7 === 0) await writer.delete('Tenant', id).catch(() => undefined);
        else if (k % 7 === 1) await writer.create('Tenant', tenant(randomUUID()));
        else await writer.update('Tenant', { ...tenant(id), generation: k }).catch(() => undefined);
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 200));
  const before = n;
  const reader = await ZooKeeperStore.open(url);
  t.teardown(() => reader.close());
  await reader.list('Tenant');
  const raced = n - before;
  stop = true;
  await churn;
  await reader.sync();
  const view = (s: ZooKeeperStore) =>
    s.list('Tenant').then((all) => new Map(all.map((v) => [v.value.id, `${v.version}:${JSON.stringify(v.value)}`])));
  const [seen, truth] = await Promise.all([view(reader), view(writer)]);
  t.log(`${raced} changes raced the load`);
  t.true(raced > 10, 'too few changes raced the load to show anything');
  t.is(seen.size, truth.size);
  t.deepEqual([...seen].sort(), [...truth].sort());
});
