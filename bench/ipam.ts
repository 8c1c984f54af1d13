// IPAM throughput and latency: our block-affinity allocator on the file store and on a real ZooKeeper, one host
// and several concurrent hosts, next to the reference CNI `host-local` IPAM plugin (one exec per ADD, file-backed,
// single host only) measured in the same run.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Ipam } from '../core/ipam/ipam.js';
import type { Bridge } from '../core/model/types.js';
import { openStore } from '../core/store/open.js';
import type { Store } from '../core/store/store.js';
import { ZooKeeperServer } from '../core/testing/zookeeper.js';
import { percentile, timed, type BenchContext, type BenchRow, type BenchSection } from './report.js';

const HOST_LOCAL = '/usr/lib/cni/host-local';
const HOSTS = 4;

interface Figures {
  perSec: number;
  p50: number;
  p99: number;
}

function bridgeOf(cidr: string): Bridge {
  const id = randomUUID();
  return { id, tenantId: randomUUID(), name: `bench-${id.slice(0, 6)}`, tunnelKey: 1, subnets: [{ cidr }], adminStateUp: true, options: {}, labels: {} };
}

/** `count` allocations split over one Ipam per store client, all running at once; latency per allocation. */
async function measure(stores: Store[], count: number): Promise<Figures> {
  const br = bridgeOf('10.128.0.0/16');
  const ipams = stores.map((s, i) => new Ipam(s, `bench-host-${i}`));
  const latencies: number[] = [];
  const each = Math.ceil(count / ipams.length);
  const wall = await timed(() => Promise.all(ipams.map(async (ipam, h) => {
    for (let i = 0; i < each; i++) latencies.push(await timed(() => ipam.allocate(br, `w${h}-${i}`, 'eth0')));
  })));
  await ipams[0]!.deleteBridgeBlocks(br.id);
  return { perSec: (latencies.length / wall) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** The reference: `host-local` ADD executed once per allocation, as a container runtime would. */
async function hostLocal(count: number, dir: string): Promise<Figures> {
  const conf = JSON.stringify({ cniVersion: '0.4.0', name: 'bench', ipam: { type: 'host-local', subnet: '10.129.0.0/16', dataDir: dir } });
  const add = (id: string): Promise<void> => new Promise((resolve, reject) => {
    const p = spawn(HOST_LOCAL, [], {
      env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: id, CNI_NETNS: '/var/run/netns/bench-none', CNI_IFNAME: 'eth0', CNI_PATH: path.dirname(HOST_LOCAL) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`host-local ADD failed (${code}): ${out}`))));
    p.stdin.end(conf);
  });
  const latencies: number[] = [];
  const wall = await timed(async () => {
    for (let i = 0; i < count; i++) latencies.push(await timed(() => add(`bench-${i}`)));
  });
  return { perSec: (latencies.length / wall) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

function row(name: string, ours: Figures, reference?: Figures, note?: string): BenchRow {
  const r: BenchRow = { name, ours: { ...ours }, unit: 'allocations/s; p50/p99 ms', note };
  if (reference) {
    r.reference = { ...reference };
    r.ratio = ours.p50 / reference.p50;
  }
  return r;
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const count = Math.max(20, Math.round(200 * ctx.scale));
  const rows: BenchRow[] = [];
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-bench-ipam-'));
  try {
    let reference: Figures | undefined;
    if (existsSync(HOST_LOCAL)) {
      ctx.progress(`ipam: host-local reference, ${count} ADDs`);
      reference = await hostLocal(count, path.join(tmp, 'host-local'));
    }

    ctx.progress(`ipam: file store, ${count} allocations`);
    const file = await openStore(`file:${path.join(tmp, 'store')}`);
    try {
      rows.push(row('file store, 1 host', await measure([file], count), reference, 'ratio: our p50 / host-local p50 (lower is better); host-local pays one exec per ADD'));
      rows.push(row(`file store, ${HOSTS} hosts at once`, await measure(Array<Store>(HOSTS).fill(file), count), undefined,
        'one store client shared by the hosts (the file store is single-process)'));
    } finally {
      await file.close();
    }

    ctx.progress('ipam: starting ZooKeeper');
    const zk = await ZooKeeperServer.start();
    try {
      const url = `zk://${zk.connectString}/bees-bench-ipam`;
      const clients: Store[] = [];
      try {
        for (let i = 0; i < HOSTS; i++) clients.push(await openStore(url));
        ctx.progress(`ipam: ZooKeeper, ${count} allocations`);
        rows.push(row('ZooKeeper, 1 host', await measure([clients[0]!], count), reference));
        rows.push(row(`ZooKeeper, ${HOSTS} hosts at once`, await measure(clients, count), undefined, 'one ZooKeeper session per host'));
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    } catch (err) {
      rows.push({ name: 'ZooKeeper', ours: {}, unit: 'allocations/s; p50/p99 ms', note: `not measured: ${(err as Error).message}` });
    } finally {
      await zk.cleanup();
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return {
    title: 'IPAM',
    method: `${count} IPv4 allocations from a /16 (/26 blocks) per configuration; latency of each allocate() call; ` +
      `throughput = allocations / wall time. "${HOSTS} hosts" runs ${HOSTS} Ipam instances with distinct host ids at once. ` +
      'Reference: the CNI host-local plugin (containernetworking-plugins) exec\'d per ADD on the same machine.',
    rows,
  };
}
