// Docker: how long `docker run -d --network NET` takes until the container runs (its network is set up before
// the process starts), on a midonet network (driver + IPAM) against Docker's own bridge driver, same daemon, same
// run; and container-to-container TCP throughput across two hosts of a swarm (iperf3), midonet against Docker's
// overlay driver (or the underlay itself when the overlay driver does not work here).
import { spawn } from 'node:child_process';
import { execArgv } from '../e2e/harness/index.js';
import {
  interleavedRounds,
  median,
  MIN_ROUNDS,
  pairedRatio,
  percentile,
  type BenchContext,
  type BenchSection,
  type BenchRow,
} from './report.js';
import { BUSYBOX_IMAGE, type Dockerd } from '../swarm/test/dockerd.js';
import { startSingleHost } from '../swarm/test/single-host.js';
import { startSwarm } from '../swarm/test/swarm-cluster.js';

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const rows = [await startToRunning(ctx)];
  let method = '';
  try {
    const t = await throughput(ctx);
    rows.push(t.row);
    method = t.method;
  } catch (e) {
    ctx.progress(`docker: throughput not measured: ${(e as Error).message}`);
  }
  return {
    title: 'Docker libnetwork driver',
    method:
      `Start to running: one dockerd (vfs storage, --iptables=false) in a harness host namespace whose bees agent ` +
      '(store in ZooKeeper) serves the plugin; busybox containers started and removed one at a time on a midonet ' +
      `network (driver + IPAM) and on a Docker bridge network, in ${ROUNDS} interleaved rounds (which network goes ` +
      'first alternates), after one warm-up each; one resident ' +
      `container keeps each network present on the host. ${method}`,
    rows,
  };
}

/** Interleaved rounds of every comparison. */
const ROUNDS = 3;

async function startToRunning(ctx: BenchContext): Promise<BenchRow> {
  const n = Math.max(3, Math.round(15 * ctx.scale));
  ctx.progress('docker: starting ZooKeeper, an agent serving the midonet plugin, and a dockerd');
  const env = await startSingleHost();
  try {
    await env.dockerd.docker(['network', 'create', '-d', env.name, '--ipam-driver', env.name, '--subnet', '10.78.0.0/24', 'mnet']);
    await env.dockerd.docker(['network', 'create', '-d', 'bridge', '--subnet', '10.79.0.0/24', 'bnet']);
    // A resident container on each network: the host's bridge of each network stays up between runs, as on a
    // host in use (the first attachment of a network to a host also builds its bridge, which is not measured here).
    for (const net of ['mnet', 'bnet'])
      await env.dockerd.docker(['run', '-d', '--name', `${net}-resident`, '--network', net, BUSYBOX_IMAGE, 'sleep', '3600']);
    // Interleaved rounds: within a round the network going first alternates per container, so drift of the shared
    // machine weighs on both alike; one warm-up each, not counted.
    const rounds: Record<'mnet' | 'bnet', number[]>[] = [];
    let started = 0;
    const once = async (net: 'mnet' | 'bnet', count: boolean, into: Record<'mnet' | 'bnet', number[]>) => {
      const name = `${net}${started++}`;
      const start = process.hrtime.bigint();
      await env.dockerd.docker(['run', '-d', '--name', name, '--network', net, BUSYBOX_IMAGE, 'sleep', '600']);
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      if (count) into[net].push(ms);
      await env.dockerd.docker(['rm', '-f', name]);
    };
    const warm = { mnet: [] as number[], bnet: [] as number[] };
    await once('mnet', false, warm);
    await once('bnet', false, warm);
    const perRound = Math.max(1, Math.ceil(n / ROUNDS));
    for (let r = 0; r < ROUNDS; r++) {
      const samples = { mnet: [] as number[], bnet: [] as number[] };
      for (let i = 0; i < perRound; i++) {
        const order = (r + i) % 2 ? (['bnet', 'mnet'] as const) : (['mnet', 'bnet'] as const);
        for (const net of order) await once(net, true, samples);
      }
      rounds.push(samples);
      ctx.progress(`docker: round ${r + 1}/${ROUNDS}`);
    }
    await env.dockerd.docker(['rm', '-f', 'mnet-resident', 'bnet-resident']);
    await env.dockerd.docker(['network', 'rm', 'mnet', 'bnet']);
    const stats = (s: number[]) => ({ p50: percentile(s, 50), p90: percentile(s, 90), max: Math.max(...s) });
    return {
      name: `docker run -d --network (start to running, ${ROUNDS} rounds of ${perRound})`,
      ours: stats(rounds.flatMap((x) => x.mnet)),
      reference: stats(rounds.flatMap((x) => x.bnet)),
      ...pairedRatio(
        rounds.map((x) => median(x.mnet)),
        rounds.map((x) => median(x.bnet)),
      ),
      unit: 'ms',
      compares:
        'whole `docker run -d` CLI round trip on one dockerd: a network of the midonet driver + IPAM ÷ a network ' +
        "of Docker's bridge driver (per-round p50s); lower is better",
    };
  } finally {
    await env.close();
  }
}

/** One iperf3 run from namespace `from` to a one-off server in namespace `to` at `ip`; Gbit/s received. */
async function iperf(from: string, to: string, ip: string, seconds: number): Promise<number> {
  const server = spawn('nsenter', [`--net=${to}`, '/usr/bin/iperf3', '-s', '-1'], { stdio: 'ignore' });
  try {
    for (let attempt = 0; ; attempt++) {
      const r = await execArgv(
        ['nsenter', `--net=${from}`, '/usr/bin/iperf3', '-c', ip, '-t', String(seconds), '-J'],
        undefined,
        (seconds + 20) * 1000,
      );
      // -J reports failures (server not listening yet) in the JSON, sometimes with exit code 0.
      let bps: number | undefined;
      try {
        bps = (JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number } } }).end?.sum_received?.bits_per_second;
      } catch {
        bps = undefined;
      }
      if (r.code === 0 && bps) return bps / 1e9;
      if (attempt >= 20) throw new Error(`iperf3 to ${ip}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
      await new Promise((res) => setTimeout(res, 200));
    }
  } finally {
    server.kill();
  }
}

async function throughput(ctx: BenchContext): Promise<{ row: BenchRow; method: string }> {
  const runs = Math.max(MIN_ROUNDS, Math.round(5 * ctx.scale));
  const seconds = 3;
  ctx.progress('docker: starting a two-host swarm (agents, dockerds, managed plugin)');
  const swarm = await startSwarm(2);
  try {
    const { manager, daemons, plugin, cluster } = swarm;
    const [d0, d1] = daemons as [Dockerd, Dockerd];
    await manager.docker([
      'network',
      'create',
      '-d',
      plugin,
      '--ipam-driver',
      plugin,
      '--subnet',
      '10.93.0.0/24',
      '--attachable',
      'mswarm',
    ]);
    const overlay = await manager.docker(['network', 'create', '-d', 'overlay', '--subnet', '10.94.0.0/24', '--attachable', 'oswarm']).then(
      () => true,
      () => false,
    );
    // A pair of containers per network, one on each host; iperf3 runs in their namespaces from the host.
    const pair = async (net: string) => {
      const ns = async (d: Dockerd, name: string) => {
        await d.docker(['run', '-d', '--name', name, '--network', net, BUSYBOX_IMAGE, 'sleep', '3600']);
        const [pid, ip] = (
          await d.docker(['inspect', '-f', '{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', name])
        ).split(' ');
        return { netns: `/proc/${pid}/ns/net`, ip: ip! };
      };
      return { a: await ns(d0, `${net}-a`), b: await ns(d1, `${net}-b`) };
    };
    const ours = await pair('mswarm');
    let reference = overlay ? await pair('oswarm').catch(() => undefined) : undefined;
    if (
      reference &&
      !(await iperf(reference.a.netns, reference.b.netns, reference.b.ip, 1).then(
        () => true,
        () => false,
      ))
    )
      reference = undefined;
    const h0 = cluster.host(0).host;
    const h1 = cluster.host(1).host;
    const ref = reference ?? { a: { netns: h0.netns, ip: h0.underlayIp }, b: { netns: h1.netns, ip: h1.underlayIp } };
    const { a: oursRuns, b: refRuns } = await interleavedRounds(
      runs,
      async (r) => {
        ctx.progress(`docker: throughput round ${r + 1}/${runs}`);
        return iperf(ours.a.netns, ours.b.netns, ours.b.ip, seconds);
      },
      () => iperf(ref.a.netns, ref.b.netns, ref.b.ip, seconds),
    );
    const what = reference ? "Docker's overlay driver" : 'the underlay (host to host; the overlay driver did not work here)';
    return {
      row: {
        name: `container to container across hosts, TCP (iperf3, ${seconds} s x ${runs})`,
        ours: { p50: median(oursRuns), max: Math.max(...oursRuns) },
        reference: { p50: median(refRuns), max: Math.max(...refRuns) },
        ...pairedRatio(oursRuns, refRuns),
        unit: 'Gbit/s',
        compares: `single-stream TCP between containers on two swarm hosts: midonet network ÷ ${what}; higher is better`,
      },
      method:
        `Throughput: a two-host swarm (one agent and one dockerd per harness host, the managed plugin on both), one ` +
        `container per host on an attachable midonet network and on the reference, single-stream iperf3 run in the ` +
        `containers' namespaces, in interleaved rounds (the side going first alternates).`,
    };
  } finally {
    await swarm.close();
  }
}
