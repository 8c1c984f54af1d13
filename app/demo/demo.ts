// `bees demo`: a 3-host overlay on this machine (the testbed's namespace hosts, a ZooKeeper it starts, one real
// agent per host), two tenants with the same subnet, and live proof of cross-host ping, throughput and isolation.
// Everything it makes is removed at the end, on failure and on Ctrl-C; after a failure the agents' logs stay, and
// the report says where.
import { startCluster, type Cluster, type Workload } from '../../testbed/cluster.js';

export interface DemoCheck {
  check: string;
  from: string;
  to: string;
  expected: string;
  result: string;
  ok: boolean;
}

export interface DemoReport {
  /** Prefix of every namespace and link the demo made (all removed when it returns). */
  tag: string;
  hosts: { name: string; hostId: string; underlayIp: string }[];
  tenants: { name: string; network: string; subnet: string; workloads: { name: string; host: string; ip: string }[] }[];
  checks: DemoCheck[];
  ok: boolean;
  /** When a check failed: the directory where the agents' logs were kept. */
  logs?: string;
}

export interface DemoOptions {
  /** Seconds of iperf3. Default 3. */
  seconds?: number;
  progress(msg: string): void;
  /** Set when the user interrupts: the demo stops at the next step and cleans up. */
  signal?: AbortSignal;
}

const SUBNET = '10.90.0.0/24';

async function pingStats(c: Cluster, from: Workload, ip: string): Promise<{ ok: boolean; text: string }> {
  const r = await c.harness.exec(from.netns, ['ping', '-n', '-q', '-c', '5', '-i', '0.2', '-W', '1', ip]);
  const loss = /(\d+)% packet loss/.exec(r.stdout)?.[1];
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout)?.[1];
  return { ok: r.code === 0 && loss === '0', text: r.code === 0 ? `${loss}% loss, avg ${rtt} ms` : `no reply (${loss ?? '100'}% loss)` };
}

/** Runs the demo; the cluster is always destroyed before it returns or throws. */
export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const say = (msg: string) => opts.progress(msg);
  const stop = () => {
    if (opts.signal?.aborted) throw new Error('interrupted');
  };
  let cluster: Cluster | undefined;
  let failed = true;
  const abort = () => void cluster?.close();
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    cluster = await startCluster({ hosts: 3, progress: say });
    const c = cluster;
    stop();
    const [h1, h2, h3] = c.hosts as [Cluster['hosts'][0], Cluster['hosts'][0], Cluster['hosts'][0]];
    const tag = c.harness.tag;
    const tenantA = `acme-${tag}`;
    const tenantB = `bolt-${tag}`;
    const create = { subnets: [{ cidr: SUBNET }] };
    // Tenant B's addresses are picked so that "A cannot reach B" has a real target: they are unused in A.
    say(`tenant ${tenantA}: network "app" ${SUBNET}, workloads on h1 and h2`);
    const a1 = await c.attach(h1, 'a1', { tenant: tenantA, network: 'app', create, ips: ['10.90.0.10'] });
    const a2 = await c.attach(h2, 'a2', { tenant: tenantA, network: 'app', create, ips: ['10.90.0.11'] });
    stop();
    say(`tenant ${tenantB}: network "app" ${SUBNET} (the same subnet), workloads on h1 and h3`);
    const b1 = await c.attach(h1, 'b1', { tenant: tenantB, network: 'app', create, ips: ['10.90.0.20'] });
    const b3 = await c.attach(h3, 'b3', { tenant: tenantB, network: 'app', create, ips: ['10.90.0.21'] });
    stop();
    const where = (w: Workload) => `${w.name}@${w.on.host.name} ${w.ip4}`;
    const checks: DemoCheck[] = [];
    const add = (x: DemoCheck) => {
      checks.push(x);
      say(`${x.ok ? 'ok  ' : 'FAIL'} ${x.check}: ${x.from} -> ${x.to}: ${x.result}`);
    };

    say('cross-host ping (waiting for the overlay to converge)');
    for (const [x, y] of [
      [a1, a2],
      [a2, a1],
      [b1, b3],
      [b3, b1],
    ] as const) {
      await c.pingEventually(x.netns, y.ip4!, 10_000);
      const r = await pingStats(c, x, y.ip4!);
      add({ check: 'ping, same tenant, across hosts', from: where(x), to: where(y), expected: 'replies', result: r.text, ok: r.ok });
      stop();
    }

    const seconds = opts.seconds ?? 3;
    say(`throughput: iperf3, one TCP stream for ${seconds} s, ${a1.name}@h1 -> ${a2.name}@h2`);
    let server: { stop(): void } | undefined;
    try {
      server = await c.iperfServer(a2.netns);
      const gbps = await c.iperf(a1.netns, a2.ip4!, seconds);
      add({
        check: 'throughput over the overlay',
        from: where(a1),
        to: where(a2),
        expected: '> 0',
        result: `${gbps.toFixed(2)} Gbit/s`,
        ok: gbps > 0,
      });
    } catch (e) {
      add({
        check: 'throughput over the overlay',
        from: where(a1),
        to: where(a2),
        expected: '> 0',
        result: (e as Error).message,
        ok: false,
      });
    } finally {
      server?.stop();
    }
    stop();

    say('isolation: tenants must not reach each other, though their subnets are the same');
    for (const [x, y] of [
      [a1, b1],
      [a1, b3],
      [b3, a2],
      [b1, a2],
    ] as const) {
      const reached = await c.ping(x.netns, y.ip4!, { count: 2, timeoutSec: 1 });
      add({
        check: 'isolation between tenants',
        from: where(x),
        to: `${y.name}@${y.on.host.name} ${y.ip4} (other tenant)`,
        expected: 'no reply',
        result: reached ? 'REPLIED' : 'no reply',
        ok: !reached,
      });
      stop();
    }
    failed = !checks.every((x) => x.ok);
    return {
      ...(failed ? { logs: c.harness.baseDir } : {}),
      tag,
      hosts: c.hosts.map((h) => ({ name: h.host.name, hostId: h.hostId, underlayIp: h.host.underlayIp })),
      tenants: [
        {
          name: tenantA,
          network: 'app',
          subnet: SUBNET,
          workloads: [a1, a2].map((w) => ({ name: w.name, host: w.on.host.name, ip: w.ip4! })),
        },
        {
          name: tenantB,
          network: 'app',
          subnet: SUBNET,
          workloads: [b1, b3].map((w) => ({ name: w.name, host: w.on.host.name, ip: w.ip4! })),
        },
      ],
      checks,
      ok: checks.every((x) => x.ok),
    };
  } finally {
    opts.signal?.removeEventListener('abort', abort);
    say('cleaning up (agents, namespaces, ZooKeeper)');
    // Interrupted: the user asked to stop, nothing to investigate. Failed: keep what the error points to.
    const keepLogs = failed && !opts.signal?.aborted;
    await cluster?.close({ keepLogs });
    say(keepLogs && cluster ? `clean; the agents' logs are kept in ${cluster.harness.baseDir}` : 'clean');
  }
}
