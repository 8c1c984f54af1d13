// GET /v1/events over a real TCP socket on a real file store: refused without the token, a snapshot consistent with
// its sequence then every change live, resumed with Last-Event-ID (only what was missed), a fresh snapshot when the
// asked sequence is not the store's; and the web view's files served without a token, nothing else.
import test, { type ExecutionContext } from 'ava';
import http from 'node:http';
import type { EventSnapshot } from '../api/events.js';
import type { Change } from '../store/store.js';
import { serveApi } from './api-fixture.js';

const TOKEN = 'events-token-' + Math.random().toString(36).slice(2);
const READ_TOKEN = 'events-read-' + Math.random().toString(36).slice(2);

async function serve(t: ExecutionContext) {
  const { store, topology, base } = await serveApi(t, 'bees-events-', { on: 'tcp', token: TOKEN, readToken: READ_TOKEN });
  return { store, topology, base };
}

interface Event {
  event: string;
  id?: string;
  data: unknown;
}

/** An open event stream: events as they arrive, and a way to wait for the next one matching. */
async function open(t: ExecutionContext, base: string, headers: Record<string, string>) {
  const abort = new AbortController();
  const res = await fetch(`${base}/v1/events`, { headers, signal: abort.signal });
  t.teardown(() => abort.abort());
  const events: Event[] = [];
  const waiters: (() => void)[] = [];
  if (res.ok) {
    void (async () => {
      let buf = '';
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body!) {
          buf += decoder.decode(chunk, { stream: true });
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const e: Partial<Event> & { data?: unknown } = {};
            for (const line of block.split('\n')) {
              const m = /^(\w+): ?(.*)$/.exec(line);
              if (!m) continue;
              if (m[1] === 'event') e.event = m[2]!;
              if (m[1] === 'id') e.id = m[2]!;
              if (m[1] === 'data') e.data = JSON.parse(m[2]!);
            }
            if (e.event) events.push(e as Event);
            for (const w of waiters.splice(0)) w();
          }
        }
      } catch {
        // aborted by the teardown
      }
    })();
  }
  const next = async (pred: (e: Event) => boolean, what: string, ms = 5000): Promise<Event> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = events.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no ${what} event within ${ms} ms; got ${JSON.stringify(events.map((e) => e.event))}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };
  return { res, events, next, close: () => abort.abort() };
}

function rawStatus(base: string, method: string, url: string): Promise<number> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, method, path: url }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

const auth = (tok: string) => ({ authorization: `Bearer ${tok}` });

test('the event stream is refused without the token, with a wrong one, and to a POST', async (t) => {
  const { base } = await serve(t);
  const none = await fetch(`${base}/v1/events`);
  t.is(none.status, 401);
  t.is(none.headers.get('www-authenticate'), 'Bearer');
  t.regex(((await none.json()) as { message: string }).message, /token/);
  t.is((await fetch(`${base}/v1/events`, { headers: auth('wrong') })).status, 401);
  // A token in the query string is no way in: tokens travel in the header only.
  t.is((await fetch(`${base}/v1/events?token=${TOKEN}`)).status, 401);
  const s = await open(t, base, auth(READ_TOKEN));
  t.is(s.res.status, 200, 'the read-only token may watch');
  const doc = (await (await fetch(`${base}/openapi.json`, { headers: auth(TOKEN) })).json()) as { paths: Record<string, unknown> };
  t.truthy(doc.paths['/v1/events'], 'documented in the OpenAPI document');
  t.regex(s.res.headers.get('content-type') ?? '', /^text\/event-stream/);
});

test('snapshot stamped with the store sequence, then each change live with its sequence as event id', async (t) => {
  const { base, topology, store } = await serve(t);
  const tenant = await topology.create('Tenant', { name: 'acme' });
  const net = await topology.create('Bridge', { tenantId: tenant.id, name: 'front', subnets: [{ cidr: '10.70.0.0/24' }] });
  await store.putEphemeral('hosts/h1', { name: 'one' });
  const s = await open(t, base, auth(TOKEN));
  const snap = await s.next((e) => e.event === 'snapshot', 'snapshot');
  const body = snap.data as EventSnapshot;
  t.is(body.seq, await store.lastSeq());
  t.is(snap.id, String(body.seq));
  t.deepEqual(
    (body.objects.Bridge as { id: string }[]).map((b) => b.id),
    [net.id],
  );
  t.false('IpamBlock' in body.objects, 'IPAM bookkeeping is not streamed');
  t.deepEqual(body.hosts, { h1: { name: 'one' } });

  const port = await topology.create('Port', { bridgeId: net.id, type: 'bridge' });
  const created = await s.next((e) => e.event === 'change' && (e.data as Change).id === port.id, 'port create');
  const c = created.data as Change;
  t.is(c.type, 'create');
  t.is(c.kind, 'Port');
  t.is(created.id, String(c.seq));
  t.true(c.seq > body.seq);
  t.is((c.value as { bridgeId: string }).bridgeId, net.id);

  await store.putEphemeral('hosts/h2', { name: 'two' });
  const hosts = await s.next((e) => e.event === 'hosts' && Object.keys(e.data as object).length === 2, 'hosts');
  t.deepEqual(Object.keys(hosts.data as object).sort(), ['h1', 'h2']);
  await store.removeEphemeral('hosts/h1');
  await s.next((e) => e.event === 'hosts' && Object.keys(e.data as object).join() === 'h2', 'host h1 gone');
});

test('Last-Event-ID resumes with exactly the missed changes; a sequence the store never had gets a snapshot', async (t) => {
  const { base, topology, store } = await serve(t);
  const net = await topology.create('Bridge', { name: 'back', subnets: [{ cidr: '10.71.0.0/24' }] });
  const first = await open(t, base, auth(TOKEN));
  const snap = await first.next((e) => e.event === 'snapshot', 'snapshot');
  first.close();
  // Missed while disconnected: a create, an update and a delete.
  const p1 = await topology.create('Port', { bridgeId: net.id, type: 'bridge' });
  await topology.update('Port', p1.id, { adminStateUp: false });
  const p2 = await topology.create('Port', { bridgeId: net.id, type: 'bridge' });
  await topology.delete('Port', p1.id);
  const last = await store.lastSeq();

  const resumed = await open(t, base, { ...auth(TOKEN), 'last-event-id': snap.id! });
  await resumed.next((e) => e.event === 'change' && e.id === String(last), 'the last missed change');
  const changes = resumed.events.filter((e) => e.event === 'change').map((e) => e.data as Change);
  t.false(
    resumed.events.some((e) => e.event === 'snapshot'),
    'no snapshot on a resume',
  );
  t.deepEqual(
    changes.map((c) => `${c.type} ${c.id}`),
    [`create ${p1.id}`, `update ${p1.id}`, `create ${p2.id}`, `delete ${p1.id}`],
  );
  t.true(changes.every((c) => c.seq > Number(snap.id)));

  // Ahead of the store (another store, or one reset): the client's picture cannot be patched; it gets a new one.
  const ahead = await open(t, base, { ...auth(TOKEN), 'last-event-id': String(last + 1000) });
  const fresh = await ahead.next((e) => e.event === 'snapshot', 'snapshot after an unknown sequence');
  t.is((fresh.data as EventSnapshot).seq, last);
  t.deepEqual(
    ((fresh.data as EventSnapshot).objects.Port as { id: string }[]).map((p) => p.id),
    [p2.id],
  );
});

test('the web view: its files need no token and forbid framing and foreign scripts; its data does', async (t) => {
  const { base } = await serve(t);
  for (const [url, type] of [
    ['/ui', /text\/html/],
    ['/ui/', /text\/html/],
    ['/ui/app.js', /javascript/],
    ['/ui/style.css', /text\/css/],
    ['/ui/cytoscape.min.js', /javascript/],
  ] as const) {
    const res = await fetch(base + url);
    t.is(res.status, 200, url);
    t.regex(res.headers.get('content-type') ?? '', type, url);
    t.regex(res.headers.get('content-security-policy') ?? '', /script-src 'self'.*frame-ancestors 'none'/, url);
    t.true((await res.text()).length > 100, url);
  }
  t.regex(await (await fetch(`${base}/ui/`)).text(), /<script src="\/ui\/app.js"/);
  // Only the listed files: anything else under /ui, or reached through it, still needs the token.
  // Sent as written (fetch would resolve the dots before sending).
  for (const url of ['/ui/../v1/ports', '/ui/app.js/../../v1/ports', '/ui/%2e%2e/v1/ports', '/ui/nope.js', '/UI/', '/v1/ports?x=/ui']) {
    t.is(await rawStatus(base, 'GET', url), 401, url);
  }
  t.is(await rawStatus(base, 'POST', '/ui/'), 401, 'only GET and HEAD are exempt');
  t.is(await rawStatus(base, 'HEAD', '/ui/app.js'), 200);
});
