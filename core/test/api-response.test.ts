// REST answers are serialised from the route table's success schemas: a field the model does not declare never
// reaches a client. A real topology over a file store, wrapped to add an undeclared field to what it returns.
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { KIND_PATHS } from '../api/paths.js';
import { buildApi } from '../api/server.js';
import type { Kind } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

class Leaky extends Topology {
  override async get<K extends Kind>(kind: K, id: string) {
    return { ...(await super.get(kind, id)), internalSecret: 'x' };
  }
}

test('an undeclared field in a topology object does not leak through GET, the declared ones do', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-api-response-'));
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  const app = buildApi({ topology: new Leaky(store), store });
  t.teardown(async () => {
    await app.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const created = await app.inject({ method: 'POST', url: `/v1/${KIND_PATHS.Tenant}`, payload: { name: 'acme' } });
  t.is(created.statusCode, 201, created.body);
  const tenant = created.json<{ id: string; name: string }>();
  const got = await app.inject({ method: 'GET', url: `/v1/${KIND_PATHS.Tenant}/${tenant.id}` });
  t.is(got.statusCode, 200, got.body);
  t.deepEqual(got.json(), tenant);
  t.false(got.body.includes('internalSecret'));
});
