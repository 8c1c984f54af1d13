// The behaviour every Store backend must show, registered as ava tests against a factory so the same suite runs
// unchanged on the file store and on ZooKeeper.
import type { ExecutionContext, TestFn } from 'ava';
import { randomUUID } from 'node:crypto';
import type { Tenant } from '../model/types.js';
import { StoreError, type Change, type Store, type StoreErrorCode } from '../store/store.js';

export interface ConformanceOptions {
  /** How many changes the store must keep for resuming watches (small, so 'Gone' can be provoked). */
  retention?: number;
}

/** Opens a fresh, empty store; registers its own cleanup with t.teardown. */
export type StoreFactory = (t: ExecutionContext, options?: ConformanceOptions) => Promise<Store>;

export function tenant(id: string = randomUUID(), generation = 0): Tenant {
  return { id, name: `t-${id.slice(0, 8)}`, generation };
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function code(t: ExecutionContext, p: Promise<unknown>, expected: StoreErrorCode, what: string): Promise<StoreError> {
  const err = await t.throwsAsync(p, { instanceOf: StoreError }, what);
  t.is(err?.code, expected, `${what}: ${err?.message}`);
  return err;
}

export function registerStoreConformance(test: TestFn, name: string, open: StoreFactory): void {
  test(`${name}: create, get, list, update, delete with versions`, async (t) => {
    const s = await open(t);
    const a = tenant();
    const b = tenant();
    t.is(await s.get('Tenant', a.id), undefined);
    t.deepEqual(await s.list('Tenant'), []);
    t.is(await s.create('Tenant', a), 1);
    t.is(await s.create('Tenant', b), 1);
    t.deepEqual(await s.get('Tenant', a.id), { value: a, version: 1 });
    const listed = (await s.list('Tenant')).sort((x, y) => x.value.id.localeCompare(y.value.id));
    t.deepEqual(
      listed,
      [a, b].sort((x, y) => x.id.localeCompare(y.id)).map((value) => ({ value, version: 1 })),
    );
    t.deepEqual(await s.list('Bridge'), [], 'kinds are separate');
    t.is(await s.update('Tenant', { ...a, generation: 1 }, 1), 2);
    t.is(await s.update('Tenant', { ...a, generation: 2 }), 3, 'unconditional update');
    t.deepEqual(await s.get('Tenant', a.id), { value: { ...a, generation: 2 }, version: 3 });
    await s.delete('Tenant', a.id, 3);
    t.is(await s.get('Tenant', a.id), undefined);
    await s.delete('Tenant', b.id);
    t.deepEqual(await s.list('Tenant'), []);
    // A deleted id can be created again, starting over at version 1.
    t.is(await s.create('Tenant', a), 1);
  });

  test(`${name}: values are copies, never shared with the caller`, async (t) => {
    const s = await open(t);
    const a = tenant();
    await s.create('Tenant', a);
    a.name = 'mutated-after-create';
    const got = await s.get('Tenant', a.id);
    t.not(got!.value.name, 'mutated-after-create');
    got!.value.name = 'mutated-after-get';
    t.not((await s.get('Tenant', a.id))!.value.name, 'mutated-after-get');
  });

  test(`${name}: every error code`, async (t) => {
    const s = await open(t);
    const a = tenant();
    await s.create('Tenant', a);
    const missing = randomUUID();
    await code(t, s.create('Tenant', a), 'Exists', 'create of an existing id');
    await code(t, s.update('Tenant', tenant(missing)), 'NotFound', 'update of a missing id');
    await code(t, s.delete('Tenant', missing), 'NotFound', 'delete of a missing id');
    await code(t, s.commit([{ op: 'check', kind: 'Tenant', id: missing, version: 1 }]), 'NotFound', 'check of a missing id');
    await code(t, s.update('Tenant', a, 7), 'Conflict', 'update at a stale version');
    await code(t, s.delete('Tenant', a.id, 7), 'Conflict', 'delete at a stale version');
    await code(t, s.commit([{ op: 'check', kind: 'Tenant', id: a.id, version: 2 }]), 'Conflict', 'check at a wrong version');
    await code(t, s.commit([{ op: 'check', kind: 'Tenant', id: a.id, version: 0 }]), 'Conflict', 'check-absent of an existing id');
    t.deepEqual(
      await s.commit([
        { op: 'check', kind: 'Tenant', id: a.id, version: 1 },
        { op: 'check', kind: 'Tenant', id: missing, version: 0 },
      ]),
      [0, 0],
    );
    // Malformed requests.
    // @ts-expect-error: a kind that does not exist
    await code(t, s.get('Nope', a.id), 'Invalid', 'get of an unknown kind');
    // @ts-expect-error: a kind that does not exist
    await code(t, s.list('Nope'), 'Invalid', 'list of an unknown kind');
    await code(t, s.get('Tenant', ''), 'Invalid', 'empty id');
    await code(t, s.get('Tenant', 'a/b'), 'Invalid', 'id with a slash');
    await code(t, s.create('Tenant', { name: 'x' } as unknown as Tenant), 'Invalid', 'create without id');
    await code(t, s.update('Tenant', a, 0), 'Invalid', 'version 0 on update');
    await code(t, s.update('Tenant', a, 1.5), 'Invalid', 'fractional version');
    // @ts-expect-error: not an op
    await code(t, s.commit([{ op: 'upsert', kind: 'Tenant', value: a }]), 'Invalid', 'unknown op');
    await code(t, s.commit('x' as unknown as []), 'Invalid', 'ops not an array');
    await code(
      t,
      s.watch(() => {}, { fromSeq: -1 }),
      'Invalid',
      'negative fromSeq',
    );
    await code(t, s.putEphemeral('', 1), 'Invalid', 'empty ephemeral key');
    t.deepEqual(await s.get('Tenant', a.id), { value: a, version: 1 }, 'failed requests changed nothing');
    await s.close();
    await code(t, s.get('Tenant', a.id), 'Closed', 'get after close');
    await code(t, s.create('Tenant', tenant()), 'Closed', 'create after close');
    await code(
      t,
      s.watch(() => {}),
      'Closed',
      'watch after close',
    );
    await s.close(); // closing twice is harmless
  });

  test(`${name}: a multi-op commit applies all or nothing`, async (t) => {
    const s = await open(t);
    const a = tenant();
    const b = tenant();
    const c = tenant();
    await s.create('Tenant', b);
    const seq0 = await s.lastSeq();
    const seen: Change[] = [];
    t.teardown(await s.watch((ch) => seen.push(ch)));
    await code(
      t,
      s.commit([
        { op: 'create', kind: 'Tenant', value: a },
        { op: 'create', kind: 'Tenant', value: b },
      ]),
      'Exists',
      'second create fails',
    );
    await code(
      t,
      s.commit([
        { op: 'create', kind: 'Tenant', value: a },
        { op: 'update', kind: 'Tenant', value: tenant(b.id, 9), version: 1 },
        { op: 'check', kind: 'Tenant', id: c.id, version: 3 },
      ]),
      'NotFound',
      'failed check',
    );
    await code(
      t,
      s.commit([
        { op: 'delete', kind: 'Tenant', id: b.id },
        { op: 'create', kind: 'Tenant', value: a },
        { op: 'check', kind: 'Tenant', id: b.id, version: 1 },
      ]),
      'NotFound',
      'check sees the delete earlier in the same commit',
    );
    t.is(await s.get('Tenant', a.id), undefined, 'no create leaked from a failed commit');
    t.deepEqual(await s.get('Tenant', b.id), { value: b, version: 1 }, 'no update or delete leaked');
    t.is(await s.lastSeq(), seq0, 'failed commits produce no changes');
    t.deepEqual(seen, []);
    // A successful commit sees its own earlier ops.
    t.deepEqual(
      await s.commit([
        { op: 'create', kind: 'Tenant', value: a },
        { op: 'update', kind: 'Tenant', value: tenant(a.id, 1), version: 1 },
        { op: 'check', kind: 'Tenant', id: a.id, version: 2 },
        { op: 'delete', kind: 'Tenant', id: b.id, version: 1 },
        { op: 'create', kind: 'Bridge', value: { id: c.id } },
      ]),
      [1, 2, 0, 0, 1],
    );
    t.deepEqual(await s.get('Tenant', a.id), { value: tenant(a.id, 1), version: 2 });
    t.is(await s.get('Tenant', b.id), undefined);
    t.is((await s.get('Bridge', c.id))?.version, 1);
    await waitFor(() => seen.length >= 4, 'the four changes');
    t.deepEqual(
      seen.map((ch) => [ch.kind, ch.type, ch.version]),
      [
        ['Tenant', 'create', 1],
        ['Tenant', 'update', 2],
        ['Tenant', 'delete', 1],
        ['Bridge', 'create', 1],
      ],
    );
    t.true(seen[0]!.seq > seq0);
    t.is(await s.lastSeq(), seen.at(-1)!.seq, 'one change per create/update/delete');
  });

  test(`${name}: concurrent read-modify-write with version checks loses no increment`, async (t) => {
    const s = await open(t);
    const a = tenant();
    await s.create('Tenant', a);
    const writers = 4;
    const each = 15;
    let conflicts = 0;
    const worker = async () => {
      for (let i = 0; i < each; i++) {
        for (;;) {
          const cur = (await s.get('Tenant', a.id))!;
          try {
            await s.update('Tenant', { ...cur.value, generation: cur.value.generation + 1 }, cur.version);
            break;
          } catch (err) {
            if (!(err instanceof StoreError && err.code === 'Conflict')) throw err;
            conflicts++;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: writers }, worker));
    const final = (await s.get('Tenant', a.id))!;
    t.is(final.value.generation, writers * each);
    t.is(final.version, writers * each + 1);
    t.log(`${conflicts} conflicts retried`);
  });

  test(`${name}: watch delivers every change once, in commit order`, async (t) => {
    const s = await open(t);
    const seen: Change[] = [];
    const stop = await s.watch((c) => seen.push(c));
    const ids = Array.from({ length: 30 }, () => randomUUID());
    await Promise.all(ids.map((id) => s.create('Tenant', tenant(id))));
    await s.update('Tenant', tenant(ids[0], 5), 1);
    await s.delete('Tenant', ids[1]!);
    const last = await s.lastSeq();
    await waitFor(() => seen.length >= 32, 'all changes');
    await new Promise((r) => setTimeout(r, 200)); // anything extra would show up now
    t.is(seen.length, 32, 'exactly once');
    for (let i = 1; i < seen.length; i++) t.true(seen[i]!.seq > seen[i - 1]!.seq, 'seq increases');
    t.is(seen.at(-1)!.seq, last);
    t.deepEqual(new Set(seen.slice(0, 30).map((c) => c.id)), new Set(ids));
    t.true(seen.slice(0, 30).every((c) => c.type === 'create' && c.version === 1 && c.kind === 'Tenant'));
    t.like(seen[30], { type: 'update', id: ids[0], version: 2, value: tenant(ids[0], 5) });
    t.like(seen[31], { type: 'delete', id: ids[1], version: 1 });
    t.is(seen[31]!.value, undefined);
    stop();
    await s.create('Tenant', tenant());
    await new Promise((r) => setTimeout(r, 200));
    t.is(seen.length, 32, 'nothing after stop');
  });

  test(`${name}: watch resumes from a seq and filters by kind`, async (t) => {
    const s = await open(t);
    const a = tenant();
    await s.create('Tenant', a);
    const mark = await s.lastSeq();
    const br = randomUUID();
    await s.commit([
      { op: 'update', kind: 'Tenant', value: tenant(a.id, 1) },
      { op: 'create', kind: 'Bridge', value: { id: br } },
    ]);
    await s.delete('Tenant', a.id);
    const resumed: Change[] = [];
    const stop1 = await s.watch((c) => resumed.push(c), { fromSeq: mark });
    t.teardown(stop1);
    const bridges: Change[] = [];
    const stop2 = await s.watch((c) => bridges.push(c), { fromSeq: mark, kinds: ['Bridge'] });
    t.teardown(stop2);
    await s.create('Bridge', { id: randomUUID() } as never);
    await waitFor(() => resumed.length >= 4 && bridges.length >= 2, 'resumed changes');
    t.deepEqual(
      resumed.map((c) => [c.kind, c.type]),
      [
        ['Tenant', 'update'],
        ['Bridge', 'create'],
        ['Tenant', 'delete'],
        ['Bridge', 'create'],
      ],
    );
    t.true(resumed[0]!.seq > mark);
    t.deepEqual(
      bridges.map((c) => c.kind),
      ['Bridge', 'Bridge'],
    );
    // Resuming from the newest seq delivers nothing old.
    const none: Change[] = [];
    const stop3 = await s.watch((c) => none.push(c), { fromSeq: await s.lastSeq() });
    t.teardown(stop3);
    await new Promise((r) => setTimeout(r, 200));
    t.deepEqual(none, []);
  });

  test(`${name}: resuming from a seq no longer retained is 'Gone'`, async (t) => {
    const s = await open(t, { retention: 5 });
    const first = await s.lastSeq();
    const seen: Change[] = [];
    t.teardown(await s.watch((c) => seen.push(c)));
    for (let i = 0; i < 40; i++) await s.create('Tenant', tenant());
    // Backends may trim lazily; give them a moment and a few more writes.
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 5; i++) await s.create('Tenant', tenant());
    await code(
      t,
      s.watch(() => {}, { fromSeq: first }),
      'Gone',
      'resume from a trimmed seq',
    );
    await code(
      t,
      s.watch(() => {}, { fromSeq: (await s.lastSeq()) + 1000 }),
      'Gone',
      'resume from the future',
    );
    await waitFor(() => seen.length === 45, 'all changes');
    const recent: Change[] = [];
    const stop = await s.watch((c) => recent.push(c), { fromSeq: seen.at(-3)!.seq });
    t.teardown(stop);
    await waitFor(() => recent.length === 2, 'the two newest changes');
    t.deepEqual(recent, seen.slice(-2));
  });

  test(`${name}: ephemeral records, prefixes and their watch`, async (t) => {
    const s = await open(t);
    const p = `hosts-${randomUUID().slice(0, 8)}/`;
    const views: Record<string, unknown>[] = [];
    const stop = await s.watchEphemeral(p, (r) => views.push(r));
    t.teardown(stop);
    await waitFor(() => views.length >= 1, 'initial view');
    t.deepEqual(views[0], {});
    await s.putEphemeral(`${p}a`, { addr: '10.0.0.1' });
    await s.putEphemeral(`${p}b/c`, 2);
    await s.putEphemeral(`other-${p}x`, true);
    t.deepEqual(await s.listEphemeral(p), { [`${p}a`]: { addr: '10.0.0.1' }, [`${p}b/c`]: 2 });
    t.deepEqual((await s.listEphemeral(''))[`other-${p}x`], true);
    await waitFor(
      () => JSON.stringify(views.at(-1)) === JSON.stringify({ [`${p}a`]: { addr: '10.0.0.1' }, [`${p}b/c`]: 2 }),
      'view with both',
    );
    await s.putEphemeral(`${p}a`, { addr: '10.0.0.2' });
    t.deepEqual((await s.listEphemeral(p))[`${p}a`], { addr: '10.0.0.2' }, 'put replaces');
    await s.removeEphemeral(`${p}b/c`);
    await s.removeEphemeral(`${p}never-there`); // removing a missing record is harmless
    await waitFor(() => JSON.stringify(views.at(-1)) === JSON.stringify({ [`${p}a`]: { addr: '10.0.0.2' } }), 'view after remove');
    t.false(
      views.some((v) => `other-${p}x` in v),
      'other prefixes are not delivered',
    );
    await s.removeEphemeral(`${p}a`);
    await s.removeEphemeral(`other-${p}x`);
    t.deepEqual(await s.listEphemeral(p), {});
  });
}
