// The headline IPAM property through the clustered store: separate OS processes (hosts) allocating concurrently
// from one /24 on a real ZooKeeper never hand out an address twice, hand out exactly the usable count, then report
// exhaustion clearly, and leave nothing behind once released.
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Ipam } from '../ipam/ipam.js';
import type { Bridge } from '../model/types.js';
import { contains } from '../net/ip.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { ZooKeeperServer } from '../testing/zookeeper.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const worker = path.join(here, 'fixtures', 'ipam-worker.ts');
const repo = path.resolve(here, '..', '..');

let zk: ZooKeeperServer | undefined;
test.before(async () => {
  zk = await ZooKeeperServer.start();
});
test.after.always(async () => {
  await zk?.cleanup();
});

interface Worker {
  proc: ChildProcess;
  next(): Promise<Record<string, unknown>>;
  send(line: string): void;
}

function startWorker(t: ExecutionContext, url: string, hostId: string, tag: string, bridge: Bridge): Worker {
  const proc = spawn(process.execPath, ['--import', 'tsx', worker, url, hostId, tag, JSON.stringify(bridge)], {
    cwd: repo,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  const waiters: ((line: string | undefined) => void)[] = [];
  const rl = createInterface({ input: proc.stdout });
  rl.on('line', (line) => (waiters.length > 0 ? waiters.shift()!(line) : lines.push(line)));
  rl.on('close', () => {
    while (waiters.length > 0) waiters.shift()!(undefined);
  });
  return {
    proc,
    send: (line) => proc.stdin.write(line + '\n'),
    next: async () => {
      const line = lines.length > 0 ? lines.shift() : await new Promise<string | undefined>((resolve) => waiters.push(resolve));
      if (line === undefined) throw new Error(`worker ${tag} (${hostId}) ended early: ${stderr.trim().slice(-2000)}`);
      return JSON.parse(line) as Record<string, unknown>;
    },
  };
}

function bridgeOf(cidr: string): Bridge {
  const id = randomUUID();
  return {
    id,
    tenantId: randomUUID(),
    name: `zk-${id.slice(0, 6)}`,
    tunnelKey: 7,
    subnets: [{ cidr }],
    adminStateUp: true,
    options: {},
    labels: {},
  };
}

async function openRoot(t: ExecutionContext): Promise<{ url: string; store: Store }> {
  const url = `zk://${zk!.connectString}/bees-ipam-${randomUUID().slice(0, 8)}`;
  const store = await openStore(url);
  t.teardown(() => store.close());
  return { url, store };
}

async function concurrentHosts(t: ExecutionContext, hostIds: string[]): Promise<void> {
  const { url, store } = await openRoot(t);
  const br = bridgeOf('10.99.7.0/24');
  const usable = 253; // 256 less network, gateway (.1), broadcast
  const workers = hostIds.map((h, i) => startWorker(t, url, h, `w${i}`, br));
  for (const w of workers) t.deepEqual(await w.next(), { ready: true });

  // Every process starts allocating at the same moment and keeps going until the pool is exhausted.
  for (const w of workers) w.send('go');
  const results = await Promise.all(workers.map((w) => w.next()));
  const byAddress = new Map<string, string>();
  for (const [i, r] of results.entries()) {
    t.is(r.error, undefined, `worker ${i}: ${String(r.error)}`);
    t.regex(String(r.exhausted), new RegExp(`^subnet 10\\.99\\.7\\.0/24 of bridge "${br.name}" is full \\(${usable} addresses in use\\)$`));
    for (const [owner, address] of r.allocated as [string, string][]) {
      t.false(byAddress.has(address), `${address} handed to ${owner} and ${byAddress.get(address)}`);
      byAddress.set(address, owner);
    }
  }
  t.is(byAddress.size, usable);
  for (const a of byAddress.keys()) {
    t.true(contains('10.99.7.0/24', a) && !['10.99.7.0', '10.99.7.1', '10.99.7.255'].includes(a), a);
  }
  t.log(
    `allocations per worker: ${results.map((r) => (r.allocated as unknown[]).length).join(' ')}; ms: ${results.map((r) => r.ms).join(' ')}`,
  );

  // The store agrees with what the workers were told, owner for owner.
  const observer = new Ipam(store, 'observer');
  const stored = await observer.allocations(br.id);
  t.is(stored.length, usable);
  for (const s of stored) t.is(byAddress.get(s.address), s.owner, s.address);
  // A newcomer gets the clear exhaustion error too.
  await t.throwsAsync(observer.allocate(br, 'late', 'eth0'), {
    message: `subnet 10.99.7.0/24 of bridge "${br.name}" is full (${usable} addresses in use)`,
  });

  // Release concurrently from every process: everything comes back, nothing is left behind.
  for (const w of workers) w.send('release');
  const released = (await Promise.all(workers.map((w) => w.next()))).flatMap((r) => r.released as string[]);
  t.deepEqual(released.sort(), [...byAddress.keys()].sort());
  t.deepEqual(await observer.allocations(br.id), []);
  // list() may lag other clients' writes; the blocks themselves are read afresh.
  const listed = (await store.list('IpamBlock')).filter((b) => b.value.bridgeId === br.id);
  const blocks = (await Promise.all(listed.map((b) => store.get('IpamBlock', b.value.id)))).filter((b) => b !== undefined);
  t.true(blocks.length > 0 && blocks.length <= 4, `blocks: ${blocks.map((b) => b.value.cidr).join(' ')}`);
  for (const b of blocks) t.deepEqual(b.value.allocations, {}, b.value.cidr);
  // Every host is gone: their empty blocks are deleted.
  const reclaimed = await observer.reclaimBlocks(new Set());
  t.true(reclaimed.every((r) => r.deleted));
  t.deepEqual(await store.list('IpamBlock'), []);

  for (const w of workers) w.send('exit');
  await Promise.all(
    workers.map((w) => new Promise((resolve) => (w.proc.exitCode !== null ? resolve(undefined) : w.proc.once('exit', resolve)))),
  );
  for (const w of workers) t.is(w.proc.exitCode, 0);
}

test.serial('8 processes, 8 hosts, one /24 on ZooKeeper: unique addresses, exact count, exhaustion, clean release', async (t) => {
  await concurrentHosts(t, ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7', 'h8']);
});

test.serial('8 processes sharing 3 host ids, one /24 on ZooKeeper: same guarantees', async (t) => {
  await concurrentHosts(t, ['h1', 'h1', 'h1', 'h2', 'h2', 'h2', 'h3', 'h3']);
});
