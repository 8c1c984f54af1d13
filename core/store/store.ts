// The one typed interface every part of MidoNet Bees uses to reach the topology. Two backends implement it:
// the embedded file store (one host) and ZooKeeper (clusters); `openStore(url)` picks one by URL.
import type { Kind, Models } from '../model/types.js';

/** An object as stored, with the version a later write can be conditioned on. Versions start at 1. */
export interface Versioned<T> {
  value: T;
  version: number;
}

/**
 * One step of a multi-object transaction. All steps of a `commit` apply together or none does.
 * `version` on update/delete/check is the version the caller last saw; omit it to write unconditionally.
 */
export type Op =
  | { op: 'create'; kind: Kind; value: { id: string } }
  | { op: 'update'; kind: Kind; value: { id: string }; version?: number | undefined }
  | { op: 'delete'; kind: Kind; id: string; version?: number | undefined }
  /** Assert that an object exists at this version (or, with version 0, that it does not exist). */
  | { op: 'check'; kind: Kind; id: string; version: number };

/** A committed change, delivered to watchers in commit order. `seq` grows by one or more per change. */
export interface Change {
  seq: number;
  kind: Kind;
  id: string;
  type: 'create' | 'update' | 'delete';
  /** The new value (absent on delete). */
  value?: unknown;
  /** The object's version after the change (the deleted version on delete). */
  version: number;
}

export type StoreErrorCode =
  | 'NotFound' // an update/delete/check names an object that does not exist
  | 'Exists' // a create names an id that exists
  | 'Conflict' // a version check failed
  | 'Gone' // a watch asked to resume from a sequence number no longer retained
  | 'Unavailable' // the backend cannot be reached (after retries)
  | 'Invalid' // the request itself is malformed (bad kind, missing id)
  | 'Closed'; // the store was closed

export class StoreError extends Error {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    readonly kind?: Kind,
    readonly id?: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export type ChangeHandler = (change: Change) => void;
export type EphemeralHandler = (records: Record<string, unknown>) => void;

export interface WatchOptions {
  /** Deliver every change with seq > fromSeq first (throws StoreError 'Gone' if no longer retained). */
  fromSeq?: number;
  /** Only changes of these kinds. */
  kinds?: Kind[];
  /**
   * Called when this client fell behind the change log's retention (a long disconnection) and changes were lost
   * to the stream: the watcher must relist to see the current state. Changes after the gap keep coming.
   */
  onGap?: () => void;
}

/** Whether the store can serve reads and writes now; `reason` says why not. */
export interface StoreHealth {
  up: boolean;
  reason?: string;
}

export interface Store {
  /** The URL this store was opened with (credentials removed). */
  readonly url: string;
  /**
   * True when this client is the store's only writer (the file store: one process owns its directory), so state
   * kept in this process (IPAM's quarantine of released addresses, ipam/quarantine.ts) is seen by every writer.
   */
  readonly exclusive?: boolean;

  get<K extends Kind>(kind: K, id: string): Promise<Versioned<Models[K]> | undefined>;
  list<K extends Kind>(kind: K): Promise<Versioned<Models[K]>[]>;

  /** Apply all ops atomically; returns the new version of each op's object (0 for delete and check). */
  commit(ops: Op[]): Promise<number[]>;

  create<K extends Kind>(kind: K, value: Models[K]): Promise<number>;
  update<K extends Kind>(kind: K, value: Models[K], version?: number): Promise<number>;
  delete(kind: Kind, id: string, version?: number): Promise<void>;

  /** The sequence number of the newest committed change (0 when none). */
  lastSeq(): Promise<number>;

  /**
   * Deliver every change committed after the call (or after `fromSeq`) to `handler`, in commit order, exactly
   * once each, across reconnects. Resolves once the watch is established; the returned function stops it.
   */
  watch(handler: ChangeHandler, options?: WatchOptions): Promise<() => void>;

  /**
   * Liveness records: a key that exists while this store client lives and vanishes when its owner dies
   * (process exit, crash, session expiry). Re-established after a reconnect while the client lives.
   */
  putEphemeral(key: string, value: unknown): Promise<void>;
  removeEphemeral(key: string): Promise<void>;
  /** All live ephemeral records whose key starts with `prefix` ('' for all), by key. */
  listEphemeral(prefix: string): Promise<Record<string, unknown>>;
  /** Called with the full set under `prefix` now and after every change of it. */
  watchEphemeral(prefix: string, handler: EphemeralHandler): Promise<() => void>;

  /** Reachability now: the ZooKeeper connection state, the file store's last write. */
  health(): StoreHealth;
  /** Called with the new health on every change of it; the returned function stops the calls. */
  onHealth(listener: (health: StoreHealth) => void): () => void;

  close(): Promise<void>;
}
