// WATCH on the API server double, with the contract informers depend on: newline-delimited {"type","object"}
// events; RV unset or 0 → synthetic ADDED for the current state, then the stream; RV=n → every held event after
// n, or ERROR 410 Expired if n fell out of the window; selector transitions as the watch cache makes them
// (entering → ADDED, leaving → DELETED with the previous content); bookmarks on request; timeoutSeconds.
import type { ServerResponse } from 'node:http';
import type { FastifyReply } from 'fastify';
import { apiVersionOf, type Kind } from './kinds.js';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector, type FieldRequirement, type Requirement } from './selectors.js';
import { clone, StatusError, type KObj } from './apiserver-errors.js';
import { select } from './apiserver-list.js';
import type { HistoryEvent, ObjectStore } from './apiserver-store.js';

interface Watcher {
  kind: Kind;
  namespace?: string | undefined;
  labels: Requirement[];
  fields: FieldRequirement[];
  res: ServerResponse;
  /** Fault injection: a stalled watch stays open but receives nothing, like a half-dead TCP connection. */
  stalled: boolean;
  close(): void;
}

export class Watches {
  private readonly watchers = new Set<Watcher>();

  constructor(
    private readonly store: ObjectStore,
    private readonly bookmarkIntervalMs: number,
    private readonly defaultWatchTimeout: number,
  ) {}

  /** Send one event to every open watch it concerns. */
  publish(ev: HistoryEvent): void {
    for (const w of this.watchers) this.deliver(w, ev);
  }

  /** Stop sending to every open watch without closing it (a half-dead connection); closeAll() ends them. */
  stallAll(): void {
    for (const w of this.watchers) w.stalled = true;
  }

  /** End every open watch stream cleanly, as kube-apiserver does at its request timeout. */
  closeAll(): void {
    for (const w of this.watchers) w.close();
  }

  /** Take over the reply and stream events to it until the timeout, the client leaving or closeAll(). */
  open(k: Kind, ns: string | undefined, q: URLSearchParams, reply: FastifyReply): void {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const rvParam = q.get('resourceVersion') ?? '';
    let from: number;
    if (rvParam === '' || rvParam === '0') {
      // Synthetic ADDED for every current match, then stream.
      for (const o of select(this.store, k, ns, labels, fields)) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
      from = this.store.rv;
    } else {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < this.store.compactedRv) {
        res.end(
          JSON.stringify({
            type: 'ERROR',
            object: new StatusError(410, 'Expired', `too old resource version: ${rvParam} (${this.store.compactedRv})`).toStatus(),
          }) + '\n',
        );
        return;
      }
    }
    const timeout = Number(q.get('timeoutSeconds') ?? this.defaultWatchTimeout);
    const timer = setTimeout(() => w.close(), timeout * 1000);
    let bookmarks: NodeJS.Timeout | undefined;
    const w: Watcher = {
      kind: k,
      namespace: ns,
      labels,
      fields,
      res,
      stalled: false,
      close: () => {
        if (!this.watchers.delete(w)) return;
        clearTimeout(timer);
        clearInterval(bookmarks);
        res.end();
      },
    };
    for (const ev of this.store.history) if (ev.rv > from) this.deliver(w, ev);
    this.watchers.add(w);
    res.on('close', () => w.close());
    if (q.get('allowWatchBookmarks') === 'true') {
      bookmarks = setInterval(() => {
        res.write(
          JSON.stringify({
            type: 'BOOKMARK',
            object: { kind: k.kind, apiVersion: apiVersionOf(k), metadata: { resourceVersion: String(this.store.rv) } },
          }) + '\n',
        );
      }, this.bookmarkIntervalMs);
    }
  }

  /** What a watcher sees of one event, with the cacher's selector transitions. */
  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (ev.kind !== w.kind || w.stalled) return;
    if (w.namespace !== undefined && ev.object.metadata.namespace !== w.namespace) return;
    const matches = (o: KObj | undefined): boolean =>
      o !== undefined && matchLabels(w.labels, o.metadata.labels) && matchFields(w.fields, o);
    const now = matches(ev.object);
    const before = ev.type === 'ADDED' ? false : ev.previous === undefined ? now : matches(ev.previous);
    let type: string;
    let object: KObj;
    if (ev.type === 'DELETED') {
      if (!now && !before) return;
      type = 'DELETED';
      object = ev.object;
    } else if (now && before) {
      type = ev.type;
      object = ev.object;
    } else if (now) {
      type = 'ADDED';
      object = ev.object;
    } else if (before) {
      // Stopped matching: DELETED with the previous content and this event's RV.
      type = 'DELETED';
      object = clone(ev.previous!);
      object.metadata.resourceVersion = String(ev.rv);
    } else return;
    w.res.write(JSON.stringify({ type, object }) + '\n');
  }
}
