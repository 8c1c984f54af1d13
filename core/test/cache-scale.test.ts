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
import { planHost } from '../agent/plan.js';
import type { Bridge, Host, Port } from '../model/types.js';
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

test.serial('the cache spends under 720 bytes of heap per remote port', async (t) => {
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
  // A parsed port with its own copy of every id, plus a version kept per object, was ~825 bytes here; with the
  // shared ids interned and no version map ~555, and ~625 with the port index.
  t.log(`${perPort.toFixed(0)} bytes per port`);
  t.true(perPort > 100 && perPort < 720, `${perPort.toFixed(0)} bytes per port`);
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

/** planHost's result with its lists in one order: the index and the scan may list a bridge's ports differently. */
function normalized(plan: ReturnType<typeof planHost>): unknown {
  const bridgesOut = [...plan.bridges.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, b]) => [id, { ...b, remotes: [...b.remotes].sort((x, y) => x.mac.localeCompare(y.mac)) }]);
  return { bridges: bridgesOut, routers: [...plan.routers.keys()].sort(), plugs: [...plan.plugs].sort() };
}

test.serial("planning from the cache's port index equals planning from a scan of every port, through changes", async (t) => {
  const store = await storeWith(t, 400);
  const ops: Op[] = [
    ...bridges.map((id, k): Op => ({
      op: 'create',
      kind: 'Bridge',
      value: {
        id,
        tenantId,
        name: `b${k}`,
        tunnelKey: 500 + k,
        subnets: [{ cidr: `10.${k}.0.0/16` }],
        adminStateUp: true,
        options: {},
        labels: {},
      } as Bridge,
    })),
    ...hosts.map((id, i): Op => ({
      op: 'create',
      kind: 'Host',
      value: { id, name: `h${i}`, addresses: [`172.16.${i >> 8}.${(i & 255) + 1}`], tunnelZones: [], tunnelPort: 4789 } as Host,
    })),
  ];
  for (let i = 0; i < ops.length; i += 100) await store.commit(ops.slice(i, i + 100));
  const cache = new TopologyCache(store);
  await cache.start();
  t.teardown(() => cache.stop());
  const me = hosts[0]!;
  const scan = { get: cache.get.bind(cache), list: cache.list.bind(cache) };
  const same = (what: string) => {
    const indexed = planHost(cache, { hostId: me, underlayMtu: 1500 });
    t.true(indexed.bridges.size > 0, what);
    t.deepEqual(normalized(indexed), normalized(planHost(scan, { hostId: me, underlayMtu: 1500 })), what);
  };
  same('after the start');

  const all = (await store.list('Port')).map((v) => v.value);
  const remote = all.find((p) => p.hostId !== me && p.bridgeId === bridges[0])!;
  const local = all.find((p) => p.hostId === me)!;
  await store.update('Port', { ...remote, bridgeId: bridges[5]! }); // moves between bridges
  await store.update('Port', { ...all.find((p) => p.hostId !== me && p.bridgeId === bridges[7])!, hostId: me }); // bound here
  await store.update('Port', { ...local, hostId: hosts[9]! }); // leaves this host
  await store.delete('Port', all.find((p) => p.hostId !== me && p.bridgeId === bridges[2])!.id);
  const fresh = { ...port(9999), bridgeId: bridges[3]! };
  await store.create('Port', fresh);
  const deadline = Date.now() + 5000;
  while (!cache.get('Port', fresh.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  same('after moves, rebinding, a delete and a create');
  t.false(
    [...cache.portIndex().ofBridge(bridges[0]!)].some((p) => p.id === remote.id),
    'a port moved to another bridge leaves the old group',
  );
});
