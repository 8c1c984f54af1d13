// What this agent can prove it made on this host. Names alone prove nothing: a veth called `bv0…` may be anybody's,
// and an agent started against an empty or wrong store (a typo in the zk root, a wiped file store) sees a topology
// that lacks everything the host runs. So the agent keeps a local inventory in its state directory: every bridge,
// plug and router it creates, recorded before the kernel object exists, with the host id and the store it was made
// for. A sweep removes only inventory entries of this host and this store; anything else is left alone and
// reported, however much it looks like ours.
//
// "This store" is its URL (credentials removed): a typo in the zk root names another store. A store at the same URL
// that does not know this host (wiped, or recreated) cannot vouch for what was made for its predecessor either: the
// agent then quarantines every entry made for that URL before it registers. Any change of URL (another server list)
// only makes earlier objects unsweepable: a leak to clean by hand, never a teardown. The file needs no fsync: the
// kernel objects it describes do not survive a reboot either.
//
// Writes are coalesced: claims made while a write is pending share the next one, and each claim resolves only once
// a file holding it has been renamed into place, before the plug makes its kernel object: an agent that crashes at
// any point leaves no object the file does not name. Forgetting does not wait: an entry left behind by a crash
// names an object already gone, which the next sweep drops.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { plugName } from '../datapath/names.js';
import type {
  Datapath,
  DesiredBridge,
  DesiredRouter,
  Inventory,
  PlugResult,
  PlugSpec,
  PolicyChange,
  RouterNeighbour,
} from '../datapath/types.js';
import type { LbHostSpec } from '../datapath/nft/lb.js';

export const INVENTORY_FILE = 'datapath-inventory.json';

/** Who an object was made for. */
interface Owner {
  host: string;
  store: string;
}

interface InventoryFile {
  version: 1;
  objects: Record<string, Owner>;
}

const bridgeKey = (vni: number): string => `bridge/${vni}`;
const plugKey = (ifname: string): string => `plug/${ifname}`;
const routerKey = (id: string): string => `router/${id}`;

export class LocalInventory {
  private objects: Record<string, Owner> = {};

  constructor(
    readonly file: string,
    private readonly me: Owner,
  ) {
    let text: string | undefined;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (text === undefined) return;
    try {
      const parsed = JSON.parse(text) as Partial<InventoryFile>;
      if (parsed.version !== 1 || typeof parsed.objects !== 'object' || parsed.objects === null) throw new Error('unknown format');
      this.objects = parsed.objects;
    } catch (err) {
      // Starting without it would be safe (nothing unproven is swept) but would forget what it vouched for
      // silently: the operator decides.
      throw new Error(`local datapath inventory ${file} is unreadable (${(err as Error).message}); move it aside to start without it`);
    }
  }

  private text(): string {
    return JSON.stringify({ version: 1, objects: this.objects } satisfies InventoryFile);
  }

  /** At start, before any coalesced write: written at once. */
  private saveNow(): void {
    mkdirSync(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.tmp`;
    writeFileSync(tmp, this.text());
    renameSync(tmp, this.file);
  }

  /** The write not yet started (changes made now go into it), and the last one started. */
  private next: Promise<void> | undefined;
  private last: Promise<void> = Promise.resolve();

  /** Resolves once a write that began after this call (so holds every change made before it) is in place. */
  private save(): Promise<void> {
    if (!this.next) {
      const next = this.last
        .catch(() => undefined)
        .then(async () => {
          this.next = undefined;
          const text = this.text();
          await mkdir(dirname(this.file), { recursive: true });
          const tmp = `${this.file}.tmp`;
          await writeFile(tmp, text);
          await rename(tmp, this.file);
        });
      this.next = next;
      this.last = next;
    }
    return this.next;
  }

  /** Whether this agent recorded the object as made by it for this store. */
  holds(key: string): boolean {
    const o = this.objects[key];
    return o !== undefined && o.host === this.me.host && o.store === this.me.store;
  }

  /** Record an object as made by this agent for this store (before making it: a crash then leaves no orphan). */
  async claim(key: string): Promise<void> {
    const o = this.objects[key];
    // Claimed already: wait for the write holding it (pending or in progress); one that failed is tried again.
    if (o && o.host === this.me.host && o.store === this.me.store) return (this.next ?? this.last).catch(() => this.save());
    this.objects[key] = { ...this.me };
    return this.save();
  }

  /** Forgetting need not wait (see the top of this file); a failed write only leaves an entry for a gone object. */
  private saveLater(): void {
    this.save().catch(() => undefined);
  }

  /** Retag this store's entries so they are never swept under it again; returns how many there were. */
  quarantine(why: string): number {
    let n = 0;
    for (const o of Object.values(this.objects)) {
      if (o.store !== this.me.store) continue;
      o.store = `${o.store} (${why})`;
      n++;
    }
    if (n > 0) this.saveNow();
    return n;
  }

  forget(key: string): void {
    if (!(key in this.objects)) return;
    delete this.objects[key];
    this.saveLater();
  }

  /** Entries made by this host for this store: what a sweep may remove. */
  mine(): Inventory {
    return this.select((o) => o.host === this.me.host && o.store === this.me.store);
  }

  /** Entries made for another store or by another host id: never swept while this agent runs against this store. */
  others(): Inventory {
    return this.select((o) => !(o.host === this.me.host && o.store === this.me.store));
  }

  /** Drop entries whose kernel object no longer exists (removed, or gone with a reboot). */
  retainOnly(present: Inventory): void {
    const keep = new Set([...present.bridges.map(bridgeKey), ...present.plugs.map(plugKey), ...present.routers.map(routerKey)]);
    let changed = false;
    for (const key of Object.keys(this.objects)) {
      if (!keep.has(key)) {
        delete this.objects[key];
        changed = true;
      }
    }
    if (changed) this.saveLater();
  }

  private select(pred: (o: Owner) => boolean): Inventory {
    const out: Inventory = { bridges: [], plugs: [], routers: [] };
    for (const [key, o] of Object.entries(this.objects)) {
      if (!pred(o)) continue;
      const slash = key.indexOf('/');
      const kind = key.slice(0, slash);
      const name = key.slice(slash + 1);
      if (kind === 'bridge') out.bridges.push(Number(name));
      else if (kind === 'plug') out.plugs.push(name);
      else if (kind === 'router') out.routers.push(name);
    }
    return out;
  }
}

/** A datapath whose sweep is limited to a set of objects (LinuxDatapath). */
export interface SweepableDatapath extends Datapath {
  sweep(desired: Partial<Inventory>, owned?: Partial<Inventory>): Promise<void>;
  /** The namespace (path) a router instance lives in on this host. */
  routerNetns?(routerId: string): string;
}

/**
 * The agent's datapath: records what it makes in the local inventory and sweeps only that. Router ids in the
 * kernel inventory may be the shortened namespace form; the inner sweep matches both.
 */
export class OwnedDatapath implements Datapath {
  /** What was last reported as left alone, so a resync every 30 s does not repeat it. */
  private reported = '';

  constructor(
    private readonly inner: SweepableDatapath,
    private readonly inv: LocalInventory,
    private readonly log: (msg: string) => void,
  ) {
    const fast = inner.setRouterNeighbours?.bind(inner);
    if (fast) this.setRouterNeighbours = fast;
    const filters = inner.setRouterFilters?.bind(inner);
    if (filters) this.setRouterFilters = filters;
    // Only changes entries of a bridge ensureBridge made (and claimed) before.
    const remotes = inner.setBridgeRemotes?.bind(inner);
    if (remotes) this.setBridgeRemotes = remotes;
    // Policy lives in tables the sweep drops whole (with the last bridge and plug): nothing to record per object.
    const policy = inner.applyPolicy?.bind(inner);
    if (policy) this.applyPolicy = policy;
    // The load balancer lives in a table and policy rules the sweep removes whole (with the last bridge).
    const lb = inner.applyLoadBalancers?.bind(inner);
    if (lb) this.applyLoadBalancers = lb;
    // The BPF fast path's maps and filters go with the links they are on (bridges and veths the sweep removes).
    const fastPath = inner.setFastPath?.bind(inner);
    if (fastPath) this.setFastPath = fastPath;
    const fastStatus = inner.fastPathStatus?.bind(inner);
    if (fastStatus) this.fastPathStatus = fastStatus;
  }

  readonly setFastPath?: NonNullable<Datapath['setFastPath']>;
  readonly fastPathStatus?: NonNullable<Datapath['fastPathStatus']>;

  readonly applyPolicy?: (change: PolicyChange) => Promise<void>;
  readonly applyLoadBalancers?: (spec: LbHostSpec, opts: { full: boolean }) => Promise<void>;

  async ensureBridge(b: DesiredBridge): Promise<void> {
    await this.inv.claim(bridgeKey(b.vni));
    await this.inner.ensureBridge(b);
  }

  async removeBridge(vni: number): Promise<void> {
    await this.inner.removeBridge(vni);
    this.inv.forget(bridgeKey(vni));
  }

  async preparePlug(p: PlugSpec): Promise<void> {
    if (!this.inner.preparePlug) throw new Error('this datapath cannot prepare a plug');
    // Recorded before the veth exists, as plug does (the plug that follows finds its claim written).
    await this.inv.claim(plugKey(p.hostIfname ?? plugName(p.netns, p.ifname)));
    await this.inner.preparePlug(p);
  }

  async plug(p: PlugSpec): Promise<PlugResult> {
    const name = p.hostIfname ?? plugName(p.netns, p.ifname);
    await this.inv.claim(plugKey(name));
    const r = await this.inner.plug(p);
    if (r.hostIfname !== name) await this.inv.claim(plugKey(r.hostIfname));
    return r;
  }

  async unplug(hostIfname: string): Promise<void> {
    await this.inner.unplug(hostIfname);
    this.inv.forget(plugKey(hostIfname));
  }

  checkPlug(p: PlugSpec): Promise<string[]> {
    return this.inner.checkPlug(p);
  }

  async ensureRouter(r: DesiredRouter): Promise<void> {
    // A router namespace of this name that this agent did not record is someone else's: left by an agent on
    // another store (a wiped state directory, another `bees up`), or another agent on this machine with the same
    // prefix. Building our legs into it would fail half-way on its interfaces, or worse, take it over.
    if (!this.inv.holds(routerKey(r.id))) {
      const ns = this.inner.routerNetns?.(r.id);
      if (ns && existsSync(ns))
        throw new Error(
          `router ${r.id}: its namespace ${ns} exists already and this agent cannot prove it made it for this store ` +
            `(left by an agent on another store, or another agent on this machine): if it is stale, remove it ` +
            `(ip netns del ${basename(ns)}); or give this agent its own --router-ns-prefix`,
        );
    }
    await this.inv.claim(routerKey(r.id));
    await this.inner.ensureRouter(r);
  }

  /** Present when the inner datapath has the fast path (the reconciler checks for it). */
  readonly setBridgeRemotes?: NonNullable<Datapath['setBridgeRemotes']>;

  /** Present when the inner datapath has the fast path (the reconciler checks for it). */
  readonly setRouterFilters?: NonNullable<Datapath['setRouterFilters']>;

  /** Present when the inner datapath has the fast path (the reconciler checks for it). */
  readonly setRouterNeighbours?: (id: string, add: RouterNeighbour[], remove: RouterNeighbour[]) => Promise<void>;

  async removeRouter(id: string): Promise<void> {
    await this.inner.removeRouter(id);
    this.inv.forget(routerKey(id));
  }

  inventory(): Promise<Inventory> {
    return this.inner.inventory();
  }

  async sweep(desired: Partial<Inventory>): Promise<void> {
    const mine = this.inv.mine();
    await this.inner.sweep(desired, mine);
    const left = await this.inner.inventory();
    this.reportLeftAlone(left, desired, mine);
    // Router namespaces are listed by their (possibly shortened) namespace suffix; keep entries under both forms.
    this.inv.retainOnly({
      ...left,
      routers: [...left.routers, ...mine.routers.filter((id) => left.routers.some((r) => id.startsWith(r)))],
    });
  }

  /** Say once, loudly, what looks like ours but is not provably ours (and therefore stays). */
  private reportLeftAlone(left: Inventory, desired: Partial<Inventory>, mine: Inventory): void {
    const others = this.inv.others();
    const keep = {
      bridges: new Set([...(desired.bridges ?? []), ...mine.bridges]),
      plugs: new Set([...(desired.plugs ?? []), ...mine.plugs]),
      routers: [...(desired.routers ?? []), ...mine.routers],
    };
    const foreign = [
      ...left.bridges.filter((v) => !keep.bridges.has(v)).map((v) => `bridge vni ${v}`),
      ...left.plugs.filter((n) => !keep.plugs.has(n)).map((n) => `link ${n}`),
      ...left.routers.filter((r) => !keep.routers.some((id) => id.startsWith(r))).map((r) => `router ${r}`),
    ];
    const inherited = others.bridges.length + others.plugs.length + others.routers.length;
    const text = foreign.length === 0 ? '' : `${foreign.join(', ')}`;
    if (text === this.reported) return;
    this.reported = text;
    if (text === '') return;
    this.log(
      `NOT sweeping ${foreign.length} datapath object(s) that this agent cannot prove it made for this store: ${text}` +
        (inherited > 0
          ? ` (${inherited} were made by an earlier run for another store or host id: is the store URL right? an empty or ` +
            'wrong store must not tear down a live datapath; remove them by hand if they are really stale)'
          : ' (not in the local inventory: foreign, or made before ownership was recorded)'),
    );
  }
}
