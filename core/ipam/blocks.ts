// The block algorithm of IPAM (see ipam.ts): reading a bridge's blocks, taking an address (own block, unclaimed or
// new block, borrowing), releasing addresses with compare-and-set. It works on any BlockStore: the store itself,
// or a batch's staging layer (staged.ts) whose writes reach the store together in one commit.
import type { Allocation, Bridge, IpamBlock } from '../model/types.js';
import { compareIp, contains, formatIp, overlaps, parseIp, type Family } from '../net/ip.js';
import { StoreError, type Store, type Versioned } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';
import type { Quarantine } from './quarantine.js';
import { retryRaces, type RetryOptions } from './retry.js';
import { blockId, SubnetPlan } from './subnet-plan.js';

/** What of a store the block algorithm uses. */
export type BlockStore = Pick<Store, 'get' | 'list' | 'create' | 'update' | 'delete'>;

export type Block = Versioned<IpamBlock>;

export interface IpamResult {
  address: string;
  prefixLength: number;
  gateway?: string | undefined;
  /** The subnet's CIDR (canonical). */
  subnet: string;
  family: Family;
}

export function blockFor(b: Block, alloc: Record<string, Allocation>, hostId?: string): IpamBlock {
  const value: IpamBlock = { ...b.value, allocations: alloc };
  if (hostId !== undefined) value.hostId = hostId;
  return value;
}

export interface AllocateOptions {
  /** Static addresses (at most one per family), honoured or refused with the reason. */
  requested?: string[];
  /** Families to allocate; default every family the bridge has a subnet of. */
  families?: Family[];
}

export class Blocks {
  constructor(
    readonly store: BlockStore,
    readonly hostId: string,
    readonly options: RetryOptions = {},
    /** Addresses released while an interface here may still hold them: taken, for this host's allocations. */
    readonly quarantine?: Quarantine,
  ) {}

  /** What `freeAddress` must skip in a block of `bridgeId`: its allocations and the quarantined addresses. */
  private taken(bridgeId: string, allocations: Record<string, unknown>): Record<string, unknown> {
    return this.quarantine ? this.quarantine.taken(bridgeId, allocations) : allocations;
  }

  plansOf(bridge: Bridge): SubnetPlan[] {
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
  async blocksOf(bridgeId?: string, fresh = true): Promise<Block[]> {
    const all = await this.store.list('IpamBlock');
    const mine = bridgeId === undefined ? all : all.filter((b) => b.value.bridgeId === bridgeId);
    if (!fresh) return mine;
    const now = await Promise.all(mine.map((b) => this.store.get('IpamBlock', b.value.id)));
    return now.filter((b): b is Block => b !== undefined);
  }

  resultOf(plan: SubnetPlan, address: string): IpamResult {
    return { address, prefixLength: plan.cidr.prefix, gateway: plan.gateway, subnet: plan.text, family: plan.family };
  }

  /** The address owner+ifname already holds in `family`, in a subnet the bridge still has. */
  held(blocks: Block[], plans: SubnetPlan[], family: Family, owner: string, ifname: string): IpamResult | undefined {
    for (const b of blocks) {
      const plan = plans.find((p) => p.family === family && p.text === b.value.subnet);
      if (!plan) continue;
      for (const [address, a] of Object.entries(b.value.allocations)) {
        if (a.owner === owner && a.ifname === ifname) return this.resultOf(plan, address);
      }
    }
    return undefined;
  }

  allocation(owner: string, ifname: string): Allocation {
    return { owner, ifname, hostId: this.hostId, at: Date.now() };
  }

  async takeStatic(
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
    if (!b?.value.allocations[text] && this.quarantine?.has(bridge.id, text)) {
      throw new TopologyError('conflict', `${text} is being released: the interface that held it is still being deleted`);
    }
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
      await this.createBlock(bridge, plan, cidr, { [text]: this.allocation(owner, ifname) });
    }
    return this.resultOf(plan, text);
  }

  /** Own blocks first, then an unclaimed or new block, then borrowing; throws 'exhausted' when every subnet is full. */
  async takeDynamic(bridge: Bridge, plans: SubnetPlan[], blocks: Block[], owner: string, ifname: string): Promise<IpamResult> {
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

  /** A new block `cidr` of `plan`, with affinity to this host, holding its first allocations. */
  private async createBlock(bridge: Bridge, plan: SubnetPlan, cidr: string, allocations: Record<string, Allocation>): Promise<void> {
    await this.store.create('IpamBlock', {
      id: blockId(bridge.id, cidr),
      bridgeId: bridge.id,
      subnet: plan.text,
      cidr,
      hostId: this.hostId,
      allocations,
    });
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
      const address = plan.freeAddress(b.value.cidr, this.taken(bridge.id, b.value.allocations));
      if (address === undefined) continue;
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [address]: alloc }), b.version);
      return address;
    }
    // 2. Claim a block nobody has affinity to (a reclaimed one), or create the next block of the subnet.
    for (const b of mine.filter((x) => x.value.hostId === undefined).sort(byCidr)) {
      const address = plan.freeAddress(b.value.cidr, this.taken(bridge.id, b.value.allocations));
      if (address === undefined) continue;
      await this.store.update('IpamBlock', blockFor(b, { ...b.value.allocations, [address]: alloc }, this.hostId), b.version);
      return address;
    }
    const taken = all.map((b) => b.value.cidr);
    for (const cidr of plan.newBlocks(new Set(mine.map((b) => b.value.cidr)))) {
      if (taken.some((t) => overlaps(t, cidr))) continue; // cut earlier with another block size
      const address = plan.freeAddress(cidr, this.taken(bridge.id, {}));
      if (address === undefined) continue;
      await this.createBlock(bridge, plan, cidr, { [address]: alloc });
      return address;
    }
    // 3. Borrow from another host's block; a random one, so borrowing hosts spread out instead of colliding.
    const others = mine
      .filter((x) => x.value.hostId !== undefined && x.value.hostId !== this.hostId)
      .map((b) => ({ b, address: plan.freeAddress(b.value.cidr, this.taken(bridge.id, b.value.allocations)) }))
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
  editBlock(id: string, pick: (value: IpamBlock) => string[]): Promise<string[]> {
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

  /** allocate() of ipam.ts, on this block store. */
  async allocate(bridge: Bridge, owner: string, ifname: string, opts: AllocateOptions = {}): Promise<IpamResult[]> {
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
}
