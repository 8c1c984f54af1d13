// The API server double's state: objects by key, one global resourceVersion and the window of past events that
// watches resume from. Every write goes through record(), which stamps the RV, keeps the event and hands it to
// the watches; trimming the window (or compact()) is what makes old RVs answer 410 Expired.
import type { Kind } from './kinds.js';
import { clone, keyOf, notFound, type KObj } from './apiserver-errors.js';

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface HistoryEvent {
  rv: number;
  kind: Kind;
  type: EventType;
  object: KObj; // state after the event (the last state, for DELETED)
  previous?: KObj | undefined; // state before, for selector transitions
}

export class ObjectStore {
  readonly objects = new Map<string, KObj>();
  readonly history: HistoryEvent[] = [];
  rv = 1;
  /** Events with rv <= compactedRv are no longer held: watching from before it is 410 Expired. */
  compactedRv = 0;

  constructor(
    private historyLimit: number,
    /** Called with every event, after it is in the history: the watches' feed. */
    private readonly publish: (ev: HistoryEvent) => void,
  ) {}

  get(k: Kind, ns: string | undefined, name: string): KObj {
    const o = this.objects.get(keyOf(k, ns, name));
    if (!o) throw notFound(k, name);
    return clone(o);
  }

  /** Forget all history: every watch from an RV before now answers 410 Expired (forces informers to relist). */
  compact(): void {
    this.history.length = 0;
    this.compactedRv = this.rv;
  }

  setHistoryLimit(n: number): void {
    this.historyLimit = n;
    this.trimHistory();
  }

  commit(k: Kind, key: string, type: EventType, obj: KObj, previous?: KObj): KObj {
    this.objects.set(key, obj);
    return this.record(k, type, obj, previous);
  }

  record(k: Kind, type: EventType, obj: KObj, previous?: KObj): KObj {
    const rv = ++this.rv;
    const object = clone(obj);
    object.metadata.resourceVersion = String(rv);
    if (type !== 'DELETED') this.objects.get(keyOf(k, obj.metadata.namespace, obj.metadata.name))!.metadata.resourceVersion = String(rv);
    const ev: HistoryEvent = { rv, kind: k, type, object, previous: previous ? clone(previous) : undefined };
    this.history.push(ev);
    this.trimHistory();
    this.publish(ev);
    return clone(object);
  }

  private trimHistory(): void {
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
  }
}
