// CPU time the agents spend per change, which load blurs far less than wall-clock latency: N agents on harness
// hosts, one workload each on one network, then attaches on host 0, each followed by a ping from host 1 until it
// answers (convergence). Prints per agent CPU ms per attach (host 0, the probe's host, the others) and, over an idle
// window longer than the periodic resync (30 s), CPU ms per agent per 30 s: the resync's idle cost.
// `node --import tsx bench/change-cpu.ts [hosts] [attaches] [idle seconds]`. Not part of `npm run bench`.
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { startCluster, type Cluster } from '../testbed/cluster.js';

const TICK_MS = 10; // USER_HZ = 100 on Linux

/** utime+stime+cutime+cstime (ms) of every process in the process group `pgid` (the agent and what it spawned). */
function groupCpuMs(pgid: number): number {
  let ticks = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'utf8');
    } catch {
      continue;
    }
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(f[2]) !== pgid) continue;
    ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  }
  return ticks * TICK_MS;
}

const cpuOf = (c: Cluster): number[] => c.hosts.map((h) => groupCpuMs(h.agent!.pid!));
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  const hosts = Number(process.argv[2] ?? 20);
  const attaches = Number(process.argv[3] ?? 10);
  const idleS = Number(process.argv[4] ?? 62);
  // Under production's node flags: the CPU per change depends on them (2-3× under --optimize-for-size, core/README.md).
  const c = await startCluster({ hosts, productionFlags: true, progress: (m) => console.error(m) });
  try {
    const probe = await c.attach(c.host(1), 'probe', { network: 'cv', create: { subnets: [{ cidr: '10.89.0.0/22' }] } });
    for (let i = 2; i < hosts; i++) await c.attach(c.host(i), `bg${i}`, { network: 'cv' });
    // Let the setup's passes settle.
    await new Promise((r) => setTimeout(r, 3000));
    const converge: number[] = [];
    const before = cpuOf(c);
    for (let i = 0; i < attaches; i++) {
      const start = process.hrtime.bigint();
      const w = await c.attach(c.host(0), `s${i}`, { network: 'cv' });
      const r = await c.harness.exec(probe.netns, ['ping', '-n', '-q', '-c', '1', '-i', '0.01', '-w', '10', w.ip4!]);
      if (r.code !== 0) throw new Error(`workload ${w.name} never answered`);
      converge.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    const after = cpuOf(c);
    const per = after.map((a, i) => (a - before[i]!) / attaches);
    const others = per.slice(2);
    console.log(
      `load ${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}; ${hosts} hosts, ${attaches} attaches`,
    );
    console.log(
      `convergence ms p50 ${pct(converge, 0.5).toFixed(0)} p99 ${pct(converge, 0.99).toFixed(0)}: ${converge.map((x) => x.toFixed(0)).join(' ')}`,
    );
    console.log(
      `CPU ms per attach: host A ${per[0]!.toFixed(1)}, host B ${per[1]!.toFixed(1)}, others mean ${(others.reduce((s, x) => s + x, 0) / Math.max(1, others.length)).toFixed(1)} max ${Math.max(...others).toFixed(1)}`,
    );
    if (idleS > 0) {
      const i0 = cpuOf(c);
      await new Promise((r) => setTimeout(r, idleS * 1000));
      const i1 = cpuOf(c);
      const idle = i1.map((a, i) => ((a - i0[i]!) * 30) / idleS);
      console.log(
        `idle CPU ms per agent per 30 s (resync): mean ${(idle.reduce((s, x) => s + x, 0) / idle.length).toFixed(1)} max ${Math.max(...idle).toFixed(1)}; load ${loadavg()
          .map((x) => x.toFixed(1))
          .join(' ')}`,
      );
    }
  } finally {
    await c.close();
  }
}

void main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
