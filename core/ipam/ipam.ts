// Address management for bridge subnets, in the style of Calico's block affinity. Each subnet is cut into blocks
// (IpamBlock objects, created lazily, id derived from bridge id + block CIDR); a host claims blocks and allocates
// from them with a compare-and-set on the block's version, so hosts never contend per address. A host with no
// free block borrows an address from another host's block (compare-and-set again). Every allocation names its
// owner (workload id), interface and host; asking again with the same owner and interface returns the same address.
import type { Bridge, IpamBlock } from '../model/types.js';
import { compareIp, contains, formatIp, parseIp } from '../net/ip.js';
import { StoreError, type Store } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';
import { Blocks, type AllocateOptions, type IpamResult } from './blocks.js';
import { retryRaces, type RetryOptions } from './retry.js';
import { BlockBatches } from './staged.js';
import { Quarantine } from './quarantine.js';
import { KeyedMutex } from '../util/keyed-mutex.js';

export { DEFAULT_BLOCK_PREFIX, subnetGateway, blockId } from './subnet-plan.js';
export type { AllocateOptions, IpamResult } from './blocks.js';

export interface AllocationRecord {
  bridgeId: string;
  address: string;
  subnet: string;
  /** CIDR of the block holding the address. */
  block: string;
  owner: string;
  ifname: string;
  hostId?: string | undefined;
  at: number;
}

export interface ReclaimedBlock {
  bridgeId: string;
  cidr: string;
  hostId: string;
  /** True when the block was empty and deleted; false when it only lost its affinity. */
  deleted: boolean;
}

export type IpamOptions = RetryOptions;

/** One quarantine per store object, whichever Ipam instances of the process use it. */
const quarantines = new WeakMap<Store, Quarantine>();
function quarantineOf(store: Store): Quarantine {
  return quarantines.get(store) ?? quarantines.set(store, new Quarantine()).get(store)!;
}

function checkName(field: string, value: unknown, allowEmpty: boolean): asserts value is string {
  if (typeof value !== 'string' || (!allowEmpty && value.length === 0)) {
    throw new TopologyError('invalid', `${field} must be a ${allowEmpty ? '' : 'non-empty '}string, got ${JSON.stringify(value)}`, field);
  }
}

export class Ipam {
  /** Per owner+interface queue: two requests of one process for the same interface never race each other. */
  private readonly queues = new KeyedMutex();
  /** Allocations and releases of one bridge on this host, batched into one store commit (staged.ts). */
  private readonly batches: BlockBatches;
  /** The block algorithm on the store itself, for what is not batched (listings, gc, reclaiming). */
  private readonly direct: Blocks;
  /** Set when this process alone writes the store: releases may then overlap the deletion of their interface. */
  private readonly quarantine: Quarantine | undefined;

  constructor(
    private readonly store: Store,
    readonly hostId: string,
    private readonly options: IpamOptions = {},
  ) {
    checkName('hostId', hostId, false);
    this.batches = new BlockBatches(store, options);
    this.quarantine = store.exclusive ? quarantineOf(store) : undefined;
    this.direct = new Blocks(store, hostId, options, this.quarantine);
  }

  /** Whether `releaseWhile` may be called: the store is written by this process alone (Store.exclusive). */
  get canQuarantine(): boolean {
    return this.quarantine !== undefined;
  }

  /** Run `fn` with the block algorithm in the next batch of `bridgeId`'s writes. */
  private batched<T>(bridgeId: string, fn: (b: Blocks) => Promise<T>): Promise<T> {
    return this.batches.run(bridgeId, (staged) => fn(new Blocks(staged, this.hostId, this.options, this.quarantine)));
  }

  /**
   * One address per requested family (default: each family the bridge has subnets of), idempotent per
   * owner+ifname. All or nothing: if a later family fails, addresses taken earlier in this call are released.
   */
  allocate(bridge: Bridge, owner: string, ifname: string, opts: AllocateOptions = {}): Promise<IpamResult[]> {
    checkName('owner', owner, false);
    checkName('ifname', ifname, true);
    return this.serialised(`${bridge.id}\0${owner}\0${ifname}`, () =>
      this.batched(bridge.id, (b) => b.allocate(bridge, owner, ifname, opts)),
    );
  }

  /**
   * Holds one given address for `owner` (e.g. a router port's address, a Docker aux address) without the
   * one-address-per-interface rule of `allocate`; asking again for the same address and owner is a no-op.
   */
  reserveAddress(bridge: Bridge, address: string, owner: string, ifname = ''): Promise<IpamResult> {
    checkName('owner', owner, false);
    checkName('ifname', ifname, true);
    return this.serialised(`${bridge.id}\0${owner}\0${ifname}`, async () => {
      const plans = this.direct.plansOf(bridge);
      let ip;
      try {
        ip = parseIp(address, 'address');
      } catch (err) {
        throw new TopologyError('invalid', (err as Error).message, 'address');
      }
      const plan = plans.find((p) => contains(p.cidr, ip));
      if (!plan)
        throw new TopologyError(
          'invalid',
          `address: ${formatIp(ip)} is outside every subnet of bridge "${bridge.name}" (${plans.map((p) => p.text).join(', ') || 'none'})`,
          'address',
        );
      return retryRaces(
        `reserving ${formatIp(ip)} on bridge "${bridge.name}"`,
        async () => {
          const blocks = await this.direct.blocksOf(bridge.id, false);
          const text = formatIp(ip);
          const holder = blocks.find((b) => contains(b.value.cidr, ip))?.value.allocations[text];
          if (holder && holder.owner === owner && holder.ifname === ifname) return this.direct.resultOf(plan, text);
          return this.direct.takeStatic(bridge, plans, blocks, ip.value, ip.family, owner, ifname);
        },
        this.options,
      );
    });
  }

  /** Frees every address `owner` holds on the bridge (only those of `ifname` when given). No error if none. */
  release(bridgeId: string, owner: string, ifname?: string): Promise<string[]> {
    return this.batched(bridgeId, (b) => b.release(bridgeId, owner, ifname));
  }

  /**
   * release(), while the interface that holds the addresses is still being deleted: they are freed in the store
   * now but stay taken for this process's allocations until `interfaceGone` settles (quarantine.ts). Only where
   * canQuarantine; elsewhere another host could take them, so the caller releases after the deletion instead.
   */
  releaseWhile(bridgeId: string, owner: string, ifname: string | undefined, interfaceGone: Promise<unknown>): Promise<string[]> {
    const q = this.quarantine;
    if (!q) return Promise.reject(new Error('releaseWhile needs a store this process alone writes (Store.exclusive)'));
    return this.batched(bridgeId, async (b) => {
      const freed = await b.release(bridgeId, owner, ifname);
      // Held before the batch commits: no allocation can see them free before the quarantine does.
      q.hold(bridgeId, freed, interfaceGone);
      return freed;
    });
  }

  /** Frees one address; false if it was not allocated. */
  releaseAddress(bridgeId: string, address: string): Promise<boolean> {
    return this.batched(bridgeId, (b) => b.releaseAddress(bridgeId, address));
  }

  /** Every allocation on the bridge (every bridge when omitted), in address order. */
  async allocations(bridgeId?: string): Promise<AllocationRecord[]> {
    const out: AllocationRecord[] = [];
    for (const b of await this.direct.blocksOf(bridgeId)) {
      for (const [address, a] of Object.entries(b.value.allocations)) {
        out.push({
          bridgeId: b.value.bridgeId,
          address,
          subnet: b.value.subnet,
          block: b.value.cidr,
          owner: a.owner,
          ifname: a.ifname,
          hostId: a.hostId,
          at: a.at,
        });
      }
    }
    return out.sort((x, y) => compareIp(x.address, y.address));
  }

  /** Frees every allocation `isValid` rejects (workloads that no longer exist); returns what was freed. */
  async gc(isValid: (owner: string, ifname: string, hostId?: string) => boolean, bridgeId?: string): Promise<AllocationRecord[]> {
    const freed: AllocationRecord[] = [];
    for (const b of await this.direct.blocksOf(bridgeId)) {
      const stale = (value: IpamBlock): string[] =>
        Object.entries(value.allocations)
          .filter(([, a]) => !isValid(a.owner, a.ifname, a.hostId))
          .map(([k]) => k);
      if (stale(b.value).length === 0) continue;
      const before = { ...b.value.allocations };
      for (const address of await this.direct.editBlock(b.value.id, stale)) {
        const a = before[address];
        freed.push({
          bridgeId: b.value.bridgeId,
          address,
          subnet: b.value.subnet,
          block: b.value.cidr,
          owner: a?.owner ?? '',
          ifname: a?.ifname ?? '',
          hostId: a?.hostId,
          at: a?.at ?? 0,
        });
      }
    }
    return freed.sort((x, y) => compareIp(x.address, y.address));
  }

  /**
   * Drops the affinity of blocks whose host is not live: empty ones are deleted, others become free for any
   * host to claim. Their allocations stay until `gc` says the workloads are gone.
   */
  async reclaimBlocks(liveHostIds: ReadonlySet<string>): Promise<ReclaimedBlock[]> {
    const out: ReclaimedBlock[] = [];
    for (const seen of await this.direct.blocksOf()) {
      const host = seen.value.hostId;
      if (host === undefined || liveHostIds.has(host)) continue;
      const deleted = await retryRaces(
        `reclaiming block ${seen.value.cidr}`,
        async () => {
          const b = await this.store.get('IpamBlock', seen.value.id);
          if (!b || b.value.hostId !== host) return undefined; // someone else already dealt with it
          if (Object.keys(b.value.allocations).length === 0) {
            await this.store.delete('IpamBlock', b.value.id, b.version);
            return true;
          }
          const { hostId: _dropped, ...rest } = b.value;
          await this.store.update('IpamBlock', rest, b.version);
          return false;
        },
        this.options,
      );
      if (deleted !== undefined) out.push({ bridgeId: seen.value.bridgeId, cidr: seen.value.cidr, hostId: host, deleted });
    }
    return out;
  }

  /** Deletes every block of a bridge (the bridge is being deleted); returns how many. */
  async deleteBridgeBlocks(bridgeId: string): Promise<number> {
    let n = 0;
    for (const b of await this.direct.blocksOf(bridgeId)) {
      try {
        await this.store.delete('IpamBlock', b.value.id);
        n++;
      } catch (err) {
        if (!(err instanceof StoreError && err.code === 'NotFound')) throw err;
      }
    }
    return n;
  }

  private serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.queues.run(key, fn);
  }
}
