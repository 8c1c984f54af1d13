// The topology service: the only way the API (and the adapters behind it) write the virtual topology. Every write
// is validated for shape (JSON Schema), meaning (addresses, ranges) and consistency with what is stored (references,
// uniqueness, overlaps), then committed in one store transaction that also asserts the versions of everything the
// decision was based on, so a concurrent writer makes the commit fail and the whole operation is re-run.
// What each kind must satisfy lives in its rule (rules/), what refers to what in references.ts; this file
// dispatches to them and runs the attempts.
import { AddressError } from '../net/ip.js';
import { bridgeId as stableBridgeId, isUuid, routerId as stableRouterId, tenantId as stableTenantId } from '../model/ids.js';
import type { Bridge, Kind, Models, Port, Router, Tenant } from '../model/types.js';
import { StoreError } from '../store/store.js';
import { TopologyError } from './errors.js';
import { linkRouter, type RouterLink } from './links.js';
import { referencesTo } from './references.js';
import { portsGone, syncPortSecurity } from './security-groups.js';
import { validateWrite } from './write.js';
import { ruleOf } from './rules/index.js';
import { existsError, fieldOf, label, type Draft } from './rules/rule.js';
import { checkShape } from './shape.js';
import { isHidden, Tx } from './tx.js';
import type { Store } from '../store/store.js';

export { CLUSTER_LOCK_ID } from './tx.js';

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

/** Kinds that belong to a tenant even when the request names none: they go to the default tenant. */
const TENANTED: readonly Kind[] = ['Bridge', 'Router', 'PortGroup', 'IpAddrGroup'];

const MAX_ATTEMPTS = 12;

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

function notFound(kind: Kind, id: string): TopologyError {
  return new TopologyError('not_found', `${kind} ${JSON.stringify(id)} not found`, 'id');
}

export class Topology {
  constructor(readonly store: Store) {}

  // ------------------------------------------------------------------------------------------- generic CRUD

  async get<K extends Kind>(kind: K, id: string): Promise<Models[K]> {
    const got = await this.wrap(() => this.store.get(kind, id));
    if (!got || isHidden(kind, id)) throw notFound(kind, id);
    return got.value;
  }

  async list<K extends Kind>(kind: K, filter: ListFilter = {}): Promise<Models[K][]> {
    const all = await this.wrap(() => this.store.list(kind));
    const keys = Object.entries(filter).filter(([, v]) => v !== undefined && v !== '');
    return all
      .map((v) => v.value)
      .filter((o) => !isHidden(kind, o.id))
      .filter((o) => keys.every(([k, v]) => fieldOf(o, k) === v))
      .sort((a, b) => sortKey(a).localeCompare(sortKey(b)));
  }

  async create<K extends Kind>(kind: K, input: unknown): Promise<Models[K]> {
    const shaped = structuredClone(checkShape<Draft<K> & { tenant?: string; tenantId?: string }>(kind, 'create', input));
    // `kind` is 'Tenant' here, so Tenant is Models[K]; TypeScript does not narrow a type parameter by its value.
    if (kind === 'Tenant') return (await this.ensureTenant(String(fieldOf(shaped, 'name')), true)) as Models[K];
    // The tenant is made (idempotently) before the attempt loop: a new tenant is a harmless leftover on failure.
    if ('tenant' in shaped || TENANTED.includes(kind)) {
      if (shaped.tenantId === undefined) {
        const t = await this.ensureTenant(typeof shaped.tenant === 'string' ? shaped.tenant : DEFAULT_TENANT);
        shaped.tenantId = t.id;
      } else if (shaped.tenant !== undefined && shaped.tenantId !== stableTenantId(String(shaped.tenant))) {
        throw new TopologyError(
          'invalid',
          `tenant ${JSON.stringify(shaped.tenant)} and tenantId ${JSON.stringify(shaped.tenantId)} disagree`,
          'tenant',
        );
      }
      delete shaped.tenant;
    }
    const rule = ruleOf(kind);
    return this.attempt(async (tx) => {
      const value = await rule.fill(structuredClone(shaped), tx);
      const existing = await tx.read(kind, value.id);
      if (existing) throw existsError(kind, existing.value);
      await this.validate(kind, value, tx, undefined);
      checkShape(kind, 'object', value);
      tx.writes.unshift({ op: 'create', kind, value });
      return value;
    }, kind);
  }

  async update<K extends Kind>(kind: K, id: string, patch: unknown): Promise<Models[K]> {
    const shaped = checkShape<Record<string, unknown>>(kind, 'patch', patch);
    if (isHidden(kind, id)) throw notFound(kind, id);
    return this.attempt(async (tx) => {
      const cur = await tx.read(kind, id);
      if (!cur) throw notFound(kind, id);
      const value = structuredClone(cur.value);
      // The patch schema allows only the kind's mutable fields, with their types; null clears an optional one.
      for (const [k, v] of Object.entries(shaped)) {
        if (v === null) Reflect.deleteProperty(value, k);
        else Reflect.set(value, k, structuredClone(v));
      }
      await this.validate(kind, value, tx, cur.value);
      checkShape(kind, 'object', value);
      tx.writes.unshift({ op: 'update', kind, value, version: cur.version });
      return value;
    }, kind);
  }

  /**
   * Deletes an object. Objects that exist only to serve it go with it (a bridge's router links and IPAM blocks,
   * a router's routes and load balancer, a chain's rules…); any other referrer makes it a 409 naming them.
   */
  async delete(kind: Kind, id: string): Promise<void> {
    if (isHidden(kind, id)) throw notFound(kind, id);
    await this.attempt(async (tx) => {
      const root = await tx.read(kind, id);
      if (!root) throw notFound(kind, id);
      type Doomed = { kind: Kind; value: Models[Kind]; version: number };
      const plan = new Map<string, Doomed>();
      plan.set(`${kind}/${id}`, { kind, value: root.value, version: root.version });
      const queue = [...plan.values()];
      const blockers: { kind: Kind; value: Models[Kind] }[] = [];
      while (queue.length) {
        const item = queue.shift()!;
        for (const ref of referencesTo(item.kind)) {
          for (const r of await tx.list(ref.from)) {
            if (!ref.ids(r.value).includes(item.value.id)) continue;
            const key = `${ref.from}/${r.value.id}`;
            if (plan.has(key)) continue;
            if (ref.onDelete(r.value) === 'cascade') {
              const entry = { kind: ref.from, value: r.value, version: r.version };
              plan.set(key, entry);
              queue.push(entry);
            } else {
              blockers.push({ kind: ref.from, value: r.value });
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
      // A deleted port's security-group chains and addresses go with it.
      const ports = [...plan.values()].filter((p) => p.kind === 'Port').map((p) => p.value as Port);
      if (ports.length) await portsGone(tx, ports);
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
        if (strict) throw existsError('Tenant', got.value);
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
  async attachRouter(routerId: string, bridgeId: string, opts: { address?: string } = {}): Promise<RouterLink> {
    if (opts.address !== undefined && typeof opts.address !== 'string')
      throw new TopologyError('invalid', 'address must be a string', 'address');
    return this.attempt((tx) => linkRouter(tx, routerId, bridgeId, opts.address), 'Port');
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
    throw new TopologyError(
      'not_found',
      `router ${JSON.stringify(routerId)} is not attached to bridge ${JSON.stringify(bridgeId)}`,
      'bridgeId',
    );
  }

  // ------------------------------------------------------------------------------------------- machinery

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

  /** Semantic checks of a full object about to be written (`prev`: the stored one on update). */
  private async validate<K extends Kind>(kind: K, value: Models[K], tx: Tx, prev: Models[K] | undefined): Promise<void> {
    await validateWrite(kind, value, tx, prev);
    // A port's security groups are enforced by its filter chains, made or changed in the same transaction.
    if (kind === 'Port') await syncPortSecurity(tx, value as Port);
  }

  /** Runs a compound operation (security groups…) as one transaction, re-run on conflicts like every write. */
  transact<T>(body: (tx: Tx) => Promise<T>, kind: Kind): Promise<T> {
    return this.attempt(body, kind);
  }
}

function sortKey(o: { id: string }): string {
  const name = fieldOf(o, 'name');
  return `${typeof name === 'string' ? name : ''}\u0000${o.id}`;
}
