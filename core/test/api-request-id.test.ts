// Every REST answer names its request: X-Request-Id is the caller's id when it is a plain token (one id can follow an
// operation from a CLI or an adapter through the API), else a fresh one; refusals and the event stream carry it too.
import test from 'ava';
import { serveApi } from './api-fixture.js';

const TOKEN = 'rid-token-' + Math.random().toString(36).slice(2);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

test('X-Request-Id: the caller-given id echoed when plain, a fresh one otherwise, on answers and refusals alike', async (t) => {
  const { base } = await serveApi(t, 'bees-rid-', { on: 'tcp', token: TOKEN });
  const auth = { authorization: `Bearer ${TOKEN}` };
  const id = async (url: string, headers: Record<string, string>) => {
    const res = await fetch(base + url, { headers });
    void res.body?.cancel();
    return res.headers.get('x-request-id') ?? '';
  };
  const a = await id('/v1/status', auth);
  const b = await id('/v1/status', auth);
  t.regex(a, UUID);
  t.not(a, b, 'a new id per request');
  t.is(await id('/v1/status', { ...auth, 'x-request-id': 'cni-add-42:eth0' }), 'cni-add-42:eth0');
  // Not a plain token (spaces, quotes, too long): it would go into logs as is, so it is replaced.
  for (const bad of ['has space', '"quoted"', 'x'.repeat(129)])
    t.regex(await id('/v1/status', { ...auth, 'x-request-id': bad }), UUID, bad);
  t.regex(await id('/v1/status', {}), UUID, 'a 401 names its request too');
  t.regex(await id('/v1/nothing', auth), UUID, 'and a 404');
  t.is(await id('/v1/events', { ...auth, 'x-request-id': 'watch-1' }), 'watch-1', 'and the event stream');
});
