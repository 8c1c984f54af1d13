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
import {
  interleavedRounds,
  median,
  pairedRatio,
  percentile,
  timed,
  type BenchContext,
  type BenchRow,
  type BenchSection,
} from './report.js';

const HOST_LOCAL = '/usr/lib/cni/host-local';
const HOSTS = 4;

interface Figures {
  perSec: number;
  p50: number;
  p99: number;
}

function bridgeOf(cidr: string): Bridge {
  const id = randomUUID();
  return {
    id,
    tenantId: randomUUID(),
    name: `bench-${id.slice(0, 6)}`,
    tunnelKey: 1,
    subnets: [{ cidr }],
    adminStateUp: true,
    options: {},
    labels: {},
  };
}

/** `count` allocations split over one Ipam per store client, all running at once; latency per allocation. */
async function measure(stores: Store[], count: number): Promise<Figures> {
  const br = bridgeOf('10.128.0.0/16');
  const ipams = stores.map((s, i) => new Ipam(s, `bench-host-${i}`));
  const latencies: number[] = [];
  const each = Math.ceil(count / ipams.length);
  const wall = await timed(() =>
    Promise.all(
      ipams.map(async (ipam, h) => {
        for (let i = 0; i < each; i++) latencies.push(await timed(() => ipam.allocate(br, `w${h}-${i}`, 'eth0')));
      }),
    ),
  );
  await ipams[0]!.deleteBridgeBlocks(br.id);
  return { perSec: (latencies.length / wall) * 1000, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** The reference: `host-local` ADD executed once per allocation, as a container runtime would. */
async function hostLocal(count: number, dir: string): Promise<Figures> {
  const conf = JSON.stringify({ cniVersion: '0.4.0', name: 'bench', ipam: { type: 'host-local', subnet: '10.129.0.0/16', dataDir: dir } });
  const add = (id: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const p = spawn(HOST_LOCAL, [], {
        env: {
          CNI_COMMAND: 'ADD',
          CNI_CONTAINERID: id,
          CNI_NETNS: '/var/run/netns/bench-none',
          CNI_IFNAME: 'eth0',
          CNI_PATH: path.dirname(HOST_LOCAL),
        },
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

const ROUNDS = 3;
const UNIT = 'allocations/s; p50/p99 ms';
const medianOf = (rounds: Figures[]): Figures => ({
  perSec: median(rounds.map((x) => x.perSec)),
  p50: median(rounds.map((x) => x.p50)),
  p99: median(rounds.map((x) => x.p99)),
});

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const count = Math.max(20, Math.round(200 * ctx.scale));
  const rows: BenchRow[] = [];
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-bench-ipam-'));
  try {
    if (existsSync(HOST_LOCAL)) {
      // Interleaved rounds, each on fresh state: our allocator on a fresh file store, host-local on a fresh dataDir.
      const perRound = await interleavedRounds(
        ROUNDS,
        async (r) => {
          ctx.progress(`ipam: round ${r + 1}/${ROUNDS}, file store, ${count} allocations`);
          const file = await openStore(`file:${path.join(tmp, `store-${r}`)}`);
          try {
            return await measure([file], count);
          } finally {
            await file.close();
          }
        },
        (r) => {
          ctx.progress(`ipam: round ${r + 1}/${ROUNDS}, host-local, ${count} ADDs`);
          return hostLocal(count, path.join(tmp, `host-local-${r}`));
        },
      );
      rows.push({
        name: 'one allocation, file store, 1 host',
        ours: { ...medianOf(perRound.a) },
        reference: { ...medianOf(perRound.b) },
        ...pairedRatio(
          perRound.a.map((x) => x.p50),
          perRound.b.map((x) => x.p50),
        ),
        unit: UNIT,
        compares:
          'NOT like for like: p50 of our allocate() called in-process ÷ p50 of host-local run as one process per ' +
          'allocation (its process start, ~5 ms here, is most of it); whole CNI ADDs are compared like for like in the CNI ' +
          'section. Lower is better',
      });
    }

    const file = await openStore(`file:${path.join(tmp, 'store-hosts')}`);
    try {
      ctx.progress(`ipam: file store, ${HOSTS} hosts at once`);
      rows.push({
        name: `file store, ${HOSTS} hosts at once`,
        ours: { ...(await measure(Array<Store>(HOSTS).fill(file), count)) },
        unit: UNIT,
        note: 'no baseline (host-local serves one host); one store client shared by the hosts (the file store is single-process)',
      });
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
        rows.push({
          name: 'ZooKeeper, 1 host',
          ours: { ...(await measure([clients[0]!], count)) },
          unit: UNIT,
          note: 'no baseline: host-local has no shared store; one ZooKeeper round trip or more per allocation',
        });
        rows.push({
          name: `ZooKeeper, ${HOSTS} hosts at once`,
          ours: { ...(await measure(clients, count)) },
          unit: UNIT,
          note: 'no baseline; one ZooKeeper session per host',
        });
      } finally {
        await Promise.all(clients.map((c) => c.close()));
      }
    } catch (err) {
      rows.push({ name: 'ZooKeeper', ours: {}, unit: UNIT, note: `not measured: ${(err as Error).message}` });
    } finally {
      await zk.cleanup();
    }
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
  return {
    title: 'IPAM',
    columns: ['bees IPAM', 'host-local'],
    method:
      `${count} IPv4 allocations from a /16 (/26 blocks) per configuration; latency of each allocation; ` +
      `throughput = allocations / wall time. The file-store row against host-local: ${ROUNDS} interleaved rounds on fresh ` +
      `state (the side going first alternates), medians over rounds. "${HOSTS} hosts" runs ${HOSTS} Ipam instances with ` +
      'distinct host ids at once (single runs, no baseline). host-local: the CNI plugin (containernetworking-plugins ' +
      "1.1.1) exec'd per ADD on the same machine, as a runtime runs it.",
    rows,
  };
}
