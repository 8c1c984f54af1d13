// How one bridge subnet is carved up for allocation: its blocks, and which addresses may never be handed out.
// Pure (no store): the Ipam class asks it where blocks lie and which address of a block is free.
import { stableId } from '../model/ids.js';
import type { Subnet } from '../model/types.js';
import {
  AddressError,
  bitsOf,
  broadcastAddress,
  contains,
  defaultGateway,
  enclosingCidr,
  formatCidr,
  formatIp,
  parseCidr,
  parseIp,
  parseNetwork,
  type Cidr,
  type Family,
} from '../net/ip.js';
import { TopologyError } from '../topology/errors.js';

export const DEFAULT_BLOCK_PREFIX: Record<Family, number> = { 4: 26, 6: 122 };

/** Largest block the allocator scans address by address; a bigger block would make one allocation O(2^n). */
export const MAX_BLOCK_BITS = 16;

/** The store id of a block: the same on every host, so two hosts creating one block conflict (Exists). */
export function blockId(bridgeId: string, blockCidr: string): string {
  return stableId('IpamBlock', bridgeId, blockCidr);
}

/** The gateway a subnet announces: its own `gateway`, the first usable address by default, none for ''. */
export function subnetGateway(subnet: Subnet): string | undefined {
  if (subnet.gateway === '') return undefined;
  if (subnet.gateway !== undefined) return formatIp(parseIp(subnet.gateway));
  return defaultGateway(subnet.cidr);
}

/** Wraps address-parsing errors as the topology's 'invalid' with the field at fault. */
function invalid<T>(field: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof AddressError) throw new TopologyError('invalid', err.message, field);
    throw err;
  }
}

export class SubnetPlan {
  readonly cidr: Cidr;
  readonly text: string;
  readonly family: Family;
  readonly blockPrefix: number;
  readonly gateway?: string | undefined;
  private readonly gatewayValue?: bigint;
  private readonly broadcastValue?: bigint | undefined;
  private readonly reservedValues: Set<bigint>;
  private readonly reservedNets: Cidr[];
  readonly range?: Cidr;
  /** First and last address a dynamic allocation may take (the range, or the whole subnet). */
  private readonly lo: bigint;
  private readonly hi: bigint;

  constructor(
    readonly bridgeId: string,
    readonly subnet: Subnet,
    field = 'subnet',
  ) {
    this.cidr = invalid(`${field}.cidr`, () => parseNetwork(subnet.cidr, `${field}.cidr`));
    this.text = formatCidr(this.cidr);
    this.family = this.cidr.family;
    const bits = bitsOf(this.family);

    const wanted = subnet.blockPrefix ?? DEFAULT_BLOCK_PREFIX[this.family];
    if (!Number.isInteger(wanted) || wanted < 0 || wanted > bits) {
      throw new TopologyError(
        'invalid',
        `${field}.blockPrefix: ${JSON.stringify(wanted)} is not a prefix length from 0 to ${bits}`,
        `${field}.blockPrefix`,
      );
    }
    // A block never spans more than its subnet: a /28 subnet is a single /28 block.
    this.blockPrefix = Math.max(wanted, this.cidr.prefix);
    if (bits - this.blockPrefix > MAX_BLOCK_BITS) {
      throw new TopologyError(
        'invalid',
        `${field}.blockPrefix: /${this.blockPrefix} blocks of ${this.text} would hold 2^${bits - this.blockPrefix} addresses each; use a prefix of at least /${bits - MAX_BLOCK_BITS}`,
        `${field}.blockPrefix`,
      );
    }

    this.gateway = invalid(`${field}.gateway`, () => subnetGateway(subnet));
    if (this.gateway !== undefined) {
      const gw = parseIp(this.gateway);
      if (!contains(this.cidr, gw)) {
        throw new TopologyError('invalid', `${field}.gateway: ${this.gateway} is not inside ${this.text}`, `${field}.gateway`);
      }
      this.gatewayValue = gw.value;
    }
    this.broadcastValue = broadcastAddress(this.cidr)?.value;

    this.reservedValues = new Set();
    this.reservedNets = [];
    (subnet.reserved ?? []).forEach((r, i) => {
      const f = `${field}.reserved[${i}]`;
      // Entries are addresses; a CIDR reserves a whole stretch (Docker's aux addresses are single addresses).
      if (typeof r === 'string' && r.includes('/')) this.reservedNets.push(invalid(f, () => parseCidr(r, f)));
      else this.reservedValues.add(invalid(f, () => parseIp(r, f)).value);
    });

    if (subnet.range !== undefined) {
      const f = `${field}.range`;
      const range = invalid(f, () => parseCidr(subnet.range, f));
      if (!contains(this.cidr, range)) {
        throw new TopologyError('invalid', `${f}: ${formatCidr(range)} is not inside ${this.text}`, f);
      }
      this.range = range;
    }
    const span = this.range ?? this.cidr;
    this.lo = span.network;
    this.hi = span.network + (1n << BigInt(bits - span.prefix)) - 1n;
  }

  /** Why `value` may never be handed out (network, broadcast, gateway, reserved), or undefined if it may. */
  reservedReason(value: bigint): string | undefined {
    const pointToPoint = bitsOf(this.family) - this.cidr.prefix <= 1;
    if (value === this.cidr.network && !pointToPoint) return `the network address of ${this.text}`;
    if (value === this.broadcastValue) return `the broadcast address of ${this.text}`;
    if (value === this.gatewayValue) return `the gateway of ${this.text}`;
    if (this.reservedValues.has(value)) return `reserved in ${this.text}`;
    for (const net of this.reservedNets) {
      if (contains(net, { family: this.family, value })) return `reserved in ${this.text} (${formatCidr(net)})`;
    }
    return undefined;
  }

  /** Whether a dynamic allocation may take `value`: inside the range, not reserved. */
  allocatable(value: bigint): boolean {
    return value >= this.lo && value <= this.hi && this.reservedReason(value) === undefined;
  }

  blockSize(): bigint {
    return 1n << BigInt(bitsOf(this.family) - this.blockPrefix);
  }

  /** The block that holds `value`. */
  blockOf(value: bigint): string {
    return formatCidr(enclosingCidr({ family: this.family, value }, this.blockPrefix));
  }

  /** First address of `block` a dynamic allocation may take, not in `taken`; undefined when the block is full. */
  freeAddress(blockCidr: string, taken: Record<string, unknown>): string | undefined {
    const block = parseCidr(blockCidr);
    const first = block.network > this.lo ? block.network : this.lo;
    const end = block.network + this.blockSize() - 1n;
    const last = end < this.hi ? end : this.hi;
    for (let v = first; v <= last; v++) {
      if (!this.allocatable(v)) continue;
      const text = formatIp({ family: this.family, value: v });
      if (!(text in taken)) return text;
    }
    return undefined;
  }

  /**
   * Blocks that hold at least one allocatable address, in address order, skipping `existing` (already in the
   * store). Lazy: an IPv6 /64 has 2^58 blocks, of which only the first few not yet created are ever looked at.
   */
  *newBlocks(existing: ReadonlySet<string>): Generator<string> {
    const size = this.blockSize();
    const firstBlock = (this.lo - this.cidr.network) / size;
    const lastBlock = (this.hi - this.cidr.network) / size;
    for (let i = firstBlock; i <= lastBlock; i++) {
      const text = formatCidr({ family: this.family, address: 0n, network: this.cidr.network + i * size, prefix: this.blockPrefix });
      if (existing.has(text)) continue;
      if (this.freeAddress(text, {}) !== undefined) yield text;
    }
  }

  /** Number of addresses dynamic allocation can hand out in total (bounded scan; for messages and tests). */
  capacity(): bigint {
    if (this.hi - this.lo < 1n << 20n) {
      let n = 0n;
      for (let v = this.lo; v <= this.hi; v++) if (this.reservedReason(v) === undefined) n++;
      return n;
    }
    // Too large to scan (IPv6): the span less the single reserved addresses inside it.
    const singles = new Set([this.cidr.network, this.broadcastValue, this.gatewayValue, ...this.reservedValues]);
    let n = this.hi - this.lo + 1n;
    for (const v of singles) if (v !== undefined && v >= this.lo && v <= this.hi) n--;
    return n;
  }
}
