// The embedded single-host store: every object in memory, made durable by an append-only journal of committed
// transactions (one checksummed JSON line each, fsync'ed before the commit resolves) and a periodic snapshot.
// One process owns a directory at a time, guarded by a lock file that names the owner's pid.
//
// Faults. A crash mid-write leaves a torn record at the very end of the journal: it was never acknowledged, so
// it is dropped on load. A damaged record followed by intact ones is not a torn write but damage to acknowledged
// history: load refuses with the file and byte offset instead of dropping what follows. When the disk refuses a
// write (ENOSPC, EIO), the failed batch is truncated away and undone in memory before its commits are rejected,
// so a commit reported as failed never reappears, reads keep answering from the durable state, `degraded` says
// why, and the next commit tries the disk again.
//
// Directory layout:
//   lock            the owner's pid
//   snapshot.json   {"seq": N, "objects": {Kind: {id: [version, json]}}} — state after change N
//   journal         lines "<crc32 hex> <json>", each {"changes": Change-like[]} of one commit, in seq order
import { deliver, type StoredChange, type Watcher } from './watcher.js';
import { constants as fsc, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
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
import { checkId, checkKind, checkOps, encodeValue, opId } from './validate.js';
import { EphemeralHub } from './ephemeral-hub.js';

export interface FileStoreOptions {
  /** Compact (snapshot + truncate the journal) once the journal grows beyond this many bytes. Default 64 MiB. */
  compactBytes?: number;
  /** How many recent changes are kept in memory for `watch({ fromSeq })`. Default 100 000. */
  watchRetention?: number | undefined;
}

/** A stored object: its version and its JSON text (parsing on read hands every caller its own copy). */
interface Entry {
  version: number;
  json: string;
}

/** How to undo one applied change: the entry it replaced (undefined: there was none). */
interface Undo {
  kind: Kind;
  id: string;
  prev: Entry | undefined;
}

interface PendingCommit {
  line: string;
  changes: StoredChange[];
  /** In apply order; undone in reverse when the commit fails to reach the disk. */
  undo: Undo[];
  resolve: () => void;
  reject: (err: Error) => void;
}

const SNAPSHOT = 'snapshot.json';
const JOURNAL = 'journal';
const LOCK = 'lock';

/** Directories opened by this process: a second open in the same process is refused like one from another. */
const openDirs = new Set<string>();

/** Parses `file:/abs`, `file:///abs`, `file://localhost/abs` and `file:relative` into a filesystem path. */
export function fileUrlToDir(url: string): string {
  const m = /^file:(.*)$/i.exec(url);
  if (!m || m[1] === '') throw new StoreError('Invalid', `not a file store URL: ${JSON.stringify(url)}`);
  let rest = m[1]!;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    if (host !== '' && host !== 'localhost') {
      throw new StoreError('Invalid', `file store URL names a remote host ${JSON.stringify(host)}: ${url}`);
    }
    rest = slash < 0 ? '' : rest.slice(slash);
    if (rest === '') throw new StoreError('Invalid', `file store URL has no path: ${url}`);
  }
  try {
    rest = decodeURIComponent(rest);
  } catch {
    throw new StoreError('Invalid', `file store URL has bad percent-encoding: ${url}`);
  }
  return path.resolve(rest);
}

function encodeLine(payload: string): string {
  return `${crc32(payload).toString(16).padStart(8, '0')} ${payload}\n`;
}

/** Decodes one journal line: its changes, or why it is not a record. */
function decodeLine(line: string): StoredChange[] | string {
  if (line.length < 10 || line[8] !== ' ') return 'not a record';
  const payload = line.slice(9);
  if (crc32(payload).toString(16).padStart(8, '0') !== line.slice(0, 8)) return 'checksum mismatch';
  try {
    const rec = JSON.parse(payload) as { changes?: unknown };
    return Array.isArray(rec.changes) ? (rec.changes as StoredChange[]) : 'record without changes';
  } catch {
    return 'bad JSON';
  }
}

/** Counts the intact records in `buf` (newline-terminated lines that decode). */
function intactRecords(buf: Buffer, from: number): number {
  let n = 0;
  for (let at = from; at < buf.length;) {
    const nl = buf.indexOf(0x0a, at);
    if (nl < 0) break;
    if (typeof decodeLine(buf.toString('utf8', at, nl)) !== 'string') n++;
    at = nl + 1;
  }
  return n;
}

function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the directory's lock file, taking over one left by a dead process. */
async function acquireLock(dir: string): Promise<void> {
  const lockPath = path.join(dir, LOCK);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fh = await fsp.open(lockPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StoreError('Unavailable', `cannot create lock ${lockPath}: ${(err as Error).message}`);
      }
    }
    let text = '';
    try {
      text = await fsp.readFile(lockPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
      throw err;
    }
    const pid = Number.parseInt(text.trim(), 10);
    if (Number.isSafeInteger(pid) && pid > 0 && pidAlive(pid)) {
      throw new StoreError('Unavailable', `store directory ${dir} is in use by process ${pid} (lock file ${lockPath})`);
    }
    if (text === '' && attempt === 0) {
      // The owner may be between creating the file and writing its pid: look again shortly.
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    // A lock whose owner is dead: remove it and race for a fresh one (O_EXCL picks one winner).
    await fsp.rm(lockPath, { force: true });
  }
  throw new StoreError('Unavailable', `cannot take the lock ${lockPath}: contended`);
}

export class FileStore implements Store {
  readonly url: string;
  readonly dir: string;
  private readonly objects = new Map<Kind, Map<string, Entry>>();
  /** Seq of the newest change applied in memory (possibly not yet durable). */
  private appliedSeq = 0;
  /** Seq of the newest change on disk; what watchers and lastSeq see. */
  private durableSeq = 0;
  /** Recent durable changes for resuming watches; ring[0] is the oldest. */
  private ring: StoredChange[] = [];
  private ringStart = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly ephemerals = new EphemeralHub();
  private pending: PendingCommit[] = [];
  private flushing: Promise<void> | undefined;
  private journal!: FileHandle;
  private journalBytes = 0;
  private closed = false;
  /** Commits applied in memory but not yet durable (the batch being written, then the queue), in apply order. */
  private notDurable: PendingCommit[] = [];
  /** Set when a failed write could not be rolled back on disk: no more writes until the store is reopened. */
  private failure: Error | undefined;
  /** Why writes are failing (the disk refused the last one), or undefined while the store is healthy. */
  private degradedReason: string | undefined;
  /** True while a failed batch is being truncated away: commits then are refused, not queued. */
  private recovering = false;
  private readonly healthListeners = new Set<(health: StoreHealth) => void>();
  private readonly compactBytes: number;
  private readonly retention: number;

  private constructor(url: string, dir: string, options: FileStoreOptions) {
    this.url = url;
    this.dir = dir;
    this.compactBytes = options.compactBytes ?? 64 * 1024 * 1024;
    this.retention = Math.max(1, options.watchRetention ?? 100_000);
  }

  static async open(url: string, options: FileStoreOptions = {}): Promise<FileStore> {
    const dir = fileUrlToDir(url);
    await fsp.mkdir(dir, { recursive: true });
    const real = await fsp.realpath(dir);
    if (openDirs.has(real)) throw new StoreError('Unavailable', `store directory ${real} is already open in this process (${process.pid})`);
    openDirs.add(real);
    const store = new FileStore(url, real, options);
    try {
      await acquireLock(real);
    } catch (err) {
      openDirs.delete(real);
      throw err;
    }
    try {
      await store.load();
    } catch (err) {
      openDirs.delete(real);
      await fsp.rm(path.join(real, LOCK), { force: true });
      throw err instanceof StoreError ? err : new StoreError('Unavailable', `cannot load store ${real}: ${(err as Error).message}`);
    }
    return store;
  }

  /**
   * Replays snapshot then journal. A bad record with nothing intact after it is a torn write (a commit never
   * acknowledged) and is truncated; one with intact records after it is damage, and load refuses.
   */
  private async load(): Promise<void> {
    await fsp.rm(path.join(this.dir, `${SNAPSHOT}.tmp`), { force: true });
    let snapText: string | undefined;
    try {
      snapText = await fsp.readFile(path.join(this.dir, SNAPSHOT), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (snapText !== undefined) {
      // The snapshot is renamed into place only once complete and fsync'ed, so a bad one is real damage.
      let snap: { seq: number; objects: Record<string, Record<string, [number, string]>> };
      try {
        snap = JSON.parse(snapText) as typeof snap;
      } catch (err) {
        throw new StoreError('Unavailable', `snapshot ${path.join(this.dir, SNAPSHOT)} is corrupt: ${(err as Error).message}`);
      }
      for (const [kind, byId] of Object.entries(snap.objects)) {
        const map = this.kindMap(kind as Kind);
        for (const [id, [version, json]] of Object.entries(byId)) map.set(id, { version, json });
      }
      this.appliedSeq = snap.seq;
    }
    this.ringStart = this.appliedSeq + 1;

    const journalPath = path.join(this.dir, JOURNAL);
    let buf: Buffer = Buffer.alloc(0);
    try {
      buf = await fsp.readFile(journalPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let good = 0;
    let record = 0;
    while (good < buf.length) {
      const nl = buf.indexOf(0x0a, good);
      if (nl < 0) break; // a torn last line
      const changes = decodeLine(buf.toString('utf8', good, nl));
      if (typeof changes === 'string') {
        const after = intactRecords(buf, nl + 1);
        if (after === 0) break; // a torn tail
        throw new StoreError(
          'Unavailable',
          `journal ${journalPath} is corrupt at byte offset ${good} (record ${record + 1}: ${changes}) with ${after} ` +
            `intact record(s) after it; refusing to drop them. Repair or restore the file; truncating it to ${good} ` +
            `bytes discards the damaged record and everything after it`,
        );
      }
      for (const c of changes) {
        if (c.seq <= this.appliedSeq) continue; // already in the snapshot (crash between snapshot and truncate)
        if (c.seq !== this.appliedSeq + 1) {
          throw new StoreError(
            'Unavailable',
            `journal ${journalPath} skips from seq ${this.appliedSeq} to ${c.seq} at byte offset ${good} (record ${record + 1}): ` +
              'changes are missing',
          );
        }
        this.applyChange(c);
        this.remember(c);
      }
      good = nl + 1;
      record++;
    }
    this.durableSeq = this.appliedSeq;
    this.journal = await fsp.open(journalPath, 'a');
    if (good < buf.length) {
      await this.journal.truncate(good);
      await this.journal.sync();
    }
    this.journalBytes = good;
    await fsyncDir(this.dir);
  }

  private kindMap(kind: Kind): Map<string, Entry> {
    let map = this.objects.get(kind);
    if (!map) {
      map = new Map();
      this.objects.set(kind, map);
    }
    return map;
  }

  /** Applies a change to memory; returns how to undo it. */
  private applyChange(c: StoredChange): Undo {
    const map = this.kindMap(c.kind);
    const prev = map.get(c.id);
    if (c.type === 'delete') map.delete(c.id);
    else map.set(c.id, { version: c.version, json: c.json! });
    this.appliedSeq = c.seq;
    return { kind: c.kind, id: c.id, prev };
  }

  /** Undoes every commit not yet on disk, newest first, so memory is the durable state again. */
  private rollBackNotDurable(): PendingCommit[] {
    const undone = this.notDurable;
    this.notDurable = [];
    this.pending = [];
    for (let i = undone.length - 1; i >= 0; i--) {
      const u = undone[i]!.undo;
      for (let j = u.length - 1; j >= 0; j--) {
        const { kind, id, prev } = u[j]!;
        if (prev) this.kindMap(kind).set(id, prev);
        else this.kindMap(kind).delete(id);
      }
    }
    this.appliedSeq = this.durableSeq;
    return undone;
  }

  /** Why writes fail right now (the disk refused the last one), or undefined when the store is healthy. */
  get degraded(): string | undefined {
    return this.failure ? `store ${this.dir} is read-only until reopened: ${this.failure.message}` : this.degradedReason;
  }

  private remember(c: StoredChange): void {
    this.ring.push(c);
    if (this.ring.length > this.retention * 2) {
      // Trim in chunks so the ring costs O(1) amortised per change.
      const drop = this.ring.length - this.retention;
      this.ring = this.ring.slice(drop);
      this.ringStart += drop;
    }
  }

  /** Reads need only an open store: memory always holds the durable state, even after a failed write. */
  private live(): void {
    if (this.closed) throw new StoreError('Closed', `store ${this.url} is closed`);
  }

  private writable(): void {
    this.live();
    if (this.failure) throw new StoreError('Unavailable', `store ${this.url} failed writing to disk: ${this.failure.message}`);
    if (this.recovering) throw new StoreError('Unavailable', `store ${this.url} cannot write: ${this.degradedReason}`);
  }

  async get<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    this.live();
    checkKind(kind);
    checkId(kind, id);
    const e = this.objects.get(kind)?.get(id);
    return e ? { value: JSON.parse(e.json) as Models[K], version: e.version } : undefined;
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    this.live();
    checkKind(kind);
    const out: Versioned<Models[K]>[] = [];
    for (const e of this.objects.get(kind)?.values() ?? []) out.push({ value: JSON.parse(e.json) as Models[K], version: e.version });
    return out;
  }

  commit(ops: Op[]): Promise<number[]> {
    try {
      this.writable();
      checkOps(ops);
      const { versions, changes } = this.stage(ops);
      if (changes.length === 0) return Promise.resolve(versions);
      const undo = changes.map((c) => this.applyChange(c));
      const line = encodeLine(JSON.stringify({ changes }));
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

  /** Checks every op against current state (seeing earlier ops of the same commit) and computes its changes. */
  private stage(ops: Op[]): { versions: number[]; changes: StoredChange[] } {
    const staged = new Map<string, Entry | null>(); // "kind\0id" -> entry, null = deleted in this commit
    const current = (kind: Kind, id: string): Entry | undefined => {
      const k = `${kind}\0${id}`;
      if (staged.has(k)) return staged.get(k) ?? undefined;
      return this.objects.get(kind)?.get(id);
    };
    const versions: number[] = [];
    const changes: StoredChange[] = [];
    let seq = this.appliedSeq;
    for (const op of ops) {
      const id = opId(op);
      const cur = current(op.kind, id);
      const key = `${op.kind}\0${id}`;
      switch (op.op) {
        case 'create': {
          if (cur) throw new StoreError('Exists', `${op.kind} ${id} already exists`, op.kind, id);
          const json = encodeValue(op.kind, op.value);
          staged.set(key, { version: 1, json });
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'create', version: 1, json });
          versions.push(1);
          break;
        }
        case 'update': {
          if (!cur) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          const json = encodeValue(op.kind, op.value);
          const version = cur.version + 1;
          staged.set(key, { version, json });
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'update', version, json });
          versions.push(version);
          break;
        }
        case 'delete': {
          if (!cur) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          staged.set(key, null);
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'delete', version: cur.version });
          versions.push(0);
          break;
        }
        case 'check': {
          if (op.version === 0) {
            if (cur) throw new StoreError('Conflict', `${op.kind} ${id} exists (version ${cur.version})`, op.kind, id);
          } else if (!cur) {
            throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          } else if (cur.version !== op.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          versions.push(0);
          break;
        }
      }
    }
    return { versions, changes };
  }

  /** Group commit: whatever queued while the previous fsync ran goes to disk in one write and one fsync. */
  private kick(): void {
    if (this.flushing) return;
    this.flushing = (async () => {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        const bytes = Buffer.from(batch.map((p) => p.line).join(''));
        try {
          // write(2) may write part of the buffer (a nearly full disk): loop until all of it is written or it fails.
          for (let off = 0; off < bytes.length;) off += (await this.journal.write(bytes, off)).bytesWritten;
          await this.journal.datasync();
        } catch (err) {
          await this.writeFailed(err as Error);
          this.healthChanged();
          return;
        }
        this.journalBytes += bytes.length;
        this.notDurable.splice(0, batch.length);
        if (this.degradedReason !== undefined) {
          this.degradedReason = undefined;
          this.healthChanged();
        }
        for (const p of batch) {
          for (const c of p.changes) {
            this.remember(c);
            this.durableSeq = c.seq;
          }
          this.deliver(p.changes);
          p.resolve();
        }
        if (this.journalBytes > this.compactBytes) {
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
      if (this.pending.length > 0 && !this.failure) this.kick();
    });
  }

  /**
   * A batch failed to reach the disk: undo it (and everything queued behind it, applied on top of it) in memory,
   * cut whatever part of it was written off the journal, then reject the commits. Rejecting only after the
   * truncate is durable is what makes "failed" final: a restart cannot replay the batch.
   */
  private async writeFailed(err: Error): Promise<void> {
    const why = isDiskFull(err) ? `disk full writing the journal in ${this.dir}` : `journal write failed in ${this.dir}`;
    const e = new StoreError('Unavailable', `${why}: ${err.message}; the commit was not applied`);
    this.degradedReason = `${why}: ${err.message}`;
    this.recovering = true;
    const undone = this.rollBackNotDurable();
    try {
      await this.journal.truncate(this.journalBytes);
      await this.journal.sync();
    } catch (cut) {
      // The failed batch may still be on disk and replayed by the next open: refuse writes until then.
      this.failure = new Error(`${err.message}; then could not cut the failed write off ${JOURNAL}: ${(cut as Error).message}`);
    } finally {
      this.recovering = false;
    }
    for (const p of undone) p.reject(e);
  }

  /**
   * Writes the in-memory state to a new snapshot and empties the journal. Memory may be ahead of disk (commits
   * queued for the next batch): they land in the snapshot whole (each commit is applied in one tick), and their
   * journal lines, written later, are skipped on replay because their seq is not above the snapshot's.
   */
  private async compact(): Promise<void> {
    const objects: Record<string, Record<string, [number, string]>> = {};
    for (const [kind, map] of this.objects) {
      const byId: Record<string, [number, string]> = {};
      for (const [id, e] of map) byId[id] = [e.version, e.json];
      objects[kind] = byId;
    }
    // Only durable state goes into the snapshot: a commit still queued may yet fail, and must not come back
    // from the snapshot after a restart. Undo the queued commits on the copy, newest first.
    for (let i = this.notDurable.length - 1; i >= 0; i--) {
      const u = this.notDurable[i]!.undo;
      for (let j = u.length - 1; j >= 0; j--) {
        const { kind, id, prev } = u[j]!;
        const byId = (objects[kind] ??= {});
        if (prev) byId[id] = [prev.version, prev.json];
        else delete byId[id];
      }
    }
    const text = JSON.stringify({ seq: this.durableSeq, objects });
    const tmp = path.join(this.dir, `${SNAPSHOT}.tmp`);
    try {
      const fh = await fsp.open(tmp, 'w');
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      await fsp.rm(tmp, { force: true }); // a half snapshot only takes space a full disk needs
      throw err;
    }
    await fsp.rename(tmp, path.join(this.dir, SNAPSHOT));
    await fsyncDir(this.dir);
    await this.journal.truncate(0);
    await this.journal.sync();
    this.journalBytes = 0;
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

  private deliver(changes: StoredChange[]): void {
    for (const w of this.watchers) {
      for (const c of changes) this.deliverOne(w, c);
    }
  }

  private deliverOne(w: Watcher, c: StoredChange): void {
    deliver(w, c, 'file');
  }

  async watch(handler: ChangeHandler, options: WatchOptions = {}): Promise<() => void> {
    this.live();
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watch needs a handler function');
    for (const k of options.kinds ?? []) checkKind(k);
    const from = options.fromSeq ?? this.durableSeq;
    if (!Number.isSafeInteger(from) || from < 0) throw new StoreError('Invalid', `bad fromSeq ${JSON.stringify(options.fromSeq)}`);
    if (from > this.durableSeq) {
      throw new StoreError(
        'Gone',
        `fromSeq ${from} is ahead of this store (last seq ${this.durableSeq}): it was reset or is another store`,
      );
    }
    if (from < this.ringStart - 1) {
      throw new StoreError('Gone', `changes after seq ${from} are no longer retained (oldest kept: ${this.ringStart})`);
    }
    const w: Watcher = { handler, kinds: options.kinds ? new Set(options.kinds) : undefined, cursor: from };
    // The backlog and registration happen in one tick, so no change can slip between them.
    for (let i = from + 1 - this.ringStart; i < this.ring.length; i++) this.deliverOne(w, this.ring[i]!);
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
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
    const why = this.degraded;
    return why === undefined ? { up: true } : { up: false, reason: why };
  }

  private healthChanged(): void {
    const h = this.health();
    for (const l of [...this.healthListeners]) l(h);
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    this.healthListeners.add(listener);
    return () => this.healthListeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Let acknowledged-to-be commits reach the disk first.
    while (this.flushing) await this.flushing;
    this.watchers.clear();
    this.ephemerals.clear();
    await this.journal.close();
    await fsp.rm(path.join(this.dir, LOCK), { force: true });
    openDirs.delete(this.dir);
  }
}

export function openFileStore(url: string, options?: FileStoreOptions): Promise<FileStore> {
  return FileStore.open(url, options);
}
