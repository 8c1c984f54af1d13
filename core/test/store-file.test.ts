import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { FileStore, fileUrlToDir } from '../store/file.js';
import { openStore } from '../store/open.js';
import { StoreError } from '../store/store.js';
import { registerStoreConformance, tenant, waitFor } from './store-conformance.js';

const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-store-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

registerStoreConformance(test, 'file', async (t, options) => {
  const dir = await tempDir(t);
  const store = await FileStore.open(`file:${dir}`, { watchRetention: options?.retention });
  t.teardown(() => store.close());
  return store;
});

// The ring of recent changes is bounded by size as well as by count: an IPAM block rewritten on every allocation
// otherwise kept every version of itself (~4 KB per attached port in the agent, issue 12).
test('file: the watch ring keeps at most watchRetentionBytes of changes; older resumes are Gone', async (t) => {
  const dir = await tempDir(t);
  const store = await FileStore.open(`file:${dir}`, { watchRetentionBytes: 20_000 });
  t.teardown(() => store.close());
  const first = await store.lastSeq();
  const seqs: number[] = [];
  // About 200 bytes each in the ring, so 400 of them weigh four times the budget; the count bound (100,000) is far.
  for (let i = 0; i < 400; i++) {
    await store.create('Tenant', tenant());
    seqs.push(await store.lastSeq());
  }
  const err = await t.throwsAsync(
    store.watch(() => {}, { fromSeq: first }),
    { instanceOf: StoreError },
  );
  t.is(err?.code, 'Gone');
  // What fits in half the budget is always still there, in order.
  const from = seqs.at(-40)!;
  const replayed: number[] = [];
  t.teardown(await store.watch((c) => replayed.push(c.seq), { fromSeq: from }));
  t.deepEqual(replayed, seqs.slice(-39));
});

test('file: URL forms', (t) => {
  t.is(fileUrlToDir('file:/var/lib/bees'), '/var/lib/bees');
  t.is(fileUrlToDir('file:///var/lib/bees'), '/var/lib/bees');
  t.is(fileUrlToDir('file://localhost/var/lib/b%20s'), '/var/lib/b s');
  t.is(fileUrlToDir('file:rel/dir'), path.resolve('rel/dir'));
  for (const bad of ['file:', 'file://otherhost/x', 'http://x', 'file:%zz']) {
    t.is(t.throws(() => fileUrlToDir(bad), { instanceOf: StoreError })?.code, 'Invalid', bad);
  }
});

test('file: openStore picks the backend by scheme and refuses unknown ones', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(`file://${dir}`);
  t.teardown(() => s.close());
  t.true(s instanceof FileStore);
  t.is(s.url, `file://${dir}`);
  const err = await t.throwsAsync(openStore('etcd://x:1/'), { instanceOf: StoreError });
  t.is(err?.code, 'Invalid');
});

test('file: state survives close and reopen, including across compaction', async (t) => {
  const dir = await tempDir(t);
  let s = await FileStore.open(`file:${dir}`, { compactBytes: 2000 });
  const ids = Array.from({ length: 60 }, () => randomUUID());
  for (const id of ids) await s.create('Tenant', tenant(id));
  await s.update('Tenant', tenant(ids[0], 3), 1);
  await s.delete('Tenant', ids[1]!);
  const seq = await s.lastSeq();
  await s.putEphemeral('h/1', 1);
  await s.close();
  t.true((await fsp.stat(path.join(dir, 'snapshot.json'))).size > 0, 'compaction wrote a snapshot');
  t.true((await fsp.stat(path.join(dir, 'journal'))).size < 4000, 'compaction truncated the journal');
  s = await FileStore.open(`file:${dir}`);
  t.teardown(() => s.close());
  t.is(await s.lastSeq(), seq);
  t.is((await s.list('Tenant')).length, 59);
  t.deepEqual(await s.get('Tenant', ids[0]!), { value: tenant(ids[0], 3), version: 2 });
  t.is(await s.get('Tenant', ids[1]!), undefined);
  t.deepEqual(await s.listEphemeral(''), {}, 'ephemerals die with their process');
  t.is(await s.create('Tenant', tenant()), 1);
  t.is(await s.lastSeq(), seq + 1, 'seq continues after reopen');
});

test('file: a torn or corrupt journal tail is dropped, and later writes survive', async (t) => {
  const dir = await tempDir(t);
  let s = await FileStore.open(`file:${dir}`);
  const a = tenant();
  await s.create('Tenant', a);
  await s.close();
  const journal = path.join(dir, 'journal');
  const good = await fsp.readFile(journal, 'utf8');
  // A corrupt record (bad checksum) followed by a torn one.
  const bogus = good.replace(a.id, randomUUID());
  await fsp.writeFile(journal, good + bogus + good.slice(0, 20));
  s = await FileStore.open(`file:${dir}`);
  t.is((await s.list('Tenant')).length, 1);
  t.is(await s.lastSeq(), 1);
  const b = tenant();
  await s.create('Tenant', b);
  await s.close();
  s = await FileStore.open(`file:${dir}`);
  t.teardown(() => s.close());
  t.deepEqual((await s.list('Tenant')).map((v) => v.value.id).sort(), [a.id, b.id].sort());
  t.is(await s.lastSeq(), 2);
});

test('file: a corrupt record in the middle of the journal stops the store, naming file and offset', async (t) => {
  const dir = await tempDir(t);
  let s = await FileStore.open(`file:${dir}`);
  const a = tenant();
  const b = tenant();
  await s.create('Tenant', a);
  await s.create('Tenant', b);
  await s.close();
  const journal = path.join(dir, 'journal');
  const text = await fsp.readFile(journal, 'utf8');
  const first = text.slice(0, text.indexOf('\n') + 1);
  // Damage the first record (one flipped character): the second, acknowledged, must not be dropped silently.
  const damaged = first.replace(a.id.slice(0, 8), b.id.slice(0, 8)) + text.slice(first.length);
  await fsp.writeFile(journal, damaged);
  const err = await t.throwsAsync(FileStore.open(`file:${dir}`), { instanceOf: StoreError });
  t.is(err?.code, 'Unavailable');
  t.true(err.message.includes(journal), err.message);
  t.regex(err.message, /corrupt at byte offset 0 \(record 1: checksum mismatch\) with 1 intact record/);
  t.is(await fsp.readFile(journal, 'utf8'), damaged, 'the journal is left as found');
  t.false(
    await fsp.stat(path.join(dir, 'lock')).then(
      () => true,
      () => false,
    ),
    'a refused open leaves no lock',
  );

  // A record missing altogether (a gap in the seqs) is damage too.
  await fsp.writeFile(journal, text.slice(first.length));
  const gap = await t.throwsAsync(FileStore.open(`file:${dir}`), { instanceOf: StoreError });
  t.regex(gap.message, /skips from seq 0 to 2 at byte offset 0/);

  // The same damage in the last record is a torn write: dropped, and the store opens.
  await fsp.writeFile(journal, first + text.slice(first.length).replace(b.id.slice(0, 8), a.id.slice(0, 8)));
  s = await FileStore.open(`file:${dir}`);
  t.teardown(() => s.close());
  t.deepEqual(
    (await s.list('Tenant')).map((v) => v.value.id),
    [a.id],
  );
});

/** A tmpfs of `size` mounted on a fresh directory, unmounted at teardown. */
async function smallDisk(t: ExecutionContext, size: string): Promise<string> {
  const dir = await tempDir(t);
  const { execFileSync } = await import('node:child_process');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.teardown(() => execFileSync('umount', ['-l', dir]));
  return dir;
}

/** Writes `file` until the filesystem refuses (ENOSPC). */
async function fillDisk(file: string): Promise<void> {
  const fh = await fsp.open(file, 'w');
  const chunk = Buffer.alloc(4096, 0x78);
  try {
    for (;;) await fh.write(chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
}

test('file: disk full: reads keep working, writes fail clearly, degraded says so, a failed commit never reappears', async (t) => {
  const disk = await smallDisk(t, '1m');
  const dir = path.join(disk, 'store');
  let s = await FileStore.open(`file:${dir}`);
  const a = tenant();
  await s.create('Tenant', a);
  t.is(s.degraded, undefined);
  const journal = path.join(dir, 'journal');
  const before = (await fsp.stat(journal)).size;
  const seen: string[] = [];
  await s.watch((c) => seen.push(c.id));

  await fillDisk(path.join(disk, 'filler'));
  // One commit larger than what is left of the journal's last page, so part of it is written before ENOSPC.
  const many = Array.from({ length: 100 }, () => tenant());
  const err = await t.throwsAsync(s.commit(many.map((value) => ({ op: 'create' as const, kind: 'Tenant' as const, value }))), {
    instanceOf: StoreError,
  });
  t.is(err?.code, 'Unavailable');
  t.regex(err.message, /disk full writing the journal in .*ENOSPC.*not applied/);
  t.regex(s.degraded ?? '', /disk full/);
  t.is((await fsp.stat(journal)).size, before, 'the part of the failed record that was written is cut off');
  // Reads answer from the durable state: the failed commit is not visible, the earlier one is.
  t.deepEqual(
    (await s.list('Tenant')).map((v) => v.value.id),
    [a.id],
  );
  t.deepEqual(await s.get('Tenant', a.id), { value: a, version: 1 });
  t.is(await s.get('Tenant', many[0]!.id), undefined);
  t.is(await s.lastSeq(), 1);
  t.deepEqual(seen, [], 'watchers never saw the failed commit');
  // Two commits queued together while full both fail, and neither leaves a trace (each is larger than a page
  // too: a small one still fits in the journal's last page).
  const creates = () => Array.from({ length: 100 }, () => ({ op: 'create' as const, kind: 'Tenant' as const, value: tenant() }));
  const q1 = s.commit([{ op: 'update', kind: 'Tenant', value: tenant(a.id, 1) }, ...creates()]);
  const q2 = s.commit(creates());
  await t.throwsAsync(q1, { instanceOf: StoreError });
  await t.throwsAsync(q2, { instanceOf: StoreError });
  t.deepEqual(await s.get('Tenant', a.id), { value: a, version: 1 });

  // Space comes back: the next commit goes through and the store is healthy again.
  await fsp.rm(path.join(disk, 'filler'));
  const b = tenant();
  await s.create('Tenant', b);
  t.is(s.degraded, undefined);
  t.deepEqual(seen, [b.id]);
  await s.close();

  s = await FileStore.open(`file:${dir}`);
  t.teardown(() => s.close());
  t.deepEqual((await s.list('Tenant')).map((v) => v.value.id).sort(), [a.id, b.id].sort(), 'after a restart too');
  t.deepEqual(await s.get('Tenant', a.id), { value: a, version: 1 });
  t.is(await s.lastSeq(), 2);
});

function startChild(script: string, dir: string): { child: ChildProcess; lines: string[]; exited: Promise<unknown> } {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(fixtures, script), dir], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buf = '';
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const exited = new Promise((r) => child.once('exit', r));
  return { child, lines, exited };
}

test('file: kill -9 in the middle of a write burst loses no acknowledged commit and half-applies none', async (t) => {
  const dir = await tempDir(t);
  const { child, lines, exited } = startChild('store-file-writer.ts', dir);
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await waitFor(() => lines.length > 1500, 'a burst of acknowledged commits', 60_000);
  child.kill('SIGKILL');
  await exited;
  const acked = lines.filter((l) => l.startsWith('ack ')).map((l) => l.slice(4));
  t.log(`${acked.length} commits acknowledged before the kill`);
  // The dead writer's lock is stale and is taken over.
  const s = await FileStore.open(`file:${dir}`);
  t.teardown(() => s.close());
  const tenants = new Set((await s.list('Tenant')).map((v) => v.value.id));
  const bridges = new Set((await s.list('Bridge')).map((v) => v.value.id));
  for (const id of acked) t.true(tenants.has(id), `acknowledged ${id} is present`);
  t.deepEqual(tenants, bridges, 'every commit is whole: each Tenant has its Bridge and vice versa');
  t.is(await s.lastSeq(), tenants.size * 2, 'one change per object: nothing applied twice or lost from the count');
  t.true(tenants.size >= acked.length);
});

test('file: a second process opening a locked directory gets a clear error; a stale lock is taken over', async (t) => {
  const dir = await tempDir(t);
  const holder = startChild('store-file-holder.ts', dir);
  t.teardown(() => {
    if (holder.child.exitCode === null) holder.child.kill('SIGKILL');
  });
  await waitFor(() => holder.lines.includes('ready'), 'holder ready', 30_000);
  const err = await t.throwsAsync(FileStore.open(`file:${dir}`), { instanceOf: StoreError });
  t.is(err?.code, 'Unavailable');
  t.regex(err.message, new RegExp(`in use by process ${holder.child.pid}`));
  holder.child.stdin!.end();
  await holder.exited;
  t.false(
    await fsp.stat(path.join(dir, 'lock')).then(
      () => true,
      () => false,
    ),
    'a clean close removes the lock',
  );

  // A lock left by a process that no longer exists.
  const dead = spawn('true');
  await new Promise((r) => dead.once('exit', r));
  await fsp.writeFile(path.join(dir, 'lock'), `${dead.pid}\n`);
  const s = await FileStore.open(`file:${dir}`);
  t.is((await fsp.readFile(path.join(dir, 'lock'), 'utf8')).trim(), String(process.pid));
  const again = await t.throwsAsync(FileStore.open(`file:${dir}`), { instanceOf: StoreError });
  t.is(again?.code, 'Unavailable', 'the same process cannot open it twice either');
  await s.close();
});
