// The agent's local copy of the topology, kept current from the store's ordered change stream (list, then watch
// from the sequence number seen before listing: a change racing the list is applied twice, harmlessly, since
// applying a change is idempotent). Reads on the packet-plumbing path never go to the store.
import { EventEmitter } from 'node:events';
import type { Kind, Models } from '../model/types.js';
import type { Change, Store } from '../store/store.js';
import { StoreError } from '../store/store.js';
import { portGroups, type PortIndex } from './plan.js';

/** Kinds the agent realizes; the rest stay in the store only. */
export const CACHED_KINDS = [
  'Tenant',
  'Bridge',
  'Router',
  'Port',
  'Host',
  'Route',
  'TunnelZone',
  'Chain',
  'Rule',
  'PortGroup',
  'IpAddrGroup',
  // The load balancer (core/agent/plan-lb.ts).
  'LoadBalancer',
  'Pool',
  'PoolMember',
  'Vip',
  'HealthMonitor',
] as const;
export type CachedKind = (typeof CACHED_KINDS)[number];

/**
 * Fields naming another object that many objects share (every port of a bridge names the bridge, its tenant and
 * its host): each parsed object would otherwise hold its own copy of the same 36-character id, about 220 bytes per
 * port of the ~1.3 KiB the agent spends on a remote port (bench/scale). Bounded by the hosts, bridges, routers and
 * tenants seen since the last relist: a port's own id and its peer (unique per port) are not interned.
 */
const SHARED_REFS = ['tenantId', 'bridgeId', 'routerId', 'hostId', 'zoneId', 'chainId', 'poolId', 'loadBalancerId'] as const;

export class TopologyCache extends EventEmitter {
  private readonly maps = new Map<Kind, Map<string, unknown>>();
  /** Ports by bridge, router and host (plan.ts PortIndex), kept with every change: a pass reads only its bridges. */
  private readonly groups = {
    bridge: new Map<string, Map<string, Models['Port']>>(),
    router: new Map<string, Map<string, Models['Port']>>(),
    host: new Map<string, Map<string, Models['Port']>>(),
  };
  /** One copy of each shared id string (see SHARED_REFS); cleared on relist. */
  private strings = new Map<string, string>();
  private stopWatch: (() => void) | undefined;
  private lastSeq = 0;
  private stopped = false;

  /** The store sequence number of the newest change this cache holds. */
  get seq(): number {
    return this.lastSeq;
  }
  /** Relists after the store reported a gap in the change stream (tests and diagnostics). */
  gaps = 0;

  constructor(private readonly store: Store) {
    super();
    for (const k of CACHED_KINDS) this.maps.set(k, new Map());
  }

  async start(): Promise<void> {
    await this.resync();
  }

  /** Full relist; used at start and when the change stream cannot be resumed. */
  private async resync(): Promise<void> {
    this.stopWatch?.();
    // Ids of objects gone since the last relist leave the table with it.
    this.strings = new Map();
    const seq = await this.store.lastSeq();
    // Watch before listing: starting the watch brings the store's view up to `seq`, whereas a list on its own may
    // lag other hosts' writes (the ZooKeeper store's list serves its log follower), and a change it missed would
    // never come. Changes delivered while we list are in the lists or newer than them.
    const onGap = () => {
      // The store lost changes to this stream (we fell behind its log's retention): relist.
      if (this.stopped) return;
      this.gaps++;
      const relist = (): void => {
        this.resync().catch((err: unknown) => {
          process.emitWarning(`bees agent: relisting the topology after a gap failed, retrying: ${(err as Error).message}`);
          if (!this.stopped) setTimeout(relist, 1000).unref();
        });
      };
      relist();
    };
    this.stopWatch = await this.store
      .watch((c) => this.apply(c), { fromSeq: seq, kinds: [...CACHED_KINDS], onGap })
      .catch(async (err: unknown) => {
        // The changes since `seq` were trimmed between our read and the watch: list again.
        if (err instanceof StoreError && err.code === 'Gone' && !this.stopped) {
          await this.resync();
          return this.stopWatch ?? (() => undefined);
        }
        throw err;
      });
    for (const kind of CACHED_KINDS) {
      const items = await this.store.list(kind);
      const map = new Map<string, unknown>();
      for (const { value } of items) map.set((value as { id: string }).id, this.share(value));
      this.maps.set(kind, map);
      if (kind === 'Port') {
        for (const g of Object.values(this.groups)) g.clear();
        for (const p of map.values()) this.index(p as Models['Port'], true);
      }
    }
    this.lastSeq = Math.max(this.lastSeq, seq);
    this.emit('changed', { kind: undefined, id: undefined });
  }

  private apply(c: Change): void {
    if (c.seq <= this.lastSeq && c.seq !== 0) return;
    this.lastSeq = c.seq;
    const map = this.maps.get(c.kind);
    if (!map) return;
    const old = c.kind === 'Port' ? (map.get(c.id) as Models['Port'] | undefined) : undefined;
    if (old) this.index(old, false);
    if (c.type === 'delete') map.delete(c.id);
    else map.set(c.id, this.share(c.value));
    if (c.kind === 'Port' && c.type !== 'delete') this.index(c.value as Models['Port'], true);
    this.emit('changed', { kind: c.kind, id: c.id, type: c.type });
  }

  private index(p: Models['Port'], add: boolean): void {
    // Field by field, not through Object.entries: a relist indexes every port (1.8 of 5.8 CPU s of a 100,000-port
    // start went to the entries' arrays, bench/scale).
    const g = portGroups(p);
    if (g.bridge !== undefined) this.group(this.groups.bridge, g.bridge, p, add);
    if (g.router !== undefined) this.group(this.groups.router, g.router, p, add);
    if (g.host !== undefined) this.group(this.groups.host, g.host, p, add);
  }

  private group(groups: Map<string, Map<string, Models['Port']>>, key: string, p: Models['Port'], add: boolean): void {
    let members = groups.get(key);
    if (add) {
      if (!members) groups.set(key, (members = new Map<string, Models['Port']>()));
      members.set(p.id, p);
    } else if (members) {
      members.delete(p.id);
      if (members.size === 0) groups.delete(key);
    }
  }

  portIndex(): PortIndex {
    const of = (g: keyof TopologyCache['groups'], id: string): Iterable<Models['Port']> => this.groups[g].get(id)?.values() ?? [];
    return { ofBridge: (id) => of('bridge', id), ofRouter: (id) => of('router', id), onHost: (id) => of('host', id) };
  }

  /** Replaces the object's shared reference fields by the one copy of each id string (in place; returns it). */
  private share(value: unknown): unknown {
    const o = value as Record<string, unknown>;
    for (const f of SHARED_REFS) {
      const v = o[f];
      if (typeof v !== 'string') continue;
      const kept = this.strings.get(v);
      if (kept === undefined) this.strings.set(v, v);
      else o[f] = kept;
    }
    return value;
  }

  get<K extends CachedKind>(kind: K, id: string): Models[K] | undefined {
    return this.maps.get(kind)?.get(id) as Models[K] | undefined;
  }

  list<K extends CachedKind>(kind: K): Models[K][] {
    return [...(this.maps.get(kind)?.values() ?? [])] as Models[K][];
  }

  portsOfBridge(bridgeId: string): Models['Port'][] {
    return this.list('Port').filter((p) => p.bridgeId === bridgeId);
  }

  stop(): void {
    this.stopped = true;
    this.stopWatch?.();
  }
}
