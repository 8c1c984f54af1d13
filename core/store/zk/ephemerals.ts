// Liveness records as EPHEMERAL znodes under ephemeral/<key> (key percent-encoded, so '/' fits in one name). The
// records this client owns are remembered and re-created on a new session; views (watchEphemeral) are re-read
// whenever a child or data watch fires, or the connection comes back.
import zookeeper, { type Stat } from 'node-zookeeper-client';
import { EphemeralHub, checkEphemeralKey, checkPrefix, encodeEphemeral } from '../ephemeral-hub.js';
import { StoreError, type EphemeralHandler } from '../store.js';
import { childrenCb } from './log.js';
import { codeOf, sleep, type ZkSession } from './session.js';

const { CreateMode, Exception } = zookeeper;

interface View {
  prefix: string;
  handler: EphemeralHandler;
  last?: string;
}

export class Ephemerals {
  /** Ephemeral records this client owns, re-created on a new session. */
  private readonly mine = new Map<string, string>();
  private readonly views = new Set<View>();
  private dirty = false;
  private pumping = false;

  constructor(
    private readonly s: ZkSession,
    private readonly root: string,
  ) {}

  private path(key: string): string {
    return `${this.root}/ephemeral/${encodeURIComponent(key)}`;
  }

  private async write(key: string, json: string): Promise<void> {
    const s = this.s;
    const path = this.path(key);
    const data = Buffer.from(json);
    for (let i = 0; i < 5; i++) {
      try {
        await s.read<string>((c, cb) => c.create(path, data, s.acl, CreateMode.EPHEMERAL, cb));
        return;
      } catch (err) {
        if (codeOf(err) !== Exception.NODE_EXISTS) throw s.unavailable(err);
      }
      const stat = await s.read<Stat | null>((c, cb) => c.exists(path, cb));
      if (!stat) continue;
      if (stat.ephemeralOwner.equals(s.client.getSessionId())) {
        await s.read<Stat>((c, cb) => c.setData(path, data, -1, cb));
        return;
      }
      // Left by a previous session of this owner (or another writer): the newest writer wins.
      await s
        .read<void>((c, cb) => c.remove(path, -1, cb))
        .catch((err) => {
          if (codeOf(err) !== Exception.NO_NODE) throw err;
        });
    }
    throw new StoreError('Unavailable', `could not write ephemeral ${key}: contended`);
  }

  /** After a new session: our records died with the old one. */
  async recreate(): Promise<void> {
    for (const [key, json] of this.mine) {
      try {
        await this.write(key, json);
      } catch (err) {
        process.emitWarning(`bees zk store: could not re-create ephemeral ${key}: ${(err as Error).message}`);
      }
    }
  }

  async put(key: string, value: unknown): Promise<void> {
    checkEphemeralKey(key);
    const json = encodeEphemeral(key, value);
    this.mine.set(key, json);
    await this.write(key, json).catch((err) => {
      throw this.s.unavailable(err);
    });
  }

  async remove(key: string): Promise<void> {
    checkEphemeralKey(key);
    this.mine.delete(key);
    try {
      await this.s.read<void>((c, cb) => c.remove(this.path(key), -1, cb));
    } catch (err) {
      if (codeOf(err) !== Exception.NO_NODE) throw this.s.unavailable(err);
    }
  }

  /** Reads the live records under `prefix`, leaving watches that re-run the pump when anything moves. */
  private async read(prefix: string | readonly string[], watch: boolean): Promise<Map<string, string>> {
    const prefixes = typeof prefix === 'string' ? [prefix] : prefix;
    const s = this.s;
    const dir = `${this.root}/ephemeral`;
    const kick = () => this.kick();
    const names = await s.read<string[]>((c, cb) =>
      watch ? c.getChildren(dir, kick, childrenCb(cb)) : c.getChildren(dir, childrenCb(cb)),
    );
    const out = new Map<string, string>();
    await Promise.all(
      names.map(async (name) => {
        let key: string;
        try {
          key = decodeURIComponent(name);
        } catch {
          return;
        }
        if (!prefixes.some((p) => key.startsWith(p))) return;
        try {
          const [data] = await s.read<[Buffer, Stat]>((c, cb) =>
            watch ? c.getData(`${dir}/${name}`, kick, cb) : c.getData(`${dir}/${name}`, cb),
          );
          out.set(key, data.toString('utf8'));
        } catch (err) {
          if (codeOf(err) !== Exception.NO_NODE) throw err;
        }
      }),
    );
    return out;
  }

  async list(prefix: string): Promise<Record<string, unknown>> {
    checkPrefix(prefix);
    const out: Record<string, unknown> = {};
    const all = await this.read(prefix, false).catch((err) => {
      throw this.s.unavailable(err);
    });
    for (const [k, v] of [...all].sort()) out[k] = JSON.parse(v);
    return out;
  }

  kick(): void {
    if (this.views.size === 0) return;
    this.dirty = true;
    if (this.pumping) return;
    this.pumping = true;
    void (async () => {
      while (this.dirty && !this.s.closed) {
        this.dirty = false;
        try {
          // Only the records some view looks at: every agent watches `probes/`, and reading every host's liveness
          // record on each change would cost hosts² reads cluster-wide.
          const all = await this.read([...new Set([...this.views].map((v) => v.prefix))], true);
          for (const v of this.views) this.deliver(v, all);
        } catch {
          if (this.s.closed) break;
          this.dirty = true;
          await sleep(200);
        }
      }
      this.pumping = false;
    })();
  }

  private deliver(v: View, all: Map<string, string>): void {
    const hub = new EphemeralHub();
    hub.replace(new Map([...all].filter(([k]) => k.startsWith(v.prefix)).sort()));
    const view = hub.list(v.prefix);
    const text = JSON.stringify(view);
    if (text === v.last) return;
    v.last = text;
    try {
      v.handler(view);
    } catch (err) {
      process.emitWarning(`bees zk store: an ephemeral watch handler threw: ${(err as Error).stack ?? String(err)}`);
    }
  }

  async watch(prefix: string, handler: EphemeralHandler): Promise<() => void> {
    checkPrefix(prefix);
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watchEphemeral needs a handler function');
    const v: View = { prefix, handler };
    const all = await this.read(prefix, true).catch((err) => {
      throw this.s.unavailable(err);
    });
    this.deliver(v, all);
    this.views.add(v);
    return () => {
      this.views.delete(v);
    };
  }

  close(): void {
    this.views.clear();
  }
}
