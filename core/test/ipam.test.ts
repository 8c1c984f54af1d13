import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ipam, blockId, subnetGateway } from '../ipam/ipam.js';
import { SubnetPlan } from '../ipam/subnet-plan.js';
import type { Bridge, Subnet } from '../model/types.js';
import { FileStore } from '../store/file.js';
import type { Store } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';

async function fileStore(t: ExecutionContext): Promise<Store> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-ipam-'));
  const store = await FileStore.open(`file:${dir}`);
  t.teardown(async () => {
    await store.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  return store;
}

function bridge(...subnets: Subnet[]): Bridge {
  const id = randomUUID();
  return { id, tenantId: randomUUID(), name: `br-${id.slice(0, 6)}`, tunnelKey: 1, subnets, adminStateUp: true, options: {}, labels: {} };
}

async function blocks(store: Store, bridgeId: string) {
  return (await store.list('IpamBlock')).filter((b) => b.value.bridgeId === bridgeId).map((b) => b.value);
}

test('gateway default and subnet plan rules', (t) => {
  t.is(subnetGateway({ cidr: '10.0.0.0/24' }), '10.0.0.1');
  t.is(subnetGateway({ cidr: '10.0.0.0/24', gateway: '10.0.0.254' }), '10.0.0.254');
  t.is(subnetGateway({ cidr: '10.0.0.0/24', gateway: '' }), undefined);
  t.is(subnetGateway({ cidr: 'fd00::/64' }), 'fd00::1');
  const small = new SubnetPlan('b', { cidr: '10.0.0.16/28' });
  t.is(small.blockPrefix, 28); // a /28 subnet is one block
  t.is(new SubnetPlan('b', { cidr: '10.0.0.0/16' }).blockPrefix, 26);
  t.is(new SubnetPlan('b', { cidr: 'fd00::/64' }).blockPrefix, 122);
  t.is(small.capacity(), 13n); // 16 minus network, gateway, broadcast
  const err = t.throws(() => new SubnetPlan('b', { cidr: '10.0.0.1/24' }, 'subnets[0]'), { instanceOf: TopologyError });
  t.is(err.code, 'invalid');
  t.is(err.field, 'subnets[0].cidr');
  t.throws(() => new SubnetPlan('b', { cidr: '10.0.0.0/24', gateway: '10.0.1.1' }), {
    message: /gateway: 10\.0\.1\.1 is not inside 10\.0\.0\.0\/24/,
  });
  t.throws(() => new SubnetPlan('b', { cidr: '10.0.0.0/24', range: '10.0.1.0/25' }), { message: /range: 10\.0\.1\.0\/25 is not inside/ });
  t.throws(() => new SubnetPlan('b', { cidr: 'fd00::/64', blockPrefix: 64 }), { message: /use a prefix of at least \/112/ });
  t.throws(() => new SubnetPlan('b', { cidr: '10.0.0.0/24', reserved: ['10.0.0.300'] }), {
    message: /reserved\[0\]: "10\.0\.0\.300" is not a valid/,
  });
});

test('allocates v4 and v6, skipping network, gateway, broadcast, reserved and addresses outside the range', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.20.0.0/24', reserved: ['10.20.0.2', '10.20.0.3'] }, { cidr: 'fd00:20::/64', gateway: 'fd00:20::1' });
  const r = await ipam.allocate(br, 'w1', 'eth0');
  t.deepEqual(r, [
    { address: '10.20.0.4', prefixLength: 24, gateway: '10.20.0.1', subnet: '10.20.0.0/24', family: 4 },
    { address: 'fd00:20::2', prefixLength: 64, gateway: 'fd00:20::1', subnet: 'fd00:20::/64', family: 6 },
  ]);
  const ranged = bridge({ cidr: '10.21.0.0/24', range: '10.21.0.128/25', gateway: '' });
  const got = await ipam.allocate(ranged, 'w1', 'eth0');
  t.deepEqual(got, [{ address: '10.21.0.128', prefixLength: 24, subnet: '10.21.0.0/24', family: 4 }]);
  // The range's blocks start at .128: no block below it is ever created.
  t.deepEqual(
    (await blocks(store, ranged.id)).map((b) => b.cidr),
    ['10.21.0.128/26'],
  );
  // Only the v6 family when asked.
  const v6 = await ipam.allocate(br, 'w2', 'eth0', { families: [6] });
  t.is(v6.length, 1);
  t.is(v6[0]!.address, 'fd00:20::3');
  await t.throwsAsync(ipam.allocate(ranged, 'w3', 'eth0', { families: [6] }), { message: /has no IPv6 subnet/ });
});

test('same owner and ifname get the same address back; another ifname gets another', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.30.0.0/24' });
  const a = await ipam.allocate(br, 'w1', 'eth0');
  const b = await ipam.allocate(br, 'w1', 'eth0');
  t.deepEqual(a, b);
  // Concurrent repeats in one process are serialised and still idempotent.
  const many = await Promise.all([1, 2, 3, 4].map(() => ipam.allocate(br, 'w9', 'eth0')));
  t.is(new Set(many.map((m) => m[0]!.address)).size, 1);
  const c = await ipam.allocate(br, 'w1', 'eth1');
  t.not(c[0]!.address, a[0]!.address);
  // Another host asking for the same owner+ifname (a retried ADD) finds the existing address too.
  t.deepEqual(await new Ipam(store, 'host-b').allocate(br, 'w1', 'eth0'), a);
  t.is((await ipam.allocations(br.id)).length, 3);
});

test('static requests are honoured or refused with the reason', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.40.0.0/24', reserved: ['10.40.0.9'] }, { cidr: 'fd00:40::/120' });
  const r = await ipam.allocate(br, 'w1', 'eth0', { requested: ['10.40.0.77'] });
  t.is(r[0]!.address, '10.40.0.77');
  t.is(r[1]!.family, 6); // the other family is still allocated dynamically
  t.deepEqual(await ipam.allocate(br, 'w1', 'eth0', { requested: ['10.40.0.77'] }), r); // idempotent
  const refuse = async (requested: string, code: TopologyError['code'], message: RegExp) => {
    const err = await t.throwsAsync(ipam.allocate(br, `x-${requested}`, 'eth0', { requested: [requested] }), {
      instanceOf: TopologyError,
      message,
    });
    t.is(err.code, code, requested);
  };
  await refuse('10.41.0.5', 'invalid', /10\.41\.0\.5 is outside every subnet of bridge "br-.*" \(10\.40\.0\.0\/24, fd00:40::\/120\)/);
  await refuse('10.40.0.0', 'invalid', /10\.40\.0\.0 cannot be assigned: it is the network address of 10\.40\.0\.0\/24/);
  await refuse('10.40.0.1', 'invalid', /it is the gateway of 10\.40\.0\.0\/24/);
  await refuse('10.40.0.255', 'invalid', /it is the broadcast address/);
  await refuse('10.40.0.9', 'invalid', /it is reserved in 10\.40\.0\.0\/24/);
  await refuse('10.40.0.77', 'conflict', /10\.40\.0\.77 is in use by w1 \(eth0\) on host host-a/);
  await refuse('not-an-ip', 'invalid', /requested\[0\]: "not-an-ip" is not a valid IPv4 or IPv6 address/);
  // A failed request leaves nothing behind (the v6 half taken first is rolled back).
  const before = await ipam.allocations(br.id);
  t.is(before.length, 2);
  await t.throwsAsync(ipam.allocate(br, 'w2', 'eth0', { requested: ['fd00:40::10', '10.40.0.77'] }), { instanceOf: TopologyError });
  t.deepEqual(await ipam.allocations(br.id), before);
  // The owner asking for a different address than the one it holds is a conflict, not a silent second address.
  await t.throwsAsync(ipam.allocate(br, 'w1', 'eth0', { requested: ['10.40.0.78'] }), { message: /w1 eth0 already holds 10\.40\.0\.77/ });
  // Reservation of an address for a non-interface owner (a router port).
  const res = await ipam.reserveAddress(br, '10.40.0.200', 'router-port-1');
  t.is(res.address, '10.40.0.200');
  t.deepEqual(await ipam.reserveAddress(br, '10.40.0.200', 'router-port-1'), res);
  await t.throwsAsync(ipam.reserveAddress(br, '10.40.0.200', 'someone-else'), { message: /in use by router-port-1/ });
});

test('exhaustion is a clear error; release frees for reuse; release of nothing is fine', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.50.0.0/29' }); // 8 addresses: network, gateway, broadcast leave 5
  const got: string[] = [];
  for (let i = 0; i < 5; i++) got.push((await ipam.allocate(br, `w${i}`, 'eth0'))[0]!.address);
  t.deepEqual(got, ['10.50.0.2', '10.50.0.3', '10.50.0.4', '10.50.0.5', '10.50.0.6']);
  const err = await t.throwsAsync(ipam.allocate(br, 'w5', 'eth0'), { instanceOf: TopologyError });
  t.is(err.code, 'exhausted');
  t.is(err.message, `subnet 10.50.0.0/29 of bridge "${br.name}" is full (5 addresses in use)`);
  t.deepEqual(await ipam.release(br.id, 'w2'), ['10.50.0.4']);
  t.deepEqual(await ipam.release(br.id, 'w2'), []);
  t.deepEqual(await ipam.release(br.id, 'nobody', 'eth0'), []);
  t.is((await ipam.allocate(br, 'w5', 'eth0'))[0]!.address, '10.50.0.4');
  t.true(await ipam.releaseAddress(br.id, '10.50.0.4'));
  t.false(await ipam.releaseAddress(br.id, '10.50.0.4'));
  t.false(await ipam.releaseAddress(br.id, '192.0.2.1'));
  await t.throwsAsync(ipam.releaseAddress(br.id, 'bogus'), { message: /"bogus" is not a valid/ });
  // Release by ifname frees only that interface.
  await ipam.allocate(br, 'w0', 'eth1');
  t.deepEqual(await ipam.release(br.id, 'w0', 'eth1'), ['10.50.0.4']);
  t.is((await ipam.allocations(br.id)).filter((a) => a.owner === 'w0').length, 1);
});

test('a second subnet of the same family is used when the first is full', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.51.0.0/30' }, { cidr: '10.52.0.0/30' }); // one usable each (gateway takes the other)
  t.is((await ipam.allocate(br, 'a', 'eth0'))[0]!.address, '10.51.0.2');
  t.is((await ipam.allocate(br, 'b', 'eth0'))[0]!.address, '10.52.0.2');
  await t.throwsAsync(ipam.allocate(br, 'c', 'eth0'), {
    message: `subnet 10.51.0.0/30 of bridge "${br.name}" is full (1 addresses in use); subnet 10.52.0.0/30 of bridge "${br.name}" is full (1 addresses in use)`,
  });
});

test('blocks: claimed per host, borrowed when none is free, reclaimed when the host is gone', async (t) => {
  const store = await fileStore(t);
  const a = new Ipam(store, 'host-a');
  const b = new Ipam(store, 'host-b');
  const br = bridge({ cidr: '10.60.0.0/25' }); // two /26 blocks
  t.is((await a.allocate(br, 'a1', 'eth0'))[0]!.address, '10.60.0.2');
  t.is((await b.allocate(br, 'b1', 'eth0'))[0]!.address, '10.60.0.64');
  let bl = await blocks(store, br.id);
  t.deepEqual(bl.map((x) => [x.cidr, x.hostId]).sort(), [
    ['10.60.0.0/26', 'host-a'],
    ['10.60.0.64/26', 'host-b'],
  ]);
  t.is(bl[0]!.id, blockId(br.id, bl[0]!.cidr));
  // host-a keeps using its own block.
  t.is((await a.allocate(br, 'a2', 'eth0'))[0]!.address, '10.60.0.3');
  // host-c has no free block: it borrows from one of theirs and records itself as the allocation's host.
  const c = new Ipam(store, 'host-c');
  const borrowed = (await c.allocate(br, 'c1', 'eth0'))[0]!.address;
  t.true(['10.60.0.4', '10.60.0.65'].includes(borrowed), borrowed);
  t.is((await c.allocations(br.id)).find((x) => x.address === borrowed)!.hostId, 'host-c');
  t.deepEqual([...new Set((await blocks(store, br.id)).map((x) => x.hostId))].sort(), ['host-a', 'host-b']);

  // host-b is gone: its non-empty block loses affinity (allocations stay); nothing of host-a's changes.
  const reclaimed = await a.reclaimBlocks(new Set(['host-a', 'host-c']));
  t.deepEqual(reclaimed, [{ bridgeId: br.id, cidr: '10.60.0.64/26', hostId: 'host-b', deleted: false }]);
  bl = await blocks(store, br.id);
  t.is(bl.find((x) => x.cidr === '10.60.0.64/26')!.hostId, undefined);
  t.truthy(bl.find((x) => x.cidr === '10.60.0.64/26')!.allocations['10.60.0.64']);
  // gc removes the dead host's workloads; then host-c, out of its own blocks, claims the unowned block.
  const freed = await a.gc((_owner, _ifname, hostId) => hostId !== 'host-b', br.id);
  t.deepEqual(
    freed.map((f) => [f.address, f.owner]),
    [['10.60.0.64', 'b1']],
  );
  // The unowned block left empty is deleted by gc; the next allocation of host-c creates (claims) it again.
  await c.release(br.id, 'c1');
  const c2 = (await c.allocate(br, 'c2', 'eth0'))[0]!.address;
  t.is(c2, '10.60.0.64');
  t.is((await blocks(store, br.id)).find((x) => x.cidr === '10.60.0.64/26')!.hostId, 'host-c');

  // Empty blocks of dead hosts are deleted outright.
  await a.release(br.id, 'a1');
  await a.release(br.id, 'a2');
  const gone = await c.reclaimBlocks(new Set(['host-c']));
  t.deepEqual(gone, [{ bridgeId: br.id, cidr: '10.60.0.0/26', hostId: 'host-a', deleted: true }]);
  t.deepEqual(
    (await blocks(store, br.id)).map((x) => x.cidr),
    ['10.60.0.64/26'],
  );
  t.is(await c.deleteBridgeBlocks(br.id), 1);
  t.deepEqual(await blocks(store, br.id), []);
});

test('IPv6 /64 allocates lazily from the first blocks and honours static requests far away', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: 'fd00:60::/64' });
  const seen = new Set<string>();
  for (let i = 0; i < 70; i++) seen.add((await ipam.allocate(br, `w${i}`, 'eth0'))[0]!.address);
  t.is(seen.size, 70);
  t.true(seen.has('fd00:60::2'));
  t.true(seen.has('fd00:60::40')); // second block, no network address skipped inside it
  t.deepEqual((await blocks(store, br.id)).map((b) => b.cidr).sort(), ['fd00:60::/122', 'fd00:60::40/122']);
  const far = await ipam.allocate(br, 'far', 'eth0', { requested: ['fd00:60::ffff:1234'] });
  t.is(far[0]!.address, 'fd00:60::ffff:1234');
  t.true((await blocks(store, br.id)).some((b) => b.cidr === 'fd00:60::ffff:1200/122'));
  // Non-canonical spelling of a held address is recognised as the same address.
  await t.throwsAsync(ipam.allocate(br, 'other', 'eth0', { requested: ['FD00:60:0:0::FFFF:1234'] }), { message: /in use by far/ });
});

test('bad arguments are refused clearly', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  const br = bridge({ cidr: '10.70.0.0/24' });
  t.throws(() => new Ipam(store, ''), { message: /hostId must be a non-empty string/ });
  t.throws(() => ipam.allocate(br, '', 'eth0'), { message: /owner must be a non-empty string/ });
  await t.throwsAsync(ipam.allocate(bridge({ cidr: '10.70.0.0/33' }), 'w', 'eth0'), {
    message: /subnets\[0\]\.cidr: "10\.70\.0\.0\/33" is not a valid CIDR/,
  });
  await t.throwsAsync(ipam.allocate(br, 'w', 'eth0', { requested: ['10.70.0.5', '10.70.0.6'] }), {
    message: /more than one IPv4 address requested/,
  });
  await t.throwsAsync(ipam.reserveAddress(br, '10.71.0.1', 'x'), { message: /outside every subnet/ });
});

test('many hosts racing in one process on the file store: every address once, exactly the usable count', async (t) => {
  const store = await fileStore(t);
  const br = bridge({ cidr: '10.80.0.0/24' });
  const hosts = ['h1', 'h2', 'h3', 'h4', 'h4', 'h5', 'h6', 'h6'].map((h) => new Ipam(store, h));
  const got = await Promise.all(
    hosts.map(async (ipam, i) => {
      const mine: string[] = [];
      for (let n = 0; ; n++) {
        try {
          mine.push((await ipam.allocate(br, `w${i}-${n}`, 'eth0'))[0]!.address);
        } catch (err) {
          t.is((err as TopologyError).code, 'exhausted', (err as Error).message);
          return mine;
        }
      }
    }),
  );
  const all = got.flat();
  t.is(all.length, 253);
  t.is(new Set(all).size, 253);
  t.is((await hosts[0]!.allocations(br.id)).length, 253);
  await Promise.all(hosts.map((ipam, i) => Promise.all(got[i]!.map((_, n) => ipam.release(br.id, `w${i}-${n}`)))));
  t.deepEqual(await hosts[0]!.allocations(br.id), []);
  await hosts[0]!.reclaimBlocks(new Set());
  t.deepEqual(await blocks(store, br.id), []);
});

test('a burst on one host is written in a few commits; a refused request in a batch leaves the others alone', async (t) => {
  const store = await fileStore(t);
  let commits = 0;
  // The real file store, its write calls counted: one allocation written on its own is one commit or more.
  const counted: Store = Object.assign(Object.create(store) as Store, {
    commit: (...a: Parameters<Store['commit']>) => (commits++, store.commit(...a)),
    create: (...a: Parameters<Store['create']>) => (commits++, store.create(...a)),
    update: (...a: Parameters<Store['update']>) => (commits++, store.update(...a)),
    delete: (...a: Parameters<Store['delete']>) => (commits++, store.delete(...a)),
  });
  const ipam = new Ipam(counted, 'h1');
  const br = bridge({ cidr: '10.81.0.0/24' });
  await ipam.allocate(br, 'first', 'eth0', { requested: ['10.81.0.9'] });
  commits = 0;
  const burst = await Promise.allSettled(
    Array.from({ length: 20 }, (_, i) => ipam.allocate(br, `w${i}`, 'eth0', i === 7 ? { requested: ['10.81.0.9'] } : {})),
  );
  const ok = burst.flatMap((r) => (r.status === 'fulfilled' ? [r.value[0]!.address] : []));
  t.is(ok.length, 19);
  t.is(new Set([...ok, '10.81.0.9']).size, 20, 'every address once');
  const refused = burst[7] as PromiseRejectedResult;
  t.is((refused.reason as TopologyError).code, 'conflict');
  t.true(commits <= 3, `${commits} commits for 20 allocations`);
  // Every address acknowledged is in the store, and releases batch the same way.
  t.is((await ipam.allocations(br.id)).length, 20);
  commits = 0;
  await Promise.all(Array.from({ length: 20 }, (_, i) => ipam.release(br.id, `w${i}`, 'eth0')));
  t.true(commits <= 3, `${commits} commits for 20 releases`);
  t.deepEqual(
    (await ipam.allocations(br.id)).map((a) => a.owner),
    ['first'],
  );
});

test('a release beside its interface deletion keeps the addresses from allocation until the interface is gone', async (t) => {
  const store = await fileStore(t);
  const ipam = new Ipam(store, 'host-a');
  t.true(ipam.canQuarantine);
  const br = bridge({ cidr: '10.53.0.0/29' }); // 5 usable addresses
  for (let i = 0; i < 5; i++) await ipam.allocate(br, `w${i}`, 'eth0');
  let gone!: () => void;
  const interfaceGone = new Promise<void>((resolve) => (gone = resolve));
  t.deepEqual(await ipam.releaseWhile(br.id, 'w2', 'eth0', interfaceGone), ['10.53.0.4']);
  // Free in the store (durable: a crash now leaks nothing) ...
  t.false((await ipam.allocations(br.id)).some((a) => a.address === '10.53.0.4'));
  // ... but not handed out while the interface that held it is still being deleted.
  const full = await t.throwsAsync(ipam.allocate(br, 'w5', 'eth0'), { instanceOf: TopologyError });
  t.is(full.code, 'exhausted');
  const busy = await t.throwsAsync(ipam.allocate(br, 'w6', 'eth0', { requested: ['10.53.0.4'] }), { instanceOf: TopologyError });
  t.is(busy.code, 'conflict');
  t.regex(busy.message, /10\.53\.0\.4 is being released/);
  gone();
  await interfaceGone;
  t.is((await ipam.allocate(br, 'w5', 'eth0'))[0]!.address, '10.53.0.4');

  // A deletion that failed keeps them held (the sweep removes the interface later).
  const failed = Promise.reject(new Error('unplug failed'));
  failed.catch(() => undefined);
  t.deepEqual(await ipam.releaseWhile(br.id, 'w3', 'eth0', failed), ['10.53.0.5']);
  await failed.catch(() => undefined);
  t.is((await t.throwsAsync(ipam.allocate(br, 'w7', 'eth0'), { instanceOf: TopologyError })).code, 'exhausted');
});

test('a store with other writers gets no quarantine: releases wait for the interface instead', async (t) => {
  const store = await fileStore(t);
  // The same store seen as a shared one (ZooKeeper's kind): a quarantine in this process would not bind other hosts.
  const shared = new Proxy(store, {
    get: (target, key) => {
      if (key === 'exclusive') return undefined;
      const v = Reflect.get(target, key) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const ipam = new Ipam(shared, 'host-a');
  t.false(ipam.canQuarantine);
  await t.throwsAsync(ipam.releaseWhile('b', 'w', 'eth0', Promise.resolve()), { message: /Store\.exclusive/ });
});
