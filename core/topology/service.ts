// The topology service: the only way the API (and the adapters behind it) write the virtual topology. Every write
// is validated for shape (JSON Schema), meaning (addresses, ranges) and consistency with what is stored (references,
// uniqueness, overlaps), then committed in one store transaction that also asserts the versions of everything the
// decision was based on, so a concurrent writer makes the commit fail and the whole operation is re-run.
import {
  contains, defaultGateway, firstUsable, formatCidr, formatInterfaceCidr, formatIp, lastUsable, normalizeMac,
  overlaps, parseCidr, parseIp, parseNetwork, isUnicastMac, AddressError, bitsOf, type Cidr,
} from '../net/ip.js';
import { bridgeId as stableBridgeId, isUuid, macFor, randomId, routerId as stableRouterId, stableId, tenantId as stableTenantId, workloadPortId } from '../model/ids.js';
import { TUNNEL_KEY_MAX } from '../model/schema.js';
import type {
  Bridge, Host, IpAddrGroup, IpamBlock, Kind, Models, PoolMember, Port, Route, Router, Rule, Subnet, Tenant, Vip,
} from '../model/types.js';
import { StoreError, type Op, type Store, type Versioned } from '../store/store.js';
import { TopologyError } from './errors.js';
import { referencesFrom, referencesTo } from './references.js';
import { checkShape } from './shape.js';

export interface ListFilter {
  tenantId?: string;
  bridgeId?: string;
  routerId?: string;
  hostId?: string;
  chainId?: string;
  poolId?: string;
  loadBalancerId?: string;
  name?: string;
}

export const LIST_FILTER_KEYS = ['tenantId', 'bridgeId', 'routerId', 'hostId', 'chainId', 'poolId', 'loadBalancerId', 'name'] as const;

export const DEFAULT_TENANT = 'default';
/** IANA's VXLAN port; hosts may announce another. */
export const DEFAULT_TUNNEL_PORT = 4789;

/**
 * Tunnel keys are unique cluster-wide, so allocating one must conflict with every other allocation. The store has
 * no counter kind, so a hidden Tenant document serves as the cluster-wide lock: every tunnel-key assignment bumps
 * its generation in the same transaction. It is never listed nor writable through the service.
 */
export const CLUSTER_LOCK_ID = stableId('Tenant', '.cluster');

type Obj = { id: string } & Record<string, unknown>;

const MAX_ATTEMPTS = 12;

/** Reads and assertions of one attempt of an operation, turned into the ops of its commit. */
class Tx {
  readonly writes: Op[] = [];
  private readonly reads = new Map<string, Versioned<Obj> | undefined>();
  private readonly lists = new Map<Kind, Versioned<Obj>[]>();
  private readonly checks = new Map<string, Op>();

  constructor(private readonly store: Store) {}

  async read<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    const key = `${kind}/${id}`;
    if (!this.reads.has(key)) this.reads.set(key, (await this.store.get(kind, id)) as Versioned<Obj> | undefined);
    return this.reads.get(key) as Versioned<Models[K]> | undefined;
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    if (!this.lists.has(kind)) this.lists.set(kind, (await this.store.list(kind)) as unknown as Versioned<Obj>[]);
    return this.lists.get(kind) as unknown as Versioned<Models[K]>[];
  }

  /** The referenced object, asserted unchanged at commit; a missing one is the caller's mistake. */
  async need<K extends Kind>(kind: K, id: string, field: string): Promise<Models[K]> {
    const got = await this.read(kind, id);
    if (!got || (kind === 'Tenant' && id === CLUSTER_LOCK_ID)) {
      throw new TopologyError('invalid', `${field}: ${kind} ${JSON.stringify(id)} not found`, field);
    }
    this.checks.set(`${kind}/${id}`, { op: 'check', kind, id, version: got.version });
    return got.value;
  }

  /** Bumps a tenant's generation so concurrent writers that made the same decision conflict. */
  async bump(id: string): Promise<void> {
    const key = `Tenant/${id}`;
    if (this.writes.some((w) => w.op === 'update' && w.kind === 'Tenant' && w.value.id === id)) return;
    const got = await this.read('Tenant', id);
    if (!got) throw new StoreError('Conflict', `tenant ${id} vanished`, 'Tenant', id);
    this.checks.delete(key);
    const value: Tenant = { ...got.value, generation: got.value.generation + 1 };
    this.writes.push({ op: 'update', kind: 'Tenant', value, version: got.version });
  }

  ops(): Op[] {
    const written = new Set(this.writes.map((w) => `${w.kind}/${w.op === 'delete' || w.op === 'check' ? w.id : w.value.id}`));
    return [...this.writes, ...[...this.checks.entries()].filter(([k]) => !written.has(k)).map(([, op]) => op)];
  }
}

function label(kind: Kind, v: unknown): string {
  const o = v as Obj;
  return typeof o.name === 'string' && o.name ? `${kind} "${o.name}" (${o.id})` : `${kind} ${o.id}`;
}

function clone<T>(v: T): T {
  return structuredClone(v);
}

function asTopologyError(err: unknown): unknown {
  if (err instanceof AddressError) return new TopologyError('invalid', err.message, err.field);
  if (err instanceof StoreError) {
    switch (err.code) {
      case 'Unavailable':
      case 'Closed':
        return new TopologyError('unavailable', `store unavailable: ${err.message}`);
      case 'Invalid':
        return new TopologyError('invalid', err.message);
      default:
        return err;
    }
  }
  return err;
}

/** A version conflict or a vanished object observed at commit: the decision was made on stale data. */
function isRetryable(err: unknown): boolean {
  return err instanceof StoreError && (err.code === 'Conflict' || err.code === 'NotFound' || err.code === 'Exists');
}

export class Topology {
  constructor(readonly store: Store) {}

  // ------------------------------------------------------------------------------------------- generic CRUD

  async get<K extends Kind>(kind: K, id: string): Promise<Models[K]> {
    const got = await this.wrap(() => this.store.get(kind, id));
    if (!got || (kind === 'Tenant' && id === CLUSTER_LOCK_ID)) throw new TopologyError('not_found', `${kind} ${JSON.stringify(id)} not found`, 'id');
    return got.value;
  }

  async list<K extends Kind>(kind: K, filter: ListFilter = {}): Promise<Models[K][]> {
    const all = await this.wrap(() => this.store.list(kind));
    const keys = Object.entries(filter).filter(([, v]) => v !== undefined && v !== '');
    return all
      .map((v) => v.value)
      .filter((o) => !(kind === 'Tenant' && (o as unknown as Obj).id === CLUSTER_LOCK_ID))
      .filter((o) => keys.every(([k, v]) => (o as unknown as Record<string, unknown>)[k] === v))
      .sort((a, b) => sortKey(a).localeCompare(sortKey(b)));
  }

  async create<K extends Kind>(kind: K, input: unknown): Promise<Models[K]> {
    const shaped = clone(checkShape<Obj>(kind, 'create', input));
    if (kind === 'Tenant') return (await this.ensureTenant(String(shaped.name), true)) as Models[K];
    // The tenant is made (idempotently) before the attempt loop: a new tenant is a harmless leftover on failure.
    if ('tenant' in shaped || (['Bridge', 'Router', 'PortGroup', 'IpAddrGroup'] as Kind[]).includes(kind)) {
      if (shaped.tenantId === undefined) {
        const t = await this.ensureTenant(typeof shaped.tenant === 'string' ? shaped.tenant : DEFAULT_TENANT);
        shaped.tenantId = t.id;
      } else if (shaped.tenant !== undefined && shaped.tenantId !== stableTenantId(String(shaped.tenant))) {
        throw new TopologyError('invalid', `tenant ${JSON.stringify(shaped.tenant)} and tenantId ${JSON.stringify(shaped.tenantId)} disagree`, 'tenant');
      }
      delete shaped.tenant;
    }
    return this.attempt(async (tx) => {
      const value = await this.fill(kind, clone(shaped), tx);
      const existing = await tx.read(kind, value.id);
      if (existing) throw this.exists(kind, existing.value);
      await this.validate(kind, value, tx);
      checkShape(kind, 'object', value);
      tx.writes.unshift({ op: 'create', kind, value });
      return value as unknown as Models[K];
    }, kind);
  }

  async update<K extends Kind>(kind: K, id: string, patch: unknown): Promise<Models[K]> {
    const shaped = checkShape<Record<string, unknown>>(kind, 'patch', patch);
    if (kind === 'Tenant' && id === CLUSTER_LOCK_ID) throw new TopologyError('not_found', `Tenant ${JSON.stringify(id)} not found`, 'id');
    return this.attempt(async (tx) => {
      const cur = await tx.read(kind, id);
      if (!cur) throw new TopologyError('not_found', `${kind} ${JSON.stringify(id)} not found`, 'id');
      const value = clone(cur.value) as unknown as Obj;
      for (const [k, v] of Object.entries(shaped)) {
        if (v === null) delete value[k];
        else value[k] = clone(v);
      }
      await this.validate(kind, value, tx, cur.value as unknown as Obj);
      checkShape(kind, 'object', value);
      tx.writes.unshift({ op: 'update', kind, value, version: cur.version });
      return value as unknown as Models[K];
    }, kind);
  }

  /**
   * Deletes an object. Objects that exist only to serve it go with it (a bridge's router links and IPAM blocks,
   * a router's routes and load balancer, a chain's rules…); any other referrer makes it a 409 naming them.
   */
  async delete(kind: Kind, id: string): Promise<void> {
    if (kind === 'Tenant' && id === CLUSTER_LOCK_ID) throw new TopologyError('not_found', `Tenant ${JSON.stringify(id)} not found`, 'id');
    await this.attempt(async (tx) => {
      const root = await tx.read(kind, id);
      if (!root) throw new TopologyError('not_found', `${kind} ${JSON.stringify(id)} not found`, 'id');
      const plan = new Map<string, { kind: Kind; value: Obj; version: number }>();
      plan.set(`${kind}/${id}`, { kind, value: root.value as unknown as Obj, version: root.version });
      const queue = [...plan.values()];
      const blockers: { kind: Kind; value: Obj }[] = [];
      while (queue.length) {
        const item = queue.shift()!;
        for (const ref of referencesTo(item.kind)) {
          for (const r of await tx.list(ref.from)) {
            if (!ref.ids(r.value).includes(item.value.id)) continue;
            const key = `${ref.from}/${(r.value as unknown as Obj).id}`;
            if (plan.has(key)) continue;
            if (ref.onDelete(r.value) === 'cascade') {
              const entry = { kind: ref.from, value: r.value as unknown as Obj, version: r.version };
              plan.set(key, entry);
              queue.push(entry);
            } else {
              blockers.push({ kind: ref.from, value: r.value as unknown as Obj });
            }
          }
        }
      }
      const still = blockers.filter((b) => !plan.has(`${b.kind}/${b.value.id}`));
      if (still.length) {
        const names = [...new Set(still.map((b) => label(b.kind, b.value)))];
        const shown = names.slice(0, 10).join(', ') + (names.length > 10 ? ` and ${names.length - 10} more` : '');
        throw new TopologyError('conflict', `${label(kind, root.value)} is still referenced by ${shown}`, 'id');
      }
      for (const p of plan.values()) tx.writes.push({ op: 'delete', kind: p.kind, id: p.value.id, version: p.version });
    }, kind);
  }

  // ------------------------------------------------------------------------------------------- conveniences

  /** The tenant of that name, created if missing (idempotent). With `strict`, an existing one is a 409. */
  async ensureTenant(name: string, strict = false): Promise<Tenant> {
    checkShape('Tenant', 'create', { name });
    const id = stableTenantId(name);
    for (let i = 0; i < MAX_ATTEMPTS; i++) {
      const got = await this.wrap(() => this.store.get('Tenant', id));
      if (got) {
        if (strict) throw this.exists('Tenant', got.value);
        return got.value;
      }
      const value: Tenant = { id, name, generation: 0 };
      try {
        await this.wrap(() => this.store.create('Tenant', value));
        return value;
      } catch (err) {
        if (!(err instanceof StoreError && err.code === 'Exists')) throw err;
      }
    }
    throw new TopologyError('conflict', `tenant ${JSON.stringify(name)}: too many concurrent changes, try again`);
  }

  /** A bridge of the tenant (by name) found by id or by name; undefined when there is none. */
  async findBridge(tenant: string, nameOrId: string): Promise<Bridge | undefined> {
    const tid = stableTenantId(tenant);
    if (isUuid(nameOrId)) {
      const byId = await this.wrap(() => this.store.get('Bridge', nameOrId));
      if (byId) return byId.value;
    }
    const stable = await this.wrap(() => this.store.get('Bridge', stableBridgeId(tenant, nameOrId)));
    if (stable) return stable.value;
    return (await this.list('Bridge', { tenantId: tid, name: nameOrId }))[0];
  }

  /** A router of the tenant found by id or by name. */
  async findRouter(tenant: string, nameOrId: string): Promise<Router | undefined> {
    if (isUuid(nameOrId)) {
      const byId = await this.wrap(() => this.store.get('Router', nameOrId));
      if (byId) return byId.value;
    }
    const stable = await this.wrap(() => this.store.get('Router', stableRouterId(tenant, nameOrId)));
    if (stable) return stable.value;
    return (await this.list('Router', { tenantId: stableTenantId(tenant), name: nameOrId }))[0];
  }

  /**
   * Links a router to a bridge: a router port holding the router's address on each bridge subnet (the subnet's
   * gateway unless `address` names one), a bridge port peered with it, and a route per subnet via that port.
   * Attaching again with the same (or no) address returns the existing link.
   */
  async attachRouter(routerId: string, bridgeId: string, opts: { address?: string } = {}): Promise<{ routerPort: Port; bridgePort: Port }> {
    if (opts.address !== undefined && typeof opts.address !== 'string') throw new TopologyError('invalid', 'address must be a string', 'address');
    return this.attempt(async (tx) => {
      const router = await tx.read('Router', routerId);
      if (!router) throw new TopologyError('not_found', `router ${JSON.stringify(routerId)} not found`, 'routerId');
      const bridge = await tx.read('Bridge', bridgeId);
      if (!bridge) throw new TopologyError('not_found', `bridge ${JSON.stringify(bridgeId)} not found`, 'bridgeId');
      if (router.value.tenantId !== bridge.value.tenantId) {
        throw new TopologyError('invalid', `router ${router.value.name} and bridge ${bridge.value.name} belong to different tenants`, 'bridgeId');
      }
      const rpId = stableId('Port', routerId, bridgeId, 'router');
      const bpId = stableId('Port', routerId, bridgeId, 'bridge');
      const want = opts.address === undefined ? undefined : parseCidr(opts.address, 'address');
      const ips: string[] = [];
      const subnetsUsed: string[] = [];
      for (const s of bridge.value.subnets) {
        const net = parseNetwork(s.cidr);
        if (want && want.family === net.family) {
          if (!contains(net, { family: want.family, value: want.address })) continue;
          if (want.prefix !== net.prefix) throw new TopologyError('invalid', `address ${opts.address} must have the prefix length of ${s.cidr} (/${net.prefix})`, 'address');
          ips.push(formatInterfaceCidr(want));
          subnetsUsed.push(s.cidr);
        } else if (s.gateway !== '' && (!want || want.family !== net.family)) {
          ips.push(`${s.gateway ?? defaultGateway(net)}/${net.prefix}`);
          subnetsUsed.push(s.cidr);
        }
      }
      if (want && !ips.includes(formatInterfaceCidr(want))) {
        throw new TopologyError('invalid', `address ${opts.address} is not inside any subnet of bridge ${bridge.value.name}`, 'address');
      }
      if (ips.length === 0) throw new TopologyError('invalid', `bridge ${bridge.value.name} has no subnet with a gateway; give an address`, 'address');

      const existing = await tx.read('Port', rpId);
      if (existing) {
        const bp = await tx.read('Port', bpId);
        if (want && !existing.value.ips.includes(formatInterfaceCidr(want))) {
          throw new TopologyError('conflict', `router ${router.value.name} is already attached to bridge ${bridge.value.name} with ${existing.value.ips.join(', ')}`, 'address');
        }
        if (bp) return { routerPort: existing.value, bridgePort: bp.value };
      }
      // The router's addresses join the bridge's address space: no workload may hold them.
      const taken = await this.bridgeAddresses(tx, bridgeId, new Set([rpId, bpId]));
      for (const ip of ips) {
        const bare = ip.slice(0, ip.indexOf('/'));
        const holder = taken.ips.get(bare);
        if (holder) throw new TopologyError('conflict', `address ${bare} is already used on bridge ${bridge.value.name} by port ${holder}`, 'address');
      }
      const base = { tenantId: router.value.tenantId, adminStateUp: true, status: 'unknown' as const, portSecurity: false, portGroupIds: [], options: {} };
      const routerPort: Port = { ...base, id: rpId, type: 'router', routerId, mac: macFor(rpId), ips, peerId: bpId };
      const bridgePort: Port = { ...base, id: bpId, type: 'bridge', bridgeId, mac: macFor(bpId), ips: [], peerId: rpId };
      tx.writes.push({ op: 'create', kind: 'Port', value: routerPort }, { op: 'create', kind: 'Port', value: bridgePort });
      for (const cidr of subnetsUsed) {
        const route: Route = { id: stableId('Route', rpId, cidr), routerId, dst: cidr, nextHop: 'port', nextHopPortId: rpId, weight: 100 };
        tx.writes.push({ op: 'create', kind: 'Route', value: route });
      }
      await tx.need('Router', routerId, 'routerId');
      await tx.need('Bridge', bridgeId, 'bridgeId');
      return { routerPort, bridgePort };
    }, 'Port');
  }

  /** Removes the link made by attachRouter (both ports and its routes). */
  async detachRouter(routerId: string, bridgeId: string): Promise<void> {
    const ports = await this.list('Port', { routerId });
    for (const rp of ports) {
      if (!rp.peerId) continue;
      const peer = await this.wrap(() => this.store.get('Port', rp.peerId!));
      if (peer?.value.bridgeId === bridgeId) {
        await this.delete('Port', rp.id);
        return;
      }
    }
    throw new TopologyError('not_found', `router ${JSON.stringify(routerId)} is not attached to bridge ${JSON.stringify(bridgeId)}`, 'bridgeId');
  }

  // ------------------------------------------------------------------------------------------- machinery

  private exists(kind: Kind, value: unknown): TopologyError {
    const err = new TopologyError('conflict', `${label(kind, value)} already exists`, 'name' in (value as Obj) ? 'name' : 'id');
    (err as TopologyError & { existingId?: string }).existingId = (value as Obj).id;
    return err;
  }

  private async wrap<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw asTopologyError(err);
    }
  }

  /** Runs `body` and commits what it collected; re-runs it from fresh reads when the commit meets a change. */
  private async attempt<T>(body: (tx: Tx) => Promise<T>, kind: Kind): Promise<T> {
    for (let i = 0; ; i++) {
      const tx = new Tx(this.store);
      try {
        const result = await body(tx);
        const ops = tx.ops();
        if (ops.length) await this.store.commit(ops);
        return result;
      } catch (err) {
        if (isRetryable(err) && i < MAX_ATTEMPTS - 1) {
          await new Promise((r) => setTimeout(r, Math.random() * 5 * (i + 1)));
          continue;
        }
        if (isRetryable(err)) throw new TopologyError('conflict', `${kind}: too many concurrent changes, try again`);
        throw asTopologyError(err);
      }
    }
  }

  /** Addresses and MACs already used on a bridge: its ports', and the router addresses linked to it. */
  private async bridgeAddresses(tx: Tx, bridgeId: string, except: Set<string>): Promise<{ ips: Map<string, string>; macs: Map<string, string> }> {
    const ips = new Map<string, string>();
    const macs = new Map<string, string>();
    const ports = (await tx.list('Port')).map((p) => p.value);
    const byId = new Map(ports.map((p) => [p.id, p]));
    for (const p of ports) {
      if (p.bridgeId !== bridgeId || except.has(p.id)) continue;
      macs.set(p.mac, p.id);
      for (const ip of p.ips) ips.set(ip, p.id);
      const peer = p.peerId ? byId.get(p.peerId) : undefined;
      if (peer && !except.has(peer.id)) {
        macs.set(peer.mac, peer.id);
        for (const ip of peer.ips) ips.set(ip.split('/')[0]!, peer.id);
      }
    }
    return { ips, macs };
  }

  /** Defaults of a create: ids, generated values, the fields a client may leave out. */
  private async fill(kind: Kind, v: Obj, tx: Tx): Promise<Obj> {
    switch (kind) {
      case 'Bridge': {
        const tenant = await tx.need('Tenant', String(v.tenantId), 'tenantId');
        v.id ??= stableId('Bridge', tenant.id, String(v.name));
        v.subnets ??= [];
        v.adminStateUp ??= true;
        v.options ??= {};
        v.labels ??= {};
        break;
      }
      case 'Router': {
        const tenant = await tx.need('Tenant', String(v.tenantId), 'tenantId');
        v.id ??= stableId('Router', tenant.id, String(v.name));
        v.adminStateUp ??= true;
        v.snat ??= true;
        v.options ??= {};
        break;
      }
      case 'Port': {
        v.type ??= v.routerId !== undefined && v.bridgeId === undefined ? 'router' : 'bridge';
        const owner = v.owner as Port['owner'];
        v.id ??= owner && typeof v.bridgeId === 'string' ? workloadPortId(v.bridgeId, owner.workloadId, owner.ifname) : randomId();
        v.mac ??= macFor(v.id);
        v.ips ??= [];
        v.adminStateUp ??= true;
        v.status ??= 'unknown';
        v.portSecurity ??= v.type === 'bridge';
        v.portGroupIds ??= [];
        v.options ??= {};
        break;
      }
      case 'Host':
        v.id ??= stableId('Host', String(v.name));
        v.addresses ??= [];
        v.tunnelZones ??= [];
        v.tunnelPort ??= DEFAULT_TUNNEL_PORT;
        break;
      case 'TunnelZone':
        v.id ??= stableId('TunnelZone', String(v.name));
        v.type ??= 'vxlan';
        break;
      case 'Route':
        v.id ??= randomId();
        v.nextHop ??= v.nextHopPortId !== undefined ? 'port' : undefined;
        if (v.nextHop === undefined) throw new TopologyError('invalid', 'Route: give nextHop, or nextHopPortId for a port route', 'nextHop');
        v.weight ??= 100;
        break;
      case 'Rule': {
        v.id ??= randomId();
        v.condition ??= {};
        if (v.position === undefined) {
          const positions = (await tx.list('Rule')).filter((r) => r.value.chainId === v.chainId).map((r) => r.value.position);
          v.position = Math.max(0, ...positions) + 1;
        }
        break;
      }
      case 'PortGroup':
        v.id ??= randomId();
        v.stateful ??= false;
        break;
      case 'IpAddrGroup':
        v.id ??= randomId();
        v.addresses ??= [];
        break;
      case 'LoadBalancer':
        v.id ??= randomId();
        v.adminStateUp ??= true;
        break;
      case 'Pool':
        v.id ??= randomId();
        v.protocol ??= 'tcp';
        v.lbMethod ??= 'round_robin';
        v.adminStateUp ??= true;
        break;
      case 'PoolMember':
        v.id ??= randomId();
        v.weight ??= 1;
        v.adminStateUp ??= true;
        v.status ??= 'unknown';
        break;
      case 'Vip':
        v.id ??= randomId();
        v.protocol ??= 'tcp';
        break;
      case 'HealthMonitor':
        v.id ??= randomId();
        v.type ??= 'tcp';
        v.delay ??= 5;
        v.timeout ??= 3;
        v.maxRetries ??= 3;
        v.adminStateUp ??= true;
        break;
      case 'IpamBlock':
        v.id ??= stableId('IpamBlock', String(v.bridgeId), String(v.cidr));
        v.allocations ??= {};
        break;
      case 'Chain':
        v.id ??= randomId();
        break;
      case 'Tenant':
        break;
    }
    return v;
  }

  /** Semantic checks of a full object about to be written (`prev`: the stored one on update). */
  private async validate(kind: Kind, v: Obj, tx: Tx, prev?: Obj): Promise<void> {
    for (const ref of referencesFrom(kind)) {
      if (ref.field === 'peerId') continue; // links are made by attachRouter only
      for (const id of ref.ids(v)) await tx.need(ref.to, id, ref.field);
    }
    switch (kind) {
      case 'Bridge': return this.validateBridge(v as unknown as Bridge, tx, prev as unknown as Bridge | undefined);
      case 'Port': return this.validatePort(v as unknown as Port, tx);
      case 'Route': return this.validateRoute(v as unknown as Route, tx);
      case 'Rule': return this.validateRule(v as unknown as Rule);
      case 'Host': return validateHost(v as unknown as Host);
      case 'TunnelZone': return this.unique(kind, v, tx, {});
      case 'Router': return this.unique(kind, v, tx, { tenantId: v.tenantId });
      case 'PortGroup': return this.unique(kind, v, tx, { tenantId: v.tenantId });
      case 'Chain': return this.unique(kind, v, tx, { tenantId: v.tenantId });
      case 'IpAddrGroup': {
        const g = v as unknown as IpAddrGroup;
        g.addresses = g.addresses.map((a, i) => (a.includes('/') ? formatCidr(parseCidr(a, `addresses[${i}]`)) : formatIp(parseIp(a, `addresses[${i}]`))));
        return this.unique(kind, v, tx, { tenantId: v.tenantId });
      }
      case 'PoolMember': {
        const m = v as unknown as PoolMember;
        m.address = formatIp(parseIp(m.address, 'address'));
        return;
      }
      case 'Vip': {
        const x = v as unknown as Vip;
        x.address = formatIp(parseIp(x.address, 'address'));
        return;
      }
      case 'IpamBlock': {
        const b = v as unknown as IpamBlock;
        const bridge = await tx.need('Bridge', b.bridgeId, 'bridgeId');
        const subnet = parseNetwork(b.subnet, 'subnet');
        b.subnet = formatCidr(subnet);
        if (!bridge.subnets.some((s) => s.cidr === b.subnet)) {
          throw new TopologyError('invalid', `subnet ${b.subnet} is not a subnet of bridge ${bridge.name}`, 'subnet');
        }
        const cidr = parseNetwork(b.cidr, 'cidr');
        b.cidr = formatCidr(cidr);
        if (!contains(subnet, cidr)) throw new TopologyError('invalid', `cidr ${b.cidr} is not inside ${b.subnet}`, 'cidr');
        return;
      }
      default:
        return;
    }
  }

  /** Names are unique among the objects of a kind sharing `scope` (e.g. the routers of a tenant). */
  private async unique(kind: Kind, v: Obj, tx: Tx, scope: Record<string, unknown>): Promise<void> {
    for (const o of await tx.list(kind)) {
      const other = o.value as unknown as Obj;
      if (other.id === v.id || other.name !== v.name) continue;
      if (Object.entries(scope).every(([k, s]) => other[k] === s)) {
        throw this.exists(kind, other);
      }
    }
  }

  private async validateBridge(b: Bridge, tx: Tx, prev?: Bridge): Promise<void> {
    const nets: Cidr[] = [];
    b.subnets = b.subnets.map((s, i) => normalizeSubnet(s, i, nets));
    if (b.mtu !== undefined && b.mtu < 1280 && nets.some((n) => n.family === 6)) {
      throw new TopologyError('invalid', `mtu ${b.mtu} is below 1280, the IPv6 minimum`, 'mtu');
    }
    const tenantBridges = (await tx.list('Bridge')).map((x) => x.value).filter((o) => o.id !== b.id);
    for (const o of tenantBridges) {
      if (o.tenantId !== b.tenantId) continue;
      if (o.name === b.name) throw this.exists('Bridge', o);
      for (const [i, n] of nets.entries()) {
        const clash = o.subnets.find((s) => overlaps(s.cidr, n));
        if (clash) {
          throw new TopologyError('conflict', `subnet ${formatCidr(n)} overlaps ${clash.cidr} of bridge "${o.name}" (${o.id})`, `subnets[${i}].cidr`);
        }
      }
    }
    // Tunnel keys are cluster-wide: every bridge counts, not only the tenant's.
    const used = new Set(tenantBridges.map((o) => o.tunnelKey));
    if (b.tunnelKey === undefined) {
      let key = 1;
      while (used.has(key)) key++;
      if (key > TUNNEL_KEY_MAX) throw new TopologyError('exhausted', 'no free tunnel key left', 'tunnelKey');
      b.tunnelKey = key;
    } else if (used.has(b.tunnelKey)) {
      const holder = tenantBridges.find((o) => o.tunnelKey === b.tunnelKey)!;
      throw new TopologyError('conflict', `tunnel key ${b.tunnelKey} is used by bridge "${holder.name}" (${holder.id})`, 'tunnelKey');
    }
    if (prev) {
      // Narrowing the subnets must not strand addresses already handed out.
      for (const p of (await tx.list('Port')).map((x) => x.value)) {
        if (p.bridgeId !== b.id) continue;
        for (const ip of p.ips) {
          if (!b.subnets.some((s) => contains(s.cidr, ip))) {
            throw new TopologyError('conflict', `port ${p.id} holds ${ip}, which would be outside every subnet`, 'subnets');
          }
        }
      }
      for (const blk of (await tx.list('IpamBlock')).map((x) => x.value)) {
        if (blk.bridgeId === b.id && !b.subnets.some((s) => s.cidr === blk.subnet)) {
          throw new TopologyError('conflict', `subnet ${blk.subnet} still has IPAM block ${blk.cidr}; release its addresses first`, 'subnets');
        }
      }
    }
    await tx.bump(b.tenantId);
    if (!prev || prev.tunnelKey !== b.tunnelKey) {
      await this.ensureClusterLock(tx);
      await tx.bump(CLUSTER_LOCK_ID);
    }
  }

  private async ensureClusterLock(tx: Tx): Promise<void> {
    if (await tx.read('Tenant', CLUSTER_LOCK_ID)) return;
    try {
      await this.store.create('Tenant', { id: CLUSTER_LOCK_ID, name: '.cluster', generation: 0 });
    } catch (err) {
      if (!(err instanceof StoreError && err.code === 'Exists')) throw err;
    }
    throw new StoreError('Conflict', 'cluster lock created; re-reading', 'Tenant', CLUSTER_LOCK_ID);
  }

  private async validatePort(p: Port, tx: Tx): Promise<void> {
    if (p.type === 'bridge') {
      if (p.bridgeId === undefined) throw new TopologyError('invalid', 'a bridge port needs bridgeId', 'bridgeId');
      if (p.routerId !== undefined) throw new TopologyError('invalid', 'a bridge port has no routerId', 'routerId');
    } else {
      if (p.routerId === undefined) throw new TopologyError('invalid', 'a router port needs routerId', 'routerId');
      if (p.bridgeId !== undefined) throw new TopologyError('invalid', 'a router port has no bridgeId', 'bridgeId');
    }
    const parent = p.type === 'bridge' ? await tx.need('Bridge', p.bridgeId!, 'bridgeId') : await tx.need('Router', p.routerId!, 'routerId');
    if (p.tenantId !== undefined && p.tenantId !== parent.tenantId) {
      throw new TopologyError('invalid', `tenantId must be the tenant of the ${p.type}`, 'tenantId');
    }
    p.tenantId = parent.tenantId;
    p.mac = normalizeMac(p.mac, 'mac');
    if (!isUnicastMac(p.mac)) throw new TopologyError('invalid', `mac ${p.mac} is a multicast address`, 'mac');
    const seen = new Set<string>();
    p.ips = p.ips.map((ip, i) => {
      const field = `ips[${i}]`;
      let text: string;
      if (p.type === 'router') {
        text = formatInterfaceCidr(parseCidr(ip, field));
      } else {
        const addr = parseIp(ip, field);
        text = formatIp(addr);
        const bridge = parent as Bridge;
        if (bridge.subnets.length && !bridge.subnets.some((s) => contains(s.cidr, addr))) {
          throw new TopologyError('invalid', `${field}: ${text} is not inside any subnet of bridge ${bridge.name} (${bridge.subnets.map((s) => s.cidr).join(', ')})`, field);
        }
      }
      if (seen.has(text)) throw new TopologyError('invalid', `${field}: ${text} is listed twice`, field);
      seen.add(text);
      return text;
    });
    if (p.type === 'bridge') {
      const taken = await this.bridgeAddresses(tx, p.bridgeId!, new Set([p.id]));
      const macHolder = taken.macs.get(p.mac);
      if (macHolder) throw new TopologyError('conflict', `mac ${p.mac} is already used on this bridge by port ${macHolder}`, 'mac');
      for (const [i, ip] of p.ips.entries()) {
        const holder = taken.ips.get(ip);
        if (holder) throw new TopologyError('conflict', `address ${ip} is already used on this bridge by port ${holder}`, `ips[${i}]`);
      }
    }
    if (p.interfaceName !== undefined && p.hostId === undefined) {
      throw new TopologyError('invalid', 'interfaceName binds a port to a host: give hostId too', 'hostId');
    }
  }

  private async validateRoute(r: Route, tx: Tx): Promise<void> {
    const dst = parseNetwork(r.dst, 'dst');
    r.dst = formatCidr(dst);
    if (r.src !== undefined) {
      const src = parseNetwork(r.src, 'src');
      if (src.family !== dst.family) throw new TopologyError('invalid', 'src and dst must be of the same IP family', 'src');
      r.src = formatCidr(src);
    }
    if (r.nextHop === 'port') {
      if (r.nextHopPortId === undefined) throw new TopologyError('invalid', 'a port route needs nextHopPortId', 'nextHopPortId');
      const port = await tx.need('Port', r.nextHopPortId, 'nextHopPortId');
      if (port.routerId !== r.routerId) {
        throw new TopologyError('invalid', `nextHopPortId ${r.nextHopPortId} is not a port of router ${r.routerId}`, 'nextHopPortId');
      }
    } else if (r.nextHopPortId !== undefined) {
      throw new TopologyError('invalid', `a ${r.nextHop} route has no nextHopPortId`, 'nextHopPortId');
    }
    if (r.nextHopGateway !== undefined) {
      const gw = parseIp(r.nextHopGateway, 'nextHopGateway');
      if (gw.family !== dst.family) throw new TopologyError('invalid', 'nextHopGateway must be of the family of dst', 'nextHopGateway');
      r.nextHopGateway = formatIp(gw);
    }
  }

  private validateRule(r: Rule): void {
    if (r.action === 'jump') {
      if (r.jumpChainId === undefined) throw new TopologyError('invalid', 'a jump rule needs jumpChainId', 'jumpChainId');
      if (r.jumpChainId === r.chainId) throw new TopologyError('invalid', 'a rule cannot jump to its own chain', 'jumpChainId');
    } else if (r.jumpChainId !== undefined) {
      throw new TopologyError('invalid', `a ${r.action} rule has no jumpChainId`, 'jumpChainId');
    }
    if (r.action === 'snat' || r.action === 'dnat') {
      if (!r.natTargets?.length) throw new TopologyError('invalid', `a ${r.action} rule needs natTargets`, 'natTargets');
    } else if (r.natTargets !== undefined) {
      throw new TopologyError('invalid', `a ${r.action} rule has no natTargets`, 'natTargets');
    }
    for (const [i, t] of (r.natTargets ?? []).entries()) {
      const from = parseIp(t.addressFrom, `natTargets[${i}].addressFrom`);
      const to = parseIp(t.addressTo, `natTargets[${i}].addressTo`);
      if (from.family !== to.family || from.value > to.value) {
        throw new TopologyError('invalid', `natTargets[${i}]: addressFrom must not be above addressTo (same family)`, `natTargets[${i}].addressTo`);
      }
      if (t.portFrom > t.portTo) throw new TopologyError('invalid', `natTargets[${i}]: portFrom is above portTo`, `natTargets[${i}].portTo`);
      t.addressFrom = formatIp(from);
      t.addressTo = formatIp(to);
    }
    const c = r.condition;
    for (const f of ['nwSrc', 'nwDst'] as const) {
      if (c[f] !== undefined) c[f] = formatCidr(parseCidr(c[f], `condition.${f}`));
    }
    for (const f of ['tpSrc', 'tpDst'] as const) {
      const range = c[f];
      if (range && range.start > range.end) throw new TopologyError('invalid', `condition.${f}: start is above end`, `condition.${f}`);
    }
  }
}

function validateHost(h: Host): void {
  h.addresses = h.addresses.map((a, i) => formatIp(parseIp(a, `addresses[${i}]`)));
  const zones = new Set<string>();
  for (const [i, z] of h.tunnelZones.entries()) {
    if (zones.has(z.zoneId)) throw new TopologyError('invalid', `tunnel zone ${z.zoneId} is listed twice`, `tunnelZones[${i}].zoneId`);
    zones.add(z.zoneId);
    z.ip = formatIp(parseIp(z.ip, `tunnelZones[${i}].ip`));
  }
}

/** Canonical subnet with its defaults filled; checks gateway, reserved, range, blockPrefix and self-overlap. */
function normalizeSubnet(s: Subnet, i: number, nets: Cidr[]): Subnet {
  const at = `subnets[${i}]`;
  const net = parseNetwork(s.cidr, `${at}.cidr`);
  const bits = bitsOf(net.family);
  if (bits - net.prefix < 2) throw new TopologyError('invalid', `${at}.cidr: ${s.cidr} is too small for a network (at most /${bits - 2})`, `${at}.cidr`);
  const earlier = nets.findIndex((n) => overlaps(n, net));
  if (earlier >= 0) throw new TopologyError('invalid', `${at}.cidr: ${formatCidr(net)} overlaps subnets[${earlier}]`, `${at}.cidr`);
  nets.push(net);
  const out: Subnet = { cidr: formatCidr(net) };
  const first = firstUsable(net);
  const last = lastUsable(net);
  const inside = (text: string, field: string): string => {
    const ip = parseIp(text, field);
    if (!contains(net, ip)) throw new TopologyError('invalid', `${field}: ${text} is not inside ${out.cidr}`, field);
    return formatIp(ip);
  };
  if (s.gateway === '') {
    out.gateway = '';
  } else if (s.gateway === undefined) {
    out.gateway = formatIp(first);
  } else {
    const gw = parseIp(s.gateway, `${at}.gateway`);
    if (!contains(net, gw) || gw.value < first.value || gw.value > last.value) {
      throw new TopologyError('invalid', `${at}.gateway: ${s.gateway} is not a usable address of ${out.cidr} (${formatIp(first)} to ${formatIp(last)})`, `${at}.gateway`);
    }
    out.gateway = formatIp(gw);
  }
  if (s.reserved !== undefined) out.reserved = s.reserved.map((r, j) => inside(r, `${at}.reserved[${j}]`));
  if (s.range !== undefined) {
    const range = parseCidr(s.range, `${at}.range`);
    if (!contains(net, range)) throw new TopologyError('invalid', `${at}.range: ${s.range} is not inside ${out.cidr}`, `${at}.range`);
    out.range = formatCidr(range);
  }
  const defaultBlock = Math.max(net.prefix, net.family === 4 ? 26 : 122);
  const blockPrefix = s.blockPrefix ?? defaultBlock;
  if (blockPrefix < net.prefix || blockPrefix > bits) {
    throw new TopologyError('invalid', `${at}.blockPrefix: /${blockPrefix} must be from /${net.prefix} to /${bits}`, `${at}.blockPrefix`);
  }
  out.blockPrefix = blockPrefix;
  return out;
}

function sortKey(o: unknown): string {
  const x = o as Obj;
  return `${typeof x.name === 'string' ? x.name : ''}\u0000${x.id}`;
}
