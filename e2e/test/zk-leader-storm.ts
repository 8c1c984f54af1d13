// The ZooKeeper leader killed during an attach storm (issue 12): shared by e2e/test/zk-leader.test.ts (a few hosts,
// in CI) and bench/zk-storm.ts (20 hosts). A real 3-server ensemble on loopback, harness hosts each running a real
// agent connected to all three servers, many workload-API attaches at once on every host, and the leader SIGKILLed
// in the middle. audit() then checks the store and the kernels: every successful attach has exactly one port and
// one address per family, no address is held twice, no allocation is orphaned, failed attaches (detached as a
// runtime would after a failed ADD) left nothing, and FDBs and reachability converge.
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Port } from '../../core/model/types.js';
import { ZooKeeperStore } from '../../core/store/zookeeper.js';
import { fourLetterWord, ZooKeeperEnsemble } from '../../core/testing/zookeeper.js';
import { WorkloadApiError, WorkloadClient } from '../../core/workload/client.js';
import type { AttachResult } from '../../core/workload/types.js';
import { beesArgv } from '../../testbed/bees-entry.js';
import { eventually } from '../../testbed/cluster.js';
import { Harness, type HarnessHost } from '../harness/index.js';

export const NETWORK = 'storm';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StormAgent {
  host: HarnessHost;
  hostId: string;
  workloads: WorkloadClient;
  proc: ChildProcess | undefined;
}

/** One attach of the storm and how it ended. */
export interface Outcome {
  host: number;
  workloadId: string;
  netns: string;
  /** ms since the storm's start when the request was sent, and how long it took. */
  startMs: number;
  ms: number;
  /** The leader was killed before this attach ended (it may have started before). */
  spansKill: boolean;
  /** 'storm': sent around the kill; 'after': sent once a new leader served and every agent was ready again. */
  phase: 'seed' | 'storm' | 'after';
  result?: AttachResult;
  /** Failure: HTTP status, workload API code, message. */
  status?: number;
  code?: string;
  message?: string;
}

export interface StormOptions {
  /** Attaches per host, all sent at once (spread over `spreadMs`). */
  perHost: number;
  /** Send times are spread evenly over this many ms, so attaches start before, during and after the failover. */
  spreadMs: number;
  /** The leader is SIGKILLed this many ms after the first attach is sent. */
  killAfterMs: number;
  /** Client-side bound on one attach; exceeding it counts as a hang. */
  attachTimeoutMs: number;
  /** Attaches per host sent at once after the failover (a new leader serves, every agent is ready). */
  afterPerHost: number;
}

export interface StormRun {
  outcomes: Outcome[];
  killedMember: number;
  /** ms after the storm's start when the leader was killed, and when a new leader served. */
  killAtMs: number;
  newLeaderAtMs: number;
  /** ms after the storm's start when every agent said ready again after the failover. */
  readyAgainAtMs: number;
}

export class StormCluster {
  private constructor(
    readonly ensemble: ZooKeeperEnsemble,
    readonly harness: Harness,
    readonly root: string,
    readonly agents: StormAgent[],
    /** A store client of the test process (loopback, all three servers), for auditing. */
    readonly store: ZooKeeperStore,
  ) {}

  /** Store URL as the hosts see it: all three servers through the harness's root address. */
  get agentUrl(): string {
    return `zk://${this.ensemble.connectString.replaceAll('127.0.0.1', this.harness.rootIp)}${this.root}`;
  }

  static async start(hosts: number, progress: (m: string) => void = () => undefined): Promise<StormCluster> {
    progress('starting a 3-server ZooKeeper ensemble');
    // A 200 ms tick, as the e2e cluster: sessions of dead clients go within seconds. No fsync: the test kills a
    // process, not the machine, and a shared busy disk would stall the servers for seconds.
    const ensemble = await ZooKeeperEnsemble.start(3, { clientPortAddress: '0.0.0.0', tickTime: 200, forceSync: false, heapMb: 192 });
    let harness: Harness | undefined;
    let store: ZooKeeperStore | undefined;
    try {
      progress(`building ${hosts} hosts`);
      harness = await Harness.create({ hosts });
      const root = `/bees-storm-${randomBytes(3).toString('hex')}`;
      store = await ZooKeeperStore.open(`zk://${ensemble.connectString}${root}`);
      const agents = harness.hosts.map((host): StormAgent => ({
        host,
        hostId: randomUUID(),
        workloads: new WorkloadClient(join(host.stateDir, 'run', 'workload.sock'), 120_000),
        proc: undefined,
      }));
      const c = new StormCluster(ensemble, harness, root, agents, store);
      progress(`starting ${hosts} agents (each connected to all three servers)`);
      for (let i = 0; i < agents.length; i += 4) await Promise.all(agents.slice(i, i + 4).map((a) => c.startAgent(a)));
      return c;
    } catch (e) {
      await store?.close();
      await harness?.destroy({ keepLogs: true });
      await ensemble.cleanup();
      if (harness && e instanceof Error) e.message += ` (logs kept in ${harness.baseDir})`;
      throw e;
    }
  }

  async startAgent(a: StormAgent): Promise<void> {
    const h = a.host;
    a.proc = this.harness.spawn(
      h,
      [
        ...beesArgv(),
        'agent',
        '--store',
        this.agentUrl,
        '--host-id',
        a.hostId,
        '--host-name',
        `${this.harness.tag}-${h.name}`,
        '--state-dir',
        h.stateDir,
        '--run-dir',
        join(h.stateDir, 'run'),
        '--underlay-ip',
        h.underlayIp,
        '--router-ns-prefix',
        h.routerNsPrefix,
        '--network-linger',
        '1',
      ],
      { logName: 'agent', env: { ...process.env, NODE_OPTIONS: '' } },
    );
    const proc = a.proc;
    await eventually(
      async () => {
        if (proc.exitCode !== null) throw new Error(`agent of ${h.name} exited with ${proc.exitCode}; see ${h.stateDir}/agent.log`);
        return (await a.workloads.status()).ready;
      },
      120_000,
      `agent of ${h.name} ready`,
      200,
    );
  }

  /** Index of the member that says it leads, or -1. */
  async leader(): Promise<number> {
    const modes = await Promise.all(
      this.ensemble.members.map((m) => (m.running ? fourLetterWord(m.host, m.port, 'srvr') : Promise.resolve(''))),
    );
    return modes.findIndex((s) => /Mode: leader/.test(s));
  }

  async close(opts: { keepLogs?: boolean } = {}): Promise<void> {
    await this.store.close().catch(() => undefined);
    await this.harness.destroy(opts);
    await this.ensemble.cleanup();
  }
}

/** Creates the storm's network (one workload on every host, which also proves each agent sees it). */
export async function seed(c: StormCluster, cidr: string): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const [i, a] of c.agents.entries()) {
    const netns = await c.harness.addWorkload(a.host, 'seed');
    const workloadId = `${c.harness.tag}-seed-${i}`;
    const t0 = Date.now();
    const result = await eventually(
      () =>
        a.workloads.attach({
          orchestrator: 'cli',
          workloadId,
          ifname: 'eth0',
          netns,
          network: NETWORK,
          ...(i === 0 ? { create: { subnets: [{ cidr }] } } : {}),
        }),
      30_000,
      `seed attach on ${a.host.name}`,
      200,
    );
    out.push({ host: i, workloadId, netns, startMs: 0, ms: Date.now() - t0, spansKill: false, phase: 'seed', result });
  }
  return out;
}

interface Planned {
  host: number;
  a: StormAgent;
  workloadId: string;
  netns: string;
}

async function plan(c: StormCluster, perHost: number, tag: string): Promise<Planned[]> {
  const planned = await Promise.all(
    c.agents.flatMap((a, host) =>
      Array.from({ length: perHost }, async (_, k) => ({
        host,
        a,
        k,
        workloadId: `${c.harness.tag}-${tag}${host}-${k}`,
        netns: await c.harness.addWorkload(a.host, `${tag}${k}`),
      })),
    ),
  );
  // Interleave hosts so every host is busy over the whole spread.
  return planned.sort((x, y) => x.k - y.k || x.host - y.host).map(({ k: _k, ...p }) => p);
}

/** Sends the planned attaches spread evenly over spreadMs; resolves with every outcome. */
function send(
  planned: Planned[],
  spreadMs: number,
  timeoutMs: number,
  phase: Outcome['phase'],
  t0: number,
  killAt: () => number,
): Promise<Outcome>[] {
  return planned.map(async (p, i): Promise<Outcome> => {
    await sleep((spreadMs * i) / Math.max(1, planned.length - 1));
    const client = new WorkloadClient(p.a.workloads.socketPath, timeoutMs);
    const s = Date.now();
    const base = { host: p.host, workloadId: p.workloadId, netns: p.netns, startMs: s - t0, phase };
    try {
      const result = await client.attach({
        orchestrator: 'cli',
        workloadId: p.workloadId,
        ifname: 'eth0',
        netns: p.netns,
        network: NETWORK,
      });
      return { ...base, ms: Date.now() - s, spansKill: Date.now() > killAt(), result };
    } catch (e) {
      const err = e as Partial<WorkloadApiError> & Error;
      return {
        ...base,
        ms: Date.now() - s,
        spansKill: Date.now() > killAt(),
        status: err.status ?? 0,
        code: err.code ?? 'thrown',
        message: err.message,
      };
    }
  });
}

/**
 * The storm: every attach at once (spread over spreadMs), the leader SIGKILLed after killAfterMs; then, once a new
 * leader serves and every agent is ready again, a second wave that must succeed whole.
 */
export async function storm(c: StormCluster, opts: StormOptions, progress: (m: string) => void = () => undefined): Promise<StormRun> {
  const planned = await plan(c, opts.perHost, 's');
  const later = await plan(c, opts.afterPerHost, 'a');
  const leader = await c.leader();
  if (leader < 0) throw new Error('no ZooKeeper member says it leads');
  let killAt = Number.POSITIVE_INFINITY;
  const t0 = Date.now();
  const attaches = send(planned, opts.spreadMs, opts.attachTimeoutMs, 'storm', t0, () => killAt);
  await sleep(opts.killAfterMs);
  progress(`killing the leader (member ${leader + 1}) with ${planned.length} attaches under way`);
  killAt = Date.now();
  await c.ensemble.stopMember(leader);
  const killAtMs = killAt - t0;
  const newLeader = await eventually(async () => ((await c.leader()) >= 0 ? Date.now() : undefined), 60_000, 'a new leader', 50);
  progress(`new leader after ${newLeader - killAt} ms`);
  const readyAgain = await eventually(
    async () =>
      (await Promise.all(c.agents.map((a) => a.workloads.status().then((s) => s.ready)))).every(Boolean) ? Date.now() : undefined,
    60_000,
    'every agent ready after the failover',
    50,
  );
  progress(`every agent ready again ${readyAgain - killAt} ms after the kill`);
  const outcomes = await Promise.all(attaches);
  const after = await Promise.all(send(later, 0, opts.attachTimeoutMs, 'after', t0, () => killAt));
  return {
    outcomes: [...outcomes, ...after],
    killedMember: leader,
    killAtMs,
    newLeaderAtMs: newLeader - t0,
    readyAgainAtMs: readyAgain - t0,
  };
}

/** Detaches every failed attach, as a container runtime does after a failed ADD; retried while the store is away. */
export async function detachFailed(c: StormCluster, outcomes: Outcome[]): Promise<void> {
  await Promise.all(
    outcomes
      .filter((o) => !o.result)
      .map((o) =>
        eventually(
          () => c.agents[o.host]!.workloads.detach({ orchestrator: 'cli', workloadId: o.workloadId, ifname: 'eth0' }).then(() => true),
          60_000,
          `detach of failed ${o.workloadId}`,
          250,
        ),
      ),
  );
}

const stripPrefix = (a: string) => a.split('/')[0]!;

/**
 * Store-side problems: an empty list means every successful attach has exactly one port whose addresses are the
 * ones it returned and exactly one allocation per family, nothing else on the network is held by a storm workload
 * that failed, and no address is held twice.
 */
export async function storeProblems(c: StormCluster, outcomes: Outcome[]): Promise<string[]> {
  await c.store.sync();
  const problems: string[] = [];
  const bridge = (await c.store.list('Bridge')).find((b) => b.value.name === NETWORK);
  if (!bridge) return [`network ${NETWORK} not in the store`];
  const ports = (await c.store.list('Port')).filter((p) => p.value.bridgeId === bridge.value.id && p.value.owner);
  const blocks = (await c.store.list('IpamBlock')).filter((b) => b.value.bridgeId === bridge.value.id);
  const allocs = blocks.flatMap((b) => Object.entries(b.value.allocations).map(([address, a]) => ({ address, ...a })));
  const byWorkload = new Map(outcomes.map((o) => [o.workloadId, o]));
  const portsOf = new Map<string, typeof ports>();
  for (const p of ports) {
    const w = p.value.owner!.workloadId;
    portsOf.set(w, [...(portsOf.get(w) ?? []), p]);
    if (!byWorkload.has(w)) problems.push(`port ${p.value.id} of unknown workload ${w}`);
  }
  for (const o of outcomes) {
    const mine = portsOf.get(o.workloadId) ?? [];
    const held = allocs.filter((a) => a.owner === `cli:${o.workloadId}`);
    if (o.result) {
      const want = o.result.ips.map((x) => stripPrefix(x.address)).sort();
      if (mine.length !== 1) problems.push(`${o.workloadId} succeeded but has ${mine.length} ports`);
      else {
        const p = mine[0]!;
        if ([...p.value.ips].sort().join() !== want.join())
          problems.push(`${o.workloadId}: port holds ${p.value.ips.join()} but the attach returned ${want.join()}`);
        if (p.value.id !== o.result.portId) problems.push(`${o.workloadId}: port ${p.value.id} is not the returned ${o.result.portId}`);
        // Created once with its final state: a second version means the write was applied again (or re-bound).
        if (p.version !== 1) problems.push(`${o.workloadId}: port written ${p.version} times`);
      }
      if (
        held
          .map((a) => a.address)
          .sort()
          .join() !== want.join()
      )
        problems.push(`${o.workloadId}: allocations ${held.map((a) => a.address).join() || 'none'}, attach returned ${want.join()}`);
    } else {
      if (mine.length > 0) problems.push(`${o.workloadId} failed (${o.code}) but left ${mine.length} ports`);
      if (held.length > 0) problems.push(`${o.workloadId} failed (${o.code}) but holds ${held.map((a) => a.address).join()}`);
    }
  }
  for (const a of allocs) {
    if (!a.owner.startsWith('cli:')) continue;
    const o = byWorkload.get(a.owner.slice(4));
    if (!o) problems.push(`orphan allocation ${a.address} held by ${a.owner}`);
  }
  const seen = new Map<string, string>();
  for (const p of ports) {
    for (const ip of p.value.ips) {
      if (seen.has(ip)) problems.push(`${ip} on two ports: ${seen.get(ip)} and ${p.value.id}`);
      seen.set(ip, p.value.id);
    }
  }
  return problems;
}

/** Kernel-side problems: each successful workload has its address on eth0, each failed one no eth0. */
export async function kernelProblems(c: StormCluster, outcomes: Outcome[]): Promise<string[]> {
  const problems: string[] = [];
  await Promise.all(
    outcomes.map(async (o) => {
      const r = await c.harness.exec(o.netns, ['ip', '-j', 'addr', 'show']);
      const links = JSON.parse(r.stdout || '[]') as { ifname: string; addr_info: { local: string }[] }[];
      const eth0 = links.find((l) => l.ifname === 'eth0');
      if (o.result) {
        const want = o.result.ips.map((x) => stripPrefix(x.address));
        const have = eth0?.addr_info.map((a) => a.local) ?? [];
        for (const w of want) if (!have.includes(w)) problems.push(`${o.workloadId}: ${w} not on eth0 (has ${have.join() || 'no eth0'})`);
      } else if (eth0) problems.push(`${o.workloadId} failed but its namespace has eth0`);
    }),
  );
  return problems;
}

/** MACs of remote ports missing from each host's FDB (the overlay's forwarding state). */
export async function fdbProblems(c: StormCluster): Promise<string[]> {
  const bridge = (await c.store.list('Bridge')).find((b) => b.value.name === NETWORK);
  if (!bridge) return ['no network'];
  const ports: Port[] = (await c.store.list('Port')).map((p) => p.value).filter((p) => p.bridgeId === bridge.value.id && p.owner);
  const problems: string[] = [];
  await Promise.all(
    c.agents.map(async (a) => {
      const r = await c.harness.exec(a.host, ['bridge', '-j', 'fdb', 'show']);
      const macs = new Set((JSON.parse(r.stdout || '[]') as { mac: string }[]).map((f) => f.mac));
      const missing = ports.filter((p) => p.hostId !== a.hostId && !macs.has(p.mac));
      if (missing.length) problems.push(`${a.host.name}: ${missing.length} remote MACs missing from the FDB (e.g. ${missing[0]!.mac})`);
    }),
  );
  return problems;
}

/** Pings every successful workload from the seed workload of the next host; returns those not reached. */
export async function unreachable(c: StormCluster, seeds: Outcome[], outcomes: Outcome[], withinMs = 10_000): Promise<string[]> {
  const ok = outcomes.filter((o) => o.result);
  const failed: string[] = [];
  for (let i = 0; i < ok.length; i += 16) {
    await Promise.all(
      ok.slice(i, i + 16).map(async (o) => {
        const from = seeds[(o.host + 1) % seeds.length]!;
        const ip = stripPrefix(o.result!.ips[0]!.address);
        if (!(await c.harness.pingEventually(from.netns, ip, withinMs))) failed.push(`${from.workloadId} -> ${o.workloadId} (${ip})`);
      }),
    );
  }
  return failed;
}

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}
