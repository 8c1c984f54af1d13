// The checks every written object passes, shared by the service's own writes and by compound operations
// (security groups) that write several objects in one transaction.
import type { Kind, Models } from '../model/types.js';
import { referencesFrom } from './references.js';
import { ruleOf } from './rules/index.js';
import type { Draft } from './rules/rule.js';
import { checkShape } from './shape.js';
import type { Tx } from './tx.js';

/** What every written object must satisfy: its references exist, and its kind's rule. */
export async function validateWrite<K extends Kind>(kind: K, value: Models[K], tx: Tx, prev: Models[K] | undefined): Promise<void> {
  for (const ref of referencesFrom(kind)) {
    if (ref.field === 'peerId') continue; // links are made by attachRouter only
    for (const id of ref.ids(value)) await tx.need(ref.to, id, ref.field);
  }
  await ruleOf(kind).validate?.(value, tx, prev);
}

/** Creates an object in `tx` with the checks of a create (defaults filled, references, rule, shape). */
export async function createIn<K extends Kind>(tx: Tx, kind: K, draft: Draft<K>): Promise<Models[K]> {
  const value = await ruleOf(kind).fill(structuredClone(draft), tx);
  await validateWrite(kind, value, tx, undefined);
  checkShape(kind, 'object', value);
  tx.put(kind, value);
  return value;
}

/** Writes a changed object in `tx` with the checks of an update (unless unchanged). */
export async function updateIn<K extends Kind>(
  tx: Tx,
  kind: K,
  value: Models[K],
  prev: { value: Models[K]; version: number },
): Promise<Models[K]> {
  await validateWrite(kind, value, tx, prev.value);
  checkShape(kind, 'object', value);
  if (JSON.stringify(value) !== JSON.stringify(prev.value)) tx.put(kind, value, prev.version);
  return value;
}
