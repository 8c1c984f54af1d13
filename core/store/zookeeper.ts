// The clustered store on a real ZooKeeper ensemble.
//
// Layout under the root (e.g. zk://h1:2181,h2:2181/bees):
//   models/<Kind>/<id>   the object's JSON; store version = znode version + 1
//   log/n<count>_<seq>   one PERSISTENT_SEQUENTIAL entry per transaction, created in the same multi as the objects,
//                        holding its changes; change i of entry <seq> has Change.seq = seq * 1000 + i
//   tx/<ms>-<txid>       a marker created in the same multi: after a connection loss with unknown outcome, its
//                        presence proves the first attempt committed, so a retry never applies a write twice
//   meta/trimmed         the highest Change.seq removed from the log (resuming before it is 'Gone')
//   ephemeral/<key>      EPHEMERAL znodes, key percent-encoded (so '/' fits in one name)
import { deliver, type StoredChange as BaseChange, type Watcher } from './watcher.js';
import { randomUUID } from 'node:crypto';
import zookeeper, { type Client, type Stat } from 'node-zookeeper-client';
import { KINDS, type Kind, type Models } from '../model/types.js';
import { EphemeralHub, checkEphemeralKey, checkPrefix, encodeEphemeral } from './ephemeral-hub.js';
import {
  StoreError,
  type Change,
  type ChangeHandler,
  type EphemeralHandler,
  type Op,
  type Store,
  type Versioned,
  type WatchOptions,
} from './store.js';
import { watchConnection } from './zk-watchdog.js';
import { checkId, checkKind, checkOps, encodeValue, opId, redactUrl } from './validate.js';

const { CreateMode, Exception } = zookeeper;

export interface ZooKeeperStoreOptions {
  /** ZooKeeper session timeout (the server bounds it to [2, 20] ticks). Default 10 s. */
  sessionTimeoutMs?: number;
  /** A write that cannot complete in this time fails with 'Unavailable'. Default 20 s. */
  opTimeoutMs?: number;
  /** Change-log entries (transactions) kept for resuming watches. Default 10 000. */
  retention?: number;
  /** How long transaction markers are kept (a retry must happen within it). Default 10 min. */
  markerTtlMs?: number;
}

/** Changes per transaction are numbered inside one log entry's seq: at most this many per commit. */
const SEQ_STRIDE = 1000;
/** ZooKeeper refuses requests beyond jute.maxbuffer (1 MiB); stay under it with room for framing. */
const MAX_TX_BYTES = 900 * 1024;

interface ZkTarget {
  hosts: string;
  root: string;
}

export function parseZkUrl(url: string): ZkTarget {
  const m = /^zk:\/\/(?:[^@/]*@)?([^/]+)(\/.*)?$/i.exec(url);
  if (!m) throw new StoreError('Invalid', `not a ZooKeeper store URL: ${JSON.stringify(redactUrl(url))} (expected zk://host:port[,host:port…]/root)`);
  const hosts = m[1]!;
  for (const h of hosts.split(',')) {
    if (!/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(h)) {
      throw new StoreError('Invalid', `bad ZooKeeper host ${JSON.stringify(h)} in ${redactUrl(url)}: expected host:port`);
    }
  }
  const root = (m[2] ?? '').replace(/\/+$/, '');
  if (root === '' || root.split('/').slice(1).some((s) => s === '' || s === '.' || s === '..' || s === 'zookeeper')) {
    throw new StoreError('Invalid', `ZooKeeper store URL needs a root path such as /bees: ${redactUrl(url)}`);
  }
  return { hosts, root };
}

type ZkError = Error & { code?: number; getCode?: () => number };
const codeOf = (err: unknown): number | undefined => (err as ZkError | undefined)?.getCode?.() ?? (err as ZkError | undefined)?.code;
class CallTimeout extends Error {}
/** A call abandoned because its client (session) was replaced: its outcome is unknown, as after a connection loss. */
class ClientReplaced extends Error {}
/** Errors after which a write's outcome is unknown or the connection must be waited for. */
function isConnectionError(err: unknown): boolean {
  if (err instanceof CallTimeout || err instanceof ClientReplaced) return true;
  const c = codeOf(err);
  return c === Exception.CONNECTION_LOSS || c === Exception.SESSION_EXPIRED || c === Exception.OPERATION_TIMEOUT;
}

/**
 * node-zookeeper-client's Transaction turns version 0 into -1 ("any version": `version || -1`), which would make a
 * conditional write on a never-updated znode unconditional. Set the version of the op just added ourselves.
 */
function pinVersion(tx: Transaction, version: number): Transaction {
  const ops = (tx as unknown as { ops: { version?: number }[] }).ops;
  ops[ops.length - 1]!.version = version;
  return tx;
}
type Transaction = ReturnType<Client['transaction']>;

const zxidOf = (b: Buffer): bigint => b.readBigInt64BE(0);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface LogName {
  name: string;
  tx: number;
  count: number;
}

function parseLogName(name: string): LogName | undefined {
  const m = /^n(\d+)_(\d{10})$/.exec(name);
  // +1: ZooKeeper's first sequence number is 0, and seq 0 means "no change yet".
  return m ? { name, tx: Number(m[2]) + 1, count: Number(m[1]) } : undefined;
}

interface StoredChange extends BaseChange {
  zxid: bigint;
}

interface CacheEntry {
  version: number;
  json: string;
  zxid: bigint;
}


// `any`: node-zookeeper-client callbacks pass differently shaped results (and Exception objects) per call;
// each caller states the type it expects.
type Callback = (err: any, ...rest: any[]) => void;

/**
 * One promisified call, bounded in time, and abortable through `inflight`: the library never answers calls still
 * queued when its client is closed or replaced, and a caller must not wait out its whole timeout for them.
 */
function call<T>(fn: (cb: Callback) => void, timeoutMs: number, inflight: Set<(e: Error) => void>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (err: unknown, value?: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      inflight.delete(abort);
      if (err) reject(err);
      else resolve(value as T);
    };
    const abort = (e: Error) => finish(e);
    const timer = setTimeout(() => finish(new CallTimeout(`ZooKeeper did not answer in ${timeoutMs} ms`)), timeoutMs);
    inflight.add(abort);
    fn((err, ...rest) => finish(err, (rest.length <= 1 ? rest[0] : rest) as T));
  });
}

export class ZooKeeperStore implements Store {
  readonly url: string;
  private readonly hosts: string;
  private readonly root: string;
  private client!: Client;
  private connected = false;
  private connectWaiters: (() => void)[] = [];
  private stopWatchdog: (() => void) | undefined;
  /** Abort functions of the calls awaiting an answer from the current client. */
  private readonly inflight = new Set<(e: Error) => void>();
  private closed = false;
  private readonly sessionTimeoutMs: number;
  private readonly opTimeoutMs: number;
  private readonly retention: number;
  private readonly markerTtlMs: number;
  private commitsSinceTrim = 0;
  private trimming = false;
  /** Ephemeral records this client owns, re-created on a new session. */
  private readonly mine = new Map<string, string>();
  private readonly ephemeralViews = new Set<{ prefix: string; handler: EphemeralHandler; last?: string }>();
  private ephemeralDirty = false;
  private ephemeralPumping = false;
  // The log follower: a local cache of every object plus the recent changes, kept by reading the change log.
  private following: Promise<void> | undefined;
  private followDirty = false;
  private followWake: (() => void) | undefined;
  private cursorTx = -1;
  private readonly cache = new Map<Kind, Map<string, CacheEntry>>();
  private ring: StoredChange[] = [];
  private readonly watchers = new Set<Watcher>();
  private followWaiters: { tx: number; resolve: () => void; fail: (e: Error) => void }[] = [];
  /** Newest log entry this client wrote, so its own list() sees its own writes. */
  private ownTx = -1;
  /** Connections the watchdog reset (a hung handshake or a silent server); for diagnostics and metrics. */
  connectionResets = 0;
  onConnectionReset: ((why: string) => void) | undefined;
  /** Notified when a new session replaces an expired one (tests and diagnostics). */
  onSession: ((sessionId: string) => void) | undefined;

  private constructor(url: string, target: ZkTarget, options: ZooKeeperStoreOptions) {
    this.url = redactUrl(url);
    this.hosts = target.hosts;
    this.root = target.root;
    this.sessionTimeoutMs = options.sessionTimeoutMs ?? 10_000;
    this.opTimeoutMs = options.opTimeoutMs ?? 20_000;
    this.retention = Math.max(1, options.retention ?? 10_000);
    this.markerTtlMs = options.markerTtlMs ?? 10 * 60_000;
  }

  static async open(url: string, options: ZooKeeperStoreOptions = {}): Promise<ZooKeeperStore> {
    const store = new ZooKeeperStore(url, parseZkUrl(url), options);
    store.newSession();
    try {
      await store.waitConnected(Date.now() + store.opTimeoutMs);
      for (const dir of ['log', 'tx', 'meta', 'ephemeral', ...KINDS.map((k) => `models/${k}`)]) {
        await store.zk<void>((c, cb) => c.mkdirp(`${store.root}/${dir}`, cb));
      }
      try {
        await store.zk<string>((c, cb) => c.create(`${store.root}/meta/trimmed`, Buffer.from('0'), cb));
      } catch (err) {
        if (codeOf(err) !== Exception.NODE_EXISTS) throw err;
      }
    } catch (err) {
      await store.close();
      throw err instanceof StoreError ? err : new StoreError('Unavailable', `cannot open ${store.url}: ${(err as Error).message}`);
    }
    return store;
  }

  // ---- sessions ----

  private newSession(): void {
    const client = zookeeper.createClient(this.hosts, { sessionTimeout: this.sessionTimeoutMs, spinDelay: 200, retries: 0 });
    this.client = client;
    this.connected = false;
    this.stopWatchdog?.();
    // As the Java client: a handshake gets the session timeout shared among the servers, at least 2 s.
    const servers = this.hosts.split(',').length;
    this.stopWatchdog = watchConnection(client, {
      handshakeMs: Math.max(2000, Math.floor(this.sessionTimeoutMs / servers)),
      onReset: (why) => {
        this.connectionResets++;
        this.onConnectionReset?.(why);
      },
    });
    client.on('state', (state) => {
      if (this.client !== client || this.closed) return;
      if (state === zookeeper.State.SYNC_CONNECTED) {
        this.connected = true;
        for (const w of this.connectWaiters.splice(0)) w();
        // Watches survive a reconnect within the session, but anything that happened while we were away is
        // picked up by looking again.
        this.kickFollower();
        this.kickEphemeral();
      } else if (state === zookeeper.State.DISCONNECTED) {
        this.connected = false;
      } else if (state === zookeeper.State.EXPIRED) {
        this.connected = false;
        for (const abort of [...this.inflight]) abort(new ClientReplaced('the ZooKeeper session expired'));
        client.close();
        this.newSession();
        void this.afterNewSession();
      }
    });
    client.connect();
  }

  /** A new session: our ephemeral records died with the old one, and so did our watches. */
  private async afterNewSession(): Promise<void> {
    try {
      await this.waitConnected(Number.POSITIVE_INFINITY);
    } catch {
      return; // closed
    }
    this.onSession?.(this.sessionId());
    for (const [key, json] of this.mine) {
      try {
        await this.writeEphemeral(key, json);
      } catch (err) {
        process.emitWarning(`bees zk store: could not re-create ephemeral ${key}: ${(err as Error).message}`);
      }
    }
    this.kickFollower();
    this.kickEphemeral();
  }

  sessionId(): string {
    return this.client.getSessionId().toString('hex');
  }

  private waitConnected(deadline: number): Promise<void> {
    if (this.closed) return Promise.reject(new StoreError('Closed', `store ${this.url} is closed`));
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer =
        deadline === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(() => {
              this.connectWaiters = this.connectWaiters.filter((w) => w !== done);
              reject(new StoreError('Unavailable', `ZooKeeper ${this.hosts} unreachable`));
            }, Math.max(0, deadline - Date.now()));
      const done = () => {
        clearTimeout(timer);
        if (this.closed) reject(new StoreError('Closed', `store ${this.url} is closed`));
        else resolve();
      };
      this.connectWaiters.push(done);
    });
  }

  /** One call on the current client, bounded in time. */
  private zk<T>(fn: (c: Client, cb: Callback) => void, timeoutMs = this.opTimeoutMs): Promise<T> {
    // `any`: see call().
    const c = this.client;
    return call<T>((cb) => fn(c, cb), timeoutMs, this.inflight);
  }

  /** Retries a read across connection losses until the deadline; reads are safe to repeat. */
  private async read<T>(fn: (c: Client, cb: Callback) => void): Promise<T> {
    // `any`: see call().
    const deadline = Date.now() + this.opTimeoutMs;
    for (;;) {
      this.live();
      try {
        await this.waitConnected(deadline);
        return await this.zk<T>(fn, Math.max(1, deadline - Date.now()));
      } catch (err) {
        if (err instanceof StoreError || !isConnectionError(err)) throw err; // callers map ZooKeeper codes
        if (Date.now() >= deadline) throw this.unavailable(err);
        await sleep(50);
      }
    }
  }

  private unavailable(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    // ZooKeeper refusing a path or an argument is the caller's mistake (a 400), not an outage (a 503).
    if (codeOf(err) === Exception.BAD_ARGUMENTS) return new StoreError('Invalid', `ZooKeeper refused the request: ${(err as Error).message}`);
    return new StoreError('Unavailable', `ZooKeeper ${this.hosts}: ${(err as Error).message}`);
  }

  private live(): void {
    if (this.closed) throw new StoreError('Closed', `store ${this.url} is closed`);
  }

  private modelPath(kind: Kind, id: string): string {
    return `${this.root}/models/${kind}/${id}`;
  }

  // ---- objects ----

  async get<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    this.live();
    checkKind(kind);
    checkId(kind, id);
    try {
      const [data, stat] = await this.read<[Buffer, Stat]>((c, cb) => c.getData(this.modelPath(kind, id), cb));
      return { value: JSON.parse(data.toString('utf8')) as Models[K], version: stat.version + 1 };
    } catch (err) {
      if (codeOf(err) === Exception.NO_NODE) return undefined;
      throw this.unavailable(err);
    }
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    this.live();
    checkKind(kind);
    await this.syncFollower(this.ownTx);
    const out: Versioned<Models[K]>[] = [];
    for (const e of this.cache.get(kind)?.values() ?? []) out.push({ value: JSON.parse(e.json) as Models[K], version: e.version });
    return out;
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

  async commit(ops: Op[]): Promise<number[]> {
    this.live();
    checkOps(ops);
    if (ops.length >= SEQ_STRIDE) throw new StoreError('Invalid', `a commit holds at most ${SEQ_STRIDE - 1} ops (got ${ops.length})`);
    const marker = `${this.root}/tx/${Date.now()}-${randomUUID()}`;
    const deadline = Date.now() + this.opTimeoutMs;
    // Versions of an earlier attempt whose outcome is unknown (the connection dropped while it was in flight).
    let maybeCommitted: number[] | undefined;
    for (let attempt = 0; ; attempt++) {
      this.live();
      if (Date.now() >= deadline) {
        throw new StoreError('Unavailable', `commit did not complete within ${this.opTimeoutMs} ms against ZooKeeper ${this.hosts}${maybeCommitted ? ' (outcome unknown)' : ''}`);
      }
      let plan: Awaited<ReturnType<ZooKeeperStore['plan']>> | undefined;
      try {
        await this.waitConnected(deadline);
        if (maybeCommitted) {
          const stat = await this.zk<Stat | null>((c, cb) => c.exists(marker, cb), Math.max(1, deadline - Date.now()));
          if (stat) return maybeCommitted; // the earlier attempt did commit: never apply it twice
        }
        plan = await this.plan(ops, deadline);
        if (!plan.build) return plan.versions;
        const tx = this.client.transaction();
        plan.build(tx);
        let logIndex = -1;
        if (plan.changes.length > 0) {
          const payload = Buffer.from(JSON.stringify({ changes: plan.changes }));
          if (payload.length * 2 > MAX_TX_BYTES) throw new StoreError('Invalid', `commit too large for ZooKeeper (${payload.length} bytes of changes)`);
          logIndex = plan.count;
          tx.create(`${this.root}/log/n${plan.changes.length}_`, payload, CreateMode.PERSISTENT_SEQUENTIAL);
          tx.create(marker, Buffer.alloc(0), CreateMode.PERSISTENT);
        }
        const results = await call<{ path?: string }[]>((cb) => tx.commit(cb), Math.max(1, deadline - Date.now()), this.inflight);
        if (logIndex >= 0) {
          const name = parseLogName(results[logIndex]!.path!.split('/').pop()!);
          if (name) this.ownTx = Math.max(this.ownTx, name.tx);
          if (++this.commitsSinceTrim >= Math.max(1, Math.floor(this.retention / 10))) void this.trim();
        }
        return plan.versions;
      } catch (err) {
        if (err instanceof StoreError) throw err;
        if (isConnectionError(err)) {
          if (plan?.build && plan.changes.length > 0) maybeCommitted = plan.versions;
          await sleep(Math.min(200, 20 * (attempt + 1)));
          continue;
        }
        const c = codeOf(err);
        if (c === Exception.NODE_EXISTS || c === Exception.NO_NODE || c === Exception.BAD_VERSION) {
          // State moved between our read and the multi: plan again from a fresh read (the marker check at the
          // top covers a retry colliding with an earlier attempt of ours that did commit).
          continue;
        }
        throw this.unavailable(err);
      }
    }
  }

  /**
   * Reads the current version of every object the ops touch, checks the ops against it (each op seeing the ones
   * before it) and builds the multi. Every touched object gets a precondition equal to what was read, so the
   * multi fails, and is planned again, if anything moved in between.
   */
  private async plan(ops: Op[], deadline: number) {
    const keys = new Map<string, { kind: Kind; id: string }>();
    for (const op of ops) keys.set(`${op.kind}\0${opId(op)}`, { kind: op.kind, id: opId(op) });
    const read = new Map<string, number | null>(); // znode version, or null when absent
    await Promise.all(
      [...keys].map(async ([k, { kind, id }]) => {
        const stat = await this.zk<Stat | null>((c, cb) => c.exists(this.modelPath(kind, id), cb), Math.max(1, deadline - Date.now()));
        read.set(k, stat ? stat.version : null);
      }),
    );
    const staged = new Map(read);
    const versions: number[] = [];
    const changes: { kind: Kind; id: string; type: Change['type']; version: number; value?: unknown }[] = [];
    const steps: ((tx: ReturnType<Client['transaction']>) => void)[] = [];
    for (const op of ops) {
      const id = opId(op);
      const k = `${op.kind}\0${id}`;
      const cur = staged.get(k)!; // znode version or null
      const path = this.modelPath(op.kind, id);
      const stale = (v: number) => new StoreError('Conflict', `${op.kind} ${id} is at version ${cur! + 1}, not ${v}`, op.kind, id);
      switch (op.op) {
        case 'create': {
          if (cur !== null) throw new StoreError('Exists', `${op.kind} ${id} already exists`, op.kind, id);
          const json = encodeValue(op.kind, op.value);
          steps.push((tx) => tx.create(path, Buffer.from(json), CreateMode.PERSISTENT));
          staged.set(k, 0);
          changes.push({ kind: op.kind, id, type: 'create', version: 1, value: JSON.parse(json) });
          versions.push(1);
          break;
        }
        case 'update': {
          if (cur === null) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur + 1) throw stale(op.version);
          const json = encodeValue(op.kind, op.value);
          steps.push((tx) => pinVersion(tx.setData(path, Buffer.from(json), cur), cur));
          staged.set(k, cur + 1);
          changes.push({ kind: op.kind, id, type: 'update', version: cur + 2, value: JSON.parse(json) });
          versions.push(cur + 2);
          break;
        }
        case 'delete': {
          if (cur === null) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur + 1) throw stale(op.version);
          steps.push((tx) => pinVersion(tx.remove(path, cur), cur));
          staged.set(k, null);
          changes.push({ kind: op.kind, id, type: 'delete', version: cur + 1 });
          versions.push(0);
          break;
        }
        case 'check': {
          if (op.version === 0) {
            if (cur !== null) throw new StoreError('Conflict', `${op.kind} ${id} exists (version ${cur + 1})`, op.kind, id);
            // ZooKeeper has no "check absent": create and remove in the same multi fails if it exists.
            steps.push((tx) => tx.create(path, Buffer.alloc(0), CreateMode.PERSISTENT));
            steps.push((tx) => pinVersion(tx.remove(path, 0), 0));
          } else if (cur === null) {
            throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          } else {
            if (op.version !== cur + 1) throw stale(op.version);
            steps.push((tx) => pinVersion(tx.check(path, cur), cur));
          }
          versions.push(0);
          break;
        }
      }
    }
    // Every touched object's first step carries the version (or absence) that was read: that pins it.
    return {
      versions,
      changes,
      count: steps.length,
      build: steps.length > 0 ? (tx: ReturnType<Client['transaction']>) => steps.forEach((s) => s(tx)) : undefined,
    };
  }

  async lastSeq(): Promise<number> {
    this.live();
    const children = await this.read<string[]>((c, cb) => c.getChildren(`${this.root}/log`, (e: unknown, ch: string[]) => cb(e, ch))).catch((err) => {
      throw this.unavailable(err);
    });
    let best: LogName | undefined;
    for (const ch of children) {
      const n = parseLogName(ch);
      if (n && (!best || n.tx > best.tx)) best = n;
    }
    if (best) return best.tx * SEQ_STRIDE + best.count - 1;
    return this.trimmedSeq();
  }

  /**
   * Catch up with every change committed by any client before the call, so the reads that follow see them
   * (ZooKeeper's own `sync` in spirit; a client always sees its own writes without it). One log listing: for
   * tests and tools asserting on another process's writes, not for hot paths.
   */
  async sync(): Promise<void> {
    const head = await this.lastSeq();
    if (head > 0) await this.syncFollower(Math.max(this.ownTx, Math.floor(head / SEQ_STRIDE)));
  }

  private async trimmedSeq(): Promise<number> {
    const [data] = await this.read<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/meta/trimmed`, cb));
    return Number(data.toString()) || 0;
  }

  /** Removes log entries beyond the retention and expired transaction markers. Best effort, in the background. */
  private async trim(): Promise<void> {
    if (this.trimming || this.closed) return;
    this.trimming = true;
    this.commitsSinceTrim = 0;
    try {
      const children = (await this.zk<string[]>((c, cb) => c.getChildren(`${this.root}/log`, (e: unknown, ch: string[]) => cb(e, ch))))
        .map(parseLogName)
        .filter((n): n is LogName => n !== undefined)
        .sort((a, b) => a.tx - b.tx);
      const excess = children.slice(0, Math.max(0, children.length - this.retention));
      for (let i = 0; i < excess.length; i += 200) {
        const batch = excess.slice(i, i + 200);
        const last = batch.at(-1)!;
        const [data, stat] = await this.zk<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/meta/trimmed`, cb));
        const mark = Math.max(Number(data.toString()) || 0, last.tx * SEQ_STRIDE + last.count - 1);
        const tx = this.client.transaction();
        // The watermark moves first (same multi), so nobody resumes into a hole unnoticed.
        tx.setData(`${this.root}/meta/trimmed`, Buffer.from(String(mark)), stat.version);
        for (const n of batch) tx.remove(`${this.root}/log/${n.name}`, -1);
        await call((cb) => tx.commit(cb), this.opTimeoutMs, this.inflight);
      }
      const markers = await this.zk<string[]>((c, cb) => c.getChildren(`${this.root}/tx`, (e: unknown, ch: string[]) => cb(e, ch)));
      const cutoff = Date.now() - this.markerTtlMs;
      await Promise.all(
        markers
          .filter((m) => Number(m.split('-')[0]) < cutoff)
          .map((m) => this.zk<void>((c, cb) => c.remove(`${this.root}/tx/${m}`, -1, cb)).catch(() => {})),
      );
    } catch {
      // Another client trimmed concurrently, or the connection dropped: the next trim catches up.
    } finally {
      this.trimming = false;
    }
  }

  // ---- the change-log follower: cache for list(), fan-out for watch() ----

  private kickFollower(): void {
    this.followDirty = true;
    this.followWake?.();
  }

  /** Starts following the log (once) and waits until it has processed log entry `tx`. */
  private async syncFollower(tx: number): Promise<void> {
    if (!this.following) {
      this.following = this.follow();
      this.following.catch(() => {});
    }
    if (this.cursorTx >= tx && this.cursorTx >= 0) return;
    const deadline = Date.now() + this.opTimeoutMs;
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
      // No kick: the log's child watch fires for the entry we wait for (a kick per call would pile up watches).
      this.followWaiters.push(w);
      const timer = setTimeout(() => fail(new StoreError('Unavailable', `ZooKeeper ${this.hosts} did not answer in time`)), Math.max(0, deadline - Date.now()));
    });
  }

  private async follow(): Promise<void> {
    this.followDirty = true;
    let loaded = false;
    while (!this.closed) {
      if (!this.followDirty) {
        await new Promise<void>((r) => (this.followWake = r));
        this.followWake = undefined;
        continue;
      }
      this.followDirty = false;
      try {
        await this.waitConnected(Number.POSITIVE_INFINITY);
        const children = (await this.zk<string[]>((c, cb) => c.getChildren(`${this.root}/log`, () => this.kickFollower(), (e: unknown, ch: string[]) => cb(e, ch))))
          .map(parseLogName)
          .filter((n): n is LogName => n !== undefined)
          .sort((a, b) => a.tx - b.tx);
        if (!loaded) {
          // Start: everything up to the newest entry comes from the objects themselves.
          this.cursorTx = children.at(-1)?.tx ?? 0;
          await this.loadAll();
          loaded = true;
        }
        const fresh = children.filter((n) => n.tx > this.cursorTx);
        if (fresh.length > 0 && Math.floor((await this.trimmedSeq()) / SEQ_STRIDE) > this.cursorTx) {
          // We fell behind the retention (a long disconnection): reload the objects; watchers miss the gap.
          process.emitWarning(`bees zk store: change log trimmed past this client's position; reloading ${this.url}`);
          this.cursorTx = children.at(-1)!.tx;
          await this.loadAll();
          this.releaseWaiters();
          continue;
        }
        // Fetch in parallel (one round trip's latency), apply in order.
        const datas = fresh.map((n) => this.zk<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/log/${n.name}`, cb)));
        datas.forEach((p) => p.catch(() => {}));
        for (let i = 0; i < fresh.length; i++) {
          const [data, stat] = await datas[i]!;
          const rec = JSON.parse(data.toString('utf8')) as { changes: Omit<StoredChange, 'seq' | 'zxid' | 'json'>[] & { value?: unknown }[] };
          const zxid = zxidOf(stat.czxid);
          const changes = rec.changes.map((c, j) => ({
            seq: fresh[i]!.tx * SEQ_STRIDE + j,
            kind: c.kind,
            id: c.id,
            type: c.type,
            version: c.version,
            json: c.type === 'delete' ? undefined : JSON.stringify((c as { value?: unknown }).value),
            zxid,
          }));
          for (const c of changes) this.applyToCache(c);
          this.cursorTx = fresh[i]!.tx;
          for (const c of changes) this.remember(c);
          for (const w of this.watchers) for (const c of changes) this.deliverOne(w, c);
        }
        this.releaseWaiters();
      } catch (err) {
        if (this.closed) return;
        if (process.env.BEES_STORE_DEBUG) console.error('follower', err);
        if (codeOf(err) === Exception.NO_NODE) {
          this.followDirty = true; // an entry trimmed under us: the trimmed-watermark check handles it next round
        } else {
          this.followDirty = true;
          await sleep(200);
        }
      }
    }
  }

  private releaseWaiters(): void {
    const ready = this.followWaiters.filter((w) => this.cursorTx >= w.tx);
    this.followWaiters = this.followWaiters.filter((w) => this.cursorTx < w.tx);
    for (const w of ready) w.resolve();
  }

  /** Reads every object; entries of the log replayed afterwards apply only if newer (by zxid) than what was read. */
  private async loadAll(): Promise<void> {
    for (const kind of KINDS) {
      const ids = await this.zk<string[]>((c, cb) => c.getChildren(`${this.root}/models/${kind}`, (e: unknown, ch: string[]) => cb(e, ch)));
      const map = new Map<string, CacheEntry>();
      const reads = ids.map((id) =>
        this.zk<[Buffer, Stat]>((c, cb) => c.getData(this.modelPath(kind, id), cb)).then(
          ([data, stat]) => map.set(id, { version: stat.version + 1, json: data.toString('utf8'), zxid: zxidOf(stat.mzxid) }),
          (err) => {
            if (codeOf(err) !== Exception.NO_NODE) throw err;
          },
        ),
      );
      await Promise.all(reads);
      this.cache.set(kind, map);
    }
  }

  private applyToCache(c: StoredChange): void {
    let map = this.cache.get(c.kind);
    if (!map) this.cache.set(c.kind, (map = new Map()));
    const cur = map.get(c.id);
    if (cur && cur.zxid >= c.zxid) return; // the object as read is already newer
    if (c.type === 'delete') map.delete(c.id);
    else map.set(c.id, { version: c.version, json: c.json!, zxid: c.zxid });
  }

  private remember(c: StoredChange): void {
    this.ring.push(c);
    if (this.ring.length > 2 * Math.min(this.retention * 4, 100_000)) this.ring = this.ring.slice(this.ring.length / 2);
  }

  private deliverOne(w: Watcher, c: StoredChange): void {
    deliver(w, c, 'zk');
  }

  async watch(handler: ChangeHandler, options: WatchOptions = {}): Promise<() => void> {
    this.live();
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watch needs a handler function');
    for (const k of options.kinds ?? []) checkKind(k);
    if (options.fromSeq !== undefined && (!Number.isSafeInteger(options.fromSeq) || options.fromSeq < 0)) {
      throw new StoreError('Invalid', `bad fromSeq ${JSON.stringify(options.fromSeq)}`);
    }
    const last = await this.lastSeq();
    await this.syncFollower(Math.max(this.ownTx, Math.floor(last / SEQ_STRIDE)));
    const w: Watcher = { handler, kinds: options.kinds ? new Set(options.kinds) : undefined, cursor: options.fromSeq ?? last };
    if (w.cursor > last) throw new StoreError('Gone', `fromSeq ${w.cursor} is ahead of this store (last seq ${last}): it was reset or is another store`);
    // Older than what this client has seen: read the backlog from ZooKeeper's log.
    for (;;) {
      const ringStart = this.ring[0]?.seq ?? (this.cursorTx + 1) * SEQ_STRIDE;
      if (w.cursor >= ringStart - 1 || w.cursor >= this.cursorTx * SEQ_STRIDE + SEQ_STRIDE - 1) break;
      if (w.cursor < (await this.trimmedSeq())) {
        throw new StoreError('Gone', `changes after seq ${w.cursor} are no longer retained`);
      }
      const children = (await this.read<string[]>((c, cb) => c.getChildren(`${this.root}/log`, (e: unknown, ch: string[]) => cb(e, ch))))
        .map(parseLogName)
        .filter((n): n is LogName => n !== undefined && n.tx * SEQ_STRIDE + n.count - 1 > w.cursor && n.tx * SEQ_STRIDE < ringStart)
        .sort((a, b) => a.tx - b.tx);
      for (const n of children) {
        let got: [Buffer, Stat];
        try {
          got = await this.read<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/log/${n.name}`, cb));
        } catch (err) {
          if (codeOf(err) === Exception.NO_NODE) throw new StoreError('Gone', `changes after seq ${w.cursor} are no longer retained`);
          throw err;
        }
        const rec = JSON.parse(got[0].toString('utf8')) as { changes: { kind: Kind; id: string; type: Change['type']; version: number; value?: unknown }[] };
        rec.changes.forEach((c, j) =>
          this.deliverOne(w, { seq: n.tx * SEQ_STRIDE + j, kind: c.kind, id: c.id, type: c.type, version: c.version, json: c.value === undefined ? undefined : JSON.stringify(c.value), zxid: 0n }),
        );
      }
      if (children.length === 0) w.cursor = Math.max(w.cursor, ringStart - 1);
    }
    // The rest from the ring, and registration, in one tick: nothing can slip between them.
    for (const c of this.ring) this.deliverOne(w, c);
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  // ---- ephemerals ----

  private ephemeralPath(key: string): string {
    return `${this.root}/ephemeral/${encodeURIComponent(key)}`;
  }

  private async writeEphemeral(key: string, json: string): Promise<void> {
    const path = this.ephemeralPath(key);
    const data = Buffer.from(json);
    for (let i = 0; i < 5; i++) {
      try {
        await this.read<string>((c, cb) => c.create(path, data, CreateMode.EPHEMERAL, cb));
        return;
      } catch (err) {
        if (codeOf(err) !== Exception.NODE_EXISTS) throw this.unavailable(err);
      }
      const stat = await this.read<Stat | null>((c, cb) => c.exists(path, cb));
      if (!stat) continue;
      if (stat.ephemeralOwner.equals(this.client.getSessionId())) {
        await this.read<Stat>((c, cb) => c.setData(path, data, -1, cb));
        return;
      }
      // Left by a previous session of this owner (or another writer): the newest writer wins.
      await this.read<void>((c, cb) => c.remove(path, -1, cb)).catch((err) => {
        if (codeOf(err) !== Exception.NO_NODE) throw err;
      });
    }
    throw new StoreError('Unavailable', `could not write ephemeral ${key}: contended`);
  }

  async putEphemeral(key: string, value: unknown): Promise<void> {
    this.live();
    checkEphemeralKey(key);
    const json = encodeEphemeral(key, value);
    this.mine.set(key, json);
    await this.writeEphemeral(key, json).catch((err) => {
      throw this.unavailable(err);
    });
  }

  async removeEphemeral(key: string): Promise<void> {
    this.live();
    checkEphemeralKey(key);
    this.mine.delete(key);
    try {
      await this.read<void>((c, cb) => c.remove(this.ephemeralPath(key), -1, cb));
    } catch (err) {
      if (codeOf(err) !== Exception.NO_NODE) throw this.unavailable(err);
    }
  }

  /** Reads the live records under `prefix`, leaving watches that re-run the ephemeral pump when anything moves. */
  private async readEphemerals(prefix: string, watch: boolean): Promise<Map<string, string>> {
    const dir = `${this.root}/ephemeral`;
    const kick = () => this.kickEphemeral();
    const names = await this.read<string[]>((c, cb) => (watch ? c.getChildren(dir, kick, (e: unknown, ch: string[]) => cb(e, ch)) : c.getChildren(dir, (e: unknown, ch: string[]) => cb(e, ch))));
    const out = new Map<string, string>();
    await Promise.all(
      names.map(async (name) => {
        let key: string;
        try {
          key = decodeURIComponent(name);
        } catch {
          return;
        }
        if (!key.startsWith(prefix)) return;
        try {
          const [data] = await this.read<[Buffer, Stat]>((c, cb) => (watch ? c.getData(`${dir}/${name}`, kick, cb) : c.getData(`${dir}/${name}`, cb)));
          out.set(key, data.toString('utf8'));
        } catch (err) {
          if (codeOf(err) !== Exception.NO_NODE) throw err;
        }
      }),
    );
    return out;
  }

  async listEphemeral(prefix: string): Promise<Record<string, unknown>> {
    this.live();
    checkPrefix(prefix);
    const out: Record<string, unknown> = {};
    const all = await this.readEphemerals(prefix, false).catch((err) => {
      throw this.unavailable(err);
    });
    for (const [k, v] of [...all].sort()) out[k] = JSON.parse(v);
    return out;
  }

  private kickEphemeral(): void {
    if (this.ephemeralViews.size === 0) return;
    this.ephemeralDirty = true;
    if (this.ephemeralPumping) return;
    this.ephemeralPumping = true;
    void (async () => {
      while (this.ephemeralDirty && !this.closed) {
        this.ephemeralDirty = false;
        try {
          const all = await this.readEphemerals('', true);
          for (const v of this.ephemeralViews) this.deliverEphemeral(v, all);
        } catch {
          if (this.closed) break;
          this.ephemeralDirty = true;
          await sleep(200);
        }
      }
      this.ephemeralPumping = false;
    })();
  }

  private deliverEphemeral(v: { prefix: string; handler: EphemeralHandler; last?: string }, all: Map<string, string>): void {
    const hub = new EphemeralHub();
    hub.replace(new Map([...all].filter(([k]) => k.startsWith(v.prefix)).sort()));
    const view = hub.list(v.prefix);
    const text = JSON.stringify(view);
    if (text === v.last) return;
    v.last = text;
    try {
      v.handler(view);
    } catch (err) {
      process.emitWarning(`bees zk store: an ephemeral watch handler threw: ${(err as Error).stack ?? err}`);
    }
  }

  async watchEphemeral(prefix: string, handler: EphemeralHandler): Promise<() => void> {
    this.live();
    checkPrefix(prefix);
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watchEphemeral needs a handler function');
    const v: { prefix: string; handler: EphemeralHandler; last?: string } = { prefix, handler };
    const all = await this.readEphemerals(prefix, true).catch((err) => {
      throw this.unavailable(err);
    });
    this.deliverEphemeral(v, all);
    this.ephemeralViews.add(v);
    return () => {
      this.ephemeralViews.delete(v);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.watchers.clear();
    this.ephemeralViews.clear();
    this.followWake?.();
    for (const w of this.connectWaiters.splice(0)) w();
    this.stopWatchdog?.();
    const closedError = new StoreError('Closed', `store ${this.url} is closed`);
    for (const abort of [...this.inflight]) abort(closedError);
    for (const w of [...this.followWaiters]) w.fail(closedError);
    // Closing the session removes our ephemeral records at once (not after the session timeout).
    const c = this.client;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      c.once('disconnected', () => {
        clearTimeout(timer);
        resolve();
      });
      c.close();
    });
  }
}

export function openZooKeeperStore(url: string, options?: ZooKeeperStoreOptions): Promise<ZooKeeperStore> {
  return ZooKeeperStore.open(url, options);
}
