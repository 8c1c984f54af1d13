// The clustered store on a real ZooKeeper ensemble, composed of the parts in zk/:
//   session.ts     the client, (re)connecting, the watchdog, bounded calls, credentials and ACLs, health
//   commit.ts      multi-op commits with the transaction marker and retry, and log trimming
//   follower.ts    the log follower: the cache behind list(), watch delivery, gap detection
//   ephemerals.ts  liveness records
//
// Layout under the root (e.g. zk://h1:2181,h2:2181/bees):
//   models/<Kind>/<id>   the object's JSON; store version = znode version + 1
//   log/n<count>_<seq>   one entry per transaction (zk/log.ts)
//   tx/<ms>-<txid>       transaction markers (zk/commit.ts)
//   meta/trimmed         the highest Change.seq removed from the log
//   ephemeral/<key>      EPHEMERAL znodes (zk/ephemerals.ts)
import zookeeper, { type Stat } from 'node-zookeeper-client';
import { KINDS, type Kind, type Models } from '../model/types.js';
import {
  StoreError,
  type ChangeHandler,
  type EphemeralHandler,
  type Op,
  type Store,
  type StoreHealth,
  type Versioned,
  type WatchOptions,
} from './store.js';
import { checkId, checkKind, redactUrl } from './validate.js';
import { Committer } from './zk/commit.js';
import { Ephemerals } from './zk/ephemerals.js';
import { Follower } from './zk/follower.js';
import { SEQ_STRIDE, modelPath } from './zk/log.js';
import { ZkSession, codeOf, parseZkUrl } from './zk/session.js';

export { parseZkUrl } from './zk/session.js';

const { Exception } = zookeeper;

export interface ZooKeeperStoreOptions {
  /** ZooKeeper session timeout (the server bounds it to [2, 20] ticks). Default 10 s. */
  sessionTimeoutMs?: number;
  /** A write that cannot complete in this time fails with 'Unavailable'. Default 20 s. */
  opTimeoutMs?: number;
  /** Change-log entries (transactions) kept for resuming watches. Default 10 000. */
  retention?: number | undefined;
  /** How long transaction markers are kept (a retry must happen within it). Default 10 min. */
  markerTtlMs?: number;
}

export class ZooKeeperStore implements Store {
  readonly url: string;
  private readonly root: string;
  private readonly session: ZkSession;
  private readonly committer: Committer;
  private readonly follower: Follower;
  private readonly ephemerals: Ephemerals;
  /** Notified when a new session replaces an expired one (tests and diagnostics). */
  onSession: ((sessionId: string) => void) | undefined;

  private constructor(url: string, options: ZooKeeperStoreOptions) {
    const target = parseZkUrl(url);
    this.url = redactUrl(url);
    this.root = target.root;
    const retention = Math.max(1, options.retention ?? 10_000);
    this.session = new ZkSession(this.url, target, {
      sessionTimeoutMs: options.sessionTimeoutMs ?? 10_000,
      opTimeoutMs: options.opTimeoutMs ?? 20_000,
    });
    this.committer = new Committer(this.session, this.root, { retention, markerTtlMs: options.markerTtlMs ?? 10 * 60_000 });
    this.follower = new Follower(this.session, this.root, retention, this.url);
    this.ephemerals = new Ephemerals(this.session, this.root);
    this.session.onConnected = () => {
      this.follower.kick();
      this.ephemerals.kick();
    };
    this.session.onNewSession = async () => {
      this.onSession?.(this.sessionId());
      await this.ephemerals.recreate();
      this.follower.kick();
      this.ephemerals.kick();
    };
  }

  static async open(url: string, options: ZooKeeperStoreOptions = {}): Promise<ZooKeeperStore> {
    const store = new ZooKeeperStore(url, options);
    const s = store.session;
    s.start();
    try {
      await s.waitConnected(Date.now() + s.options.opTimeoutMs);
      // Made once per store, by its first client: every later one only looks (reads, answered by the server it is
      // connected to), instead of ~60 creates in sequence, each a quorum write refused as existing. The watermark is
      // read, not just looked for: a read checks the ACL, so a client without the tree's credentials fails here.
      const dirs = ['log', 'tx', 'meta', 'ephemeral', ...KINDS.map((k) => `models/${k}`)].map((d) => `${store.root}/${d}`);
      const trimmed = `${store.root}/meta/trimmed`;
      const [hasTrimmed, ...exists] = await Promise.all([
        s
          .zk<unknown>((c, cb) => c.getData(trimmed, cb))
          .then(
            () => true,
            (err: unknown) => {
              if (codeOf(err) === Exception.NO_NODE) return false;
              throw err;
            },
          ),
        ...dirs.map((p) => s.zk<Stat | null>((c, cb) => c.exists(p, cb)).then((st) => st !== null && st !== undefined)),
      ]);
      for (const [i, dir] of dirs.entries()) {
        if (!exists[i]) await s.zk<void>((c, cb) => c.mkdirp(dir, s.acl, cb));
      }
      if (!hasTrimmed) {
        try {
          await s.zk<string>((c, cb) => c.create(trimmed, Buffer.from('0'), s.acl, cb));
        } catch (err) {
          if (codeOf(err) !== Exception.NODE_EXISTS) throw err;
        }
      }
    } catch (err) {
      await store.close();
      if (err instanceof StoreError) throw err;
      const mapped = s.unavailable(err);
      throw new StoreError(mapped.code, `cannot open ${store.url}: ${mapped.message}`);
    }
    return store;
  }

  /** Connections the watchdog reset (a hung handshake or a silent server); for diagnostics and metrics. */
  get connectionResets(): number {
    return this.session.connectionResets;
  }

  set onConnectionReset(fn: ((why: string) => void) | undefined) {
    this.session.onConnectionReset = fn;
  }

  get onConnectionReset(): ((why: string) => void) | undefined {
    return this.session.onConnectionReset;
  }

  /** Times this client fell behind the log's retention and reloaded (its watchers were told). */
  get gaps(): number {
    return this.follower.gaps;
  }

  sessionId(): string {
    return this.session.sessionId();
  }

  health(): StoreHealth {
    return this.session.health();
  }

  onHealth(listener: (health: StoreHealth) => void): () => void {
    return this.session.onHealth(listener);
  }

  // ---- objects ----

  async get<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    this.session.live();
    checkKind(kind);
    checkId(kind, id);
    try {
      const [data, stat] = await this.session.read<[Buffer, Stat]>((c, cb) => c.getData(modelPath(this.root, kind, id), cb));
      return { value: JSON.parse(data.toString('utf8')) as Models[K], version: stat.version + 1 };
    } catch (err) {
      if (codeOf(err) === Exception.NO_NODE) return undefined;
      throw this.session.unavailable(err);
    }
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    this.session.live();
    checkKind(kind);
    return this.follower.list(kind, this.committer.ownTx);
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

  commit(ops: Op[]): Promise<number[]> {
    return this.committer.commit(ops);
  }

  async lastSeq(): Promise<number> {
    this.session.live();
    return this.follower.lastSeq();
  }

  /**
   * Catch up with every change committed by any client before the call, so the reads that follow see them
   * (ZooKeeper's own `sync` in spirit; a client always sees its own writes without it). One log listing: for
   * tests and tools asserting on another process's writes, not for hot paths.
   */
  async sync(): Promise<void> {
    const head = await this.lastSeq();
    if (head > 0) await this.follower.sync(Math.max(this.committer.ownTx, Math.floor(head / SEQ_STRIDE)));
  }

  async watch(handler: ChangeHandler, options: WatchOptions = {}): Promise<() => void> {
    this.session.live();
    return this.follower.watch(handler, options, this.committer.ownTx);
  }

  // ---- ephemerals ----

  async putEphemeral(key: string, value: unknown): Promise<void> {
    this.session.live();
    return this.ephemerals.put(key, value);
  }

  async removeEphemeral(key: string): Promise<void> {
    this.session.live();
    return this.ephemerals.remove(key);
  }

  async listEphemeral(prefix: string): Promise<Record<string, unknown>> {
    this.session.live();
    return this.ephemerals.list(prefix);
  }

  async watchEphemeral(prefix: string, handler: EphemeralHandler): Promise<() => void> {
    this.session.live();
    return this.ephemerals.watch(prefix, handler);
  }

  async close(): Promise<void> {
    if (this.session.closed) return;
    this.session.closed = true; // first: the follower and pumps see it as they wake
    this.follower.close();
    this.ephemerals.close();
    // Closing the session removes our ephemeral records at once (not after the session timeout).
    await this.session.close();
  }
}

export function openZooKeeperStore(url: string, options?: ZooKeeperStoreOptions): Promise<ZooKeeperStore> {
  return ZooKeeperStore.open(url, options);
}
