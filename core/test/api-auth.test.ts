// Entry points of the REST API: TLS with a certificate made here by openssl, bearer tokens read from files or the
// environment (never argv), a read-only token for GETs and /metrics, a hook that fails closed, and listeners beyond
// loopback refused without TLS and a token. Real sockets, a real file store, the real CLI entry (main()).
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_FLAGS, agentOptionsOf } from '../agent/run.js';

/** The agent's own flags as `bees agent` parses them (app/agent-options.ts adds only the adapters' flags). */
const agentOptionsFrom = (args: string[]) =>
  agentOptionsOf(parseArgs({ args, options: AGENT_FLAGS, strict: true, allowPositionals: false }).values);
import { ApiClient, ApiError } from '../api/client.js';
import { buildApi, listen } from '../api/server.js';
import { main } from '../cli/main.js';
import { KINDS } from '../model/types.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { Topology } from '../topology/service.js';

const TOKEN = 'full-' + Math.random().toString(36).slice(2);
const READ = 'read-' + Math.random().toString(36).slice(2);

async function tmp(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-auth-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A self-signed certificate for 127.0.0.1 and localhost; the certificate is its own CA. */
function makeCert(dir: string): { cert: string; key: string } {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=bees-test',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

async function serve(t: ExecutionContext, opts: { tls?: boolean; token?: string; readToken?: string; endpoint?: string }) {
  const dir = await tmp(t);
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  const files = opts.tls ? makeCert(dir) : undefined;
  const tls = files ? { cert: await readFile(files.cert), key: await readFile(files.key) } : undefined;
  const app = buildApi({
    topology: new Topology(store),
    store,
    ...(opts.token ? { token: opts.token } : {}),
    ...(opts.readToken ? { readToken: opts.readToken } : {}),
    ...(tls ? { tls } : {}),
    extraRoutes: (a) => a.get('/metrics', async (_req, reply) => reply.type('text/plain').send('bees_test 1\n')),
  });
  t.teardown(async () => {
    await app.close();
    await store.close();
  });
  const endpoint = await listen(app, opts.endpoint ?? 'tcp://127.0.0.1:0');
  return { dir, store, app, endpoint, files };
}

/** Every object in the store, to show a refused request changed nothing. */
async function snapshot(store: Store): Promise<unknown[]> {
  return Promise.all(KINDS.map((k) => store.list(k)));
}

function capture(env: NodeJS.ProcessEnv = {}) {
  const io = { out: '', err: '', env };
  return {
    io: {
      out: (s: string) => {
        io.out += s;
      },
      err: (s: string) => {
        io.err += s;
      },
      env,
    },
    text: io,
  };
}

test('HTTPS with a certificate: the client trusts it through --ca / the CA option, not otherwise', async (t) => {
  const { endpoint, files } = await serve(t, { tls: true, token: TOKEN });
  t.regex(endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
  const ca = await readFile(files!.cert);
  const api = new ApiClient(endpoint, { token: TOKEN, ca });
  t.true((await api.status()).reachable);
  const b = await api.create('Bridge', { name: 'tls', subnets: [{ cidr: '10.91.0.0/24' }] });
  t.is((await api.get('Bridge', b.id)).name, 'tls');
  // Without the CA the self-signed certificate is not trusted: no silent fallback to plain text or to trust.
  const untrusted = await t.throwsAsync(new ApiClient(endpoint, { token: TOKEN }).status(), { instanceOf: ApiError });
  t.regex(untrusted.message, /self.signed|certificate/i);
  // Plain HTTP to the TLS port gets nothing useful.
  await t.throwsAsync(new ApiClient(endpoint.replace('https:', 'tcp:'), { token: TOKEN, timeoutMs: 3000 }).status());

  // The CLI: token from a file, CA from a file, https endpoint.
  const tokenFile = path.join(path.dirname(files!.cert), 'token');
  await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  const ok = capture();
  t.is(await main(['net', 'ls', '--api', endpoint, '--token-file', tokenFile, '--ca', files!.cert, '--json'], ok.io), 0, ok.text.err);
  t.is((JSON.parse(ok.text.out) as { name: string }[]).at(0)?.name, 'tls');
  // ... and from the environment.
  const viaEnv = capture({ BEES_API: endpoint, BEES_API_TOKEN: TOKEN, BEES_API_CA: files!.cert });
  t.is(await main(['net', 'ls', '--json'], viaEnv.io), 0, viaEnv.text.err);
  const wrong = capture({ BEES_API: endpoint, BEES_API_TOKEN: 'nope', BEES_API_CA: files!.cert });
  t.is(await main(['net', 'ls'], wrong.io), 1);
  t.regex(wrong.text.err, /bearer token/);
});

test('no token, a wrong token, a malformed header: 401 and nothing changes', async (t) => {
  const { endpoint, store } = await serve(t, { token: TOKEN, readToken: READ });
  const base = endpoint.replace('tcp://', 'http://');
  const body = JSON.stringify({ name: 'x' });
  const headers = (auth?: string) => ({ 'content-type': 'application/json', ...(auth !== undefined ? { authorization: auth } : {}) });
  for (const auth of [
    undefined,
    '',
    'Bearer',
    `Bearer ${TOKEN}x`,
    `Bearer ${TOKEN.slice(1)}`,
    `Basic ${TOKEN}`,
    `Bearer ${TOKEN} ${TOKEN}`,
    TOKEN,
  ]) {
    for (const method of ['GET', 'POST']) {
      const res = await fetch(`${base}/v1/bridges`, { method, headers: headers(auth), ...(method === 'POST' ? { body } : {}) });
      t.is(res.status, 401, `${method} with ${JSON.stringify(auth)}`);
      t.is(res.headers.get('www-authenticate'), 'Bearer');
      t.is(((await res.json()) as { error: string }).error, 'unauthorized');
    }
  }
  const metrics = await fetch(`${base}/metrics`);
  t.is(metrics.status, 401);
  t.deepEqual(await store.list('Bridge'), []);
  const good = await fetch(`${base}/v1/bridges`, { method: 'POST', headers: headers(`bearer ${TOKEN}`), body });
  t.is(good.status, 201);
});

test('the read-only token: GETs and /metrics answer, writes are 403 and change nothing', async (t) => {
  const { endpoint, store } = await serve(t, { token: TOKEN, readToken: READ });
  const full = new ApiClient(endpoint, { token: TOKEN });
  const b = await full.create('Bridge', { name: 'ro', subnets: [{ cidr: '10.92.0.0/24' }] });
  const before = await snapshot(store);
  const ro = new ApiClient(endpoint, { token: READ });
  t.is((await ro.list('Bridge')).length, 1);
  t.is((await ro.get('Bridge', b.id)).name, 'ro');
  t.true((await ro.status()).reachable);
  const m = await fetch(`${endpoint.replace('tcp://', 'http://')}/metrics`, { headers: { authorization: `Bearer ${READ}` } });
  t.is(m.status, 200);
  t.regex(await m.text(), /bees_test 1/);
  for (const attempt of [
    () => ro.create('Bridge', { name: 'ro2' }),
    () => ro.update('Bridge', b.id, { mtu: 1400 }),
    () => ro.delete('Bridge', b.id),
    () => ro.request('POST', `/v1/routers/x/attach`, { bridgeId: b.id }),
  ]) {
    const e = await t.throwsAsync(attempt(), { instanceOf: ApiError });
    t.is(e.status, 403);
    t.regex(e.message, /read-only token/);
  }
  t.deepEqual(await snapshot(store), before);
});

test('the hook fails closed: empty tokens are refused; an app not listened on a unix socket demands the token', async (t) => {
  const dir = await tmp(t);
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  t.teardown(() => store.close());
  const topology = new Topology(store);
  for (const bad of [{ token: '' }, { token: '  ' }, { readToken: '' }, { token: 'a b' }, { token: 'same', readToken: 'same' }]) {
    t.throws(() => buildApi({ topology, store, ...bad }), undefined, JSON.stringify(bad));
  }
  // Not listened anywhere (in-process injection): not the unix socket, so the token is required.
  const app = buildApi({ topology, store, token: TOKEN });
  t.teardown(() => app.close());
  t.is((await app.inject({ method: 'GET', url: '/v1/bridges' })).statusCode, 401);
  t.is((await app.inject({ method: 'GET', url: '/v1/bridges', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200);
  // An empty token file or an empty environment variable is no token, never "any token".
  const empty = path.join(dir, 'empty');
  await writeFile(empty, '\n');
  const c = capture();
  t.is(await main(['api', '--store', `file:${path.join(dir, 'store2')}`, '--listen', 'tcp://127.0.0.1:0', '--token-file', empty], c.io), 2);
  t.regex(c.text.err, /is empty/);
});

test('beyond loopback: refused without TLS and a token, served with both', async (t) => {
  const dir = await tmp(t);
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  t.teardown(() => store.close());
  const topology = new Topology(store);
  const { cert, key } = makeCert(dir);
  const tls = { cert: await readFile(cert), key: await readFile(key) };
  const cases = [
    { name: 'neither', opts: {}, missing: /TLS .* and a token/ },
    { name: 'token only', opts: { token: TOKEN }, missing: /missing TLS/ },
    { name: 'TLS only', opts: { tls }, missing: /missing a token/ },
  ];
  for (const endpoint of ['tcp://0.0.0.0:0', 'tcp://[::]:0']) {
    for (const c of cases) {
      const app = buildApi({ topology, store, ...c.opts });
      await t.throwsAsync(listen(app, endpoint), { message: c.missing }, `${c.name} on ${endpoint}`);
      t.false(app.server.listening);
      await app.close();
    }
  }
  const both = buildApi({ topology, store, token: TOKEN, tls });
  t.teardown(() => both.close());
  const where = await listen(both, 'tcp://0.0.0.0:0');
  t.regex(where, /^https:\/\/0\.0\.0\.0:\d+$/);
  const port = where.split(':').pop();
  t.true((await new ApiClient(`https://127.0.0.1:${port}`, { token: TOKEN, ca: tls.cert }).status()).reachable);
  // Loopback alone may stay plain (a developer's machine); https:// without a certificate is an error.
  const plain = buildApi({ topology, store });
  t.teardown(() => plain.close());
  t.regex(await listen(plain, 'tcp://127.0.0.1:0'), /^tcp:\/\//);
  const noCert = buildApi({ topology, store, token: TOKEN });
  t.teardown(() => noCert.close());
  await t.throwsAsync(listen(noCert, 'https://127.0.0.1:0'), { message: /certificate/ });

  // The CLI says the same, with exit status 1 and the reason.
  const c = capture({ BEES_API_TOKEN: TOKEN });
  t.is(await main(['api', '--store', `file:${path.join(dir, 'store2')}`, '--listen', 'tcp://0.0.0.0:0'], c.io), 1);
  t.regex(c.text.err, /beyond loopback needs TLS and a token; missing TLS/);
});

test('a token on argv is refused, pointing at --token-file and the environment', async (t) => {
  for (const argv of [
    ['net', 'ls', '--token', 'x'],
    ['api', '--store', 'file:/nonexistent', '--listen', 'tcp://127.0.0.1:0', '--token', 'x'],
  ]) {
    const c = capture();
    t.is(await main(argv, c.io), 2, argv.join(' '));
    t.regex(c.text.err, /--token is not accepted.*--token-file FILE or \$BEES_API_TOKEN/);
  }
  t.throws(() => agentOptionsFrom(['--store', 'file:/tmp/x', '--token', 'x']), { message: /--token-file/ });
  const dir = await tmp(t);
  const file = path.join(dir, 'tok');
  await writeFile(file, `${TOKEN}\n`);
  const rfile = path.join(dir, 'rtok');
  await writeFile(rfile, READ);
  const opts = agentOptionsFrom(['--store', 'file:/tmp/x', '--token-file', file, '--read-token-file', rfile]);
  t.is(opts.token, TOKEN);
  t.is(opts.readToken, READ);
  t.throws(() => agentOptionsFrom(['--store', 'file:/tmp/x', '--tls-cert', file]), { message: /go together/ });
});
