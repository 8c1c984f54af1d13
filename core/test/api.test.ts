// The REST API over real sockets (TCP with a token, unix socket without) on a real file store: bad requests are
// 4xx with a message naming the field, the server keeps serving, and the OpenAPI document covers every route.
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiClient, ApiError } from '../api/client.js';
import { KIND_PATHS } from '../api/paths.js';
import { buildApi, listen } from '../api/server.js';
import { bridgeId } from '../model/ids.js';
import { KINDS } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';
import { serveApi } from './api-fixture.js';

/** The error answer of the API, as these tests read it. */
interface ErrorBody {
  error?: string;
  message?: string;
  field?: string;
}

const TOKEN = 'test-token-' + Math.random().toString(36).slice(2);

async function serve(t: ExecutionContext) {
  const { dir, store, topology, app, base } = await serveApi(t, 'bees-api-', { on: 'tcp', token: TOKEN });
  return { dir, store, topology, app, base };
}

interface Case {
  name: string;
  method: string;
  url: string;
  body?: string;
  headers?: Record<string, string>;
  status: number;
  /** Expected in the message (and `field`, when given). */
  message?: RegExp;
  field?: string;
}

test('bad requests are 4xx with a message naming the field; the server keeps serving', async (t) => {
  const { base, topology } = await serve(t);
  const net = await topology.create('Bridge', { name: 'taken', subnets: [{ cidr: '10.60.0.0/16' }] });
  const json = { 'content-type': 'application/json' };
  const cases: Case[] = [
    { name: 'malformed JSON', method: 'POST', url: '/v1/bridges', body: '{"name": "x",', headers: json, status: 400, message: /JSON/ },
    { name: 'empty JSON body', method: 'POST', url: '/v1/bridges', body: '', headers: json, status: 400 },
    { name: 'JSON not an object', method: 'POST', url: '/v1/bridges', body: '[1,2]', headers: json, status: 400, message: /object/ },
    {
      name: 'wrong type',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","mtu":"big"}',
      headers: json,
      status: 400,
      message: /mtu/,
      field: 'mtu',
    },
    {
      name: 'wrong nested type',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","subnets":[{"cidr":7}]}',
      headers: json,
      status: 400,
      field: 'subnets[0].cidr',
    },
    {
      name: 'unknown field',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","colour":"red"}',
      headers: json,
      status: 400,
      message: /colour/,
      field: 'colour',
    },
    {
      name: 'unknown nested field',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","subnets":[{"cidr":"10.9.0.0/24","gw":"x"}]}',
      headers: json,
      status: 400,
      field: 'subnets[0].gw',
    },
    {
      name: 'missing required',
      method: 'POST',
      url: '/v1/bridges',
      body: '{}',
      headers: json,
      status: 400,
      message: /name/,
      field: 'name',
    },
    {
      name: 'bad CIDR',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","subnets":[{"cidr":"10.0.0.0/99"}]}',
      headers: json,
      status: 400,
      field: 'subnets[0].cidr',
    },
    {
      name: 'overlapping subnet',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"x","subnets":[{"cidr":"10.60.1.0/24"}]}',
      headers: json,
      status: 409,
      message: /overlaps/,
      field: 'subnets[0].cidr',
    },
    {
      name: 'duplicate name',
      method: 'POST',
      url: '/v1/bridges',
      body: '{"name":"taken"}',
      headers: json,
      status: 409,
      message: new RegExp(net.id),
    },
    {
      name: 'missing reference',
      method: 'POST',
      url: '/v1/ports',
      body: '{"bridgeId":"no-such-bridge"}',
      headers: json,
      status: 400,
      field: 'bridgeId',
    },
    {
      name: 'rule in missing chain',
      method: 'POST',
      url: '/v1/rules',
      body: '{"chainId":"nope","action":"drop"}',
      headers: json,
      status: 400,
      field: 'chainId',
    },
    { name: 'unknown object', method: 'GET', url: '/v1/bridges/00000000-0000-0000-0000-000000000000', status: 404 },
    { name: 'bad id', method: 'GET', url: '/v1/bridges/%01%02', status: 400, field: 'id' },
    { name: 'unknown route', method: 'GET', url: '/v1/nothing', status: 404, message: /no route/ },
    { name: 'wrong method', method: 'PUT', url: '/v1/bridges', body: '{}', headers: json, status: 404, message: /PUT/ },
    { name: 'wrong method on status', method: 'DELETE', url: '/v1/status', status: 404 },
    { name: 'unknown query filter', method: 'GET', url: '/v1/bridges?colour=red', status: 400, field: 'colour' },
    { name: 'filter not of this kind', method: 'GET', url: '/v1/hosts?chainId=x', status: 400, field: 'chainId' },
    {
      name: 'wrong content type',
      method: 'POST',
      url: '/v1/bridges',
      body: 'name=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      status: 415,
    },
    {
      name: 'huge body',
      method: 'POST',
      url: '/v1/bridges',
      body: JSON.stringify({ name: 'x', labels: { a: 'y'.repeat(2 * 1024 * 1024) } }),
      headers: json,
      status: 413,
    },
    {
      name: 'attach unknown router',
      method: 'POST',
      url: '/v1/routers/nope/attach',
      body: JSON.stringify({ bridgeId: net.id }),
      headers: json,
      status: 404,
    },
    {
      name: 'patch immutable field',
      method: 'PATCH',
      url: `/v1/bridges/${net.id}`,
      body: '{"tenantId":"x"}',
      headers: json,
      status: 400,
      field: 'tenantId',
    },
    { name: 'delete unknown', method: 'DELETE', url: '/v1/routers/nope', status: 404 },
  ];
  const auth = { authorization: `Bearer ${TOKEN}` };
  for (const c of cases) {
    const res = await fetch(base + c.url, {
      method: c.method,
      headers: { ...auth, ...c.headers },
      ...(c.body !== undefined ? { body: c.body } : {}),
    });
    const text = await res.text();
    t.is(res.status, c.status, `${c.name}: ${text.slice(0, 300)}`);
    let body: ErrorBody = {};
    t.notThrows(() => {
      body = JSON.parse(text) as ErrorBody;
    }, `${c.name}: answer is JSON`);
    t.is(typeof body.message, 'string', `${c.name}: has a message`);
    t.true((body.message ?? '').length > 3, c.name);
    if (c.message) t.regex(body.message ?? '', c.message, c.name);
    if (c.field) t.is(body.field, c.field, `${c.name}: ${body.message}`);
  }
  // Token: missing, wrong, right.
  t.is((await fetch(`${base}/v1/bridges`)).status, 401);
  t.is((await fetch(`${base}/v1/bridges`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  t.is((await fetch(`${base}/openapi.json`)).status, 401);
  // Still serving, and nothing half-written.
  const list = await fetch(`${base}/v1/bridges`, { headers: auth });
  t.is(list.status, 200);
  t.deepEqual(
    ((await list.json()) as { name: string }[]).map((b) => b.name),
    ['taken'],
  );
});

test('CRUD through the client on a unix socket (no token there), socket mode 0600, removed on close', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-api-unix-'));
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  const app = buildApi({ topology: new Topology(store), store, token: TOKEN });
  const sock = path.join(dir, 'run', 'api.sock');
  t.teardown(async () => {
    await app.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  t.is(await listen(app, `unix:${sock}`), `unix:${sock}`);
  t.is((await stat(sock)).mode & 0o777, 0o600);
  const api = new ApiClient(`unix:${sock}`);
  const b = await api.create('Bridge', { name: 'web', subnets: [{ cidr: '10.70.0.0/24' }] });
  t.is(b.id, bridgeId('default', 'web'));
  const r = await api.create('Router', { name: 'edge' });
  const link = await api.attachRouter(r.id, b.id);
  t.deepEqual(link.routerPort.ips, ['10.70.0.1/24']);
  t.is((await api.list('Port', { bridgeId: b.id })).length, 1);
  const patched = await api.update('Bridge', b.id, { mtu: 1400 });
  t.is(patched.mtu, 1400);
  const err = await t.throwsAsync(api.delete('Router', 'missing'), { instanceOf: ApiError });
  t.is(err.code, 'not_found');
  t.is(err.status, 404);
  const dup = await t.throwsAsync(api.create('Bridge', { name: 'web' }), { instanceOf: ApiError });
  t.is(dup.existingId, b.id);
  await api.detachRouter(r.id, b.id);
  await api.delete('Bridge', b.id);
  const st = await api.status();
  t.true(st.reachable);
  t.is(st.counts.Router, 1);
  t.is(st.counts.Bridge, 0);
  t.deepEqual(await api.hostLiveness(), {});
  await store.putEphemeral('hosts/h-1', { name: 'h1' });
  t.deepEqual(await api.hostLiveness(), { 'h-1': { name: 'h1' } });
  // A second server on the same live socket is refused; after close the socket file is gone.
  const other = buildApi({ topology: new Topology(store), store });
  await t.throwsAsync(listen(other, `unix:${sock}`), { message: /in use/ });
  await other.close();
  await app.close();
  await t.throwsAsync(stat(sock));
  const down = await t.throwsAsync(api.status(), { instanceOf: ApiError });
  t.is(down.code, 'unavailable');
});

test('OpenAPI document: every kind and route present, schemas referenced', async (t) => {
  const { base } = await serve(t);
  const res = await fetch(`${base}/openapi.json`, { headers: { authorization: `Bearer ${TOKEN}` } });
  t.is(res.status, 200);
  const doc = (await res.json()) as {
    openapi: string;
    paths: Record<string, Record<string, { operationId: string; responses: object; requestBody?: object }>>;
    components: { schemas: Record<string, unknown> };
  };
  t.regex(doc.openapi, /^3\./);
  for (const kind of KINDS) {
    const p = KIND_PATHS[kind];
    t.deepEqual(Object.keys(doc.paths[`/v1/${p}`] ?? {}).sort(), ['get', 'post'], kind);
    t.deepEqual(Object.keys(doc.paths[`/v1/${p}/{id}`] ?? {}).sort(), ['delete', 'get', 'patch'], kind);
    t.truthy(doc.components.schemas[kind], kind);
    t.truthy(doc.paths[`/v1/${p}`]!.post!.requestBody);
  }
  for (const extra of ['/v1/routers/{id}/attach', '/v1/routers/{id}/detach', '/v1/status', '/v1/liveness/hosts', '/openapi.json']) {
    t.truthy(doc.paths[extra], extra);
  }
  const ids = Object.values(doc.paths).flatMap((m) => Object.values(m).map((o) => o.operationId));
  t.is(new Set(ids).size, ids.length, 'operationIds are unique');
  // Every $ref points at a component that exists.
  const refs = [...JSON.stringify(doc).matchAll(/"#\/components\/schemas\/([A-Za-z]+)"/g)].map((m) => m[1]!);
  t.true(refs.length > KINDS.length);
  for (const r of refs) t.truthy(doc.components.schemas[r], r);
});
