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
    return all as Versioned<Models[K]>[];
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
