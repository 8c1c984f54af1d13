// An agent cluster for e2e suites, benchmarks and the demo: the multi-host harness, one real ZooKeeper in the
// root namespace (reached by hosts at harness.rootIp), and one real `bees agent` process per host, each with its
// own state and run directories, and clients of its REST API and workload API over their unix sockets.
// Reused by the overlay, CNI and Docker suites: anything adapter-specific stays out of here.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ApiClient } from '../core/api/client.js';
import { ZooKeeperServer } from '../core/testing/zookeeper.js';
import { WorkloadClient } from '../core/workload/client.js';
import type { AttachRequest, AttachResult } from '../core/workload/types.js';
import { beesArgv, productionLaunch, withNodeFlags } from './bees-entry.js';
import { Harness, nsArgv, type HarnessHost } from './index.js';

export interface ClusterOptions {
  hosts?: number;
  underlayMtu?: number;
  /**
   * ZooKeeper tick in ms. Sessions are bounded to [2, 20] ticks, so the tick bounds how long a dead agent's
   * liveness record survives: 200 ms caps the agent's 10 s session at 4 s. Default 200.
   */
  zkTickMs?: number;
  /** Extra flags for every agent. */
  agentArgs?: string[];
  /**
   * Run the agents under production's node flags and environment (app/main.ts's first line) instead of node's
   * defaults: for benchmarks whose figures (CPU, latency, memory) depend on them. Tests leave it off.
   */
  productionFlags?: boolean;
  /** Progress lines for a person watching (the demo, benchmarks). */
  progress?: (msg: string) => void;
  /** Milliseconds to wait for each agent to answer ready. Default 90 s (20 agents start slowly on 2 cores). */
  readyTimeoutMs?: number;
}

export interface ClusterHost {
  host: HarnessHost;
  hostId: string;
  runDir: string;
  workloads: WorkloadClient;
  api: ApiClient;
  /** The running agent process (undefined while killed). */
  agent: ChildProcess | undefined;
}

export interface Workload {
  name: string;
  workloadId: string;
  /** Network namespace path. */
  netns: string;
  on: ClusterHost;
  result: AttachResult;
  /** First address of each family, no prefix. */
  ip4?: string;
  ip6?: string;
}

export async function eventually<T>(fn: () => Promise<T | undefined | false>, withinMs: number, what: string, stepMs = 100): Promise<T> {
  const deadline = Date.now() + withinMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${withinMs} ms: ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

export class Cluster {
  readonly hosts: ClusterHost[] = [];
  private readonly attached: Workload[] = [];
  private readonly helpers = new Set<ChildProcess>();
  private closed = false;

  private constructor(
    readonly harness: Harness,
    readonly zk: ZooKeeperServer,
    /** Store URL as hosts see it. */
    readonly storeUrl: string,
    private readonly opts: ClusterOptions,
  ) {}

  static async start(opts: ClusterOptions = {}): Promise<Cluster> {
    const say = opts.progress ?? (() => undefined);
    const hosts = opts.hosts ?? 3;
    say(`starting ZooKeeper and building ${hosts} hosts (network namespaces on an underlay bridge, MTU ${opts.underlayMtu ?? 1500})`);
    // Independent: the JVM's start-up (seconds) covers the namespaces' making.
    const [zkStarted, built] = await Promise.allSettled([
      ZooKeeperServer.start({ clientPortAddress: '0.0.0.0', tickTime: opts.zkTickMs ?? 200, heapMb: 128 }),
      Harness.create({ hosts, ...(opts.underlayMtu ? { underlayMtu: opts.underlayMtu } : {}) }),
    ]);
    if (zkStarted.status === 'rejected' || built.status === 'rejected') {
      if (zkStarted.status === 'fulfilled') await zkStarted.value.cleanup();
      if (built.status === 'fulfilled') await built.value.destroy();
      throw zkStarted.status === 'rejected' ? zkStarted.reason : (built as PromiseRejectedResult).reason;
    }
    const zk = zkStarted.value;
    const harness = built.value;
    try {
      const storeUrl = `zk://${harness.rootIp}:${zk.port}/bees-${randomBytes(3).toString('hex')}`;
      const c = new Cluster(harness, zk, storeUrl, opts);
      for (const host of harness.hosts) {
        const runDir = join(host.stateDir, 'run');
        c.hosts.push({
          host,
          hostId: randomUUID(),
          runDir,
          agent: undefined,
          workloads: new WorkloadClient(join(runDir, 'workload.sock'), 60_000),
          api: new ApiClient(`unix:${join(runDir, 'api.sock')}`),
        });
      }
      say(`starting ${c.hosts.length} agents`);
      // Agents register concurrently; a few at a time keeps 20 of them from starving each other on 2 cores.
      for (let i = 0; i < c.hosts.length; i += 4) await Promise.all(c.hosts.slice(i, i + 4).map((h) => c.startAgent(h)));
      say('agents ready');
      return c;
    } catch (e) {
      // The error may point to an agent's log: keep them, and say where.
      await harness.destroy({ keepLogs: true });
      await zk.cleanup();
      if (e instanceof Error) e.message += ` (logs kept in ${harness.baseDir})`;
      throw e;
    }
  }

  host(i: number): ClusterHost {
    const h = this.hosts[i];
    if (!h) throw new Error(`no cluster host ${i} (have ${this.hosts.length})`);
    return h;
  }

  /** Start (or restart) the agent of a host and wait until its workload API says ready. */
  async startAgent(h: ClusterHost): Promise<void> {
    if (h.agent && h.agent.exitCode === null && h.agent.signalCode === null) throw new Error(`agent of ${h.host.name} is running`);
    const launch = this.opts.productionFlags ? productionLaunch() : { env: {}, nodeArgs: [] };
    h.agent = this.harness.spawn(
      h.host,
      [
        ...withNodeFlags(beesArgv(), launch),
        'agent',
        '--store',
        this.storeUrl,
        '--host-id',
        h.hostId,
        '--host-name',
        `${this.harness.tag}-${h.host.name}`,
        '--state-dir',
        h.host.stateDir,
        '--run-dir',
        h.runDir,
        '--underlay-ip',
        h.host.underlayIp,
        '--router-ns-prefix',
        h.host.routerNsPrefix,
        // Bridges and routers without local ports go after 1 s instead of 60: cleanup checks see them go.
        '--network-linger',
        '1',
        ...(this.opts.agentArgs ?? []),
      ],
      { logName: 'agent', env: { ...process.env, ...launch.env, NODE_OPTIONS: '' } },
    );
    const proc = h.agent;
    // An agent that exited will not become ready: say so at once (eventually() would retry past a throw).
    let exited: string | undefined;
    await eventually(
      async () => {
        if (proc.exitCode !== null) exited = `agent of ${h.host.name} exited with ${proc.exitCode}; see ${h.host.stateDir}/agent.log`;
        return exited !== undefined || (await h.workloads.status()).ready;
      },
      this.opts.readyTimeoutMs ?? 90_000,
      `agent of ${h.host.name} ready`,
      200,
    );
    if (exited) throw new Error(exited);
  }

  /** SIGKILL a host's agent (the datapath stays as it was) and wait for it to be gone. */
  async killAgent(h: ClusterHost): Promise<void> {
    const p = h.agent;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    // The harness runs it under nsenter in a group of its own: kill the whole group, as a crash would.
    process.kill(-p.pid!, 'SIGKILL');
    await gone;
    h.agent = undefined;
  }

  /**
   * Create a workload namespace on host `on` and attach it through that host's workload API. The attach is
   * retried (for up to a minute, a hang guard) while another host's write (a network created a moment ago) has not
   * reached this agent yet.
   */
  async attach(
    on: ClusterHost,
    name: string,
    req: Omit<AttachRequest, 'orchestrator' | 'workloadId' | 'ifname' | 'netns'> & Partial<AttachRequest>,
  ): Promise<Workload> {
    const netns = await this.harness.addWorkload(on.host, name);
    const workloadId = req.workloadId ?? `${this.harness.tag}-${name}`;
    const full: AttachRequest = { orchestrator: 'cli', workloadId, ifname: 'eth0', netns, ...req };
    try {
      const result = await eventually(() => on.workloads.attach(full), 60_000, `attach ${name} on ${on.host.name}`, 200);
      const ip = (f: 4 | 6) => result.ips.find((x) => x.family === f)?.address.split('/')[0];
      const w: Workload = { name, workloadId, netns, on, result, ...(ip(4) ? { ip4: ip(4)! } : {}), ...(ip(6) ? { ip6: ip(6)! } : {}) };
      this.attached.push(w);
      return w;
    } catch (e) {
      await this.harness.removeWorkload(netns);
      throw e;
    }
  }

  /** Detach through the workload API and delete the namespace. */
  async detach(w: Workload): Promise<void> {
    await w.on.workloads.detach({ orchestrator: 'cli', workloadId: w.workloadId, ifname: 'eth0' });
    await this.harness.removeWorkload(w.netns);
    this.attached.splice(this.attached.indexOf(w), 1);
  }

  /** Ping from a namespace (workload or host), IPv6 addresses included. */
  async ping(from: string | HarnessHost, ip: string, opts: { count?: number; timeoutSec?: number } = {}): Promise<boolean> {
    return this.harness.ping(from, ip, opts);
  }

  /** ping until one reply, for up to `withinMs` (a hang guard: see Harness.pingEventually). */
  pingEventually(from: string | HarnessHost, ip: string, withinMs = 30_000): Promise<boolean> {
    return this.harness.pingEventually(from, ip, withinMs);
  }

  /**
   * A helper process in a namespace (an iperf3 server…) whose output is discarded; killed by stop or close.
   * Resolves once `ready` (polled) holds.
   */
  async helper(netns: string, argv: string[], ready?: () => Promise<boolean>): Promise<{ stop(): void }> {
    const [cmd, ...rest] = nsArgv(netns, argv);
    const p = spawn(cmd!, rest, { stdio: 'ignore' });
    p.on('error', () => undefined);
    this.helpers.add(p);
    p.once('exit', () => this.helpers.delete(p));
    const stop = () => {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    };
    if (ready) {
      try {
        await eventually(
          async () => (p.exitCode !== null ? Promise.reject(new Error(`${argv[0]} exited`)) : ready()),
          10_000,
          `${argv[0]} ready in ${netns}`,
        );
      } catch (e) {
        stop();
        throw e;
      }
    }
    return { stop };
  }

  /** An iperf3 server on port 5201 in the namespace. */
  iperfServer(netns: string): Promise<{ stop(): void }> {
    return this.helper(
      netns,
      ['iperf3', '-s', '-p', '5201'],
      async () => (await this.harness.exec(netns, ['sh', '-c', 'ss -ltn | grep -q ":5201 "'])).code === 0,
    );
  }

  /** Gbit/s received in one single-stream iperf3 run from a namespace to an iperf3 server at `to`. */
  async iperf(from: string, to: string, seconds: number): Promise<number> {
    const r = await this.harness.exec(from, ['iperf3', '-c', to, '-p', '5201', '-t', String(seconds), '-J']);
    let j: { end?: { sum_received?: { bits_per_second?: number } }; error?: string } = {};
    try {
      j = JSON.parse(r.stdout || '{}') as typeof j;
    } catch {
      /* reported below with stderr */
    }
    const bps = j.end?.sum_received?.bits_per_second;
    if (!bps) throw new Error(`iperf3 to ${to} failed: ${j.error ?? (r.stderr.trim() || `exit ${r.code}`)}`);
    return bps / 1e9;
  }

  /** The agent's log so far (for failure messages). */
  agentLog(h: ClusterHost): string {
    try {
      return readFileSync(join(h.host.stateDir, 'agent.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * For ava: when the test has failed, log every agent's log before the cluster goes. Register it after the
   * cluster's own teardown (teardowns run last-registered first).
   */
  logAgentsOnFailure(t: { readonly passed: boolean; log(...values: unknown[]): void; teardown(fn: () => void): void }): void {
    t.teardown(() => {
      if (!t.passed) for (const h of this.hosts) t.log(`agent log of ${h.host.name}:\n${this.agentLog(h)}`);
    });
  }

  /**
   * Stop the agents, detach nothing (the harness's namespaces go with it), remove ZooKeeper. Safe twice. With
   * `keepLogs` the agents' logs stay in harness.baseDir (after a failure).
   */
  async close(opts: { keepLogs?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.helpers) p.kill('SIGKILL');
    await this.harness.destroy(opts);
    await this.zk.cleanup();
  }
}

export const startCluster = (opts: ClusterOptions = {}): Promise<Cluster> => Cluster.start(opts);
