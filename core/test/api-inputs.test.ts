// What the API accepts works everywhere: every id, name and interface name the REST schema accepts is stored by a
// real ZooKeeper and taken by the kernel as a link name; everything else is a 400 with a message and changes
// nothing. Table-driven, over a real TCP listener on the file store and on a real ZooKeeper.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { buildApi, listen } from '../api/server.js';
import { KINDS } from '../model/types.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { ZooKeeperServer } from '../testing/zookeeper.js';
import { Topology } from '../topology/service.js';

const run = promisify(execFile);

let zk: ZooKeeperServer;
test.before(async () => {
  zk = await ZooKeeperServer.start();
});
test.after.always(async () => {
  await zk?.cleanup();
});

async function serve(t: ExecutionContext, backend: 'file' | 'zk') {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-inputs-'));
  const url = backend === 'file' ? `file:${path.join(dir, 'store')}` : `zk://${zk.connectString}/bees-inputs-${randomUUID().slice(0, 8)}`;
  const store = await openStore(url);
  const app = buildApi({ topology: new Topology(store), store });
  const base = (await listen(app, 'tcp://127.0.0.1:0')).replace('tcp://', 'http://');
  t.teardown(async () => {
    await app.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, base };
}

async function snapshot(store: Store): Promise<unknown[]> {
  return Promise.all(KINDS.map((k) => store.list(k)));
}

async function call(base: string, method: string, url: string, body?: unknown) {
  const res = await fetch(`${base}${url}`, {
    method,
    ...(body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

const long = (n: number, c = 'a') => c.repeat(n);
/** Printable ASCII but '/', the id alphabet's edges. */
const ASCII_ID = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i))
  .filter((c) => c !== '/')
  .join('');

interface Bad {
  name: string;
  method?: string;
  url: string;
  body?: unknown;
  field?: string;
}

function badInputs(bridgeId: string): Bad[] {
  const bridge = (extra: Record<string, unknown>) => ({ name: `b${randomBytes(3).toString('hex')}`, ...extra });
  const badIds = {
    '.': '.',
    '..': '..',
    slash: 'a/b',
    NUL: 'a\u0000b',
    newline: 'a\nb',
    space: 'a b',
    DEL: 'a\u007fb',
    C1: 'a\u0085b',
    'non-ASCII': 'brücke',
    surrogate: 'a\ud800b',
    emoji: 'a\u{1F41D}b',
    'U+FFFE': 'a\ufffeb',
    'over 256': long(257),
    empty: '',
  };
  const badNames = {
    slash: 'a/b',
    NUL: 'a\u0000',
    'leading dot': '.hidden',
    '..': '..',
    space: 'a b',
    'non-ASCII': 'grün',
    'over 128': long(129),
    empty: '',
    emoji: '\u{1F41D}',
  };
  const badIfnames = {
    '16 chars': long(16),
    '16 bytes in 8 chars': 'éééééééé',
    '.': '.',
    '..': '..',
    colon: 'eth0:1',
    space: 'eth 0',
    percent: 'eth%d',
    'percent not a template': 'a%b',
    slash: 'a/b',
    NUL: 'eth\u00000',
    tab: 'eth\t0',
    empty: '',
  };
  return [
    ...Object.entries(badIds).map(([k, id]) => ({ name: `bridge id ${k}`, url: '/v1/bridges', body: bridge({ id }), field: 'id' })),
    ...Object.entries(badIds)
      .filter(([k]) => !['empty', 'slash', '.', '..', 'surrogate'].includes(k))
      .map(([k, id]) => ({ name: `path id ${k}`, method: 'GET', url: `/v1/bridges/${encodeURIComponent(id)}` })),
    ...Object.entries(badIds).map(([k, id]) => ({ name: `reference ${k}`, url: '/v1/ports', body: { bridgeId: id }, field: 'bridgeId' })),
    ...Object.entries(badNames).map(([k, name]) => ({ name: `bridge name ${k}`, url: '/v1/bridges', body: { name }, field: 'name' })),
    ...Object.entries(badNames).map(([k, name]) => ({
      name: `tenant name ${k}`,
      url: '/v1/routers',
      body: { name: 'r', tenant: name },
      field: 'tenant',
    })),
    ...Object.entries(badIfnames).map(([k, interfaceName]) => ({
      name: `interfaceName ${k}`,
      url: '/v1/ports',
      body: { bridgeId, interfaceName },
      field: 'interfaceName',
    })),
    ...Object.entries(badIfnames).map(([k, ifname]) => ({
      name: `owner ifname ${k}`,
      url: '/v1/ports',
      body: { bridgeId, owner: { orchestrator: 'api', workloadId: 'w', ifname } },
      field: 'owner.ifname',
    })),
    { name: 'host name NUL', url: '/v1/hosts', body: { name: 'h\u0000' }, field: 'name' },
    { name: 'host name slash', url: '/v1/hosts', body: { name: 'h/1' }, field: 'name' },
    {
      name: 'workloadId NUL',
      url: '/v1/ports',
      body: { bridgeId, owner: { orchestrator: 'api', workloadId: 'w\u0000', ifname: 'eth0' } },
      field: 'owner.workloadId',
    },
  ];
}

for (const backend of ['file', 'zk'] as const) {
  test(`${backend}: inputs the schema refuses are 400 with a message and change nothing`, async (t) => {
    const { store, base } = await serve(t, backend);
    const b = await call(base, 'POST', '/v1/bridges', { name: 'base', subnets: [{ cidr: '10.93.0.0/24' }] });
    t.is(b.status, 201);
    const before = await snapshot(store);
    for (const c of badInputs(b.body.id as string)) {
      const res = await call(base, c.method ?? 'POST', c.url, c.body);
      t.is(res.status, 400, `${c.name}: ${JSON.stringify(res.body)}`);
      t.is(typeof res.body.message, 'string', c.name);
      t.true((res.body.message as string).length > 0, c.name);
      if (c.field) t.is(res.body.field, c.field, `${c.name}: ${JSON.stringify(res.body)}`);
    }
    t.deepEqual(await snapshot(store), before);
  });

  test(`${backend}: the edges of what the schema accepts are stored and read back`, async (t) => {
    const { base } = await serve(t, backend);
    const ids = [ASCII_ID, long(256, 'z'), '...', '.a', 'a.', '-', '~', '\'"`<>?#%&', 'zookeeper', long(255, '.') + 'x'];
    for (const [i, id] of ids.entries()) {
      const created = await call(base, 'POST', '/v1/bridges', { id, name: `edge${i}` });
      t.is(created.status, 201, `${JSON.stringify(id)}: ${JSON.stringify(created.body)}`);
      const got = await call(base, 'GET', `/v1/bridges/${encodeURIComponent(id)}`);
      t.is(got.status, 200, JSON.stringify(id));
      t.is(got.body.id, id);
    }
    const names = [long(128, 'N'), 'a_b.c@d+e-f', '0'];
    for (const name of names) t.is((await call(base, 'POST', '/v1/routers', { name, tenant: name })).status, 201, name);
    const bridge = (await call(base, 'POST', '/v1/bridges', { name: 'ports' })).body.id as string;
    const host = await call(base, 'POST', '/v1/hosts', { name: 'h1' });
    t.is(host.status, 201, JSON.stringify(host.body));
    for (const interfaceName of EDGE_IFNAMES) {
      const p = await call(base, 'POST', '/v1/ports', {
        bridgeId: bridge,
        hostId: host.body.id,
        interfaceName,
        owner: { orchestrator: 'api', workloadId: `w-${interfaceName}`, ifname: interfaceName },
      });
      t.is(p.status, 201, `${interfaceName}: ${JSON.stringify(p.body)}`);
    }
  });
}

const EDGE_IFNAMES = [long(15, 'x'), '#~!-_.+=@^&*()', '...', '.x', '[]{}|<>?,;\'"`\\$'.slice(0, 15), '0'];

test('the kernel takes every interface name of the edge list', async (t) => {
  const ns = `bees-ifn-${randomBytes(3).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  t.teardown(() => run('ip', ['netns', 'del', ns]).then(() => undefined));
  for (const name of EDGE_IFNAMES) {
    await t.notThrowsAsync(run('ip', ['-n', ns, 'link', 'add', 'name', name, 'type', 'bridge']), name);
  }
});

test('zk: a path ZooKeeper refuses (BadArguments) is Invalid (a 400), not Unavailable (a 503)', async (t) => {
  // The store's own id check is looser than ZooKeeper's; the REST schema keeps such ids away, this is the net.
  const store = await openStore(`zk://${zk.connectString}/bees-inputs-${randomUUID().slice(0, 8)}`);
  t.teardown(() => store.close());
  for (const id of ['a\u0085b', 'a\ufffeb', 'a\ud800b']) {
    const err = await t.throwsAsync(
      store.commit([{ op: 'create', kind: 'Tenant', value: { id, name: 'x', generation: 0 } as { id: string } }]),
    );
    t.is((err as { code?: string }).code, 'Invalid', `${JSON.stringify(id)}: ${err.message}`);
  }
  t.deepEqual(await store.list('Tenant'), []);
});
