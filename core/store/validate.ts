// Checks shared by every backend, so a malformed request gets the same 'Invalid' answer whichever store is behind.
import { KINDS, type Kind } from '../model/types.js';
import { StoreError, type Op } from './store.js';

const kindSet: ReadonlySet<string> = new Set(KINDS);

export function checkKind(kind: unknown): asserts kind is Kind {
  if (typeof kind !== 'string' || !kindSet.has(kind)) {
    throw new StoreError('Invalid', `unknown kind ${JSON.stringify(kind)}`);
  }
}

export function checkId(kind: Kind, id: unknown): asserts id is string {
  // Ids become znode names and journal keys: no slashes, no empty string, no control characters.
  if (typeof id !== 'string' || id.length === 0 || id.length > 256 || /[/\u0000-\u001f]/.test(id) || id === '.' || id === '..') {
    throw new StoreError('Invalid', `${kind}: bad id ${JSON.stringify(id)}`, kind);
  }
}

function checkVersion(kind: Kind, id: string, version: unknown, min: number): void {
  if (!Number.isSafeInteger(version) || (version as number) < min) {
    throw new StoreError('Invalid', `${kind} ${id}: bad version ${JSON.stringify(version)}`, kind, id);
  }
}

/** Serialises a value to JSON, refusing what JSON cannot carry faithfully (functions, cycles, non-objects). */
export function encodeValue(kind: Kind, value: unknown): string {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new StoreError('Invalid', `${kind}: value must be an object`, kind);
  }
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new StoreError('Invalid', `${kind}: value is not JSON-serialisable: ${(err as Error).message}`, kind);
  }
  return json;
}

/** The object id an op is about. */
export function opId(op: Op): string {
  return op.op === 'create' || op.op === 'update' ? op.value.id : op.id;
}

/** Validates the shape of every op before anything is attempted; throws StoreError 'Invalid'. */
export function checkOps(ops: unknown): asserts ops is Op[] {
  if (!Array.isArray(ops)) throw new StoreError('Invalid', 'commit takes an array of ops');
  for (const op of ops as Op[]) {
    if (op === null || typeof op !== 'object') throw new StoreError('Invalid', 'an op must be an object');
    checkKind(op.kind);
    switch (op.op) {
      case 'create':
      case 'update':
        if (op.value === null || typeof op.value !== 'object') {
          throw new StoreError('Invalid', `${op.kind}: ${op.op} needs a value`, op.kind);
        }
        checkId(op.kind, op.value.id);
        if (op.op === 'update' && op.version !== undefined) checkVersion(op.kind, op.value.id, op.version, 1);
        break;
      case 'delete':
        checkId(op.kind, op.id);
        if (op.version !== undefined) checkVersion(op.kind, op.id, op.version, 1);
        break;
      case 'check':
        checkId(op.kind, op.id);
        checkVersion(op.kind, op.id, op.version, 0);
        break;
      default:
        throw new StoreError('Invalid', `unknown op ${JSON.stringify((op as { op: unknown }).op)}`);
    }
  }
}

/** The URL with any user:password removed, for logs and `Store.url`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^@/]*@/i, '$1');
}
