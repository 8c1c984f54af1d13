// GET /v1/events: the store's change stream as server-sent events, for the web view (/ui) and anyone with curl.
// A new stream starts with a `snapshot` (every object, the live hosts) stamped with the store sequence it is
// consistent with, then one `change` per commit; each event's id is its store sequence, so a client that
// reconnects with Last-Event-ID gets exactly the changes it missed (or a fresh snapshot when the store no longer
// keeps them). Authentication is the API's own: the bearer header, checked by the server's onRequest hook before
// this handler runs. Browsers read the stream with fetch() (which can send that header) rather than EventSource
// (which cannot), so a token never has to travel in a URL, where logs and history would keep it.
import type { FastifyReply } from 'fastify';
import type { ServerApp } from './listen.js';
import type { ServerResponse } from 'node:http';
import { KINDS, type Kind } from '../model/types.js';
import { StoreError, type Change, type Store } from '../store/store.js';
import { HOST_LIVENESS_PREFIX } from './paths.js';

/** IPAM blocks are bookkeeping (every address handed out), large and of no use to a viewer: left out. */
export const EVENT_KINDS: readonly Kind[] = KINDS.filter((k) => k !== 'IpamBlock');

/** Body of the `snapshot` event. */
export interface EventSnapshot {
  seq: number;
  objects: Partial<Record<Kind, unknown[]>>;
  /** Live hosts: host id -> the record its agent holds in the store. */
  hosts: Record<string, unknown>;
}

/** Bytes a stream may have waiting for a slow client before it is cut (a snapshot of a large topology fits). */
const MAX_BUFFERED = 64 * 1024 * 1024;

/** A comment line this often keeps idle streams open through proxies that time out silent connections. */
const KEEPALIVE_MS = 15_000;

/** The sequence a client asks to resume after: Last-Event-ID (what browsers send), a non-negative integer. */
function resumeSeq(header: string | string[] | undefined): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (v === undefined || !/^\d{1,15}$/.test(v.trim())) return undefined;
  return Number(v.trim());
}

function liveHosts(records: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(records).map(([k, v]) => [k.slice(HOST_LIVENESS_PREFIX.length), v]));
}

/** One SSE frame. JSON has no raw newlines, so `data` is always one line. */
function frame(event: string, data: unknown, id?: number): string {
  return `${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

class EventStream {
  private closed = false;
  private stops: (() => void)[] = [];
  /** Changes that arrive while a snapshot is being read wait here, then go out after it in order. */
  private pending: Change[] | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private watching = false;

  constructor(
    private readonly store: Store,
    private readonly out: ServerResponse,
  ) {}

  async start(from: number | undefined): Promise<void> {
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), KEEPALIVE_MS);
    this.own(await this.store.watchEphemeral(HOST_LIVENESS_PREFIX, (records) => this.write(frame('hosts', liveHosts(records)))));
    if (from !== undefined) {
      try {
        await this.watch(from);
        return;
      } catch (err) {
        // Too old (or another store's sequence): the client's view cannot be patched, so it gets a new one.
        if (!(err instanceof StoreError && err.code === 'Gone')) throw err;
      }
    }
    await this.snapshot();
  }

  /** Changes after `from`, delivered in order as they commit. */
  private async watch(from: number): Promise<void> {
    const stop = await this.store.watch((c) => this.change(c), {
      fromSeq: from,
      kinds: [...EVENT_KINDS],
      // Changes were lost to this client's store connection: what the viewer holds may be wrong, start over.
      onGap: () => void this.snapshot().catch((err: unknown) => this.fail(err)),
    });
    this.own(stop);
    this.watching = true;
  }

  private change(c: Change): void {
    if (this.pending) this.pending.push(c);
    else this.write(frame('change', c, c.seq));
  }

  /** Every object, consistent with the sequence it is stamped with, then the changes since. */
  private async snapshot(): Promise<void> {
    this.pending = [];
    const seq = await this.store.lastSeq();
    // Watch from `seq` before listing: a change committed during the listing is sent after the snapshot too. Applying
    // it twice does no harm (changes carry whole objects, deletes are idempotent); missing it would.
    if (!this.watching) await this.watch(seq);
    const lists = await Promise.all(EVENT_KINDS.map(async (k) => [k, (await this.store.list(k)).map((v) => v.value)] as const));
    const hosts = liveHosts(await this.store.listEphemeral(HOST_LIVENESS_PREFIX));
    const body: EventSnapshot = { seq, objects: Object.fromEntries(lists), hosts };
    this.write(frame('snapshot', body, seq));
    const queued = this.pending;
    this.pending = undefined;
    for (const c of queued) this.write(frame('change', c, c.seq));
  }

  /** Keep a watch's stop function; a client that left while the watch was being set up stops it at once. */
  private own(stop: () => void): void {
    if (this.closed) stop();
    else this.stops.push(stop);
  }

  private write(text: string): void {
    if (this.closed || this.out.destroyed) return;
    // A client that stopped reading must not make the server hold every change for it: drop it; on reconnecting it
    // resumes from its last event, or gets a snapshot.
    if (this.out.writableLength > MAX_BUFFERED) {
      this.out.destroy();
      this.close();
      return;
    }
    this.out.write(text);
  }

  fail(err: unknown): void {
    this.write(frame('error', { error: 'internal', message: (err as Error).message }));
    this.out.end();
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    for (const stop of this.stops) stop();
    this.stops = [];
  }
}

/** The route in the OpenAPI document (it is registered outside the route table: it streams, it does not answer). */
export const EVENTS_PATH_ITEM = {
  get: {
    operationId: 'events',
    summary: 'The store change stream as server-sent events: a snapshot (event id = its store sequence), then every change',
    tags: ['Status'],
    parameters: [
      {
        name: 'Last-Event-ID',
        in: 'header',
        required: false,
        description: 'Resume after this store sequence: only the changes after it (a new snapshot if no longer kept)',
        schema: { type: 'string', pattern: '^[0-9]+$' },
      },
    ],
    responses: {
      200: {
        description: 'Events `snapshot`, `change`, `hosts` and `error`, each `data:` one JSON object (see core/ui/README.md)',
        content: { 'text/event-stream': { schema: { type: 'string' } } },
      },
    },
  },
};

export function eventRoutes(app: ServerApp, store: Store): void {
  const open = new Set<EventStream>();
  app.addHook('onClose', async () => {
    for (const s of open) s.close();
  });
  app.get('/v1/events', async (req, reply: FastifyReply) => {
    // The reply is ours from here: fastify must not serialise or end it.
    reply.hijack();
    const out = reply.raw;
    out.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-store',
      'x-content-type-options': 'nosniff',
      // nginx and similar proxies buffer responses unless told not to; a buffered stream is not live.
      'x-accel-buffering': 'no',
      'x-request-id': req.id,
    });
    // How long a browser waits before reconnecting (the fetch-based reader in /ui uses its own backoff).
    out.write('retry: 2000\n\n');
    const stream = new EventStream(store, out);
    open.add(stream);
    out.on('close', () => {
      open.delete(stream);
      stream.close();
    });
    try {
      await stream.start(resumeSeq(req.headers['last-event-id']));
    } catch (err) {
      stream.fail(err);
    }
  });
}
