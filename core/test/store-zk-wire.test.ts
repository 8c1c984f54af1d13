// The ZooKeeper client's wire path as the store patches it (core/store/zk/wire.ts): requests of one tick in one
// write, replies cut into frames however the bytes arrive, multiRead. A real ZooKeeper server, the library's real
// client; a re-chunking relay in between where the reply boundaries matter.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import zookeeper, { type Client } from 'node-zookeeper-client';
import { ZooKeeperStore } from '../store/zookeeper.js';
import { installWireOnLibrary, multiGetData, type ReadReply } from '../store/zk/wire.js';
import { ZooKeeperServer } from '../testing/zookeeper.js';
import { tenant } from './store-conformance.js';

let zk: ZooKeeperServer;
test.before(async () => {
  installWireOnLibrary();
  zk = await ZooKeeperServer.start({ forceSync: false });
});
test.after.always(async () => {
  await zk?.cleanup();
});

async function connected(address: string): Promise<Client> {
  const c = zookeeper.createClient(address, { retries: 0 });
  await new Promise<void>((resolve) => {
    c.once('connected', () => resolve());
    c.connect();
  });
  return c;
}

const cb2p = <T>(fn: (cb: (e: unknown, v?: T) => void) => void): Promise<T> =>
  new Promise<T>((resolve, reject) => fn((e, v) => (e ? reject(e instanceof Error ? e : new Error(JSON.stringify(e))) : resolve(v as T))));

/** Relays a connection, cutting the server's bytes into chunks of 1 to 7 bytes and, now and then, 64 KiB. */
async function rechunker(port: number): Promise<{ address: string; close(): Promise<void> }> {
  const server = net.createServer((client) => {
    const up = net.connect(port, '127.0.0.1');
    client.pipe(up);
    let n = 0;
    up.on('data', (buf: Buffer) => {
      for (let o = 0; o < buf.length;) {
        const size = ++n % 5 === 0 ? 65536 : 1 + (n % 7);
        client.write(buf.subarray(o, o + size));
        o += size;
      }
    });
    const end = () => {
      client.destroy();
      up.destroy();
    };
    up.on('close', end);
    client.on('close', end);
    up.on('error', end);
    client.on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

test('wire: requests issued in one tick leave in one write, replies still matched in order', async (t) => {
  const c = await connected(zk.connectString);
  t.teardown(() => c.close());
  const root = `/wire-${randomUUID().slice(0, 8)}`;
  await cb2p((cb) => c.mkdirp(root, cb));
  const n = 300;
  await Promise.all(Array.from({ length: n }, (_, i) => cb2p((cb) => c.create(`${root}/n${i}`, Buffer.from(`v${i}`), cb))));
  // Count the socket's writes to the kernel while n reads are issued at once.
  const socket = (c as unknown as { connectionManager: { socket: net.Socket } }).connectionManager.socket;
  const s = socket as unknown as { _writev: (...a: unknown[]) => void; _write: (...a: unknown[]) => void };
  let writes = 0;
  const writev = s._writev.bind(socket);
  const write = s._write.bind(socket);
  s._writev = (...a) => {
    writes++;
    writev(...a);
  };
  s._write = (...a) => {
    writes++;
    write(...a);
  };
  const datas = await Promise.all(
    Array.from({ length: n }, (_, i) => cb2p<Buffer>((cb) => c.getData(`${root}/n${i}`, (e, d) => cb(e, d)))),
  );
  t.deepEqual(
    datas.map((d) => d.toString()),
    Array.from({ length: n }, (_, i) => `v${i}`),
  );
  t.log(`${n} reads in ${writes} socket write(s)`);
  t.true(writes <= 3, `${n} reads took ${writes} socket writes`);
});

test('wire: multiRead returns every znode in order, a missing one as its error, beside single reads', async (t) => {
  const c = await connected(zk.connectString);
  t.teardown(() => c.close());
  const root = `/wire-${randomUUID().slice(0, 8)}`;
  await cb2p((cb) => c.mkdirp(root, cb));
  for (let i = 0; i < 5; i++) await cb2p((cb) => c.create(`${root}/n${i}`, Buffer.from(`v${i}`), cb));
  await cb2p((cb) => c.setData(`${root}/n3`, Buffer.from('v3b'), -1, cb));
  const paths = [0, 1, 9, 3, 4].map((i) => `${root}/n${i}`);
  // Interleaved with single reads on the same connection: xids keep every reply with its request.
  const [many, single, many2] = await Promise.all([
    cb2p<ReadReply[]>((cb) => multiGetData(c, paths, cb)),
    cb2p<Buffer>((cb) => c.getData(`${root}/n2`, (e, d) => cb(e, d))),
    cb2p<ReadReply[]>((cb) => multiGetData(c, [`${root}/n2`], cb)),
  ]);
  const shown = many.map((r) => ('err' in r ? r.err : `${r.data.toString()}@${r.version}`));
  t.deepEqual(shown, ['v0@0', 'v1@0', zookeeper.Exception.NO_NODE, 'v3b@1', 'v4@0']);
  t.is(single.toString(), 'v2');
  t.is('data' in many2[0]! ? many2[0].data.toString() : 'error', 'v2');
  const r3 = many[3]!;
  t.true('mzxid' in r3 && r3.mzxid > r3.czxid, 'the stat is read: n3 was modified after its creation');
});

test('wire: replies split at any byte boundary load a store whole', async (t) => {
  const relay = await rechunker(zk.port);
  t.teardown(() => relay.close());
  const url = `zk://${zk.connectString}/bees-wire-${randomUUID().slice(0, 8)}`;
  const writer = await ZooKeeperStore.open(url);
  t.teardown(() => writer.close());
  const ids = Array.from({ length: 1500 }, () => randomUUID());
  for (let i = 0; i < ids.length; i += 500) {
    await writer.commit(ids.slice(i, i + 500).map((id) => ({ op: 'create', kind: 'Tenant', value: tenant(id) })));
  }
  const reader = await ZooKeeperStore.open(url.replace(zk.connectString, relay.address));
  t.teardown(() => reader.close());
  const all = await reader.list('Tenant');
  t.deepEqual(all.map((v) => v.value.id).sort(), [...ids].sort());
  // And single requests through the same relay (the change log's path).
  const id = randomUUID();
  await writer.create('Tenant', tenant(id));
  await reader.sync();
  t.is((await reader.get('Tenant', id))?.value.id, id);
});
