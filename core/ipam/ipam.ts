// Address management for bridge subnets, in the style of Calico's block affinity. Each subnet is cut into blocks
// (IpamBlock objects, created lazily, id derived from bridge id + block CIDR); a host claims blocks and allocates
// from them with a compare-and-set on the block's version, so hosts never contend per address. A host with no
// free block borrows an address from another host's block (compare-and-set again). Every allocation names its
// owner (workload id), interface and host; asking again with the same owner and interface returns the same address.
import type { Allocation, Bridge, IpamBlock } from '../model/types.js';
import { compareIp, contains, formatIp, overlaps, parseIp, type Family } from '../net/ip.js';
import { StoreError, type Store, type Versioned } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';
import { retryRaces, type RetryOptions } from './retry.js';
import { blockId, SubnetPlan } from './subnet-plan.js';
import { KeyedMutex } from '../util/keyed-mutex.js';

export { DEFAULT_BLOCK_PREFIX, subnetGateway, blockId } from './subnet-plan.js';

export interface IpamResult {
  address: string;
  prefixLength: number;
  gateway?: string | undefined;
  /** The subnet's CIDR (canonical). */
  subnet: string;
  family: Family;
}

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

export interface AllocateOptions {
  /** Static addresses (at most one per family), honoured or refused with the reason. */
  requested?: string[];
  /** Families to allocate; default every family the bridge has a subnet of. */
  families?: Family[];
}

export interface ReclaimedBlock {
  bridgeId: string;
  cidr: string;
  hostId: string;
  /** True when the block was empty and deleted; false when it only lost its affinity. */
  deleted: boolean;
}

export type IpamOptions = RetryOptions;

type Block = Versioned<IpamBlock>;

function blockFor(b: Block, alloc: Record<string, Allocation>, hostId?: string): IpamBlock {
  const value: IpamBlock = { ...b.value, allocations: alloc };
  if (hostId !== undefined) value.hostId = hostId;
  return value;
}

function checkName(field: string, value: unknown, allowEmpty: boolean): asserts value is string {
  if (typeof value !== 'string' || (!allowEmpty && value.length === 0)) {
    throw new TopologyError('invalid', `${field} must be a ${allowEmpty ? '' : 'non-empty '}string, got ${JSON.stringify(value)}`, field);
  }
}

export class Ipam {
  /** Per owner+interface queue: two requests of one process for the same interface never race each other. */
  private readonly queues = new KeyedMutex();

  constructor(
    private readonly store: Store,
    readonly hostId: string,
    private readonly options: IpamOptions = {},
  ) {
    checkName('hostId', hostId, false);
  }

  /**
   * One address per requested family (default: each family the bridge has subnets of), idempotent per
   * owner+ifname. All or nothing: if a later family fails, addresses taken earlier in this call are released.
   */
  allocate(bridge: Bridge, owner: string, ifname: string, opts: AllocateOptions = {}): Promise<IpamResult[]> {
    checkName('owner', owner, false);
    checkName('ifname', ifname, true);
    return this.serialised(`${bridge.id}\0${owner}\0${ifname}`, () => this.allocateNow(bridge, owner, ifname, opts));
  }

  private async allocateNow(bridge: Bridge, owner: string, ifname: string, opts: AllocateOptions): Promise<IpamResult[]> {
    const plans = this.plansOf(bridge);
    const present = [...new Set(plans.map((p) => p.family))].sort();
    const families = opts.families ?? present;
    for (const f of families) {
      if (f !== 4 && f !== 6) throw new TopologyError('invalid', `families: ${JSON.stringify(f)} is not 4 or 6`, 'families');
      if (!present.includes(f)) throw new TopologyError('invalid', `bridge "${bridge.name}" has no IPv${f} subnet`, 'families');
    }
    const requested = new Map<Family, bigint>();
    (opts.requested ?? []).forEach((text, i) => {
      const field = `requested[${i}]`;
      let ip;
      try {
        ip = parseIp(text, field);
      } catch (err) {
        throw new TopologyError('invalid', (err as Error).message, field);
      }
      if (requested.has(ip.family)) throw new TopologyError('invalid', `${field}: more than one IPv${ip.family} address requested`, field);
      if (!plans.some((p) => contains(p.cidr, ip))) {
        throw new TopologyError(
          'invalid',
          `${field}: ${formatIp(ip)} is outside every subnet of bridge "${bridge.name}" (${plans.map((p) => p.text).join(', ') || 'none'})`,
          field,
        );
      }
      requested.set(ip.family, ip.value);
    });
    for (const f of requested.keys()) if (!families.includes(f)) families.push(f);

    const results: IpamResult[] = [];
    const fresh: string[] = [];
    try {
      for (const family of families) {
        const r = await retryRaces(
          `allocating an IPv${family} address on bridge "${bridge.name}"`,
          async () => {
            const blocks = await this.blocksOf(bridge.id, false);
            const mine = this.held(blocks, plans, family, owner, ifname);
            const want = requested.get(family);
            if (mine) {
              if (want !== undefined && mine.address !== formatIp({ family, value: want })) {
                throw new TopologyError(
                  'conflict',
                  `${owner} ${ifname} already holds ${mine.address} on bridge "${bridge.name}", not the requested ${formatIp({ family, value: want })}`,
                );
              }
              return { ...mine, fresh: false };
            }
            const got =
              want !== undefined
                ? await this.takeStatic(bridge, plans, blocks, want, family, owner, ifname)
                : await this.takeDynamic(
                    bridge,
                    plans.filter((p) => p.family === family),
                    blocks,
                    owner,
                    ifname,
                  );
            return { ...got, fresh: true };
          },
          this.options,
        );
        if (r.fresh) fresh.push(r.address);
        results.push({ address: r.address, prefixLength: r.prefixLength, gateway: r.gateway, subnet: r.subnet, family: r.family });
      }
    } catch (err) {
      for (const address of fresh) await this.releaseAddress(bridge.id, address).catch(() => undefined);
      throw err;
    }
    return results.map((r) =>
      r.gateway === undefined ? { address: r.address, prefixLength: r.prefixLength, subnet: r.subnet, family: r.family } : r,
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
      const plans = this.plansOf(bridge);
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
          const blocks = await this.blocksOf(bridge.id, false);
          const text = formatIp(ip);
          const holder = blocks.find((b) => contains(b.value.cidr, ip))?.value.allocations[text];
          if (holder && holder.owner === owner && holder.ifname === ifname) return this.resultOf(plan, text);
          return this.takeStatic(bridge, plans, blocks, ip.value, ip.family, owner, ifname);
        },
        this.options,
      );
    });
  }

  /** Frees every address `owner` holds on the bridge (only those of `ifname` when given). No error if none. */
  async release(bridgeId: string, owner: string, ifname?: string): Promise<string[]> {
    const freed: string[] = [];
    for (const b of await this.blocksOf(bridgeId)) {
      const match = (a: Allocation): boolean => a.owner === owner && (ifname === undefined || a.ifname === ifname);
      if (!Object.values(b.value.allocations).some(match)) continue;
      freed.push(
        ...(await this.editBlock(b.value.id, (value) => Object.keys(value.allocations).filter((k) => match(value.allocations[k]!)))),
      );
    }
    return freed.sort(compareIp);
  }

  /** Frees one address; false if it was not allocated. */
  async releaseAddress(bridgeId: string, address: string): Promise<boolean> {
    let ip;
    try {
      ip = parseIp(address, 'address');
    } catch (err) {
      throw new TopologyError('invalid', (err as Error).message, 'address');
    }
    const text = formatIp(ip);
    const b = (await this.blocksOf(bridgeId)).find((x) => contains(x.value.cidr, ip));
    if (!b) return false;
    const freed = await this.editBlock(b.value.id, (value) => (text in value.allocations ? [text] : []));
    return freed.length > 0;
  }

  /** Every allocation on the bridge (every bridge when omitted), in address order. */
  async allocations(bridgeId?: string): Promise<AllocationRecord[]> {
    const out: AllocationRecord[] = [];
    for (const b of await this.blocksOf(bridgeId)) {
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
    for (const b of await this.blocksOf(bridgeId)) {
      const stale = (value: IpamBlock): string[] =>
        Object.entries(value.allocations)
          .filter(([, a]) => !isValid(a.owner, a.ifname, a.hostId))
          .map(([k]) => k);
      if (stale(b.value).length === 0) continue;
      const before = { ...b.value.allocations };
      for (const address of await this.editBlock(b.value.id, stale)) {
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
    for (const seen of await this.blocksOf()) {
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
    for (const b of await this.blocksOf(bridgeId)) {
      try {
        await this.store.delete('IpamBlock', b.value.id);
        n++;
      } catch (err) {
        if (!(err instanceof StoreError && err.code === 'NotFound')) throw err;
      }
    }
    return n;
  }

  // ------------------------------------------------------------------------------------------------ internals

  private plansOf(bridge: Bridge): SubnetPlan[] {
    if (!bridge || typeof bridge.id !== 'string' || !Array.isArray(bridge.subnets)) {
      throw new TopologyError('invalid', 'bridge: expected a Bridge with an id and subnets');
    }
    return bridge.subnets.map((s, i) => new SubnetPlan(bridge.id, s, `subnets[${i}]`));
  }

  /**
   * The bridge's blocks (every bridge's when omitted). list() may answer from a cache that lags other hosts'
   * writes; allocation tolerates that (every write is compare-and-set), but release, gc and reports want what
   * is there now, so `fresh` re-reads each block listed.
   */
  private async blocksOf(bridgeId?: string, fresh = true): Promise<Block[]> {
    const all = await this.store.list('IpamBlock');
    const mine = bridgeId === undefined ? all : all.filter((b) => b.value.bridgeId === bridgeId);
    if (!fresh) return mine;
    const now = await Promise.all(mine.map((b) => this.store.get('IpamBlock', b.value.id)));
    return now.filter((b): b is Block => b !== undefined);
  }

  private resultOf(plan: SubnetPlan, address: string): IpamResult {
    return { address, prefixLength: plan.cidr.prefix, gateway: plan.gateway, subnet: plan.text, family: plan.family };
  }

  /** The address owner+ifname already holds in `family`, in a subnet the bridge still has. */
  private held(blocks: Block[], plans: SubnetPlan[], family: Family, owner: string, ifname: string): IpamResult | undefined {
    for (const b of blocks) {
      const plan = plans.find((p) => p.family === family && p.text === b.value.subnet);
      if (!plan) continue;
      for (const [address, a] of Object.entries(b.value.allocations)) {
        if (a.owner === owner && a.ifname === ifname) return this.resultOf(plan, address);
      }
    }
    return undefined;
  }

  private allocation(owner: string, ifname: string): Allocation {
    return { owner, ifname, hostId: this.hostId, at: Date.now() };
  }

  private async takeStatic(
    bridge: Bridge,
    plans: SubnetPlan[],
    blocks: Block[],
    value: bigint,
    family: Family,
    owner: string,
    ifname: string,
  ): Promise<IpamResult> {
    const ip = { family, value };
    const text = formatIp(ip);
    const plan = plans.find((p) => contains(p.cidr, ip))!;
    const reason = plan.reservedReason(value);
    if (reason) throw new TopologyError('invalid', `${text} cannot be assigned: it is ${reason}`);
    // An existing block may have been cut with an older blockPrefix: whichever block holds the address rules.
    const b = blocks.find((x) => contains(x.value.cidr, ip));
    if (b) {
      const holder = b.value.allocations[text];
      if (holder) {
        throw new TopologyError(
          'conflict',
          `${text} is in use by ${holder.owner}${holder.ifname ? ` (${holder.ifname})` : ''}${holder.hostId ? ` on host ${holder.hostId}` : ''}`,
        );
      }
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [text]: this.allocation(owner, ifname) }), b.version);
    } else {
      const cidr = plan.blockOf(value);
      if (blocks.some((x) => overlaps(x.value.cidr, cidr))) {
        throw new TopologyError(
          'conflict',
          `${text}: block ${cidr} overlaps an existing block of bridge "${bridge.name}" cut with another block size`,
        );
      }
      await this.store.create('IpamBlock', {
        id: blockId(bridge.id, cidr),
        bridgeId: bridge.id,
        subnet: plan.text,
        cidr,
        hostId: this.hostId,
        allocations: { [text]: this.allocation(owner, ifname) },
      });
    }
    return this.resultOf(plan, text);
  }

  /** Own blocks first, then an unclaimed or new block, then borrowing; throws 'exhausted' when every subnet is full. */
  private async takeDynamic(bridge: Bridge, plans: SubnetPlan[], blocks: Block[], owner: string, ifname: string): Promise<IpamResult> {
    for (const plan of plans) {
      const got = await this.takeFrom(
        bridge,
        plan,
        blocks.filter((b) => b.value.subnet === plan.text),
        blocks,
        owner,
        ifname,
      );
      if (got) return this.resultOf(plan, got);
    }
    // A store may answer list() from a cache that lags other hosts' writes (ZooKeeper's follower does): before
    // saying "full", read each block afresh; a block that moved on (an address released) means look again.
    for (const b of blocks.filter((x) => plans.some((p) => p.text === x.value.subnet))) {
      const now = await this.store.get('IpamBlock', b.value.id);
      if (now?.version !== b.version)
        throw new StoreError('Conflict', `block ${b.value.cidr} changed while reading`, 'IpamBlock', b.value.id);
    }
    const full = plans.map((plan) => {
      const inUse = blocks.filter((b) => b.value.subnet === plan.text).reduce((n, b) => n + Object.keys(b.value.allocations).length, 0);
      return `subnet ${plan.text} of bridge "${bridge.name}" is full (${inUse} addresses in use)`;
    });
    throw new TopologyError('exhausted', full.join('; '));
  }

  private async takeFrom(
    bridge: Bridge,
    plan: SubnetPlan,
    mine: Block[],
    all: Block[],
    owner: string,
    ifname: string,
  ): Promise<string | undefined> {
    const alloc = this.allocation(owner, ifname);
    const byCidr = (x: Block, y: Block): number => compareIp(x.value.cidr.split('/')[0]!, y.value.cidr.split('/')[0]!);

    // 1. A block this host has affinity to: no other host writes it, so no cross-host contention.
    for (const b of mine.filter((x) => x.value.hostId === this.hostId).sort(byCidr)) {
      const address = plan.freeAddress(b.value.cidr, b.value.allocations);
      if (address === undefined) continue;
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [address]: alloc }), b.version);
      return address;
    }
    // 2. Claim a block nobody has affinity to (a reclaimed one), or create the next block of the subnet.
    for (const b of mine.filter((x) => x.value.hostId === undefined).sort(byCidr)) {
      const address = plan.freeAddress(b.value.cidr, b.value.allocations);
      if (address === undefined) continue;
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [address]: alloc }, this.hostId), b.version);
      return address;
    }
    const taken = all.map((b) => b.value.cidr);
    for (const cidr of plan.newBlocks(new Set(mine.map((b) => b.value.cidr)))) {
      if (taken.some((t) => overlaps(t, cidr))) continue; // cut earlier with another block size
      const address = plan.freeAddress(cidr, {})!;
      await this.store.create('IpamBlock', {
        id: blockId(bridge.id, cidr),
        bridgeId: bridge.id,
        subnet: plan.text,
        cidr,
        hostId: this.hostId,
        allocations: { [address]: alloc },
      });
      return address;
    }
    // 3. Borrow from another host's block; a random one, so borrowing hosts spread out instead of colliding.
    const others = mine
      .filter((x) => x.value.hostId !== undefined && x.value.hostId !== this.hostId)
      .map((b) => ({ b, address: plan.freeAddress(b.value.cidr, b.value.allocations) }))
      .filter((x) => x.address !== undefined);
    if (others.length > 0) {
      const { b, address } = others[Math.floor(Math.random() * others.length)]!;
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [address!]: alloc }), b.version);
      return address;
    }
    return undefined;
  }

  /**
   * Removes the addresses `pick` chooses from a block, with compare-and-set, re-reading on a lost race. A block
   * left empty and without affinity is deleted. Returns the addresses removed.
   */
  private editBlock(id: string, pick: (value: IpamBlock) => string[]): Promise<string[]> {
    return retryRaces(
      `releasing addresses of block ${id}`,
      async () => {
        const b = await this.store.get('IpamBlock', id);
        if (!b) return [];
        const gone = pick(b.value);
        if (gone.length === 0) return [];
        const left = { ...b.value.allocations };
        for (const k of gone) delete left[k];
        if (Object.keys(left).length === 0 && b.value.hostId === undefined) await this.store.delete('IpamBlock', id, b.version);
        else await this.store.update('IpamBlock', { ...b.value, allocations: left }, b.version);
        return gone;
      },
      this.options,
    );
  }

  private serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.queues.run(key, fn);
  }
}
