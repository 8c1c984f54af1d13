// Batched IPAM writes. Attaches arriving together on one host (a 20-pod burst) all want an address from the same
// block: each on its own would read the block, lose the compare-and-set to a sibling, back off and retry, one
// winner and one fsync per round. Instead the requests for one bridge queue up while a batch is being written, and
// the next batch runs them one after another against a staging layer (StagedStore) that sees the batch's earlier
// writes, then writes every block they changed in one atomic store commit, each conditioned on the version the
// batch read. Another host writing a block first fails the whole commit (a lost race): the batch is run again on
// fresh reads. Nothing is acknowledged before its commit: an address returned is in the store.
import type { IpamBlock, Kind } from '../model/types.js';
import { StoreError, type Op, type Store } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';
import type { Block, BlockStore } from './blocks.js';
import { isRace, sleep, type RetryOptions } from './retry.js';

/** How a staged object reaches the store: created, or updated/deleted conditioned on the version first read. */
type Write = { op: 'create' } | { op: 'change'; version: number | undefined };

function onlyBlocks(kind: Kind): void {
  if (kind !== 'IpamBlock') throw new StoreError('Invalid', `the IPAM staging layer holds IpamBlock objects only, not ${kind}`, kind);
}

/** Reads through to the store (each block read at most once), writes held back until commit(). */
export class StagedStore implements BlockStore {
  private listed: Block[] | undefined;
  private readonly read = new Map<string, Block | undefined>();
  /** The batch's view of what it wrote: a block, or null when deleted. */
  private staged = new Map<string, Block | null>();
  private writes = new Map<string, Write>();

  constructor(private readonly store: Store) {}

  /** The staged state now, to go back to when a request of the batch fails half-way. */
  mark(): { staged: Map<string, Block | null>; writes: Map<string, Write> } {
    return { staged: new Map(this.staged), writes: new Map(this.writes) };
  }

  reset(m: ReturnType<StagedStore['mark']>): void {
    this.staged = m.staged;
    this.writes = m.writes;
  }

  // The Store signatures are generic over every kind; this layer holds blocks only (checked), hence the casts.
  async get<K extends Kind>(kind: K, id: string): Promise<never> {
    onlyBlocks(kind);
    return (await this.current(id)) as never;
  }

  async list<K extends Kind>(kind: K): Promise<never> {
    onlyBlocks(kind);
    this.listed ??= await this.store.list('IpamBlock');
    // A list may lag the store (ZooKeeper's follower): a block read since, or written by the batch, is newer.
    const out = new Map<string, Block | undefined>();
    for (const b of this.listed) out.set(b.value.id, b);
    for (const [id, b] of this.read) out.set(id, b);
    for (const [id, s] of this.staged) out.set(id, s ?? undefined);
    return [...out.values()].filter((b): b is Block => b !== undefined) as never;
  }

  private async current(id: string): Promise<Block | undefined> {
    const s = this.staged.get(id);
    if (s !== undefined) return s ?? undefined;
    if (!this.read.has(id)) this.read.set(id, await this.store.get('IpamBlock', id));
    return this.read.get(id);
  }

  async create<K extends Kind>(kind: K, value: never): Promise<number> {
    onlyBlocks(kind);
    const v = value as IpamBlock;
    const s = this.staged.get(v.id);
    if (s) throw new StoreError('Exists', `IpamBlock ${v.id} exists`, 'IpamBlock', v.id);
    // Deleted earlier in this batch: in the store it is an update of what the batch read.
    if (s === null && this.writes.get(v.id)?.op === 'change') {
      this.staged.set(v.id, { value: v, version: 1 });
      return 1;
    }
    this.writes.set(v.id, { op: 'create' });
    this.staged.set(v.id, { value: v, version: 1 });
    return 1;
  }

  async update<K extends Kind>(kind: K, value: never, version?: number): Promise<number> {
    onlyBlocks(kind);
    const v = value as IpamBlock;
    const cur = await this.staging(v.id, version);
    const next = cur.version + 1;
    this.staged.set(v.id, { value: v, version: next });
    return next;
  }

  async delete(kind: Kind, id: string, version?: number): Promise<void> {
    onlyBlocks(kind);
    await this.staging(id, version);
    if (this.writes.get(id)?.op === 'create') this.writes.delete(id);
    this.staged.set(id, null);
  }

  /** The block a write replaces, checked against `version` as the store would; records the first write's condition. */
  private async staging(id: string, version: number | undefined): Promise<Block> {
    const cur = await this.current(id);
    if (!cur) throw new StoreError('NotFound', `IpamBlock ${id} not found`, 'IpamBlock', id);
    if (version !== undefined && version !== cur.version) {
      throw new StoreError('Conflict', `IpamBlock ${id} is at version ${cur.version}, not ${version}`, 'IpamBlock', id);
    }
    if (!this.writes.has(id)) this.writes.set(id, { op: 'change', version });
    return cur;
  }

  /** Every staged write in one atomic commit (nothing when the batch changed nothing). */
  async commit(): Promise<void> {
    const ops: Op[] = [];
    for (const [id, w] of this.writes) {
      const s = this.staged.get(id);
      if (w.op === 'create') {
        if (s) ops.push({ op: 'create', kind: 'IpamBlock', value: s.value });
      } else if (s) {
        ops.push({ op: 'update', kind: 'IpamBlock', value: s.value, version: w.version });
      } else {
        ops.push({ op: 'delete', kind: 'IpamBlock', id, version: w.version });
      }
    }
    if (ops.length) await this.store.commit(ops);
  }
}

interface Job {
  run: (s: StagedStore) => Promise<unknown>;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Queues of IPAM requests, one per key (a bridge id), each run in batches committed together. */
export class BlockBatches {
  private readonly queues = new Map<string, Job[]>();

  constructor(
    private readonly store: Store,
    private readonly options: RetryOptions = {},
  ) {}

  /** Run `fn` in the next batch of `key`; resolves once the batch's writes are committed. */
  run<T>(key: string, fn: (s: StagedStore) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const queue = this.queues.get(key);
      const job: Job = { run: fn, resolve: resolve as (v: unknown) => void, reject };
      if (queue) {
        queue.push(job);
        return;
      }
      this.queues.set(key, [job]);
      void this.drain(key);
    });
  }

  /**
   * Batches of `key` until its queue is empty: whatever queued while one ran forms the next. The next batch starts
   * once the previous one has handed its commit to the store, not once that commit is durable: a store that applies
   * a commit when it accepts it (the file store, before its fsync) lets the next batch read its result, so batches
   * overlap their disk waits; a store that does not makes the next batch lose a race and run again.
   */
  private async drain(key: string): Promise<void> {
    const queue = this.queues.get(key)!;
    while (queue.length > 0) {
      const jobs = queue.splice(0);
      await new Promise<void>((issued) => void this.batch(jobs, issued));
    }
    this.queues.delete(key);
  }

  private async batch(jobs: Job[], issued: () => void): Promise<void> {
    try {
      await this.attempts(jobs, issued);
    } finally {
      issued();
    }
  }

  private async attempts(jobs: Job[], issued: () => void): Promise<void> {
    const maxAttempts = this.options.maxAttempts ?? 200;
    const cap = this.options.maxDelayMs ?? 50;
    for (let n = 1; ; n++) {
      const staged = new StagedStore(this.store);
      const outcomes: Outcome[] = [];
      for (const job of jobs) {
        const m = staged.mark();
        try {
          outcomes.push({ ok: true, value: await job.run(staged) });
        } catch (error) {
          staged.reset(m);
          outcomes.push({ ok: false, error });
        }
      }
      try {
        const committed = staged.commit();
        issued();
        await committed;
      } catch (err) {
        if (isRace(err) && n < maxAttempts) {
          // Another host wrote one of these blocks first: run the batch again on what is there now.
          const ceiling = Math.min(cap, (this.options.baseDelayMs ?? 1) * 2 ** Math.min(n, 16));
          await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
          continue;
        }
        const error =
          err instanceof StoreError ? new TopologyError('unavailable', `writing IPAM blocks: store failed: ${err.message}`) : err;
        for (const j of jobs) j.reject(error);
        return;
      }
      jobs.forEach((j, i) => {
        const o = outcomes[i]!;
        if (o.ok) j.resolve(o.value);
        else j.reject(o.error);
      });
      return;
    }
  }
}
