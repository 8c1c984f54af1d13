// The object types of the API server double and its errors, answered as kube-apiserver does: a `Status` body
// with the reason and message clients match on (kubectl prints the message; client-node reads code and reason).
import { kinds, type Kind } from './kinds.js';

export type Obj = Record<string, unknown>;
export interface Meta {
  name: string;
  namespace?: string | undefined;
  resourceVersion?: string | undefined;
  uid?: string;
  labels?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  generateName?: string;
  generation?: number;
  [k: string]: unknown;
}
export type KObj = Obj & { metadata: Meta };

export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
  toStatus(): Obj {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

export const clone = <T>(x: T): T => structuredClone(x);
export const keyOf = (k: Kind, ns: string | undefined, name: string): string => `${k.group}/${k.plural}/${ns ?? ''}/${name}`;
export const namespaceKind = kinds.find((k) => k.kind === 'Namespace')!;

export function resourceName(k: Kind): string {
  return k.group === '' ? k.plural : `${k.plural}.${k.group}`;
}

export function notFound(k: Kind, name: string): StatusError {
  return new StatusError(404, 'NotFound', `${resourceName(k)} "${name}" not found`, { name, group: k.group, kind: k.plural });
}

export function notFoundPath(): StatusError {
  return new StatusError(404, 'NotFound', 'the server could not find the requested resource');
}

export function methodNotAllowed(): StatusError {
  return new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
}

export function conflict(k: Kind, name: string): StatusError {
  return new StatusError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${resourceName(k)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, group: k.group, kind: k.plural },
  );
}

export function invalid(k: Kind, name: string, causes: { reason: string; message: string; field: string }[]): StatusError {
  return new StatusError(422, 'Invalid', `${k.kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    name,
    group: k.group,
    kind: k.kind,
    causes,
  });
}
