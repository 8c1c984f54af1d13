// Docker: how long `docker run -d --network NET` takes until the container runs (its network is set up before
// the process starts), on a midonet network (driver + IPAM) against Docker's own bridge driver, same daemon, same run.
import { percentile, type BenchContext, type BenchSection, type BenchRow } from './report.js';
import { BUSYBOX_IMAGE } from '../swarm/test/dockerd.js';
import { startSingleHost } from '../swarm/test/single-host.js';

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const n = Math.max(3, Math.round(15 * ctx.scale));
  ctx.progress('docker: starting ZooKeeper, an agent, a dockerd and the midonet driver');
  const env = await startSingleHost();
  try {
    const { docker } = env.dockerd;
    await docker(['network', 'create', '-d', env.name, '--ipam-driver', env.name, '--subnet', '10.78.0.0/24', 'mnet']);
    await docker(['network', 'create', '-d', 'bridge', '--subnet', '10.79.0.0/24', 'bnet']);
    // A resident container on each network: the host's bridge of each network stays up between runs, as on a
    // host in use (the first attachment of a network to a host also builds its bridge, which is not measured here).
    for (const net of ['mnet', 'bnet']) await docker(['run', '-d', '--name', `${net}-resident`, '--network', net, BUSYBOX_IMAGE, 'sleep', '3600']);
    const samples: Record<'mnet' | 'bnet', number[]> = { mnet: [], bnet: [] };
    // Interleaved, so drift of the shared machine weighs on both alike; one warm-up each, not counted.
    for (let i = -1; i < n; i++) {
      for (const net of ['mnet', 'bnet'] as const) {
        const name = `${net}${i + 1}`;
        const start = process.hrtime.bigint();
        await docker(['run', '-d', '--name', name, '--network', net, BUSYBOX_IMAGE, 'sleep', '600']);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        if (i >= 0) samples[net].push(ms);
        await docker(['rm', '-f', name]);
      }
      if (i >= 0 && i % 5 === 0) ctx.progress(`docker: ${i + 1}/${n}`);
    }
    await docker(['rm', '-f', 'mnet-resident', 'bnet-resident']);
    await docker(['network', 'rm', 'mnet', 'bnet']);
    const stats = (s: number[]) => ({ p50: percentile(s, 50), p90: percentile(s, 90), max: Math.max(...s) });
    const ours = stats(samples.mnet);
    const reference = stats(samples.bnet);
    const row: BenchRow = {
      name: 'docker run -d --network (start to running)',
      ours, reference, ratio: ours.p50 / reference.p50, unit: 'ms',
      note: 'ratio = midonet p50 / bridge p50; lower is better. The whole `docker run -d` CLI round trip is timed.',
    };
    return {
      title: 'Docker libnetwork driver',
      method: `One dockerd (vfs storage, --iptables=false) in a harness host namespace with a bees agent (store in ZooKeeper); `
        + `${n} containers (busybox) started and removed one at a time on a midonet network (driver + IPAM) and on a `
        + 'Docker bridge network, interleaved, after one warm-up each; one resident container keeps each network present on the host.',
      rows: [row],
    };
  } finally {
    await env.close();
  }
}
