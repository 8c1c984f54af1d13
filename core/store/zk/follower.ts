// The change-log follower: a local cache of every object plus the recent changes, kept by reading the change log;
// it serves list() and fans changes out to watch() handlers. A client that falls behind the log's retention (a long
// disconnection) reloads every object and tells its watchers they missed changes (onGap), so they relist.
import zookeeper, { type Stat } from 'node-zookeeper-client';
import { KINDS, type Kind, type Models } from '../../model/types.js';
import { StoreError, type ChangeHandler, type Versioned, type WatchOptions } from '../store.js';
import { checkKind } from '../validate.js';
import { deliver, type Watcher } from '../watcher.js';
import {
  SEQ_STRIDE,
  childrenCb,
  entryCount,
  entryName,
  headOf,
  lastSeqOf,
  logEntries,
  listLog,
  logHead,
  modelPath,
  trimmedSeq,
  zxidOf,
  type LogRecord,
  type StoredChange,
} from './log.js';
import { codeOf, sleep, type ZkSession } from './session.js';
import { multiGetData, type ReadReply } from './wire.js';

const { Exception } = zookeeper;

/** Object reads in flight while loading every object one at a time (a server without multiRead). */
const LOAD_CONCURRENCY = 500;
/** Objects per multiRead while loading (~800 bytes each with its stat: replies of ~160 KiB), and requests in flight. */
const MULTI_READ_BATCH = 200;
const MULTI_READ_WINDOW = 16;
/**
 * Log entries per read and reads in flight while following: entries are small (one attach's port) up to ~900 KiB
 * (a bulk commit), so fewer per request than objects, and the watermark is checked after each group.
 */
const ENTRY_BATCH = 32;
const ENTRY_WINDOW = 8;

interface CacheEntry {
  version: number;
  json: string;
  zxid: bigint;
}

export class Follower {
  private following: Promise<void> | undefined;
  private followDirty = false;
  private followWake: (() => void) | undefined;
  private cursorTx = -1;
  private readonly cache = new Map<Kind, Map<string, CacheEntry>>();
  private ring: StoredChange[] = [];
  private readonly watchers = new Set<Watcher>();
  private followWaiters: { tx: number; resolve: () => void; fail: (e: Error) => void }[] = [];
  /** How many times this client fell behind the retention and reloaded (tests and diagnostics). */
  gaps = 0;
  /** Whether every object is being loaded, and how many have been read so far (waits go on while it grows). */
  private loading = false;
  private loadProgress = 0;

  constructor(
    private readonly s: ZkSession,
    private readonly root: string,
    private readonly retention: number,
    private readonly url: string,
  ) {}

  kick(): void {
    this.followDirty = true;
    this.followWake?.();
  }

  /** The objects of `kind` as of log entry `tx` (at least). */
  async list<K extends Kind>(kind: K, tx: number): Promise<Versioned<Models[K]>[]> {
    await this.sync(tx);
    const out: Versioned<Models[K]>[] = [];
    for (const e of this.cache.get(kind)?.values() ?? []) out.push({ value: JSON.parse(e.json) as Models[K], version: e.version });
    return out;
  }

  /** Starts following the log (once) and waits until it has processed log entry `tx`. */
  async sync(tx: number): Promise<void> {
    if (!this.following) {
      this.following = this.follow();
      this.following.catch(() => {});
    }
    if (this.cursorTx >= tx && this.cursorTx >= 0) return;
    const deadline = Date.now() + this.s.options.opTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      const fail = (e: Error) => {
        clearTimeout(timer);
        this.followWaiters = this.followWaiters.filter((x) => x !== w);
        reject(e);
      };
      const w = {
        tx,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        fail,
      };
      // No kick: the data watch on log/ fires for the entry we wait for (a kick per call would pile up watches).
      this.followWaiters.push(w);
      // Loading every object (the first read, or after a gap) takes longer than one operation's timeout at scale
      // (100,000 objects: minutes on a busy machine, bench/scale): the wait goes on while the load advances, and
      // fails after a timeout's worth without progress, as any other call.
      let progress = this.loadProgress;
      const expire = (): void => {
        if (this.loading && this.loadProgress !== progress) {
          progress = this.loadProgress;
          timer = setTimeout(expire, this.s.options.opTimeoutMs);
          return;
        }
        fail(new StoreError('Unavailable', `ZooKeeper ${this.s.hosts} did not answer in time`));
      };
      let timer = setTimeout(expire, Math.max(0, deadline - Date.now()));
    });
  }

  private async follow(): Promise<void> {
    const s = this.s;
    this.followDirty = true;
    let loaded = false;
    while (!s.closed) {
      if (!this.followDirty) {
        await new Promise<void>((r) => (this.followWake = r));
        this.followWake = undefined;
        continue;
      }
      this.followDirty = false;
      try {
        await s.waitConnected(Number.POSITIVE_INFINITY);
        // Until the first load is done, waits for this follower go on while it advances (see sync()).
        if (!loaded) this.loading = true;
        // The watch first: a commit after this stat fires it, and the next round reads that commit's entry.
        const head = await logHead(s, this.root, () => this.kick());
        this.loadProgress++;
        if (!loaded) {
          // Start: everything up to the newest entry comes from the objects themselves. One listing, which also
          // checks that ZooKeeper numbers entries as logHead() assumes; if not, every wake lists (as before).
          const { entries, head: listedHead } = await listLog(s, this.root);
          this.loadProgress++;
          const newest = entries.at(-1)?.tx ?? 0;
          this.byName = entries.length === 0 || newest === listedHead;
          if (!this.byName) process.emitWarning(`bees zk store: ${this.root}/log is not numbered as expected; following it by listing`);
          this.cursorTx = newest;
          await this.loadAll();
          loaded = true;
        }
        let outcome = this.byName ? await this.readEntries(head) : 'unknown';
        // The newest entry is not where the stat says (an entry of an older writer, named differently): list.
        if (outcome === 'unknown') outcome = await this.readListed();
        if (outcome === 'gap') {
          // We fell behind the retention (a long disconnection): reload the objects, and tell the watchers, whose
          // stream now has a hole, so they relist.
          process.emitWarning(`bees zk store: change log trimmed past this client's position; reloading ${this.url}`);
          this.cursorTx = (await logEntries(s, this.root, false)).at(-1)?.tx ?? this.cursorTx;
          await this.loadAll();
          this.gaps++;
          // Nothing older than the reload may be replayed to a new watcher as if it were contiguous.
          this.ring = [];
          this.releaseWaiters();
          for (const w of [...this.watchers]) this.tellGap(w);
          continue;
        }
        this.releaseWaiters();
      } catch (err) {
        if (s.closed) return;
        if (process.env.BEES_STORE_DEBUG) console.error('follower', err);
        this.followDirty = true;
        // NO_NODE: an entry trimmed under us; the trimmed-watermark check handles it next round, at once.
        if (codeOf(err) !== Exception.NO_NODE) await sleep(200);
      }
    }
  }

  /**
   * Reads and applies the entries after the cursor up to `head` (logHead) by their names, no listing. ZooKeeper
   * numbers creates only, so every number up to the head names an entry: one that is absent was trimmed (the
   * watermark, read after the entries, tells: 'gap') or is named otherwise, by an older writer ('unknown': the
   * caller lists). Groups of reads in flight bound what is held at once.
   */
  private async readEntries(head: number): Promise<'ok' | 'gap' | 'unknown'> {
    while (this.cursorTx < head) {
      const from = this.cursorTx + 1;
      const to = Math.min(head, from + ENTRY_BATCH * ENTRY_WINDOW - 1);
      const names: { tx: number; name: string }[] = [];
      for (let tx = from; tx <= to; tx++) names.push({ tx, name: entryName(tx) });
      const got = await this.readGroup(names);
      if (got === 'gap') return 'gap';
      if (got.length < names.length) return 'unknown';
      for (const e of got) this.applyEntry(e.tx, e.data, e.czxid);
      this.cursorTx = to;
    }
    return 'ok';
  }

  /** The entries after the cursor that a listing shows, read and applied (the path when names cannot be predicted). */
  private async readListed(): Promise<'ok' | 'gap'> {
    const fresh = (await logEntries(this.s, this.root, false)).filter((n) => n.tx > this.cursorTx);
    for (let i = 0; i < fresh.length; i += ENTRY_BATCH * ENTRY_WINDOW) {
      const part = fresh.slice(i, i + ENTRY_BATCH * ENTRY_WINDOW);
      const got = await this.readGroup(part);
      if (got === 'gap') return 'gap';
      for (const e of got) this.applyEntry(e.tx, e.data, e.czxid);
      this.cursorTx = part.at(-1)!.tx;
    }
    return 'ok';
  }

  /**
   * Reads `names`, ENTRY_BATCH per request, then the trimmed watermark: 'gap' when an entry after the cursor was
   * trimmed, else the entries that exist, in order.
   */
  private async readGroup(names: { tx: number; name: string }[]): Promise<'gap' | { tx: number; data: Buffer; czxid: bigint }[]> {
    const reads: Promise<({ data: Buffer; czxid: bigint } | null)[]>[] = [];
    for (let i = 0; i < names.length; i += ENTRY_BATCH) reads.push(this.readByName(names.slice(i, i + ENTRY_BATCH).map((n) => n.name)));
    for (const p of reads) p.catch(() => {});
    // Requested after the entries, so answered after them: an entry trimmed before we read it shows here.
    const trimmed = trimmedSeq(this.s, this.root);
    trimmed.catch(() => {});
    const replies = (await Promise.all(reads)).flat();
    if (Math.floor((await trimmed) / SEQ_STRIDE) > this.cursorTx) return 'gap';
    const entries: { tx: number; data: Buffer; czxid: bigint }[] = [];
    names.forEach((n, i) => {
      const r = replies[i];
      if (r) entries.push({ tx: n.tx, data: r.data, czxid: r.czxid });
    });
    return entries;
  }

  /** Entries by name, null where there is none; one multiRead (3.6+), else one read each. */
  private async readByName(names: string[]): Promise<({ data: Buffer; czxid: bigint } | null)[]> {
    const s = this.s;
    const paths = names.map((n) => `${this.root}/log/${n}`);
    if (this.multiRead) {
      try {
        const replies = await s.zk<ReadReply[]>((c, cb) => multiGetData(c, paths, cb));
        return replies.map((r, i) => {
          if (!('err' in r)) return r;
          if (r.err !== Exception.NO_NODE)
            throw new StoreError('Unavailable', `ZooKeeper ${s.hosts}: reading ${paths[i]} failed (error ${r.err})`);
          return null;
        });
      } catch (err) {
        if (codeOf(err) !== Exception.UNIMPLEMENTED) throw err;
        this.multiRead = false; // a server older than 3.6
      }
    }
    return Promise.all(
      paths.map((p) =>
        s
          .zk<[Buffer, Stat]>((c, cb) => c.getData(p, cb))
          .then(
            ([data, stat]) => ({ data, czxid: zxidOf(stat.czxid) }),
            (err) => {
              if (codeOf(err) === Exception.NO_NODE) return null;
              throw err;
            },
          ),
      ),
    );
  }

  /** Applies log entry `tx` to the cache and gives its changes to the watchers, in order. */
  private applyEntry(tx: number, data: Buffer, zxid: bigint): void {
    const rec = JSON.parse(data.toString('utf8')) as LogRecord;
    const changes: StoredChange[] = rec.changes.map((c, j) => ({
      seq: tx * SEQ_STRIDE + j,
      kind: c.kind,
      id: c.id,
      type: c.type,
      version: c.version,
      json: c.type === 'delete' ? undefined : JSON.stringify(c.value),
      zxid,
    }));
    for (const c of changes) this.applyToCache(c);
    for (const c of changes) this.remember(c);
    for (const w of this.watchers) for (const c of changes) deliver(w, c, 'zk');
  }

  private tellGap(w: Watcher): void {
    // Changes up to the reload are covered by relisting: the stream goes on after it.
    w.cursor = Math.max(w.cursor, this.cursorTx * SEQ_STRIDE + SEQ_STRIDE - 1);
    if (!w.onGap) {
      process.emitWarning(`bees zk store: a watcher without onGap missed changes trimmed from the log of ${this.url}`);
      return;
    }
    try {
      w.onGap();
    } catch (err) {
      process.emitWarning(`bees zk store: a gap handler threw: ${(err as Error).stack ?? String(err)}`);
    }
  }

  private releaseWaiters(): void {
    const ready = this.followWaiters.filter((w) => this.cursorTx >= w.tx);
    this.followWaiters = this.followWaiters.filter((w) => this.cursorTx < w.tx);
    for (const w of ready) w.resolve();
  }

  /** Reads every object; entries of the log replayed afterwards apply only if newer (by zxid) than what was read. */
  private async loadAll(): Promise<void> {
    this.loading = true;
    try {
      await this.loadKinds();
    } finally {
      this.loading = false;
    }
  }

  private async loadKinds(): Promise<void> {
    const s = this.s;
    // Every kind's listing at once, then their objects through one window of reads: the kinds with few objects
    // cost no round trip of their own in sequence.
    const lists = await Promise.all(
      KINDS.map((kind) => s.zk<string[]>((c, cb) => c.getChildren(`${this.root}/models/${kind}`, childrenCb(cb)))),
    );
    this.loadProgress++;
    const maps = new Map(KINDS.map((k) => [k, new Map<string, CacheEntry>()]));
    const all = KINDS.flatMap((kind, i) => lists[i]!.map((id) => ({ kind, id })));
    if (this.multiRead) await this.loadBatched(all, maps);
    if (!this.multiRead)
      await this.loadOneByOne(
        all.filter((o) => !maps.get(o.kind)!.has(o.id)),
        maps,
      );
    for (const [kind, map] of maps) this.cache.set(kind, map);
  }

  /** Whether the server answers multiRead (ZooKeeper 3.6+); learnt on the first load. */
  private multiRead = true;
  /** Whether new entries are read by name (logHead checked against a listing at start); else every wake lists. */
  private byName = false;

  /**
   * Reads `ids` MULTI_READ_BATCH per request, MULTI_READ_WINDOW requests in flight: per object the server does a
   * znode lookup instead of a request's whole path through its threads (wire.ts).
   */
  private async loadBatched(all: { kind: Kind; id: string }[], maps: Map<Kind, Map<string, CacheEntry>>): Promise<void> {
    const s = this.s;
    const batches: { kind: Kind; id: string }[][] = [];
    for (let i = 0; i < all.length; i += MULTI_READ_BATCH) batches.push(all.slice(i, i + MULTI_READ_BATCH));
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(MULTI_READ_WINDOW, batches.length) }, async () => {
        for (let i = next++; i < batches.length && this.multiRead; i = next++) {
          const batch = batches[i]!;
          let replies: ReadReply[];
          try {
            replies = await s.zk<ReadReply[]>((c, cb) =>
              multiGetData(
                c,
                batch.map((o) => modelPath(this.root, o.kind, o.id)),
                cb,
              ),
            );
          } catch (err) {
            if (codeOf(err) !== Exception.UNIMPLEMENTED) throw err;
            this.multiRead = false; // a server older than 3.6: the rest one at a time
            return;
          }
          replies.forEach((r, j) => {
            const o = batch[j]!;
            // An object deleted since the listing: NO_NODE in its place (its deletion is in the log).
            if ('err' in r) {
              if (r.err !== Exception.NO_NODE)
                throw new StoreError('Unavailable', `ZooKeeper ${s.hosts}: reading ${o.kind} ${o.id} failed (error ${r.err})`);
              return;
            }
            maps.get(o.kind)!.set(o.id, { version: r.version + 1, json: r.data.toString('utf8'), zxid: r.mzxid });
          });
          this.loadProgress += replies.length;
        }
      }),
    );
  }

  private async loadOneByOne(all: { kind: Kind; id: string }[], maps: Map<Kind, Map<string, CacheEntry>>): Promise<void> {
    const s = this.s;
    const read = ({ kind, id }: { kind: Kind; id: string }) =>
      s
        .zk<[Buffer, Stat]>((c, cb) => c.getData(modelPath(this.root, kind, id), cb))
        .then(
          ([data, stat]) => {
            maps.get(kind)!.set(id, { version: stat.version + 1, json: data.toString('utf8'), zxid: zxidOf(stat.mzxid) });
            this.loadProgress++;
          },
          (err) => {
            if (codeOf(err) !== Exception.NO_NODE) throw err;
          },
        );
    // A bounded number in flight: 100,000 reads at once hold every request and reply in memory together, a peak
    // the process keeps as resident memory long after (bench/scale), for no faster a load.
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(LOAD_CONCURRENCY, all.length) }, async () => {
        for (let i = next++; i < all.length; i = next++) await read(all[i]!);
      }),
    );
  }

  private applyToCache(c: StoredChange): void {
    let map = this.cache.get(c.kind);
    if (!map) this.cache.set(c.kind, (map = new Map<string, CacheEntry>()));
    const cur = map.get(c.id);
    if (cur && cur.zxid >= c.zxid) return; // the object as read is already newer
    if (c.type === 'delete') map.delete(c.id);
    else map.set(c.id, { version: c.version, json: c.json!, zxid: c.zxid });
  }

  private remember(c: StoredChange): void {
    this.ring.push(c);
    if (this.ring.length > 2 * Math.min(this.retention * 4, 100_000)) this.ring = this.ring.slice(this.ring.length / 2);
  }

  /** The newest Change.seq in the log (the trimmed watermark when the log is empty). */
  async lastSeq(): Promise<number> {
    // Asked per metrics scrape and status: when this follower has already applied the newest entry (log/'s stat
    // says which), its last change is the answer, for one stat read instead of a listing and an entry's data.
    if (this.byName) {
      const head = await this.s
        .read<Stat | null>((c, cb) => c.exists(`${this.root}/log`, cb))
        .catch((err) => {
          throw this.s.unavailable(err);
        });
      const last = this.ring.at(-1);
      if (head && last && Math.floor(last.seq / SEQ_STRIDE) === headOf(head)) return last.seq;
    }
    const children = await logEntries(this.s, this.root, true).catch((err) => {
      throw this.s.unavailable(err);
    });
    const best = children.at(-1);
    if (best)
      return (
        best.tx * SEQ_STRIDE +
        (await entryCount(this.s, this.root, best).catch((err) => {
          throw this.s.unavailable(err);
        })) -
        1
      );
    return trimmedSeq(this.s, this.root);
  }

  async watch(handler: ChangeHandler, options: WatchOptions, ownTx: number): Promise<() => void> {
    const s = this.s;
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watch needs a handler function');
    for (const k of options.kinds ?? []) checkKind(k);
    if (options.fromSeq !== undefined && (!Number.isSafeInteger(options.fromSeq) || options.fromSeq < 0)) {
      throw new StoreError('Invalid', `bad fromSeq ${JSON.stringify(options.fromSeq)}`);
    }
    if (options.onGap !== undefined && typeof options.onGap !== 'function') throw new StoreError('Invalid', 'onGap must be a function');
    const last = await this.lastSeq();
    await this.sync(Math.max(ownTx, Math.floor(last / SEQ_STRIDE)));
    const w: Watcher = {
      handler,
      kinds: options.kinds ? new Set(options.kinds) : undefined,
      cursor: options.fromSeq ?? last,
      onGap: options.onGap,
    };
    if (w.cursor > last)
      throw new StoreError('Gone', `fromSeq ${w.cursor} is ahead of this store (last seq ${last}): it was reset or is another store`);
    // Older than what this client has seen: read the backlog from ZooKeeper's log.
    for (;;) {
      const ringStart = this.ring[0]?.seq ?? (this.cursorTx + 1) * SEQ_STRIDE;
      if (w.cursor >= ringStart - 1 || w.cursor >= this.cursorTx * SEQ_STRIDE + SEQ_STRIDE - 1) break;
      if (w.cursor < (await trimmedSeq(s, this.root))) {
        throw new StoreError('Gone', `changes after seq ${w.cursor} are no longer retained`);
      }
      const children = (await logEntries(s, this.root, true)).filter((n) => lastSeqOf(n) > w.cursor && n.tx * SEQ_STRIDE < ringStart);
      for (const n of children) {
        let got: [Buffer, Stat];
        try {
          got = await s.read<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/log/${n.name}`, cb));
        } catch (err) {
          if (codeOf(err) === Exception.NO_NODE) throw new StoreError('Gone', `changes after seq ${w.cursor} are no longer retained`);
          throw err;
        }
        const rec = JSON.parse(got[0].toString('utf8')) as LogRecord;
        rec.changes.forEach((c, j) =>
          deliver(
            w,
            {
              seq: n.tx * SEQ_STRIDE + j,
              kind: c.kind,
              id: c.id,
              type: c.type,
              version: c.version,
              json: c.value === undefined ? undefined : JSON.stringify(c.value),
            },
            'zk',
          ),
        );
        // Past the whole entry, also when all of it was at or before the cursor (a name without its count: the
        // listing's filter could not tell).
        w.cursor = Math.max(w.cursor, n.tx * SEQ_STRIDE + SEQ_STRIDE - 1);
      }
      if (children.length === 0) w.cursor = Math.max(w.cursor, ringStart - 1);
    }
    // The rest from the ring, and registration, in one tick: nothing can slip between them.
    for (const c of this.ring) deliver(w, c, 'zk');
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  close(): void {
    this.watchers.clear();
    this.followWake?.();
    const closedError = new StoreError('Closed', `store ${this.url} is closed`);
    for (const w of [...this.followWaiters]) w.fail(closedError);
  }
}
