// Fixture: the real bees agent (app/main.ts agent) on one or more e2e harness hosts, each in its own network
// namespace, on a file store (one host) or a shared ZooKeeper (several). The CNI tests drive it only through its
// sockets, as the plugin and an operator would: the workload API (workload.sock) and the REST API (api.sock).
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { IpamBlock } from '../../core/model/types.js';
import { ZooKeeperServer } from '../../core/testing/zookeeper.js';
import { Harness, type HarnessHost } from '../../e2e/harness/index.js';
import { productionLaunch } from '../../testbed/bees-entry.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface HostAgent {
  host: HarnessHost;
  /** Workload API socket: what the plugin's `agentSocket` names. */
  socket: string;
  apiSocket: string;
  proc: ChildProcess | undefined;
  /** GET on the agent's REST API; the parsed JSON body. */
  api<T = unknown>(path: string): Promise<T>;
  /** Stop the agent process (SIGTERM) and wait for it to exit. */
  stop(): Promise<void>;
  /** Start it again with the same flags; resolves when it answers ready. */
  start(): Promise<void>;
}

export interface AgentCluster {
  harness: Harness;
  agents: HostAgent[];
  /** Stops every agent and destroys the harness (namespaces, links, ZooKeeper). Safe to call twice. */
  close(): Promise<void>;
}

function httpGet(socket: string, path: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on ${socket}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

async function waitReady(socket: string, proc: ChildProcess, withinMs = 60_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`the agent exited with ${proc.exitCode} before it was ready`);
    const r = await httpGet(socket, '/v1/status').catch(() => undefined);
    if (r?.status === 200 && (JSON.parse(r.body) as { ready?: boolean }).ready) return;
    if (Date.now() > deadline) throw new Error(`the agent at ${socket} was not ready within ${withinMs} ms`);
    await new Promise((res) => setTimeout(res, 150));
  }
}

/**
 * `hosts` harness hosts, each with a real agent. One host: a file store in its state dir. Several: one real
 * ZooKeeper (on the harness's root address) shared by all, under a random root. `opts.store` gives the store URL
 * instead (a test's own ZooKeeper, or a relay in front of it), once the harness exists.
 */
export async function startAgents(
  hosts = 1,
  // productionFlags: the agents run under app/main.ts's node flags (benchmarks; see testbed/cluster.ts).
  opts: { store?: (harness: Harness) => Promise<string>; lingerSeconds?: number; productionFlags?: boolean } = {},
): Promise<AgentCluster> {
  const closers: (() => Promise<void>)[] = [];
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    let zk: ZooKeeperServer | undefined;
    if (hosts > 1 && !opts.store) {
      zk = await ZooKeeperServer.start({ clientPortAddress: '0.0.0.0' });
      closers.push(() => zk!.stop());
    }
    const harness = await Harness.create({ hosts });
    closers.push(() => harness.destroy());
    const zkRoot = `/bees-cni-${randomBytes(3).toString('hex')}`;
    const given = opts.store ? await opts.store(harness) : undefined;
    const agents = harness.hosts.map((host): HostAgent => {
      const run = join(host.stateDir, 'run');
      const store = given ?? (zk ? `zk://${harness.rootIp}:${zk.port}${zkRoot}` : `file:${join(host.stateDir, 'store')}`);
      const launch = opts.productionFlags ? productionLaunch() : { env: {}, nodeArgs: [] };
      const argv = [
        process.execPath,
        ...launch.nodeArgs,
        // Node options for the agent alone (`--cpu-prof --cpu-prof-dir=DIR` in bench/cni-profile.ts), since
        // NODE_OPTIONS is cleared for it below.
        ...(process.env.BEES_AGENT_NODE_ARGS ? process.env.BEES_AGENT_NODE_ARGS.split(' ') : []),
        '--import',
        'tsx',
        join(ROOT, 'app/main.ts'),
        'agent',
        '--store',
        store,
        '--state-dir',
        host.stateDir,
        '--run-dir',
        run,
        '--underlay-ip',
        host.underlayIp,
        '--router-ns-prefix',
        host.routerNsPrefix,
        // Bridges and routers without local ports go after 1 s instead of 60 unless asked: cleanup checks see them go.
        '--network-linger',
        String(opts.lingerSeconds ?? 1),
      ];
      const a: HostAgent = {
        host,
        socket: join(run, 'workload.sock'),
        apiSocket: join(run, 'api.sock'),
        proc: undefined,
        async api<T>(path: string): Promise<T> {
          const r = await httpGet(a.apiSocket, path);
          if (r.status !== 200) throw new Error(`GET ${path}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
          return JSON.parse(r.body) as T;
        },
        async stop() {
          const p = a.proc;
          if (!p || p.exitCode !== null || p.signalCode !== null) return;
          const exited = new Promise((res) => p.once('exit', res));
          p.kill('SIGTERM');
          await Promise.race([exited, new Promise((res) => setTimeout(res, 5000))]);
          if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
        },
        async start() {
          a.proc = harness.spawn(host, argv, { logName: 'agent', env: { ...process.env, ...launch.env, NODE_OPTIONS: '' } });
          await waitReady(a.socket, a.proc);
          // The REST API socket opens just after the workload socket: wait for it too, tests read it at once.
          for (
            const deadline = Date.now() + 10_000;
            !(await httpGet(a.apiSocket, '/v1/ports').then(
              () => true,
              () => false,
            ));
          ) {
            if (Date.now() > deadline) throw new Error(`the agent's API at ${a.apiSocket} did not open`);
            await new Promise((res) => setTimeout(res, 50));
          }
        },
      };
      return a;
    });
    closers.push(async () => {
      for (const a of agents) await a.stop();
    });
    await Promise.all(agents.map((a) => a.start()));
    return { harness, agents, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** The veths the agent made for workloads (host ends), in a host's namespace. */
export async function workloadVeths(harness: Harness, host: HarnessHost): Promise<string[]> {
  const r = await harness.exec(host, ['ip', '-j', 'link', 'show']);
  return (JSON.parse(r.stdout || '[]') as { ifname: string }[]).map((l) => l.ifname).filter((n) => /^bv[0-9a-f]{11}$/.test(n));
}

/** A port as the agent's REST API lists it: the fields the CNI tests look at. */
export interface AgentPort {
  id: string;
  owner?: { orchestrator: string; workloadId: string; ifname: string };
  ips: string[];
  options: Record<string, string>;
  mac: string;
}

/** The ports the agent holds for a workload (owner.workloadId), read from /v1/ports. */
export async function portsOf(agent: HostAgent, workloadId: string): Promise<AgentPort[]> {
  return (await agent.api<AgentPort[]>('/v1/ports')).filter((p) => p.owner?.workloadId === workloadId);
}

/** Every address the agent's IPAM holds for a workload (owner `cni:<id>`), read from /v1/ipam-blocks. */
export async function heldBy(agent: HostAgent, workloadId: string): Promise<string[]> {
  const blocks = await agent.api<IpamBlock[]>('/v1/ipam-blocks');
  return blocks.flatMap((b) =>
    Object.entries(b.allocations)
      .filter(([, a]) => a.owner === `cni:${workloadId}`)
      .map(([ip]) => ip),
  );
}
