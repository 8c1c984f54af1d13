// The embedded single-host store: every object in memory, made durable by an append-only journal of committed
// transactions (one checksummed JSON line each, fsync'ed before the commit resolves) and a periodic snapshot.
// One process owns a directory at a time, guarded by a lock file that names the owner's pid. This file composes
// the parts in file/ and owns the commit path (group commit, failure roll-back, compaction):
//   url.ts          file: URLs to directories
//   lock.ts         the directory's owner
//   objects.ts      the objects in memory: staging, applying and undoing commits
//   journal.ts      the record codec, replay and the append-only file
//   snapshot.ts     the snapshot written by compaction
//   change-ring.ts  recent changes and watch delivery
//   health.ts       whether writes reach the disk
//
// Faults. When the disk refuses a write (ENOSPC, EIO), the failed batch is truncated away and undone in memory
// before its commits are rejected, so a commit reported as failed never reappears, reads keep answering from the
// durable state, `degraded` says why, and the next commit tries the disk again. (Torn and damaged journal
// records: journal.ts.)
//
// Directory layout:
//   lock            the owner's pid
//   snapshot.json   {"seq": N, "objects": {Kind: {id: [version, json]}}} — state after change N
//   journal         lines "<crc32 hex> <json>", each {"changes": Change-like[]} of one commit, in seq order
import { promises as fsp } from 'node:fs';
import type { Kind, Models } from '../model/types.js';
import {
  StoreError,
  type ChangeHandler,
  type EphemeralHandler,
  type StoreHealth,
  type Op,
  type Store,
  type Versioned,
  type WatchOptions,
} from './store.js';
import { checkId, checkKind, checkOps } from './validate.js';
import { EphemeralHub } from './ephemeral-hub.js';
import type { StoredChange } from './watcher.js';
import { ChangeRing } from './file/change-ring.js';
import { WriteHealth } from './file/health.js';
import { JOURNAL, Journal, encodeRecord } from './file/journal.js';
import { lockDir } from './file/lock.js';
import { ObjectTable, type Undo } from './file/objects.js';
import { fsyncDir, readSnapshot, writeSnapshot } from './file/snapshot.js';
import { fileUrlToDir } from './file/url.js';

export { fileUrlToDir } from './file/url.js';

export interface FileStoreOptions {
  /** Compact (snapshot + truncate the journal) once the journal grows beyond this many bytes. Default 64 MiB. */
  compactBytes?: number;
  /** How many recent changes are kept in memory for `watch({ fromSeq })`. Default 100 000. */
  watchRetention?: number | undefined;
  /** At most this much of them (their JSON text, bytes). Default 1 MiB: see file/change-ring.ts. */
  watchRetentionBytes?: number | undefined;
}

interface PendingCommit {
  line: string;
  changes: StoredChange[];
  /** In apply order; undone in reverse when the commit fails to reach the disk. */
  undo: Undo[];
  resolve: () => void;
  reject: (err: Error) => void;
}

function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

export class FileStore implements Store {
  readonly url: string;
  readonly dir: string;
  /** One process owns the directory (lock.ts): this client is the only writer. */
  readonly exclusive = true;
  private readonly objects = new ObjectTable();
  /** Seq of the newest change on disk; what watchers and lastSeq see. */
  private durableSeq = 0;
  private readonly changes: ChangeRing;
  private readonly ephemerals = new EphemeralHub();
  private pending: PendingCommit[] = [];
  private flushing: Promise<void> | undefined;
  private journal!: Journal;
  private closed = false;
  /** Commits applied in memory but not yet durable (the batch being written, then the queue), in apply order. */
  private notDurable: PendingCommit[] = [];
  private readonly writeHealth: WriteHealth;
  private readonly compactBytes: number;

  private constructor(
    url: string,
    dir: string,
    private readonly unlock: () => Promise<void>,
    options: FileStoreOptions,
  ) {
    this.url = url;
    this.dir = dir;
    this.compactBytes = options.compactBytes ?? 64 * 1024 * 1024;
    this.changes = new ChangeRing(Math.max(1, options.watchRetention ?? 100_000), Math.max(1, options.watchRetentionBytes ?? 1024 * 1024));
    this.writeHealth = new WriteHealth(dir);
  }

  static async open(url: string, options: FileStoreOptions = {}): Promise<FileStore> {
    const dir = fileUrlToDir(url);
    await fsp.mkdir(dir, { recursive: true });
    const real = await fsp.realpath(dir);
    const unlock = await lockDir(real);
    const store = new FileStore(url, real, unlock, options);
    try {
      await store.load();
    } catch (err) {
      await unlock();
      throw err instanceof StoreError ? err : new StoreError('Unavailable', `cannot load store ${real}: ${(err as Error).message}`);
    }
    return store;
  }

  /** Replays snapshot then journal (journal.ts says which damage it refuses). */
  private async load(): Promise<void> {
    const snap = await readSnapshot(this.dir);
    if (snap) this.objects.load(snap.objects, snap.seq);
    this.changes.startAfter(this.objects.seq);
    this.journal = await Journal.replay(this.dir, this.objects.seq, (c) => {
      this.objects.apply(c);
      this.changes.remember(c);
    });
    this.durableSeq = this.objects.seq;
    await fsyncDir(this.dir);
  }

  /** Undoes every commit not yet on disk, newest first, so memory is the durable state again. */
  private rollBackNotDurable(): PendingCommit[] {
    const undone = this.notDurable;
    this.notDurable = [];
    this.pending = [];
    this.objects.undo(
      undone.map((p) => p.undo),
      this.durableSeq,
    );
    return undone;
  }

  /** Why writes fail right now (the disk refused the last one), or undefined when the store is healthy. */
  get degraded(): string | undefined {
    return this.writeHealth.degraded;
  }

  /** Reads need only an open store: memory always holds the durable state, even after a failed write. */
  private live(): void {
    if (this.closed) throw new StoreError('Closed', `store ${this.url} is closed`);
  }

  private writable(): void {
    this.live();
    const h = this.writeHealth;
    if (h.failure) throw new StoreError('Unavailable', `store ${this.url} failed writing to disk: ${h.failure.message}`);
    if (h.recovering) throw new StoreError('Unavailable', `store ${this.url} cannot write: ${h.reason}`);
  }

  async get<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    this.live();
    checkKind(kind);
    checkId(kind, id);
    const e = this.objects.get(kind, id);
    return e ? { value: JSON.parse(e.json) as Models[K], version: e.version } : undefined;
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    this.live();
    checkKind(kind);
    const out: Versioned<Models[K]>[] = [];
    for (const e of this.objects.entries(kind)) out.push({ value: JSON.parse(e.json) as Models[K], version: e.version });
    return out;
  }

  commit(ops: Op[]): Promise<number[]> {
    try {
      this.writable();
      checkOps(ops);
      const { versions, changes } = this.objects.stage(ops);
      if (changes.length === 0) return Promise.resolve(versions);
      const undo = changes.map((c) => this.objects.apply(c));
      const line = encodeRecord(changes);
      return new Promise<number[]>((resolve, reject) => {
        const p: PendingCommit = { line, changes, undo, resolve: () => resolve(versions), reject };
        this.pending.push(p);
        this.notDurable.push(p);
        this.kick();
      });
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** Group commit: whatever queued while the previous fsync ran goes to disk in one write and one fsync. */
  private kick(): void {
    if (this.flushing) return;
    this.flushing = (async () => {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        try {
          await this.journal.append(Buffer.from(batch.map((p) => p.line).join('')));
        } catch (err) {
          await this.writeFailed(err as Error);
          this.writeHealth.changed();
          return;
        }
        this.notDurable.splice(0, batch.length);
        this.writeHealth.recovered();
        for (const p of batch) {
          for (const c of p.changes) {
            this.changes.remember(c);
            this.durableSeq = c.seq;
          }
          this.changes.deliver(p.changes);
          p.resolve();
        }
        if (this.journal.bytes > this.compactBytes) {
          try {
            await this.compact();
          } catch (err) {
            // The journal still holds everything; compaction will be tried again after the next batch.
            process.emitWarning(`bees file store: compaction of ${this.dir} failed: ${(err as Error).message}`);
          }
        }
      }
    })().finally(() => {
      this.flushing = undefined;
      if (this.pending.length > 0 && !this.writeHealth.failure) this.kick();
    });
  }

  /**
   * A batch failed to reach the disk: undo it (and everything queued behind it, applied on top of it) in memory,
   * cut whatever part of it was written off the journal, then reject the commits. Rejecting only after the
   * truncate is durable is what makes "failed" final: a restart cannot replay the batch.
   */
  private async writeFailed(err: Error): Promise<void> {
    const h = this.writeHealth;
    const why = isDiskFull(err) ? `disk full writing the journal in ${this.dir}` : `journal write failed in ${this.dir}`;
    const e = new StoreError('Unavailable', `${why}: ${err.message}; the commit was not applied`);
    h.reason = `${why}: ${err.message}`;
    h.recovering = true;
    const undone = this.rollBackNotDurable();
    try {
      await this.journal.cutBack();
    } catch (cut) {
      // The failed batch may still be on disk and replayed by the next open: refuse writes until then.
      h.failure = new Error(`${err.message}; then could not cut the failed write off ${JOURNAL}: ${(cut as Error).message}`);
    } finally {
      h.recovering = false;
    }
    for (const p of undone) p.reject(e);
  }

  /**
   * Writes the in-memory state to a new snapshot and empties the journal. Memory may be ahead of disk (commits
   * queued for the next batch): they land in the snapshot whole (each commit is applied in one tick), and their
   * journal lines, written later, are skipped on replay because their seq is not above the snapshot's.
   */
  private async compact(): Promise<void> {
    // Only durable state goes into the snapshot: a commit still queued may yet fail, and must not come back
    // from the snapshot after a restart, so the queued commits are undone on the snapshot's copy.
    const objects = this.objects.snapshot(this.notDurable.map((p) => p.undo));
    await writeSnapshot(this.dir, { seq: this.durableSeq, objects });
    await this.journal.clear();
  }

  async create<K extends Kind>(kind: K, value: Models[K]): Promise<number> {
    return (await this.commit([{ op: 'create', kind, value }]))[0]!;
  }

  async update<K extends Kind>(kind: K, value: Models[K], version?: number): Promise<number> {
    return (await this.commit([{ op: 'update', kind, value, version }]))[0]!;
  }

  async delete(kind: Kind, id: string, version?: number): Promise<void> {
    await this.commit([{ op: 'delete', kind, id, version }]);
  }

  async lastSeq(): Promise<number> {
    this.live();
    return this.durableSeq;
  }

  async watch(handler: ChangeHandler, options: WatchOptions = {}): Promise<() => void> {
    this.live();
    return this.changes.watch(handler, options, this.durableSeq);
  }

  async putEphemeral(key: string, value: unknown): Promise<void> {
    this.live();
    this.ephemerals.put(key, value);
  }

  async removeEphemeral(key: string): Promise<void> {
    this.live();
    this.ephemerals.remove(key);
  }

  async listEphemeral(prefix: string): Promise<Record<string, unknown>> {
    this.live();
    return this.ephemerals.list(prefix);
  }

  async watchEphemeral(prefix: string, handler: EphemeralHandler): Promise<() => void> {
    this.live();
    return this.ephemerals.watch(prefix, handler);
  }

  /** Down while writes fail (the disk refused the last one; reads still answer): `degraded` says why. */
  health(): StoreHealth {
    return this.writeHealth.get();
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    return this.writeHealth.listen(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let acknowledged-to-be commits reach the disk first.
    while (this.flushing) await this.flushing;
    this.changes.clear();
    this.ephemerals.clear();
    await this.journal.close();
    await this.unlock();
  }
}

export function openFileStore(url: string, options?: FileStoreOptions): Promise<FileStore> {
  return FileStore.open(url, options);
}
