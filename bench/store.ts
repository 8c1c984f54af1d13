// Store backends side by side: the embedded file store and ZooKeeper (a real standalone server started here),
// same operations, same sizes, interleaved rounds in one run. Both are ours: this compares backends, not bees
// with a reference.
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Tenant } from '../core/model/types.js';
import { FileStore } from '../core/store/file.js';
import type { Store } from '../core/store/store.js';
import { ZooKeeperStore } from '../core/store/zookeeper.js';
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

interface Figures {
  opsPerSec: number;
  p50: number;
  p99: number;
}

/** Runs `n` operations with `concurrency` in flight; latency per op and overall throughput. */
async function measure(n: number, concurrency: number, op: (i: number) => Promise<unknown>): Promise<Figures> {
  const samples: number[] = [];
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) samples.push(await timed(() => op(i)));
    }),
  );
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  return { opsPerSec: n / secs, p50: percentile(samples, 50), p99: percentile(samples, 99) };
}

const tenant = (id: string, generation = 0): Tenant => ({ id, name: `bench-${id.slice(0, 8)}`, generation });

async function suite(store: Store, n: number, concurrency: number): Promise<Record<string, Figures>> {
  const ids = Array.from({ length: n }, () => randomUUID());
  const out: Record<string, Figures> = {};
  out.create = await measure(n, concurrency, (i) => store.create('Tenant', tenant(ids[i]!)));
  out.get = await measure(n, concurrency, (i) => store.get('Tenant', ids[i]!));
  out.update = await measure(n, concurrency, (i) => store.update('Tenant', tenant(ids[i]!, 1), 1));
  out['multi-op commit (4 ops)'] = await measure(Math.max(1, Math.floor(n / 2)), concurrency, (i) => {
    const a = ids[i * 2]!;
    const b = ids[i * 2 + 1]!;
    return store.commit([
      { op: 'check', kind: 'Tenant', id: a, version: 2 },
      { op: 'update', kind: 'Tenant', value: tenant(b, 2), version: 2 },
      { op: 'create', kind: 'Bridge', value: { id: a } },
      { op: 'create', kind: 'Bridge', value: { id: b } },
    ]);
  });
  return out;
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const n = Math.max(20, Math.round(1000 * ctx.scale));
  const rows: BenchRow[] = [];
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-bench-store-'));
  const zk = await ZooKeeperServer.start();
  try {
    for (const concurrency of [1, 16]) {
      // Each round opens a fresh store on each backend; the backend that goes first alternates.
      const perRound = await interleavedRounds(
        ROUNDS,
        async (r) => {
          ctx.progress(`store: round ${r + 1}/${ROUNDS}, file backend, ${n} ops per operation, concurrency ${concurrency}`);
          const file = await FileStore.open(`file:${path.join(dir, `c${concurrency}-r${r}`)}`);
          try {
            return await suite(file, n, concurrency);
          } finally {
            await file.close();
          }
        },
        async (r) => {
          ctx.progress(`store: round ${r + 1}/${ROUNDS}, ZooKeeper backend, ${n} ops per operation, concurrency ${concurrency}`);
          const zks = await ZooKeeperStore.open(`zk://${zk.connectString}/bench-c${concurrency}-r${r}`);
          try {
            return await suite(zks, n, concurrency);
          } finally {
            await zks.close();
          }
        },
      );
      for (const op of Object.keys(perRound.a[0]!)) {
        const f = perRound.a.map((x) => x[op]!);
        const z = perRound.b.map((x) => x[op]!);
        rows.push({
          name: `${op}, concurrency ${concurrency}`,
          ours: summary(f),
          reference: summary(z),
          ...pairedRatio(
            f.map((x) => x.opsPerSec),
            z.map((x) => x.opsPerSec),
          ),
          unit: 'ops/s; p50/p99 in ms',
          compares:
            'two bees backends, not ours vs a reference: embedded file store ops/s ÷ ZooKeeper 3.8 ops/s ' +
            '(higher: the file store is faster); the choice is single host vs cluster, not speed',
        });
      }
    }
  } finally {
    await zk.cleanup();
    await fsp.rm(dir, { recursive: true, force: true });
  }
  return {
    title: 'Store backends: embedded file store vs ZooKeeper',
    columns: ['file store', 'ZooKeeper'],
    method:
      `One process, ${ROUNDS} interleaved rounds per concurrency (the backend going first alternates; a fresh store each ` +
      `round). Each round and backend: ${n} creates, gets, conditional updates of Tenant objects, then ` +
      `${Math.floor(n / 2)} multi-op commits (check + conditional update + 2 creates), with 1 and 16 operations in ` +
      'flight. Figures are medians over the rounds. File store: fsync per group commit on the local disk. ZooKeeper: a ' +
      'standalone 3.8 server started for the run (forceSync on, -Xmx256m) on loopback, via node-zookeeper-client.',
    rows,
  };
}

const ROUNDS = 3;

/** Medians over rounds of each figure. */
function summary(rounds: Figures[]): Record<string, number> {
  return {
    opsPerSec: round(median(rounds.map((x) => x.opsPerSec))),
    p50: round(median(rounds.map((x) => x.p50))),
    p99: round(median(rounds.map((x) => x.p99))),
  };
}

const round = (x: number) => Math.round(x * 100) / 100;

// Run alone: node --import tsx bench/store.ts
if (import.meta.url === `file://${process.argv[1]}`) {
  const section = await run({ scale: Number(process.env.BENCH_SCALE ?? 1), progress: (m) => console.error(m) });
  console.log(JSON.stringify(section, null, 2));
}
