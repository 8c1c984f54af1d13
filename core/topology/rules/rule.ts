// What the topology service needs to know about one kind of object: how a create is completed (ids, defaults) and
// what a full object must satisfy before it is written. Each kind's rule lives in the file named after it and is
// registered in the `kindRules` table (index.ts), the way references.ts tabulates references.
import type { Kind, Models } from '../../model/types.js';
import { TopologyError } from '../errors.js';
import type { Tx } from '../tx.js';

/**
 * A create request after its shape was checked: the fields the client gave. Kinds that belong to a tenant are
 * given their `tenantId` by the service before their rule sees the draft.
 */
export type Draft<K extends Kind> = Partial<Models[K]>;

export interface KindRule<K extends Kind> {
  /** Defaults of a create: ids, generated values, the fields a client may leave out. */
  fill(draft: Draft<K>, tx: Tx): Models[K] | Promise<Models[K]>;
  /**
   * Semantic checks of a full object about to be written, which may also rewrite fields into canonical form
   * (addresses, CIDRs). `prev` is the stored object on update.
   */
  validate?(value: Models[K], tx: Tx, prev: Models[K] | undefined): void | Promise<void>;
}

/** A field the create schema requires: present once the shape check passed, asserted here for the type. */
export function given<T, F extends keyof T>(draft: Partial<T>, field: F): NonNullable<T[F]> {
  const v = draft[field];
  if (v === undefined || v === null) throw new TopologyError('invalid', `missing required field "${String(field)}"`, String(field));
  return v;
}

/** A field of any model object by name (list filters, uniqueness scopes). */
export function fieldOf(value: object, field: string): unknown {
  return Object.prototype.hasOwnProperty.call(value, field) ? (Reflect.get(value, field) as unknown) : undefined;
}

/** `Bridge "blue" (id)`, or `Route id` for kinds without a name. */
export function label(kind: Kind, value: { id: string }): string {
  const name = fieldOf(value, 'name');
  return typeof name === 'string' && name ? `${kind} "${name}" (${value.id})` : `${kind} ${value.id}`;
}

/** The 409 of a create (or rename) meeting an existing object; carries its id so adapters can reuse it. */
export function existsError(kind: Kind, value: { id: string }): TopologyError {
  const err = new TopologyError('conflict', `${label(kind, value)} already exists`, 'name' in value ? 'name' : 'id');
  (err as TopologyError & { existingId?: string }).existingId = value.id;
  return err;
}

/** Names are unique among the objects of a kind sharing `scope` (e.g. the routers of a tenant). */
export async function unique<K extends Kind>(kind: K, value: Models[K], tx: Tx, scope: Record<string, unknown>): Promise<void> {
  const name = fieldOf(value, 'name');
  for (const { value: other } of await tx.list(kind)) {
    if (other.id === value.id || fieldOf(other, 'name') !== name) continue;
    if (Object.entries(scope).every(([k, s]) => fieldOf(other, k) === s)) throw existsError(kind, other);
  }
}
