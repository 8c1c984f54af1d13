// The agent's topology cache at scale (issue 12, bench/scale): what it spends per remote port, and that its
// memory savings keep every value as written. A real file store; the heap is read after full collections.
import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { TopologyCache } from '../agent/cache.js';
import type { Port } from '../model/types.js';
import { FileStore } from '../store/file.js';
import type { Op } from '../store/store.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const tenantId = randomUUID();
const bridges = Array.from({ length: 20 }, () => randomUUID());
const hosts = Array.from({ length: 200 }, () => randomUUID());

function port(n: number): Port {
  return {
    id: randomUUID(),
    tenantId,
    type: 'bridge',
    bridgeId: bridges[n % bridges.length]!,
    mac: `0a:58:00:00:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
    ips: [`10.1.${(n >> 8) & 255}.${n & 255}`],
    hostId: hosts[n % hosts.length]!,
    interfaceName: `sim${n.toString(36)}`,
    owner: { orchestrator: 'cni', workloadId: `sim-${n}`, ifname: 'eth0' },
    adminStateUp: true,
    status: 'up',
    portSecurity: true,
    portGroupIds: [],
    options: {},
  };
}

async function storeWith(t: import('ava').ExecutionContext, count: number) {
  const dir = mkdtempSync(join(tmpdir(), 'bees-cache-scale-'));
  const store = await FileStore.open(`file:${dir}`);
  t.teardown(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < count; i += 500) {
    const ops: Op[] = [];
    for (let n = i; n < Math.min(count, i + 500); n++) ops.push({ op: 'create', kind: 'Port', value: port(n) });
    await store.commit(ops);
  }
  return store;
}

test.serial('the cache spends under 650 bytes of heap per remote port', async (t) => {
  const count = 20_000;
  const store = await storeWith(t, count);
  let cache: TopologyCache | undefined = new TopologyCache(store);
  await cache.start();
  t.is(cache.list('Port').length, count);
  // What the cache holds is what goes when it goes (the store's own caches and garbage stay on both sides).
  const withCache = heapUsed();
  cache.stop();
  cache = undefined;
  const perPort = (withCache - heapUsed()) / count;
  // A parsed port with its own copy of every id, plus a version kept per object, was ~790 bytes here; with the
  // shared ids interned and no version map, ~530.
  t.log(`${perPort.toFixed(0)} bytes per port`);
  t.true(perPort > 100 && perPort < 650, `${perPort.toFixed(0)} bytes per port`);
});

test.serial('interned ids leave every value as written, through the list and the change stream', async (t) => {
  const store = await storeWith(t, 50);
  const cache = new TopologyCache(store);
  await cache.start();
  t.teardown(() => cache.stop());
  const written = (await store.list('Port')).map((v) => v.value);
  for (const p of written) t.deepEqual(cache.get('Port', p.id), p);

  const fresh = port(7);
  await store.create('Port', fresh);
  const moved = { ...written[0]!, hostId: hosts[3]!, bridgeId: bridges[4]! };
  await store.update('Port', moved);
  await store.delete('Port', written[1]!.id);
  const deadline = Date.now() + 5000;
  while (cache.get('Port', written[1]!.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.deepEqual(cache.get('Port', fresh.id), fresh);
  t.deepEqual(cache.get('Port', moved.id), moved);
  t.is(cache.get('Port', written[1]!.id), undefined);
  t.is(cache.list('Port').filter((p) => p.bridgeId === bridges[4]).length, written.filter((p) => p.bridgeId === bridges[4]).length + 1);
});
