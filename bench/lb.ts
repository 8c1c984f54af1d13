// The distributed L4 load balancer through real agents on real ZooKeeper in harness hosts (issue 10's list):
// - through a VIP vs straight to the member: TCP connection rate (sequential connect, one-byte greeting, close)
//   and single-stream throughput (iperf3), client on one host and the member on another, interleaved rounds;
// - a member change effective on every host: 20 hosts, each with an agent and a client workload of the VIP's
//   network, so each holds the VIP; a member removed or added through one host's REST API, and the time until each
//   host's kernel has committed the VIP chain with (or without) that member's element, seen by `nft monitor`
//   running in every host namespace (an event per committed rule, timestamped as it arrives here).
import { cpus, loadavg } from 'node:os';
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

// N connections one after the other (connect, read the byte, close); prints connections per second.
const CONNECTOR = `
import socket,sys,time
n=int(sys.argv[3]); t=time.monotonic(); bad=0
for i in range(n):
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3)
    if s.recv(1)!=b'x': bad+=1
    s.close()
  except Exception: bad+=1
if bad: print('errors',bad); sys.exit(1)
print(n/(time.monotonic()-t))
`;

async function connRate(c: Cluster, from: string, to: string, port: number, n: number): Promise<number> {
  const r = await c.harness.exec(from, ['python3', '-c', CONNECTOR, to, String(port), String(n)]);
  if (r.code !== 0) throw new Error(`connections to ${to}:${port} failed: ${r.stdout.trim()} ${r.stderr.trim()}`);
  return Number(r.stdout.trim());
}

/** VIP vs the member's own address, client on h1, member on h2 (both paths cross the tunnel once). */
async function viaVip(ctx: BenchContext): Promise<BenchRow[]> {
  const rounds = Math.max(MIN_ROUNDS, Math.round(5 * ctx.scale));
  const seconds = Math.max(2, Math.round(4 * ctx.scale));
  const conns = Math.max(100, Math.round(500 * ctx.scale));
  ctx.progress(`lb: VIP vs direct: 2 hosts, ${rounds} interleaved rounds (${conns} connections, ${seconds} s iperf3 each side)`);
  const c = await startCluster({ hosts: 2, progress: (m) => ctx.progress(`lb: ${m}`) });
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
    await c.iperfServer(m.netns);
    const api = h1.api;
    const router = (await api.list('Router')).find((r) => r.name === 'default')!;
    const lbId = (await api.create('LoadBalancer', { routerId: router.id })).id;
    const VIP = '10.96.7.1';
    for (const port of [8080, 5201]) {
      const pool = await api.create('Pool', { loadBalancerId: lbId });
      await api.create('PoolMember', { poolId: pool.id, address: m.ip4!, port, status: 'up' });
      await api.create('Vip', { poolId: pool.id, address: VIP, port });
    }
    await eventually(async () => (await connRate(c, cl.netns, VIP, 8080, 1)) > 0, 20_000, 'the VIP answers');
    const rate = await interleavedRounds(
      rounds,
      () => connRate(c, cl.netns, VIP, 8080, conns),
      () => connRate(c, cl.netns, m.ip4!, 8080, conns),
    );
    const tp = await interleavedRounds(
      rounds,
      () => c.iperf(cl.netns, VIP, seconds),
      () => c.iperf(cl.netns, m.ip4!, seconds),
    );
    return [
      {
        name: `TCP connection rate, sequential (${conns} per side per round), client on h1, member on h2`,
        unit: 'connections/s',
        ours: spread(rate.a, 0),
        reference: spread(rate.b, 0),
        ...pairedRatio(rate.a, rate.b),
        compares:
          'the same client and member: through the VIP (DNAT on the client host, one-member pool) ÷ to the member address; higher is better, goal ≥ 0.95',
      },
      {
        name: `TCP single stream (iperf3, ${seconds} s), client on h1, member on h2`,
        unit: 'Gbit/s',
        ours: spread(tp.a),
        reference: spread(tp.b),
        ...pairedRatio(tp.a, tp.b),
        compares: 'the same client and member: through the VIP ÷ to the member address; higher is better, goal ≥ 0.95',
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
  const c = await startCluster({ hosts, progress: (m) => ctx.progress(`lb: ${hosts} hosts: ${m}`) });
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

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const load = loadavg()[0]!.toFixed(1);
  const rows = await viaVip(ctx);
  const change = await memberChange(ctx);
  rows.push(...change.rows);
  return {
    title: 'Load balancer (VIPs through real agents)',
    method:
      'Harness hosts (network namespaces on a veth/bridge underlay), one real bees agent per host on one real ZooKeeper, objects written ' +
      'through the REST API. VIP vs direct: a client on h1 and a member on h2; a python client makes sequential TCP connections (read a ' +
      'one-byte greeting, close) to the VIP and to the member address, and iperf3 runs one TCP stream each way, in interleaved rounds ' +
      '(the side going first alternates). Member change: every host has a client of the network (so every host translates the VIP); a ' +
      'member of a three-member pool is removed, then added again, in turn; `nft monitor rules` in each host namespace timestamps the ' +
      `commit of the VIP's chain without or with it. ${change.hosts} agents, ZooKeeper and the test share the machine's ` +
      `${cpus().length} cores with other jobs (load average ${load} at the start): absolute times are inflated and noisy, the ` +
      'tail of the member change most of all.',
    rows,
  };
}
