// Watch delivery for the file store: the recent durable changes, kept in memory so a watcher that names the
// last seq it saw (`watch({ fromSeq })`, e.g. after an API client reconnects) is replayed what it missed, then
// the live stream. How many are kept is bounded by count (`watchRetention`) and by size (`watchRetentionBytes`);
// older seqs answer 'Gone', and every watcher with a fromSeq (the agent's cache, the API's event stream) then relists.
// The size bound is what matters: an IPAM block is rewritten whole on every allocation, so a block of 64 addresses
// left 64 versions of up to 7 KB here, ~4 KB per attached port (issue 12: most of the 6.5 KiB of V8 heap a local
// port cost the agent on this store), and attach/detach churn grew it up to the count bound (200,000 changes).
import { checkKind } from '../validate.js';
import { StoreError, type ChangeHandler, type WatchOptions } from '../store.js';
import { deliver, type StoredChange, type Watcher } from '../watcher.js';

/** A change's weight in the ring: its JSON text (one byte a character) and about what the entry itself takes. */
function sizeOf(c: StoredChange): number {
  return (c.json?.length ?? 0) + 100;
}

export class ChangeRing {
  /** Recent durable changes; ring[0] is the oldest, of seq `start`. */
  private ring: StoredChange[] = [];
  private start = 1;
  /** What the ring holds, as counted by sizeOf. */
  private bytes = 0;
  private readonly watchers = new Set<Watcher>();

  constructor(
    private readonly retention: number,
    private readonly retentionBytes = Infinity,
  ) {}

  /** Starts the ring after `seq` (the snapshot's): changes up to it can no longer be replayed. */
  startAfter(seq: number): void {
    this.start = seq + 1;
  }

  remember(c: StoredChange): void {
    this.ring.push(c);
    this.bytes += sizeOf(c);
    // Trim in chunks (to the count, or to half the size) so the ring costs O(1) amortised per change; the newest
    // change always stays.
    let drop = 0;
    if (this.ring.length > this.retention * 2) drop = this.ring.length - this.retention;
    if (this.bytes > this.retentionBytes) {
      let left = this.bytes;
      for (let i = 0; i < drop; i++) left -= sizeOf(this.ring[i]!);
      while (left > this.retentionBytes / 2 && drop < this.ring.length - 1) left -= sizeOf(this.ring[drop++]!);
    }
    if (drop === 0) return;
    for (let i = 0; i < drop; i++) this.bytes -= sizeOf(this.ring[i]!);
    this.ring = this.ring.slice(drop);
    this.start += drop;
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
