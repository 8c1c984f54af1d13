// IpamDriver.*: Docker's address requests answered from the bridge's MidoNet IPAM. A pool is a subnet of a
// (future) bridge; its id says which (pool-id.ts). Addresses are allocated in the topology's IPAM under a
// reservation owner until CreateEndpoint hands them to the endpoint's port.
import { tenantId } from '../../core/model/ids.js';
import { TopologyError } from '../../core/topology/errors.js';
import type { Bridge } from '../../core/model/types.js';
import type { DockerBackend } from './backend.js';
import { DriverError, IPAM_OWNER } from './backend.js';
import { contains, familyOf, firstUsable, isIp, networkOf, nthBlock, overlaps, parseCidr, stripPrefix } from './cidr.js';
import { decodePoolId, encodePoolId, type PoolRef } from './pool-id.js';
import type { ReleaseAddressRequest, RequestAddressRequest, RequestPoolRequest } from './protocol.js';
import { Label } from './protocol.js';

export const ADDRESS_SPACES = { local: 'MidonetLocal', global: 'MidonetGlobal' } as const;

export interface IpamDriverConfig {
  tenant: string;
  /** Where pools are carved from when Docker asks for "any pool": [v4 base, v4 block prefix]. */
  v4Pool: { base: string; prefix: number };
  v6Pool: { base: string; prefix: number };
  /**
   * Swarm: the manager reserves each task's address, then the task's node asks for the same address again. A
   * request for an address held by a reservation is then granted (the endpoint takes the address over).
   */
  swarm?: boolean;
}

/** A pool handed out by RequestPool that no bridge has yet; forgotten after this long. */
const PENDING_MS = 120_000;

export class IpamDriver {
  /** Pools between RequestPool and CreateNetwork: keeps concurrent "any pool" requests apart, carries --ip-range. */
  private readonly pending = new Map<string, { range?: string; at: number }>();

  constructor(
    private readonly backend: DockerBackend,
    private readonly config: IpamDriverConfig,
  ) {}

  capabilities() {
    return { RequiresMACAddress: false, RequiresRequestReplay: false };
  }

  defaultAddressSpaces() {
    return { LocalDefaultAddressSpace: ADDRESS_SPACES.local, GlobalDefaultAddressSpace: ADDRESS_SPACES.global };
  }

  /** The --ip-range asked for a pool, for the network driver (libnetwork does not pass it on). */
  rangeOf(cidr: string): string | undefined {
    return this.pending.get(cidr)?.range;
  }

  poolCreated(cidr: string): void {
    this.pending.delete(cidr);
  }

  private prunePending(): void {
    const now = Date.now();
    for (const [k, v] of this.pending) if (now - v.at > PENDING_MS) this.pending.delete(k);
  }

  async requestPool(req: RequestPoolRequest): Promise<object> {
    const opts = req.Options ?? {};
    for (const key of Object.keys(opts)) {
      if (key !== 'tenant') throw new DriverError(`unknown IPAM option ${key} (known: tenant)`);
    }
    const tenant = opts.tenant ?? this.config.tenant;
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(tenant)) throw new DriverError(`tenant ${JSON.stringify(tenant)}: invalid name`);
    const family: 4 | 6 = req.V6 ? 6 : 4;
    const pool = req.Pool ?? '';
    const sub = req.SubPool ?? '';
    if (!pool && sub) throw new DriverError('a sub-pool (--ip-range) needs a pool (--subnet)');
    let cidr: string;
    if (pool) {
      const c = parseCidr(pool);
      if (!c) throw new DriverError(`pool ${JSON.stringify(pool)} is not a CIDR`);
      if (c.family !== family) throw new DriverError(`pool ${pool} is not IPv${family}`);
      cidr = networkOf(c);
    } else {
      cidr = await this.freePool(family);
    }
    let range: string | undefined;
    if (sub) {
      const s = parseCidr(sub);
      if (!s || s.family !== family || s.prefix < parseCidr(cidr)!.prefix || !contains(cidr, s.address)) {
        throw new DriverError(`sub-pool ${JSON.stringify(sub)} is not a CIDR inside ${cidr}`);
      }
      range = networkOf(s);
    }
    this.prunePending();
    this.pending.set(cidr, { ...(range ? { range } : {}), at: Date.now() });
    const ref: PoolRef = { tenant, cidr, ...(range ? { range } : {}) };
    return { PoolID: encodePoolId(ref), Pool: cidr, Data: {} };
  }

  /** The first block of the default pool that overlaps no bridge subnet (of any tenant) and no pending pool. */
  private async freePool(family: 4 | 6): Promise<string> {
    this.prunePending();
    const { base, prefix } = family === 4 ? this.config.v4Pool : this.config.v6Pool;
    const used = (await this.backend.listBridges()).flatMap((b) => b.subnets.map((s) => s.cidr));
    used.push(...this.pending.keys());
    for (let i = 0; ; i++) {
      const block = nthBlock(base, prefix, i);
      if (!block) throw new DriverError(`no free /${prefix} left in ${base}`);
      if (!used.some((u) => overlaps(u, block))) return block;
    }
  }

  async releasePool(req: { PoolID: string }): Promise<object> {
    const ref = decodePoolId(req.PoolID);
    this.pending.delete(ref.cidr);
    return {};
  }

  /** The bridge that owns a pool: the bridge of the pool's tenant with this subnet. */
  private async bridgeOf(ref: PoolRef): Promise<Bridge | undefined> {
    const tid = tenantId(ref.tenant);
    return (await this.backend.listBridges()).find((b) => b.tenantId === tid && b.subnets.some((s) => s.cidr === ref.cidr));
  }

  async requestAddress(req: RequestAddressRequest): Promise<object> {
    const ref = decodePoolId(req.PoolID);
    const prefix = parseCidr(ref.cidr)!.prefix;
    const wanted = req.Address ? stripPrefix(req.Address) : '';
    if (wanted && (!isIp(wanted) || familyOf(wanted) !== parseCidr(ref.cidr)!.family || !contains(ref.cidr, wanted))) {
      throw new DriverError(`address ${JSON.stringify(req.Address)} is not inside pool ${ref.cidr}`);
    }
    if (req.Options?.[Label.requestAddressType] === Label.gatewayType) {
      // The gateway is the router's address on the bridge, fixed by CreateNetwork: nothing to allocate.
      return { Address: `${wanted || firstUsable(ref.cidr)}/${prefix}`, Data: {} };
    }
    const bridge = await this.bridgeOf(ref);
    if (!bridge) {
      // Before CreateNetwork Docker only asks for aux addresses, which the bridge will reserve.
      if (wanted) return { Address: `${wanted}/${prefix}`, Data: {} };
      throw new DriverError(`pool ${ref.cidr} has no midonet network: the midonet IPAM driver serves networks of the midonet driver`);
    }
    let ip: string;
    try {
      ip = await this.backend.allocateAddress(bridge.id, IPAM_OWNER, parseCidr(ref.cidr)!.family, wanted || undefined);
    } catch (err) {
      const reserved = err instanceof TopologyError && err.code === 'conflict' && err.message.includes(`in use by ${IPAM_OWNER} `);
      if (!(wanted && this.config.swarm && reserved)) throw err;
      ip = wanted;
    }
    return { Address: `${ip}/${prefix}`, Data: {} };
  }

  async releaseAddress(req: ReleaseAddressRequest): Promise<object> {
    const ref = decodePoolId(req.PoolID);
    const ip = stripPrefix(req.Address);
    if (!isIp(ip) || !contains(ref.cidr, ip))
      throw new DriverError(`address ${JSON.stringify(req.Address)} is not inside pool ${ref.cidr}`);
    const bridge = await this.bridgeOf(ref);
    // Only reservations are released here: an endpoint's address goes with its port (DeleteEndpoint).
    if (bridge) await this.backend.releaseAddress(bridge.id, ip, IPAM_OWNER);
    return {};
  }
}
