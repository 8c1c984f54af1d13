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
  const count = 40_000;
  for (let i = 0; i < count; i += 500) {
    const ops: Op[] = Array.from({ length: Math.min(500, count - i) }, () => ({
      op: 'create',
      kind: 'Tenant',
      value: tenant(randomUUID()),
    }));
    await writer.commit(ops);
  }
  // 400 ms: less than reading 40,000 objects takes (~1 s here, 200 per multiRead), far more than one read of them.
  const reader = await ZooKeeperStore.open(url, { opTimeoutMs: 400 });
  t.teardown(() => reader.close());
  const start = Date.now();
  const all = await reader.list('Tenant');
  const took = Date.now() - start;
  t.log(`loaded ${all.length} objects in ${took} ms with a 400 ms operation timeout`);
  t.is(all.length, count);
  t.true(took > 400, `the load took ${took} ms: not longer than the timeout, so this test proves nothing`);
});
