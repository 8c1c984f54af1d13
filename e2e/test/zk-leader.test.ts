// The ZooKeeper leader SIGKILLed during an attach storm (issue 12): 3 hosts, each agent connected to all three
// servers of a real ensemble, 36 attaches sent over 4 s, the leader killed 1.5 s in. Every attach either succeeds
// or fails with 503 'unavailable' (the CNI plugin's code 11), none takes longer than the store's operation timeout,
// no write is lost or doubled (zk-leader-storm.ts: storeProblems), the kernels agree with the store, and the FDBs
// and reachability converge. The 20-host version is bench/zk-storm.ts.
import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import net from 'node:net';
import { ZooKeeperStore } from '../../core/store/zookeeper.js';
import { fourLetterWord, ZooKeeperEnsemble } from '../../core/testing/zookeeper.js';
import { eventually } from '../../testbed/cluster.js';
import {
  detachFailed,
  fdbProblems,
  kernelProblems,
  percentile,
  seed,
  storeProblems,
  storm,
  StormCluster,
  unreachable,
} from './zk-leader-storm.js';

/** ZooKeeper's opcode of a multi request (jute: OpCode.multi). */
const ZK_MULTI = 14;

/**
 * A relay in front of one ZooKeeper server that, once armed, swallows every reply from the moment the client sends
 * a multi (a store commit): the server executes the commit and the client never hears of it, as when the reply is
 * lost in a failover. Requests are framed (a 4-byte length, then the connect request or xid and opcode).
 */
class ReplyEater {
  armed = false;
  private swallow = false;
  private readonly conns = new Set<net.Socket>();
  private readonly server = net.createServer((client) => this.accept(client));
  address = '';

  private constructor(private readonly target: { host: string; port: number }) {}

  static async start(target: { host: string; port: number }): Promise<ReplyEater> {
    const r = new ReplyEater(target);
    await new Promise<void>((resolve) => r.server.listen(0, '127.0.0.1', resolve));
    r.address = `127.0.0.1:${(r.server.address() as net.AddressInfo).port}`;
    return r;
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target);
    this.conns.add(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.conns.delete(client);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    let pending = Buffer.alloc(0);
    let first = true; // the connect request has no request header
    client.on('data', (d: Buffer) => {
      pending = Buffer.concat([pending, d]);
      while (pending.length >= 4 && pending.length >= 4 + pending.readInt32BE(0)) {
        const len = pending.readInt32BE(0);
        if (!first && len >= 8 && pending.readInt32BE(8) === ZK_MULTI && this.armed) {
          this.armed = false;
          this.swallow = true;
        }
        first = false;
        pending = pending.subarray(4 + len);
      }
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!this.swallow) client.write(d);
    });
  }

  get connections(): number {
    return this.conns.size;
  }

  /** Resets every connection (the client sees its server go) and relays replies again. */
  reset(): void {
    this.armed = false;
    this.swallow = false;
    for (const c of this.conns) c.destroy();
  }

  close(): Promise<void> {
    this.reset();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

test('a commit whose reply is lost (the leader dies, the connection drops) is applied exactly once', async (t) => {
  const ensemble = await ZooKeeperEnsemble.start(3, { tickTime: 200, forceSync: false, heapMb: 128 });
  t.teardown(() => ensemble.cleanup());
  const relays = await Promise.all(ensemble.members.map((m) => ReplyEater.start({ host: m.host, port: m.port })));
  t.teardown(() => Promise.all(relays.map((r) => r.close())));
  const root = `/bees-lost-${randomBytes(3).toString('hex')}`;
  const writer = await ZooKeeperStore.open(`zk://${relays.map((r) => r.address).join(',')}${root}`, { opTimeoutMs: 30_000 });
  t.teardown(() => writer.close());
  const reader = await ZooKeeperStore.open(`zk://${ensemble.connectString}${root}`);
  t.teardown(() => reader.close());
  const a = { id: randomUUID(), name: 'a', generation: 0 };
  const b = { id: randomUUID(), name: 'b', generation: 0 };
  const fresh = { id: randomUUID(), name: 'fresh', generation: 0 };
  t.is(await writer.create('Tenant', a), 1);
  t.is(await writer.create('Tenant', b), 1);

  /** Runs one write whose reply is swallowed; once the servers hold it, `fault` breaks the connection. */
  const lost = async (what: string, write: () => Promise<number>, committed: () => Promise<boolean>, fault: () => Promise<void>) => {
    const via = relays.find((r) => r.connections > 0);
    if (!via) throw new Error("the writer's connection does not go through a relay");
    via.armed = true;
    const result = write().then(
      (v) => v,
      (e: Error) => e.message,
    );
    await eventually(committed, 10_000, `${what}: committed on the servers`, 20);
    await fault();
    via.reset();
    return result;
  };
  // 1. An unconditional update; the leader SIGKILLed while its reply is lost. Applied twice it would be version 3.
  const leader = (await Promise.all(ensemble.members.map((m) => fourLetterWord(m.host, m.port, 'srvr')))).findIndex((m) =>
    /Mode: leader/.test(m),
  );
  t.true(leader >= 0, 'a leader');
  const ua = await lost(
    'unconditional update',
    () => writer.update('Tenant', { ...a, generation: 1 }),
    async () => (await reader.get('Tenant', a.id))?.version === 2,
    () => ensemble.stopMember(leader),
  );
  // 2. A compare-and-set update (as IPAM writes): retried blindly it would fail as a conflict with itself.
  const ub = await lost(
    'compare-and-set update',
    () => writer.update('Tenant', { ...b, generation: 1 }, 1),
    async () => (await reader.get('Tenant', b.id))?.version === 2,
    async () => undefined,
  );
  // 3. A create (as a port's): retried blindly it would fail as "already exists".
  const cf = await lost(
    'create',
    () => writer.create('Tenant', fresh),
    async () => (await reader.get('Tenant', fresh.id)) !== undefined,
    async () => undefined,
  );
  t.deepEqual([ua, ub, cf], [2, 2, 1], 'each write reports its one application');
  await reader.sync();
  t.like(await reader.get('Tenant', a.id), { version: 2, value: { generation: 1 } });
  t.like(await reader.get('Tenant', b.id), { version: 2, value: { generation: 1 } });
  t.like(await reader.get('Tenant', fresh.id), { version: 1 });
});

/** The agents' store operation timeout (core/store/zookeeper.ts default): an attach must end before it, plus slack. */
const BOUND_MS = 25_000;
/** A failed attach fails fast (store-outage.test.ts asks 3 s of an idle agent; these agents are in a storm). */
const FAST_MS = 5000;

test('ZooKeeper leader killed during an attach storm: nothing lost or doubled, no hang, converges', async (t) => {
  t.timeout(300_000);
  const c = await StormCluster.start(3, (m) => t.log(m));
  let keep = false;
  t.teardown(() => c.close({ keepLogs: keep }));
  const seeds = await seed(c, '10.62.0.0/22');

  const run = await storm(c, { perHost: 12, spreadMs: 4000, killAfterMs: 1500, attachTimeoutMs: 60_000, afterPerHost: 4 }, (m) => t.log(m));
  const { outcomes } = run;
  const ok = outcomes.filter((o) => o.result);
  const failed = outcomes.filter((o) => !o.result);
  const ms = outcomes.map((o) => o.ms);
  t.log(
    `${ok.length} succeeded, ${failed.length} failed (${[...new Set(failed.map((f) => `${f.status} ${f.code}`))].join(', ') || '-'}); ` +
      `attach p50 ${percentile(ms, 50)} ms, p99 ${percentile(ms, 99)} ms, max ${Math.max(...ms)} ms; ` +
      `leader killed at ${run.killAtMs} ms, new leader at ${run.newLeaderAtMs} ms, agents ready at ${run.readyAgainAtMs} ms`,
  );
  keep = true; // until every assertion below has passed
  t.deepEqual(
    failed.filter((f) => !(f.status === 503 && f.code === 'unavailable')).map((f) => `${f.workloadId}: ${f.status} ${f.code} ${f.message}`),
    [],
    'every failure is 503 unavailable (CNI code 11)',
  );
  t.deepEqual(
    failed.filter((f) => f.ms > FAST_MS).map((f) => `${f.workloadId}: failed after ${f.ms} ms`),
    [],
    'failures are fast',
  );
  t.deepEqual(
    outcomes.filter((o) => o.ms > BOUND_MS).map((o) => `${o.workloadId}: ${o.ms} ms`),
    [],
    'no attach hangs',
  );
  t.true(ok.length > 0, 'attaches succeed around the failover');
  t.deepEqual(
    failed.filter((o) => o.phase === 'after').map((o) => `${o.workloadId}: ${o.message}`),
    [],
    'every attach sent after the failover succeeds',
  );

  await detachFailed(c, outcomes);
  const all = [...seeds, ...outcomes];
  // The store converges at once for writes that returned; detaches queued while the store was away replay soon.
  const store = await eventually(async () => ((await storeProblems(c, all)).length === 0 ? [] : undefined), 30_000, 'store clean').catch(
    () => storeProblems(c, all),
  );
  t.deepEqual(store, [], 'no write lost or doubled, no orphan allocation, no address twice');
  t.deepEqual(await kernelProblems(c, all), [], 'kernels agree with the store');
  const fdb = await eventually(async () => ((await fdbProblems(c)).length === 0 ? [] : undefined), 30_000, 'FDBs converge').catch(() =>
    fdbProblems(c),
  );
  t.deepEqual(fdb, [], 'every host forwards to every remote port');
  t.deepEqual(await unreachable(c, seeds, outcomes), [], 'every successful workload answers from another host');
  keep = false;
});
