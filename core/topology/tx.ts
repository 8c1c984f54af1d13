// One attempt of a topology write: what it read (so the commit can assert none of it changed) and what it writes.
// The service runs an operation's body against a fresh Tx and re-runs it when the commit meets a concurrent change.
import { stableId } from '../model/ids.js';
import type { Kind, Models, Tenant } from '../model/types.js';
import { StoreError, type Op, type Store, type Versioned } from '../store/store.js';
import { TopologyError } from './errors.js';

/**
 * Tunnel keys are unique cluster-wide, so allocating one must conflict with every other allocation. The store has
 * no counter kind, so a hidden Tenant document serves as the cluster-wide lock: every tunnel-key assignment bumps
 * its generation in the same transaction. It is never listed nor writable through the service.
 */
export const CLUSTER_LOCK_ID = stableId('Tenant', '.cluster');

/** The hidden cluster lock is never shown: reads of it answer as for a missing object. */
export function isHidden(kind: Kind, id: string): boolean {
  return kind === 'Tenant' && id === CLUSTER_LOCK_ID;
}

/** Reads and assertions of one attempt of an operation, turned into the ops of its commit. */
export class Tx {
  readonly writes: Op[] = [];
  // Keyed by kind (and id): what is stored under a kind is that kind's model, which the typed accessors restate.
  private readonly reads = new Map<string, Versioned<Models[Kind]> | undefined>();
  private readonly lists = new Map<Kind, Versioned<Models[Kind]>[]>();
  private readonly checks = new Map<string, Op>();

  constructor(readonly store: Store) {}

  async read<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined> {
    const key = `${kind}/${id}`;
    if (!this.reads.has(key)) this.reads.set(key, await this.store.get(kind, id));
    return this.reads.get(key) as Versioned<Models[K]> | undefined;
  }

  async list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]> {
    let all = this.lists.get(kind);
    if (!all) this.lists.set(kind, (all = await this.store.list(kind)));
    const staged = this.staged.get(kind);
    if (!staged?.size) return all as Versioned<Models[K]>[];
    const out = all.filter((v) => !staged.has(v.value.id));
    for (const v of staged.values()) if (v) out.push(v);
    return out as Versioned<Models[K]>[];
  }

  // Writes of a compound operation that later reads of the same attempt must see (kind -> id -> value or gone).
  private readonly staged = new Map<Kind, Map<string, Versioned<Models[Kind]> | undefined>>();

  private stage(kind: Kind, id: string, v: Versioned<Models[Kind]> | undefined): void {
    let m = this.staged.get(kind);
    if (!m) this.staged.set(kind, (m = new Map<string, Versioned<Models[Kind]> | undefined>()));
    m.set(id, v);
    this.reads.set(`${kind}/${id}`, v);
  }

  /**
   * Writes `value` in this attempt (an update when `version` is given, else a create), visible to the attempt's
   * later reads and lists; for operations that write several related objects (security groups).
   */
  put<K extends Kind>(kind: K, value: Models[K], version?: number): void {
    const key = `${kind}/${value.id}`;
    const i = this.writes.findIndex((w) => w.op !== 'delete' && w.op !== 'check' && w.kind === kind && w.value.id === value.id);
    if (i >= 0) this.writes[i] = { ...this.writes[i]!, value } as Op;
    else this.writes.push(version === undefined ? { op: 'create', kind, value } : { op: 'update', kind, value, version });
    this.checks.delete(key);
    this.stage(kind, value.id, { value, version: version ?? 0 });
  }

  /** Deletes an object in this attempt (at the version read), hidden from the attempt's later reads and lists. */
  remove(kind: Kind, id: string, version: number): void {
    const i = this.writes.findIndex((w) => w.op !== 'delete' && w.op !== 'check' && w.kind === kind && w.value.id === id);
    if (i >= 0 && this.writes[i]!.op === 'create') this.writes.splice(i, 1);
    else {
      if (i >= 0) this.writes.splice(i, 1);
      this.writes.push({ op: 'delete', kind, id, version });
    }
    this.checks.delete(`${kind}/${id}`);
    this.stage(kind, id, undefined);
  }

  /** The referenced object, asserted unchanged at commit; a missing one is the caller's mistake. */
  async need<K extends Kind>(kind: K, id: string, field: string): Promise<Models[K]> {
    const got = await this.read(kind, id);
    if (!got || isHidden(kind, id)) {
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

  /**
   * Makes sure the cluster lock exists. Creating it is outside the transaction, so the attempt is re-run (as on
   * a conflict) to read it afresh and take it inside.
   */
  async ensureClusterLock(): Promise<void> {
    if (await this.read('Tenant', CLUSTER_LOCK_ID)) return;
    try {
      await this.store.create('Tenant', { id: CLUSTER_LOCK_ID, name: '.cluster', generation: 0 });
    } catch (err) {
      if (!(err instanceof StoreError && err.code === 'Exists')) throw err;
    }
    throw new StoreError('Conflict', 'cluster lock created; re-reading', 'Tenant', CLUSTER_LOCK_ID);
  }

  ops(): Op[] {
    const written = new Set(this.writes.map((w) => `${w.kind}/${w.op === 'delete' || w.op === 'check' ? w.id : w.value.id}`));
    return [...this.writes, ...[...this.checks.entries()].filter(([k]) => !written.has(k)).map(([, op]) => op)];
  }
}
