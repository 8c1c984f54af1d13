// The distributed L4 load balancer through real agents on real ZooKeeper in harness hosts (issue 10's list):
// - through a VIP vs straight to the member: TCP connection rate (sequential connect, one-byte greeting, close)
//   and single-stream throughput (iperf3), client on one host and the member on another, interleaved rounds;
// - a member change effective on every host: 20 hosts, each with an agent and a client workload of the VIP's
//   network, so each holds the VIP; a member removed or added through one host's REST API, and the time until each
//   host's kernel has committed the VIP chain with (or without) that member's element, seen by `nft monitor`
//   running in every host namespace (an event per committed rule, timestamped as it arrives here).
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, eventually, type Cluster, type Workload } from '../testbed/cluster.js';
import { Monitor } from './nft-monitor.js';
import type { PoolMember, Vip } from '../core/model/types.js';
import {
  interleavedRounds,
  median,
  MIN_ROUNDS,
  pairedRatio,
  percentile,
  type BenchContext,
  type BenchRow,
  type BenchSection,
} from './report.js';

const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const spread = (xs: number[], d = 2) => ({ median: round(median(xs), d), min: round(Math.min(...xs), d), max: round(Math.max(...xs), d) });

// One byte to every connection, then close: what a connection costs, not what a server does with it.
const GREETER = `
import asyncio
async def on(r, w):
  w.write(b'x'); await w.drain(); w.close()
async def main():
  s = await asyncio.start_server(on, '0.0.0.0', 8080, backlog=1024)
  async with s: await s.serve_forever()
asyncio.run(main())
`;

// Connections one after the other for a given time (connect, read the byte, close); prints connections per second,
// failures, and the CPU time the process ran per connection (/proc/self/schedstat: on veths the forward path runs in
// softirq in the sender's own context, and without IRQ time accounting that time is counted to it). A fixed time
// rather than a fixed count: both sides of a side-by-side round then run over the same interval.
const CONNECTOR = `
import socket,sys,time
cpu=lambda: int(open('/proc/self/schedstat').read().split()[0])
d=float(sys.argv[3]); c0=cpu(); t0=time.monotonic(); n=0; bad=0
while time.monotonic()-t0<d:
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3)
    if s.recv(1)!=b'x': bad+=1
    s.close(); n+=1
  except Exception: bad+=1
print(n/(time.monotonic()-t0), bad, (cpu()-c0)/max(n,1))
`;

/** Connections that failed (timeout 3 s, reset), per destination: reported beside the rates, never hidden. */
const failed = new Map<string, number>();

/** `taskset -c <cpu>` before a client's argv when it is pinned (side by side: both clients on one CPU). */
const pinned = (cpu: number | undefined, argv: string[]): string[] => (cpu === undefined ? argv : ['taskset', '-c', String(cpu), ...argv]);

/**
 * Connections per second; the CPU nanoseconds per connection go to `costs` (when given), in call order, so a side's
 * costs pair with its rates round by round.
 */
async function connRate(
  c: Cluster,
  from: string,
  to: string,
  port: number,
  seconds: number,
  cpu?: number,
  costs?: number[],
): Promise<number> {
  const r = await c.harness.exec(from, pinned(cpu, ['python3', '-c', CONNECTOR, to, String(port), String(seconds)]));
  const [rate, bad, ns] = r.stdout.trim().split(' ').map(Number);
  if (r.code !== 0 || !Number.isFinite(rate) || !rate)
    throw new Error(`connections to ${to}:${port} failed: ${r.stdout.trim()} ${r.stderr.trim()}`);
  failed.set(to, (failed.get(to) ?? 0) + (bad ?? 0));
  costs?.push(ns!);
  return rate;
}

/**
 * Gbit/s of one single-stream iperf3 run to the server on `port` (the cluster's iperf() knows 5201 only); the
 * client's CPU per byte (iperf3's own rusage figure: its softirq carries the forward path) goes to `costs` in ns/B.
 */
async function iperfTo(
  c: Cluster,
  from: string,
  to: string,
  port: number,
  seconds: number,
  cpu?: number,
  costs?: number[],
): Promise<number> {
  const r = await c.harness.exec(from, pinned(cpu, ['iperf3', '-c', to, '-p', String(port), '-t', String(seconds), '-J']));
  let j: {
    end?: {
      sum_received?: { bits_per_second?: number; bytes?: number };
      sum_sent?: { seconds?: number };
      cpu_utilization_percent?: { host_total?: number };
    };
    error?: string;
  } = {};
  try {
    j = JSON.parse(r.stdout || '{}') as typeof j;
  } catch {
    /* reported below with stderr */
  }
  const bps = j.end?.sum_received?.bits_per_second;
  if (!bps) throw new Error(`iperf3 to ${to}:${port} failed: ${j.error ?? (r.stderr.trim() || `exit ${r.code}`)}`);
  const busy = ((j.end?.cpu_utilization_percent?.host_total ?? 0) / 100) * (j.end?.sum_sent?.seconds ?? seconds);
  costs?.push((busy * 1e9) / (j.end?.sum_received?.bytes ?? 1));
  return bps / 1e9;
}

/**
 * Both sides at once in each round (the side launched first alternates): they share the same interval of a
 * machine whose load swings from second to second, so the per-round ratio compares the paths, not the moments.
 * Both clients are pinned to one CPU (which one goes round the CPUs): unpinned, the scheduler put each on a CPU of
 * its own, one of them busier with other jobs, and the per-round ratios spread from 0.35 to 7.
 */
async function sideBySide(
  rounds: number,
  a: (cpu: number) => Promise<number>,
  b: (cpu: number) => Promise<number>,
): Promise<{ a: number[]; b: number[] }> {
  const out: { a: number[]; b: number[] } = { a: [], b: [] };
  for (let r = 0; r < rounds; r++) {
    const cpu = r % cpus().length;
    let x: number, y: number;
    if (r % 2 === 0) {
      const pa = a(cpu);
      [x, y] = await Promise.all([pa, b(cpu)]);
    } else {
      const pb = b(cpu);
      [y, x] = await Promise.all([pb, a(cpu)]);
    }
    out.a.push(x);
    out.b.push(y);
  }
  return out;
}

/**
 * VIP vs the member's own address, client on h1, member on h2 (both paths cross the tunnel once), measured two
 * ways: sequential interleaved rounds (one path at a time, the first alternating) and side-by-side rounds.
 */
async function viaVip(ctx: BenchContext): Promise<BenchRow[]> {
  const rounds = Math.max(MIN_ROUNDS, Math.round(9 * ctx.scale));
  const pairs = Math.max(MIN_ROUNDS, Math.round(15 * ctx.scale));
  const seconds = Math.max(2, Math.round(3 * ctx.scale));
  ctx.progress(`lb: VIP vs direct: 2 hosts, ${rounds} interleaved and ${pairs} side-by-side rounds of ${seconds} s per side`);
  const c = await startCluster({ hosts: 2, productionFlags: true, progress: (m) => ctx.progress(`lb: ${m}`) });
  try {
    const [h1, h2] = [c.host(0), c.host(1)];
    const cl = await c.attach(h1, 'cl', { network: 'lbb', create: { subnets: [{ cidr: '10.87.0.0/24' }] } });
    const m = await c.attach(h2, 'm', { network: 'lbb' });
    if (!(await c.pingEventually(cl.netns, m.ip4!))) throw new Error('client does not reach the member');
    await c.helper(
      m.netns,
      ['python3', '-c', GREETER],
      async () => (await c.harness.exec(m.netns, ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
    );
    // Two iperf3 servers: one test at a time each, and the side-by-side rounds run two.
    await c.iperfServer(m.netns);
    await c.helper(
      m.netns,
      ['iperf3', '-s', '-p', '5202'],
      async () => (await c.harness.exec(m.netns, ['sh', '-c', 'ss -ltn | grep -q ":5202 "'])).code === 0,
    );
    const api = h1.api;
    const router = (await api.list('Router')).find((r) => r.name === 'default')!;
    const lbId = (await api.create('LoadBalancer', { routerId: router.id })).id;
    const VIP = '10.96.7.1';
    for (const port of [8080, 5201]) {
      const pool = await api.create('Pool', { loadBalancerId: lbId });
      await api.create('PoolMember', { poolId: pool.id, address: m.ip4!, port, status: 'up' });
      await api.create('Vip', { poolId: pool.id, address: VIP, port });
    }
    await eventually(async () => (await connRate(c, cl.netns, VIP, 8080, 0.2)) > 0, 20_000, 'the VIP answers');
    const vipConn = (cpu?: number) => connRate(c, cl.netns, VIP, 8080, seconds, cpu);
    const directConn = (cpu?: number) => connRate(c, cl.netns, m.ip4!, 8080, seconds, cpu);
    // Failed connections of each kind of round, counted apart from the warm-up's.
    const failures = (): string => {
      const f = `failed connections (3 s timeout or reset): through the VIP ${failed.get(VIP) ?? 0}, direct ${failed.get(m.ip4!) ?? 0}`;
      failed.clear();
      return f;
    };
    failures();
    // CPU per connection and per byte of the sequential rounds: a cost a loaded machine blurs less than a rate.
    const connCost = { a: [] as number[], b: [] as number[] };
    const byteCost = { a: [] as number[], b: [] as number[] };
    const rate = await interleavedRounds(
      rounds,
      () => connRate(c, cl.netns, VIP, 8080, seconds, undefined, connCost.a),
      () => connRate(c, cl.netns, m.ip4!, 8080, seconds, undefined, connCost.b),
    );
    const rateFailed = failures();
    const rate2 = await sideBySide(pairs, vipConn, directConn);
    const rate2Failed = failures();
    const tp = await interleavedRounds(
      rounds,
      () => iperfTo(c, cl.netns, VIP, 5201, seconds, undefined, byteCost.a),
      () => iperfTo(c, cl.netns, m.ip4!, 5201, seconds, undefined, byteCost.b),
    );
    const tp2 = await sideBySide(
      pairs,
      (cpu) => iperfTo(c, cl.netns, VIP, 5201, seconds, cpu),
      (cpu) => iperfTo(c, cl.netns, m.ip4!, 5202, seconds, cpu),
    );
    const same = 'the same client and member: through the VIP (DNAT on the client host, one-member pool) ÷ to the member address';
    const goal = 'higher is better, goal ≥ 0.95';
    return [
      {
        name: `TCP connection rate, side by side (both paths at once, ${seconds} s), client on h1, member on h2`,
        unit: 'connections/s',
        ours: spread(rate2.a, 0),
        reference: spread(rate2.b, 0),
        ...pairedRatio(rate2.a, rate2.b),
        compares: `${same}, each round both running in the same ${seconds} s; ${goal}`,
        note: rate2Failed,
      },
      {
        name: `TCP single stream, side by side (two iperf3 streams at once, ${seconds} s), client on h1, member on h2`,
        unit: 'Gbit/s',
        ours: spread(tp2.a),
        reference: spread(tp2.b),
        ...pairedRatio(tp2.a, tp2.b),
        compares: `${same}, each round both streams running in the same ${seconds} s; ${goal}`,
      },
      {
        name: `TCP connection rate, sequential (${seconds} s per side per round), client on h1, member on h2`,
        unit: 'connections/s',
        ours: spread(rate.a, 0),
        reference: spread(rate.b, 0),
        ...pairedRatio(rate.a, rate.b),
        compares: `${same}, one after the other; ${goal}`,
        note: rateFailed,
      },
      {
        name: `TCP single stream (iperf3, ${seconds} s), sequential, client on h1, member on h2`,
        unit: 'Gbit/s',
        ours: spread(tp.a),
        reference: spread(tp.b),
        ...pairedRatio(tp.a, tp.b),
        compares: `${same}, one after the other; ${goal}`,
      },
      {
        name: 'CPU per connection in the client (sequential rounds), client on h1, member on h2',
        unit: 'µs per connection',
        ours: spread(
          connCost.a.map((x) => x / 1e3),
          0,
        ),
        reference: spread(
          connCost.b.map((x) => x / 1e3),
          0,
        ),
        // Inverted so that, as for the rates, higher is better: the rate the cost allows, VIP ÷ direct.
        ...pairedRatio(connCost.b, connCost.a),
        compares:
          "the client's CPU time per connection (its softirq carries the forward path through both hosts): direct ÷ through the VIP, " +
          `i.e. the connection rate the cost allows, VIP relative to direct; ${goal}`,
      },
      {
        name: 'CPU per byte in the iperf3 client (sequential rounds), client on h1, member on h2',
        unit: 'ns/B',
        ours: spread(byteCost.a, 3),
        reference: spread(byteCost.b, 3),
        ...pairedRatio(byteCost.b, byteCost.a),
        compares:
          "the iperf3 client's CPU time per byte received (rusage, tick-sampled): direct ÷ through the VIP, i.e. the throughput the " +
          `cost allows, VIP relative to direct; ${goal}`,
      },
    ];
  } finally {
    await c.close();
  }
}

/** Member removed / added through h1's API, until every host's kernel has the VIP chain without / with it. */
async function memberChange(ctx: BenchContext): Promise<{ rows: BenchRow[]; hosts: number }> {
  const hosts = ctx.scale < 0.3 ? Math.max(5, Math.round(20 * ctx.scale)) : 20;
  const changes = Math.max(4, Math.round(10 * ctx.scale));
  ctx.progress(`lb: member change on ${hosts} hosts, ${changes} changes (removed and added in turn)`);
  const c = await startCluster({ hosts, productionFlags: true, progress: (m) => ctx.progress(`lb: ${hosts} hosts: ${m}`) });
  const monitors: Monitor[] = [];
  try {
    const clients: Workload[] = [];
    for (const [i, h] of c.hosts.entries())
      clients.push(await c.attach(h, `c${i}`, { network: 'lbm', ...(i === 0 ? { create: { subnets: [{ cidr: '10.86.0.0/22' }] } } : {}) }));
    const api = c.host(0).api;
    const router = (await api.list('Router')).find((r) => r.name === 'default')!;
    const lbId = (await api.create('LoadBalancer', { routerId: router.id })).id;
    const pool = await api.create('Pool', { loadBalancerId: lbId });
    // Members are addresses of clients on three hosts (nothing listens: the kernel state is what is timed).
    const mk = (w: Workload): Promise<PoolMember> =>
      api.create('PoolMember', { poolId: pool.id, address: w.ip4!, port: 8080, status: 'up' });
    await mk(clients[0]!);
    await mk(clients[1]!);
    const vip: Vip = await api.create('Vip', { poolId: pool.id, address: '10.96.8.1', port: 80 });
    const chainOf = `v-${vip.id}`;
    // Every host holds the VIP before the clock starts.
    await eventually(
      async () =>
        (await Promise.all(c.hosts.map((h) => c.harness.exec(h.host, ['nft', 'list', 'chain', 'ip', 'bees-lb', chainOf])))).every(
          (r) => r.code === 0,
        ),
      120_000,
      'the VIP on every host',
      500,
    );
    for (const h of c.hosts) monitors.push(new Monitor(h.host.netns));
    await Promise.all(monitors.map((m) => m.ready));
    const samples: { removed: number[]; added: number[] } = { removed: [], added: [] };
    let changing: PoolMember | undefined = await mk(clients[2]!);
    await new Promise((r) => setTimeout(r, 3000));
    for (let i = 0; i < changes; i++) {
      const remove = changing !== undefined;
      const memberChain = (id: string) => `m-${vip.id}-${id}`;
      const rule = (line: string) => line.startsWith(`add rule ip bees-lb ${chainOf} `) && line.includes('numgen');
      let match: (line: string) => boolean;
      let write: () => Promise<unknown>;
      if (remove) {
        const id = changing!.id;
        match = (l) => rule(l) && !l.includes(memberChain(id));
        write = () => api.delete('PoolMember', id);
      } else {
        // The new member's id is known only once created: match any rule naming a member chain beyond the two kept.
        const kept = (await api.list('PoolMember', { poolId: pool.id })).map((m) => memberChain(m.id));
        match = (l) => rule(l) && (l.match(/goto m-/g) ?? []).length > kept.length;
        write = async () => (changing = await mk(clients[2]!));
      }
      const waits = monitors.map((m) => m.wait(match, 60_000));
      const t0 = performance.now();
      await write();
      if (remove) changing = undefined;
      const at = await Promise.all(waits);
      (remove ? samples.removed : samples.added).push(...at.map((x) => x - t0));
      // Let the cluster settle (status writes, resyncs) between changes.
      await new Promise((r) => setTimeout(r, 1500));
    }
    const stats = (xs: number[]) => ({
      p50: round(percentile(xs, 50)),
      p99: round(percentile(xs, 99)),
      max: round(Math.max(...xs)),
      n: xs.length,
    });
    const what =
      `from the REST call on h1 (store write included) until each host's kernel committed the VIP chain; ${hosts} hosts × ` +
      'the changes, every host counted; no reference beside it (ours alone)';
    return {
      hosts,
      rows: [
        { name: `member removed: effective on every host (${hosts} hosts)`, unit: 'ms', ours: stats(samples.removed), note: what },
        { name: `member added: effective on every host (${hosts} hosts)`, unit: 'ms', ours: stats(samples.added), note: what },
      ],
    };
  } finally {
    for (const m of monitors) m.stop();
    await c.close();
  }
}

/**
 * The member-change rows of the previous results.json, for a run of the VIP part alone (BENCH_LB=vip), each marked
 * with when it was measured.
 */
function previousChangeRows(): { rows: BenchRow[]; hosts: number; at: string } | undefined {
  try {
    const file = join(dirname(fileURLToPath(import.meta.url)), 'results.json');
    const old = JSON.parse(readFileSync(file, 'utf8')) as { sections?: { area?: string; measuredAt?: string; rows?: BenchRow[] }[] };
    const lb = old.sections?.find((s) => s.area === 'lb');
    const rows = (lb?.rows ?? []).filter((r) => r.name.startsWith('member '));
    if (!lb?.measuredAt || rows.length === 0) return undefined;
    const hosts = Number(/\((\d+) hosts\)/.exec(rows[0]!.name)?.[1] ?? 20);
    return {
      rows: rows.map((r) => ({ ...r, note: `${r.note ?? ''}; carried over from the run of ${lb.measuredAt}` })),
      hosts,
      at: lb.measuredAt,
    };
  } catch {
    return undefined;
  }
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const load = loadavg()[0]!.toFixed(1);
  const rows = await viaVip(ctx);
  // BENCH_LB=vip: the VIP-vs-direct part alone, the member-change rows kept from the previous run (20 agents weigh
  // on a shared machine; the two parts measure different things).
  const carried = process.env.BENCH_LB === 'vip' ? previousChangeRows() : undefined;
  const change = carried ?? (await memberChange(ctx));
  rows.push(...change.rows);
  return {
    title: 'Load balancer (VIPs through real agents)',
    method:
      'Harness hosts (network namespaces on a veth/bridge underlay), one real bees agent per host on one real ZooKeeper, objects written ' +
      'through the REST API. VIP vs direct: a client on h1 and a member on h2; a python client makes TCP connections one after the other ' +
      '(read a one-byte greeting, close) for a fixed time to the VIP and to the member address, and iperf3 runs one TCP stream to each, ' +
      'in two kinds of rounds: interleaved (one path at a time, the side going first alternates) and side by side (both paths at once ' +
      'over the same interval, from the same client, both clients pinned to one CPU, the side launched first alternating; iperf3 to two servers of the member). Side by ' +
      'side is the steadier comparison on a loaded machine: the load swings within seconds, and both paths meet the same swing. ' +
      "The sequential rounds also record the clients' CPU time per connection (/proc/self/schedstat) and per byte (iperf3's rusage): " +
      "on veths the forward path runs in softirq in the sender's context, so that is the path's cost, which load blurs less than a rate. " +
      'Member change: every host has a client of the network (so every host translates the VIP); a ' +
      'member of a three-member pool is removed, then added again, in turn; `nft monitor rules` in each host namespace timestamps the ' +
      `commit of the VIP's chain without or with it${carried ? ` (those rows carried over from the run of ${carried.at}: BENCH_LB=vip)` : ''}. ` +
      `${change.hosts} agents, ZooKeeper and the test share the machine's ` +
      `${cpus().length} cores with other jobs (load average ${load} at the start): absolute times are inflated and noisy, the ` +
      'tail of the member change most of all.',
    rows,
  };
}
