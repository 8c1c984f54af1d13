// Watch delivery for the file store: the recent durable changes, kept in memory so a watcher that names the
// last seq it saw (`watch({ fromSeq })`, e.g. after an API client reconnects) is replayed what it missed, then
// the live stream. How many are kept is bounded (`watchRetention`); older seqs answer 'Gone'.
import { checkKind } from '../validate.js';
import { StoreError, type ChangeHandler, type WatchOptions } from '../store.js';
import { deliver, type StoredChange, type Watcher } from '../watcher.js';

export class ChangeRing {
  /** Recent durable changes; ring[0] is the oldest, of seq `start`. */
  private ring: StoredChange[] = [];
  private start = 1;
  private readonly watchers = new Set<Watcher>();

  constructor(private readonly retention: number) {}

  /** Starts the ring after `seq` (the snapshot's): changes up to it can no longer be replayed. */
  startAfter(seq: number): void {
    this.start = seq + 1;
  }

  remember(c: StoredChange): void {
    this.ring.push(c);
    if (this.ring.length > this.retention * 2) {
      // Trim in chunks so the ring costs O(1) amortised per change.
      const drop = this.ring.length - this.retention;
      this.ring = this.ring.slice(drop);
      this.start += drop;
    }
  }

  /** Gives durable changes to every watcher. */
  deliver(changes: StoredChange[]): void {
    for (const w of this.watchers) {
      for (const c of changes) deliver(w, c, 'file');
    }
  }

  /** Registers a watcher from `options.fromSeq` (default: `durableSeq`, the live stream only). */
  watch(handler: ChangeHandler, options: WatchOptions, durableSeq: number): () => void {
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watch needs a handler function');
    for (const k of options.kinds ?? []) checkKind(k);
    const from = options.fromSeq ?? durableSeq;
    if (!Number.isSafeInteger(from) || from < 0) throw new StoreError('Invalid', `bad fromSeq ${JSON.stringify(options.fromSeq)}`);
    if (from > durableSeq) {
      throw new StoreError('Gone', `fromSeq ${from} is ahead of this store (last seq ${durableSeq}): it was reset or is another store`);
    }
    if (from < this.start - 1) {
      throw new StoreError('Gone', `changes after seq ${from} are no longer retained (oldest kept: ${this.start})`);
    }
    const w: Watcher = { handler, kinds: options.kinds ? new Set(options.kinds) : undefined, cursor: from };
    // The backlog and registration happen in one tick, so no change can slip between them.
    for (let i = from + 1 - this.start; i < this.ring.length; i++) deliver(w, this.ring[i]!, 'file');
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  clear(): void {
    this.watchers.clear();
  }
}
