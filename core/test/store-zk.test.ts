import test from 'ava';
import { randomUUID } from 'node:crypto';
import zookeeper from 'node-zookeeper-client';
import { TcpProxy } from '../testing/tcp-proxy.js';
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
async function removeTree(root: string, auth?: string): Promise<void> {
  const c = zookeeper.createClient(zk.connectString) as zookeeper.Client & { removeRecursive(p: string, v: number, cb: () => void): void };
  if (auth) c.addAuthInfo('digest', Buffer.from(auth));
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

test("zk: two clients see each other's writes and conflict on versions", async (t) => {
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

test.serial('zk: a ZooKeeper restart in the middle of a write burst loses no acknowledged write and applies none twice', async (t) => {
  // The server process is killed, not the machine, so its page cache survives: no need to fsync (which, on a disk
  // shared with other suites' fsync bursts, can stall a restart for tens of seconds).
  const own = await ZooKeeperServer.start({ forceSync: false });
  t.teardown(() => own.cleanup());
  const url = `zk://${own.connectString}/bees-restart`;
  // A generous write deadline: on 2 loaded cores a JVM restart can take tens of seconds, and a commit started
  // just before the kill must outlive it rather than fail.
  const s = await ZooKeeperStore.open(url, { sessionTimeoutMs: 10_000, opTimeoutMs: 120_000 });
  t.teardown(() => s.close());
  const log: Change[] = [];
  t.teardown(await s.watch((c) => log.push(c), { fromSeq: 0 }));
  const writers = 4;
  for (let w = 0; w < writers; w++) await s.create('Tenant', tenant(`counter-${w}`));
  const acked: string[][] = Array.from({ length: writers }, () => []);
  let stop = false;
  const loop = async (w: number) => {
    for (let i = 0; !stop; i++) {
      const id = `item-${w}-${i}`;
      // The counter's version check would fail (Conflict) if an earlier attempt of this same commit had landed
      // and been applied again.
      await s.commit([
        { op: 'create', kind: 'Tenant', value: tenant(id) },
        { op: 'update', kind: 'Tenant', value: tenant(`counter-${w}`, i + 1), version: i + 1 },
      ]);
      acked[w]!.push(id);
    }
  };
  const running = Promise.all(Array.from({ length: writers }, (_, w) => loop(w)));
  running.catch(() => {}); // awaited below; this only keeps a failure elsewhere from also reporting it unhandled
  t.teardown(() => {
    stop = true;
  });
  await waitFor(() => acked.flat().length > 100, 'writes before the restart', 30_000);
  await own.kill();
  await new Promise((r) => setTimeout(r, 500));
  await own.launch();
  const after = acked.flat().length;
  await waitFor(() => acked.flat().length > after + 100, 'writes after the restart', 60_000);
  stop = true;
  await running; // any error (Conflict, Exists, Unavailable) would fail the test here
  const total = acked.flat().length;
  t.log(`${total} commits acknowledged, ${after} before the restart`);
  for (let w = 0; w < writers; w++) {
    const counter = (await s.get('Tenant', `counter-${w}`))!;
    t.is(counter.value.generation, acked[w]!.length, `counter ${w} counts each acknowledged commit once`);
    t.is(counter.version, acked[w]!.length + 1);
  }
  const items = (await s.list('Tenant')).filter((v) => v.value.id.startsWith('item-'));
  t.is(items.length, total);
  await waitFor(() => log.filter((c) => c.id.startsWith('item-')).length >= total, 'the change log', 30_000);
  const creates = log.filter((c) => c.id.startsWith('item-'));
  t.is(creates.length, total, 'each write appears in the change log exactly once');
  t.is(new Set(creates.map((c) => c.id)).size, total);
  for (let i = 1; i < log.length; i++) t.true(log[i]!.seq > log[i - 1]!.seq);
});

test.serial('zk: an expired session loses its ephemerals, others see it, and the client re-creates them', async (t) => {
  // a reaches ZooKeeper through a relay the test cuts: a partition long enough for the server to expire a's
  // session while a cannot reconnect, so b must see the record go before a comes back with a new session.
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: zk.port });
  t.teardown(() => proxy.close());
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const a = await ZooKeeperStore.open(`zk://${proxy.address}${root}`, { sessionTimeoutMs: 2000, opTimeoutMs: 15_000 });
  t.teardown(() => a.close());
  const b = await ZooKeeperStore.open(`zk://${zk.connectString}${root}`, { sessionTimeoutMs: 4000, opTimeoutMs: 15_000 });
  t.teardown(async () => {
    await b.close();
    await removeTree(root);
  });
  const key = `hosts/${randomUUID()}`;
  await a.putEphemeral(key, { up: true });
  const views: Record<string, unknown>[] = [];
  t.teardown(await b.watchEphemeral('hosts/', (r) => views.push(r)));
  await waitFor(() => key in (views.at(-1) ?? {}), 'b sees the record');
  const before = a.sessionId();
  let renewed = false;
  a.onSession = () => (renewed = true);
  await proxy.cut();
  // The server expires the session after its timeout (2 s, checked every tick): well inside this bound.
  await waitFor(() => views.some((v) => !(key in v)), 'b sees the record go', 30_000);
  t.false(renewed, 'a cannot have a new session while partitioned');
  await proxy.restore();
  await waitFor(() => renewed, 'a gets a new session', 30_000);
  t.not(a.sessionId(), before);
  await waitFor(() => key in (views.at(-1) ?? {}), 'b sees the record come back', 30_000);
  t.deepEqual((await b.listEphemeral('hosts/'))[key], { up: true });
  // The store keeps working on the new session.
  t.is(await a.create('Tenant', tenant()), 1);
});

test('zk: a request ZooKeeper refuses as malformed (BadArguments) is Invalid, not Unavailable', async (t) => {
  const { open } = await openFresh(t);
  const s = await open();
  // Valid for the store's id check, refused by ZooKeeper's path rules (U+007F-U+009F are not allowed in names).
  const err = await t.throwsAsync(s.create('Tenant', tenant('bad\u007fid')), { instanceOf: StoreError });
  t.is(err?.code, 'Invalid');
});

test('zk: with credentials in the URL, the tree is only readable and writable with them', async (t) => {
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const auth = 'bees:s3cret';
  const url = `zk://${auth}@${zk.connectString}${root}`;
  const s = await ZooKeeperStore.open(url, { sessionTimeoutMs: 4000, opTimeoutMs: 5000 });
  t.teardown(async () => {
    await s.close();
    await removeTree(root, auth);
  });
  t.false(s.url.includes('s3cret'), 'the password never shows in the store URL');
  const id = randomUUID();
  await s.create('Tenant', tenant(id));
  await s.putEphemeral('hosts/h1', { up: true });

  // A second client with the same credentials shares the tree.
  const same = await ZooKeeperStore.open(url, { sessionTimeoutMs: 4000, opTimeoutMs: 5000 });
  t.teardown(() => same.close());
  t.is((await same.get('Tenant', id))?.version, 1);
  t.is(await same.update('Tenant', { ...tenant(id), generation: 1 }, 1), 2);
  t.deepEqual(await same.listEphemeral('hosts/'), { 'hosts/h1': { up: true } });

  // Without them (or with others), the store does not open, and a raw client can neither read nor write.
  for (const other of [`zk://${zk.connectString}${root}`, `zk://bees:wrong@${zk.connectString}${root}`]) {
    const refused = await t.throwsAsync(ZooKeeperStore.open(other, { sessionTimeoutMs: 4000, opTimeoutMs: 5000 }), {
      instanceOf: StoreError,
    });
    t.regex(refused?.message ?? '', /denied access/);
  }
  const raw = zookeeper.createClient(zk.connectString);
  raw.connect();
  t.teardown(() => raw.close());
  const codeOf = (fn: (cb: (e: unknown) => void) => void) =>
    new Promise<number | undefined>((resolve) => fn((e) => resolve((e as { code?: number } | null)?.code)));
  const NO_AUTH = zookeeper.Exception.NO_AUTH;
  t.is(await codeOf((cb) => raw.getData(`${root}/models/Tenant/${id}`, cb)), NO_AUTH, 'read an object');
  t.is(await codeOf((cb) => raw.getChildren(`${root}/models/Tenant`, cb)), NO_AUTH, 'list objects');
  t.is(await codeOf((cb) => raw.setData(`${root}/models/Tenant/${id}`, Buffer.from('{}'), -1, cb)), NO_AUTH, 'overwrite an object');
  t.is(await codeOf((cb) => raw.create(`${root}/models/Tenant/intruder`, Buffer.from('{}'), cb)), NO_AUTH, 'create an object');
  t.is(await codeOf((cb) => raw.remove(`${root}/models/Tenant/${id}`, -1, cb)), NO_AUTH, 'delete an object');
  t.is(await codeOf((cb) => raw.getData(`${root}/ephemeral/${encodeURIComponent('hosts/h1')}`, cb)), NO_AUTH, 'read a liveness record');
  t.is((await s.get('Tenant', id))?.version, 2, 'the object is as its owners left it');
});

test.serial('zk: a client that falls behind the log retention tells its watchers (onGap) and lists the current state', async (t) => {
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: zk.port });
  t.teardown(() => proxy.close());
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const a = await ZooKeeperStore.open(`zk://${proxy.address}${root}`, { sessionTimeoutMs: 4000, opTimeoutMs: 15_000 });
  t.teardown(() => a.close());
  const b = await ZooKeeperStore.open(`zk://${zk.connectString}${root}`, { sessionTimeoutMs: 4000, opTimeoutMs: 15_000, retention: 2 });
  t.teardown(async () => {
    await b.close();
    await removeTree(root);
  });
  const kept = tenant();
  const dropped = tenant();
  await b.create('Tenant', kept);
  await b.create('Tenant', dropped);
  const seen: Change[] = [];
  let gaps = 0;
  t.teardown(await a.watch((c) => seen.push(c), { onGap: () => gaps++ }));
  await a.sync();
  t.is((await a.list('Tenant')).length, 2);

  await proxy.cut();
  await waitFor(() => !a.health().up, 'a sees the partition');
  t.regex(a.health().reason ?? '', /disconnected/);
  await b.delete('Tenant', dropped.id);
  const added = tenant();
  await b.create('Tenant', added);
  for (let i = 0; i < 5; i++) await b.create('Tenant', tenant());
  await new Promise((r) => setTimeout(r, 300)); // b trims in the background after each commit
  await proxy.restore();

  await waitFor(() => gaps === 1, 'a tells its watcher about the gap', 30_000);
  t.true(a.health().up);
  t.is(a.gaps, 1);
  t.false(
    seen.some((c) => c.id === dropped.id),
    'the delete was lost to the stream: only the gap tells',
  );
  const ids = new Set((await a.list('Tenant')).map((v) => v.value.id));
  t.true(ids.has(kept.id) && ids.has(added.id) && !ids.has(dropped.id), 'a lists the current state');
  t.is(ids.size, 7);
  // The stream goes on after the gap.
  const later = tenant();
  await b.create('Tenant', later);
  await waitFor(() => seen.some((c) => c.id === later.id), 'a sees later changes');
  t.is(gaps, 1);
});

// Failure tests start servers of their own or break connections on purpose: one at a time (serial tests run before
// the others), so that on a loaded 2-core machine their timing is the failure's and not the neighbours'.

test.serial('zk: a server that accepts a connection and never answers the handshake does not hang the client', async (t) => {
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: zk.port });
  t.teardown(() => proxy.close());
  proxy.stall(); // the first attempt is accepted and then ignored, as a ZooKeeper server still starting may do
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const opening = ZooKeeperStore.open(`zk://${proxy.address}${root}`, { sessionTimeoutMs: 4000, opTimeoutMs: 20_000 });
  await new Promise((r) => setTimeout(r, 500));
  await proxy.restore();
  const s = await opening;
  t.teardown(async () => {
    await s.close();
    await removeTree(root);
  });
  t.true(s.connectionResets >= 1, 'the hung attempt was reset');
  t.is(await s.create('Tenant', tenant()), 1);
});

test.serial('zk: an established connection that goes silent is replaced, and writes go through', async (t) => {
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: zk.port });
  t.teardown(() => proxy.close());
  const root = `/bees-test-${randomUUID().slice(0, 8)}`;
  const s = await ZooKeeperStore.open(`zk://${proxy.address}${root}`, { sessionTimeoutMs: 6000, opTimeoutMs: 20_000 });
  t.teardown(async () => {
    await s.close();
    await removeTree(root);
  });
  t.is(await s.create('Tenant', tenant()), 1);
  const reasons: string[] = [];
  s.onConnectionReset = (why) => reasons.push(why);
  proxy.stall(); // the open connection carries nothing more, in either direction
  await proxy.restore(); // but a new connection would work
  t.is(await s.create('Tenant', tenant()), 1);
  t.true(
    reasons.some((r) => /nothing received/.test(r)),
    reasons.join('; '),
  );
});

test.serial('zk: writes fail with Unavailable when ZooKeeper is unreachable, and work again after', async (t) => {
  const own = await ZooKeeperServer.start({ forceSync: false });
  t.teardown(() => own.cleanup());
  const s = await ZooKeeperStore.open(`zk://${own.connectString}/bees-down`, { sessionTimeoutMs: 4000, opTimeoutMs: 2000 });
  t.teardown(() => s.close());
  await own.stop();
  const started = Date.now();
  const err = await t.throwsAsync(s.create('Tenant', tenant()), { instanceOf: StoreError });
  t.is(err?.code, 'Unavailable');
  t.true(Date.now() - started < 10_000, 'bounded in time');
  await own.launch();
  // Reconnecting takes a moment (longer on a loaded machine): the store recovers without being reopened.
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      t.is(await s.create('Tenant', tenant()), 1);
      break;
    } catch (e) {
      if (!(e instanceof StoreError && e.code === 'Unavailable') || Date.now() > deadline) throw e;
    }
  }
});

test.serial('zk: a 3-server ensemble keeps serving after losing one member', async (t) => {
  const { ZooKeeperEnsemble } = await import('../testing/zookeeper.js');
  const ens = await ZooKeeperEnsemble.start(3);
  t.teardown(() => ens.cleanup());
  const s = await ZooKeeperStore.open(`zk://${ens.connectString}/bees`, { sessionTimeoutMs: 6000, opTimeoutMs: 30_000 });
  t.teardown(() => s.close());
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const id = randomUUID();
    await s.create('Tenant', tenant(id));
    ids.push(id);
  }
  await ens.stopMember(0);
  for (let i = 0; i < 10; i++) {
    const id = randomUUID();
    await s.create('Tenant', tenant(id));
    ids.push(id);
  }
  t.deepEqual((await s.list('Tenant')).map((v) => v.value.id).sort(), ids.sort());
});

/** Records the paths `store`'s client lists from now on (the real client, the real server: only counted). */
function countListings(store: ZooKeeperStore): string[] {
  const client = (store as unknown as { session: { client: zookeeper.Client } }).session.client;
  const listed: string[] = [];
  const getChildren = client.getChildren.bind(client) as (...args: unknown[]) => void;
  (client as unknown as { getChildren: (...args: unknown[]) => void }).getChildren = (path: unknown, ...rest: unknown[]) => {
    listed.push(String(path));
    getChildren(path, ...rest);
  };
  return listed;
}

test('zk: a follower reads new log entries by name, without listing the log, while the writer trims it', async (t) => {
  // Retention 20: the writer trims every other commit, so entries vanish under the follower as it reads.
  const { open } = await openFresh(t, { retention: 20 });
  const a = await open();
  const b = await open();
  const seen: Change[] = [];
  let gaps = 0;
  t.teardown(await a.watch((c) => seen.push(c), { onGap: () => gaps++ }));
  await a.sync();
  const listed = countListings(a);
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) {
    const x = tenant();
    ids.push(x.id);
    await b.create('Tenant', x);
  }
  await waitFor(() => seen.length === 30, 'a sees every change', 30_000);
  t.deepEqual(
    seen.map((c) => c.id),
    ids,
    'each change once, in commit order',
  );
  t.true(seen.every((c, i) => i === 0 || c.seq > seen[i - 1]!.seq));
  t.is(gaps, 0);
  t.is(await a.lastSeq(), seen.at(-1)!.seq, 'lastSeq from the stat of log/ once the follower holds the newest entry');
  t.deepEqual(
    listed.filter((p) => p.endsWith('/log')),
    [],
    'no listing of the change log',
  );
  t.is((await a.list('Tenant')).length, 30);
});

test('zk: entries an older writer named with their count are still followed, in order', async (t) => {
  const { open, root } = await openFresh(t);
  const a = await open();
  const b = await open();
  const seen: Change[] = [];
  t.teardown(await a.watch((c) => seen.push(c)));
  await a.sync();
  // An older writer: the object and a log entry named n<count>_ in one multi, and no write to log/ itself.
  const old = tenant();
  const raw = zookeeper.createClient(zk.connectString);
  raw.connect();
  t.teardown(() => raw.close());
  await new Promise<void>((resolve, reject) =>
    raw
      .transaction()
      .create(`${root}/models/Tenant/${old.id}`, Buffer.from(JSON.stringify(old)))
      .create(
        `${root}/log/n1_`,
        Buffer.from(JSON.stringify({ changes: [{ kind: 'Tenant', id: old.id, type: 'create', version: 1, value: old }] })),
        zookeeper.CreateMode.PERSISTENT_SEQUENTIAL,
      )
      .commit((e: unknown) => (e ? reject(e instanceof Error ? e : new Error(JSON.stringify(e))) : resolve())),
  );
  const next = tenant();
  await b.create('Tenant', next);
  await waitFor(() => seen.length === 2, 'a sees both changes', 30_000);
  t.deepEqual(
    seen.map((c) => c.id),
    [old.id, next.id],
  );
  t.deepEqual((await a.list('Tenant')).map((v) => v.value.id).sort(), [old.id, next.id].sort());
});
