// Watch delivery shared by the backends: each watcher has a cursor, so it sees every change once, in order,
// whether the change reaches it from a replay or from the live stream.
import type { Change, ChangeHandler } from './store.js';
import type { Kind } from '../model/types.js';

/** A change as a backend keeps it: the value stays JSON text until a watcher needs it. */
export interface StoredChange {
  seq: number;
  kind: Kind;
  id: string;
  type: Change['type'];
  version: number;
  json?: string | undefined;
}

export interface Watcher {
  handler: ChangeHandler;
  kinds?: ReadonlySet<Kind> | undefined;
  /** The last seq this watcher has been given; it never sees one twice. */
  cursor: number;
  /** Told when changes were lost to this watcher (the client fell behind the log's retention). */
  onGap?: (() => void) | undefined;
}

/** Give `c` to `w` unless it has seen it; a throwing handler is reported, never breaks the stream. */
export function deliver(w: Watcher, c: StoredChange, backend: string): void {
  if (c.seq <= w.cursor) return;
  w.cursor = c.seq;
  if (w.kinds && !w.kinds.has(c.kind)) return;
  const change: Change = { seq: c.seq, kind: c.kind, id: c.id, type: c.type, version: c.version };
  if (c.json !== undefined) change.value = JSON.parse(c.json);
  try {
    w.handler(change);
  } catch (err) {
    process.emitWarning(`bees ${backend} store: a watch handler threw: ${(err as Error).stack ?? String(err)}`);
  }
}
