// Whether the file store can write. Reads always answer from memory, so the store is "down" only in the sense
// that commits fail: while the disk refuses writes (ENOSPC, EIO) `degraded` says why and the next commit tries
// again; after a failed write could not be cut off the journal, writes stay refused until the store is reopened.
import type { StoreHealth } from '../store.js';

export class WriteHealth {
  /** Set when a failed write could not be rolled back on disk: no more writes until the store is reopened. */
  failure: Error | undefined;
  /** Why writes are failing (the disk refused the last one), or undefined while the store is healthy. */
  reason: string | undefined;
  /** True while a failed batch is being truncated away: commits then are refused, not queued. */
  recovering = false;
  private readonly listeners = new Set<(health: StoreHealth) => void>();

  constructor(private readonly dir: string) {}

  /** Why writes fail right now, or undefined when the store is healthy. */
  get degraded(): string | undefined {
    return this.failure ? `store ${this.dir} is read-only until reopened: ${this.failure.message}` : this.reason;
  }

  get(): StoreHealth {
    const why = this.degraded;
    return why === undefined ? { up: true } : { up: false, reason: why };
  }

  /** A write reached the disk: clears a degraded state, telling the listeners. */
  recovered(): void {
    if (this.reason === undefined) return;
    this.reason = undefined;
    this.changed();
  }

  changed(): void {
    const h = this.get();
    for (const l of [...this.listeners]) l(h);
  }

  listen(listener: (health: StoreHealth) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
