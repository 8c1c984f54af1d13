// The one table of error kinds. Every failure core reports to a caller is one of these kinds; each protocol says it
// in its own words from the kind alone: HTTP statuses here (REST API, workload API), CNI codes in
// cni/plugin/commands.ts, libnetwork's Err in swarm/driver/server.ts. Nobody parses messages.
import { StoreError, type StoreErrorCode } from './store/store.js';

export const ERROR_KINDS = {
  /** The caller's request is wrong (a bad field, an unknown option). */
  invalid: { status: 400 },
  not_found: { status: 404 },
  /** It exists already, or a static address / MAC is taken. */
  conflict: { status: 409 },
  /** Nothing left to allocate (addresses, blocks). A conflict with the pool, so 409 as well. */
  exhausted: { status: 409 },
  /** The store (or another dependency) cannot be reached now: retrying later may work. */
  unavailable: { status: 503 },
  /** Our fault. */
  internal: { status: 500 },
} as const satisfies Record<string, { status: number }>;

export type ErrorKind = keyof typeof ERROR_KINDS;

/** The kinds a well-formed request can be refused with (everything but our own failure). */
export type RefusalKind = Exclude<ErrorKind, 'internal'>;

export function isErrorKind(x: unknown): x is ErrorKind {
  return typeof x === 'string' && Object.hasOwn(ERROR_KINDS, x);
}

/** HTTP status for a kind: a client's mistake is never a 500. */
export function httpStatusOf(kind: ErrorKind): number {
  return ERROR_KINDS[kind].status;
}

const STORE_KINDS: Record<StoreErrorCode, ErrorKind> = {
  NotFound: 'not_found',
  Exists: 'conflict',
  Conflict: 'conflict',
  Gone: 'conflict',
  Invalid: 'conflict',
  Unavailable: 'unavailable',
  Closed: 'unavailable',
};

/** What a failure is, for an answer: its kind, the HTTP status to send, the message and the field at fault. */
export interface Classified {
  kind: ErrorKind;
  status: number;
  message: string;
  field?: string;
}

/**
 * Classifies anything thrown below an API: errors carrying a kind (TopologyError and its subclasses), StoreErrors,
 * and the web framework's own 4xx (a schema violation, a body too large: the status is kept, the kind is
 * 'invalid'). Everything else is 'internal'.
 */
export function classify(err: unknown): Classified {
  const e = err as { code?: unknown; field?: unknown; statusCode?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const field = typeof e?.field === 'string' && e.field ? { field: e.field } : {};
  if (err instanceof StoreError) {
    const kind = STORE_KINDS[err.code];
    return { kind, status: httpStatusOf(kind), message };
  }
  if (err instanceof Error && isErrorKind(e?.code) && e.code !== 'internal') {
    return { kind: e.code, status: httpStatusOf(e.code), message, ...field };
  }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return { kind: e.statusCode === 404 ? 'not_found' : 'invalid', status: e.statusCode, message, ...field };
  }
  return { kind: 'internal', status: 500, message };
}
