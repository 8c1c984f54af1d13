import test from 'ava';
import { randomUUID } from 'node:crypto';
import zookeeper from 'node-zookeeper-client';
import { ZooKeeperServer } from '../testing/zookeeper.js';
import { openStore } from '../store/open.js';
import { StoreError, type Change } from '../store/store.js';
import { ZooKeeperStore, parseZkUrl, type ZooKeeperStoreOptions } from '../store/zookeeper.js';
import { registerStoreConformance, tenant, waitFor } from './store-conformance.js';

let zk: ZooKeeperServer;
test.before(async () => {
  zk = await ZooKeeperServer.start();
});
test.after.always(async () => {
  await zk?.cleanup();
});

/** Deletes a whole subtree (removeRecursive exists in the library but not in its type definitions). */
async function removeTree(root: string): Promise<void> {
  const c = zookeeper.createClient(zk.connectString) as zookeeper.Client & { removeRecursive(p: string, v: number, cb: () => void): void };
  c.connect();
  await new Promise<void>((resolve) => c.removeRecursive(root, -1, () => resolve()));
  c.close();
}

/** A fresh root per test, removed afterwards so no znode leaks. */
async function openFresh(t: import('ava').ExecutionContext, options: ZooKeeperStoreOptions = {}) {
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const url = `zk://${zk.connectString}${root}`;
  const stores: ZooKeeperStore[] = [];
  const open = async () => {
    const s = await ZooKeeperStore.open(url, { sessionTimeoutMs: 4000, opTimeoutMs: 15_000, ...options });
    stores.push(s);
    return s;
  };
  t.teardown(async () => {
    for (const s of stores) await s.close();
    await removeTree(root);
  });
  return { url, root, open };
}

registerStoreConformance(test, 'zk', async (t, options) => {
  const { open } = await openFresh(t, { retention: options?.retention });
  return open();
});

test('zk: URL parsing', (t) => {
  t.deepEqual(parseZkUrl('zk://a:1,b.example:2181/bees/x'), { hosts: 'a:1,b.example:2181', root: '/bees/x' });
  for (const bad of ['zk://a:1', 'zk://a:1/', 'zk://a/bees', 'zk://a:1//x', 'zk:/a:1/x', 'zk://a:1/zookeeper']) {
    t.is(t.throws(() => parseZkUrl(bad), { instanceOf: StoreError })?.code, 'Invalid', bad);
  }
});

test('zk: openStore picks the ZooKeeper backend', async (t) => {
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const s = await openStore(`zk://${zk.connectString}${root}`);
  t.teardown(async () => {
    await s.close();
    await removeTree(root);
  });
  t.true(s instanceof ZooKeeperStore);
});

test('zk: two clients see each other\'s writes and conflict on versions', async (t) => {
  const { open } = await openFresh(t);
  const a = await open();
  const b = await open();
  const seenByB: Change[] = [];
  t.teardown(await b.watch((c) => seenByB.push(c)));
  const x = tenant();
  await a.create('Tenant', x);
  t.deepEqual(await b.get('Tenant', x.id), { value: x, version: 1 });
  await b.update('Tenant', tenant(x.id, 1), 1);
  const err = await t.throwsAsync(a.update('Tenant', tenant(x.id, 2), 1), { instanceOf: StoreError });
  t.is(err?.code, 'Conflict');
  await waitFor(() => seenByB.length === 2, 'both changes at b');
  await waitFor(() => true, '');
  const listed = await a.list('Tenant');
  await waitFor(() => listed.length === 1, 'list');
  t.is((await a.list('Tenant'))[0]?.version, 2);
});
