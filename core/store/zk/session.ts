// The ZooKeeper session of one store client: the library client, connecting and reconnecting, the watchdog that
// bounds what the library leaves unbounded (zk-watchdog.ts), a new session when one expires, and calls that are
// bounded in time and aborted when their client goes away. It also owns the store's health: up while connected.
import { createHash } from 'node:crypto';
import zookeeper, { type ACL, type Client } from 'node-zookeeper-client';
import { inspect } from 'node:util';
import { StoreError, type StoreHealth } from '../store.js';
import { redactUrl } from '../validate.js';
import { watchConnection } from '../zk-watchdog.js';
import { installWireOnLibrary } from './wire.js';

const { Exception } = zookeeper;

export interface ZkTarget {
  hosts: string;
  root: string;
  /** `user:password` from zk://user:password@…: digest authentication, and nodes only that identity can use. */
  auth?: string;
}

export function parseZkUrl(url: string): ZkTarget {
  const m = /^zk:\/\/(?:([^@/]*)@)?([^/]+)(\/.*)?$/i.exec(url);
  if (!m)
    throw new StoreError(
      'Invalid',
      `not a ZooKeeper store URL: ${JSON.stringify(redactUrl(url))} (expected zk://host:port[,host:port…]/root)`,
    );
  const hosts = m[2]!;
  for (const h of hosts.split(',')) {
    if (!/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$/.test(h)) {
      throw new StoreError('Invalid', `bad ZooKeeper host ${JSON.stringify(h)} in ${redactUrl(url)}: expected host:port`);
    }
  }
  const root = (m[3] ?? '').replace(/\/+$/, '');
  if (
    root === '' ||
    root
      .split('/')
      .slice(1)
      .some((s) => s === '' || s === '.' || s === '..' || s === 'zookeeper')
  ) {
    throw new StoreError('Invalid', `ZooKeeper store URL needs a root path such as /bees: ${redactUrl(url)}`);
  }
  if (m[1] === undefined) return { hosts, root };
  const userinfo = m[1].split(':');
  if (userinfo.length !== 2 || userinfo[0] === '' || userinfo[1] === '') {
    throw new StoreError('Invalid', `ZooKeeper credentials must be user:password in ${redactUrl(url)}`);
  }
  let auth: string;
  try {
    auth = `${decodeURIComponent(userinfo[0]!)}:${decodeURIComponent(userinfo[1]!)}`;
  } catch {
    throw new StoreError('Invalid', `bad percent-encoding in the credentials of ${redactUrl(url)}`);
  }
  return { hosts, root, auth };
}

/**
 * The ACL of every node a store client creates: open when no credentials were given; otherwise all permissions
 * for the digest identity of `user:password` only (ZooKeeper's digest: base64(sha1("user:password"))), so a client
 * without the credentials can neither read nor change the tree.
 */
export function aclFor(auth: string | undefined): ACL[] {
  if (auth === undefined) return [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
  const user = auth.slice(0, auth.indexOf(':'));
  const digest = createHash('sha1').update(auth).digest('base64');
  return [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('digest', `${user}:${digest}`))];
}

type ZkError = Error & { code?: number; getCode?: () => number };
export const codeOf = (err: unknown): number | undefined => (err as ZkError | undefined)?.getCode?.() ?? (err as ZkError | undefined)?.code;
export class CallTimeout extends Error {}
/** A call abandoned because its client (session) was replaced: its outcome is unknown, as after a connection loss. */
export class ClientReplaced extends Error {}
/** Errors after which a write's outcome is unknown or the connection must be waited for. */
export function isConnectionError(err: unknown): boolean {
  if (err instanceof CallTimeout || err instanceof ClientReplaced) return true;
  const c = codeOf(err);
  return c === Exception.CONNECTION_LOSS || c === Exception.SESSION_EXPIRED || c === Exception.OPERATION_TIMEOUT;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// `any`: node-zookeeper-client callbacks pass differently shaped results (and Exception objects) per call;
// each caller states the type it expects.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the reason is the comment above
export type Callback = (err: any, ...rest: any[]) => void;

/**
 * One promisified call, bounded in time, and abortable through `inflight`: the library never answers calls still
 * queued when its client is closed or replaced, and a caller must not wait out its whole timeout for them.
 */
export function call<T>(fn: (cb: Callback) => void, timeoutMs: number, inflight: Set<(e: Error) => void>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const finish = (err: unknown, value?: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      inflight.delete(abort);
      if (err) reject(err instanceof Error ? err : new Error(typeof err === 'string' ? err : inspect(err)));
      else resolve(value as T);
    };
    const abort = (e: Error) => finish(e);
    const timer = setTimeout(() => finish(new CallTimeout(`ZooKeeper did not answer in ${timeoutMs} ms`)), timeoutMs);
    inflight.add(abort);
    fn((err, ...rest) => finish(err, (rest.length <= 1 ? rest[0] : rest) as T));
  });
}

export interface SessionOptions {
  sessionTimeoutMs: number;
  opTimeoutMs: number;
}

export class ZkSession {
  client!: Client;
  /** The ACL every created node carries (see aclFor). */
  readonly acl: ACL[];
  private connected = false;
  private connectWaiters: (() => void)[] = [];
  private stopWatchdog: (() => void) | undefined;
  /** Abort functions of the calls awaiting an answer from the current client. */
  readonly inflight = new Set<(e: Error) => void>();
  closed = false;
  private healthState: StoreHealth = { up: false, reason: 'connecting to ZooKeeper' };
  private readonly healthListeners = new Set<(h: StoreHealth) => void>();
  /** Connections the watchdog reset (a hung handshake or a silent server); for diagnostics and metrics. */
  connectionResets = 0;
  onConnectionReset: ((why: string) => void) | undefined;
  /** Called on every (re)connection, within a session or with a new one. */
  onConnected: (() => void) | undefined;
  /** Called once a new session, replacing an expired one, is connected. */
  onNewSession: (() => Promise<void> | void) | undefined;

  constructor(
    readonly url: string,
    readonly target: ZkTarget,
    readonly options: SessionOptions,
  ) {
    this.acl = aclFor(target.auth);
  }

  get hosts(): string {
    return this.target.hosts;
  }

  start(): void {
    const { sessionTimeoutMs } = this.options;
    // Before the first client: its connection manager picks the wire path up when made (wire.ts).
    installWireOnLibrary();
    const client = zookeeper.createClient(this.hosts, { sessionTimeout: sessionTimeoutMs, spinDelay: 200, retries: 0 });
    this.client = client;
    this.connected = false;
    // Before connect(): the library sends queued auth packets right after each handshake, reconnects included.
    if (this.target.auth !== undefined) client.addAuthInfo('digest', Buffer.from(this.target.auth));
    this.stopWatchdog?.();
    // As the Java client: a handshake gets the session timeout shared among the servers, at least 2 s.
    const servers = this.hosts.split(',').length;
    this.stopWatchdog = watchConnection(client, {
      handshakeMs: Math.max(2000, Math.floor(sessionTimeoutMs / servers)),
      onReset: (why) => {
        this.connectionResets++;
        this.onConnectionReset?.(why);
      },
    });
    client.on('state', (state) => {
      if (this.client !== client || this.closed) return;
      if (state === zookeeper.State.SYNC_CONNECTED) {
        this.connected = true;
        this.setHealth({ up: true });
        for (const w of this.connectWaiters.splice(0)) w();
        // Watches survive a reconnect within the session, but anything that happened while we were away is
        // picked up by looking again.
        this.onConnected?.();
      } else if (state === zookeeper.State.DISCONNECTED) {
        this.connected = false;
        this.setHealth({ up: false, reason: `disconnected from ZooKeeper ${this.hosts}` });
      } else if (state === zookeeper.State.AUTH_FAILED) {
        this.connected = false;
        this.setHealth({ up: false, reason: `ZooKeeper ${this.hosts} refused the credentials` });
      } else if (state === zookeeper.State.EXPIRED) {
        this.connected = false;
        this.setHealth({ up: false, reason: `the ZooKeeper session expired; reconnecting to ${this.hosts}` });
        for (const abort of [...this.inflight]) abort(new ClientReplaced('the ZooKeeper session expired'));
        client.close();
        this.start();
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
    await this.onNewSession?.();
  }

  health(): StoreHealth {
    return { ...this.healthState };
  }

  onHealth(listener: (h: StoreHealth) => void): () => void {
    this.healthListeners.add(listener);
    return () => this.healthListeners.delete(listener);
  }

  private setHealth(h: StoreHealth): void {
    if (this.closed) return;
    const changed = h.up !== this.healthState.up || h.reason !== this.healthState.reason;
    this.healthState = h;
    if (!changed) return;
    for (const l of [...this.healthListeners]) {
      try {
        l(this.health());
      } catch (err) {
        process.emitWarning(`bees zk store: a health listener threw: ${(err as Error).stack ?? String(err)}`);
      }
    }
  }

  sessionId(): string {
    return this.client.getSessionId().toString('hex');
  }

  waitConnected(deadline: number): Promise<void> {
    if (this.closed) return Promise.reject(new StoreError('Closed', `store ${this.url} is closed`));
    if (this.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer =
        deadline === Number.POSITIVE_INFINITY
          ? undefined
          : setTimeout(
              () => {
                this.connectWaiters = this.connectWaiters.filter((w) => w !== done);
                reject(new StoreError('Unavailable', `ZooKeeper ${this.hosts} unreachable`));
              },
              Math.max(0, deadline - Date.now()),
            );
      const done = () => {
        clearTimeout(timer);
        if (this.closed) reject(new StoreError('Closed', `store ${this.url} is closed`));
        else resolve();
      };
      this.connectWaiters.push(done);
    });
  }

  /** One call on the current client, bounded in time. */
  zk<T>(fn: (c: Client, cb: Callback) => void, timeoutMs = this.options.opTimeoutMs): Promise<T> {
    const c = this.client;
    return call<T>((cb) => fn(c, cb), timeoutMs, this.inflight);
  }

  /** Retries a read across connection losses until the deadline; reads are safe to repeat. */
  async read<T>(fn: (c: Client, cb: Callback) => void): Promise<T> {
    const deadline = Date.now() + this.options.opTimeoutMs;
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

  /** A ZooKeeper failure as a store error: a request ZooKeeper refuses as malformed is the caller's, not an outage. */
  unavailable(err: unknown): StoreError {
    if (err instanceof StoreError) return err;
    const c = codeOf(err);
    if (c === Exception.BAD_ARGUMENTS)
      return new StoreError('Invalid', `ZooKeeper refused the request as malformed: ${(err as Error).message}`);
    if (c === Exception.NO_AUTH || c === Exception.AUTH_FAILED || c === Exception.INVALID_ACL) {
      return new StoreError(
        'Unavailable',
        `ZooKeeper ${this.hosts} denied access (${(err as Error).message}): check the credentials in the store URL`,
      );
    }
    return new StoreError('Unavailable', `ZooKeeper ${this.hosts}: ${(err as Error).message}`);
  }

  live(): void {
    if (this.closed) throw new StoreError('Closed', `store ${this.url} is closed`);
  }

  /** Ends the session (its ephemeral nodes go at once) and fails every waiting call with 'Closed'. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.connectWaiters.splice(0)) w();
    this.stopWatchdog?.();
    const closedError = new StoreError('Closed', `store ${this.url} is closed`);
    for (const abort of [...this.inflight]) abort(closedError);
    this.healthListeners.clear();
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
