// Scale by simulation (issue 12): a real 3-server ZooKeeper ensemble on this machine, N simulated hosts and M
// simulated ports written through the Store API (simulate.ts), and ONE real agent among them, in a harness host (a
// network namespace on a veth underlay), with one real workload on simulated network sim0. At each size:
// - the real agent's full sync: process start until its first reconcile pass has seen the store's newest change
//   (cold, with no local port; then a restart with its workload on sim0, so the pass programs sim0's remote ports);
// - its change-apply rate: ports created one per transaction (as attaches write them) by 16 writers, until the
//   agent's reconcile passes have seen the last one;
// - its memory after a full GC (gc-hook.mjs) and per remote port, against the smallest size;
// - ZooKeeper's data size and znode count (`mntr`) and the write rate of the seeding.
// The plots go to bench/scale/*.svg.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zookeeper from 'node-zookeeper-client';
import { ZooKeeperStore } from '../../core/store/zookeeper.js';
import { fourLetterWord, ZooKeeperEnsemble } from '../../core/testing/zookeeper.js';
import { WorkloadClient } from '../../core/workload/client.js';
import { beesArgv } from '../../testbed/bees-entry.js';
import { Harness } from '../../testbed/index.js';
import { productionLaunch } from '../memory.js';
import { markdown, type BenchContext, type BenchRow, type BenchSection } from '../report.js';
import { addHosts, addPorts, makeWorld, networkName } from './simulate.js';
import { lineChart } from './svg.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const GC_HOOK = pathToFileURL(join(HERE, 'gc-hook.mjs')).href;
const TRACE_HOOK = pathToFileURL(join(HERE, 'trace-hook.mjs')).href;
/**
 * BEES_SCALE_PROFILE=1: the agent runs with BEES_TRACE=1, its log lines stamped with the milliseconds since it
 * started (trace-hook.mjs) and a CPU profile per run (--cpu-prof, in its state directory); the logs are kept.
 */
const PROFILE = process.env.BEES_SCALE_PROFILE === '1';

export interface Size {
  hosts: number;
  ports: number;
}

export interface StepResult extends Size {
  /** Ports in the store when memory was measured (seeded + the change phase). */
  remotePorts: number;
  seedSecs: number;
  seedPortsPerSec: number;
  zkZnodes: number;
  zkDataBytes: number;
  coldSyncSecs: number;
  /** CPU seconds the agent used from its start until converged (cold, then after the restart). */
  coldSyncCpu: number;
  restartSyncCpu: number;
  /** Of coldSyncSecs, the process start until the workload API answered ready. */
  coldReadySecs: number;
  /**
   * Of coldSyncSecs, the process start until its code was loaded (its first log line, written just before it opens
   * the store): what is left, coldSyncSecs - coldLoadSecs, is the sync itself.
   */
  coldLoadSecs?: number;
  restartLoadSecs?: number;
  attachMs: number;
  changeWritesPerSec: number;
  changeAppliedPerSec: number;
  changeLagMs: number;
  restartSyncSecs: number;
  rssMiB: number;
  heapMiB: number;
  /** V8 heap reserved (heap used + its free space) and memory outside it held by JS objects (Buffers), after GC. */
  heapTotalMiB?: number;
  externalMiB?: number;
  /**
   * Change-log entries at the end, and the bytes of one listing of them: what each follower read per wake-up until
   * it read new entries by name (core/store/zk/log.ts); now only at its start and per lastSeq().
   */
  logEntries: number;
  logListingBytes: number;
  /** The machine's 1-minute load average at the end of the size's run: figures measured under load say so. */
  loadAvg?: number;
  error?: string;
}

const DEFAULT_SIZES: Size[] = [
  { hosts: 10, ports: 0 },
  { hosts: 100, ports: 10_000 },
  { hosts: 300, ports: 30_000 },
  { hosts: 1000, ports: 100_000 },
];

/** How long one phase (a sync, the change phase) may take: 2 cores shared with other work are slow. */
const TIMEOUT_MS = 900_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;
const r1 = (x: number) => Math.round(x * 10) / 10;

/** `SCALE_SIZES=100/10000,1000/100000` overrides the sizes (hosts/ports); BENCH_SCALE scales the port counts. */
export function sizesFrom(env: string | undefined, scale: number): Size[] {
  if (env) {
    return env.split(',').map((s) => {
      const [h, p] = s.split('/').map(Number);
      if (!Number.isInteger(h) || !Number.isInteger(p) || h! < 1 || p! < 0) throw new Error(`bad SCALE_SIZES entry ${s} (hosts/ports)`);
      return { hosts: h!, ports: p! };
    });
  }
  return DEFAULT_SIZES.map((s) => ({
    hosts: Math.max(10, Math.round(s.hosts * Math.min(1, scale))),
    ports: Math.round(s.ports * Math.min(1, scale)),
  }));
}

async function mntr(ensemble: ZooKeeperEnsemble): Promise<{ znodes: number; dataBytes: number }> {
  const text = await fourLetterWord('127.0.0.1', Number(ensemble.connectString.split(',')[0]!.split(':')[1]), 'mntr');
  const num = (k: string) => Number(new RegExp(`^${k}\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
  return { znodes: num('zk_znode_count'), dataBytes: num('zk_approximate_data_size') };
}

/**
 * The change log's size as a listing: what a follower read per change it woke for before it read new entries by
 * name (core/store/zk/follower.ts); it still lists once at start, and lastSeq() lists.
 */
async function logListing(connectString: string, root: string): Promise<{ entries: number; bytes: number }> {
  const c = zookeeper.createClient(connectString);
  c.connect();
  try {
    const names = await new Promise<string[]>((resolve, reject) =>
      c.getChildren(`${root}/log`, (e: unknown, ch: string[]) =>
        e ? reject(e instanceof Error ? e : new Error(`listing the change log failed: ${JSON.stringify(e)}`)) : resolve(ch),
      ),
    );
    // The reply: a 4-byte length and the name per child, and its path prefix is not repeated.
    return { entries: names.length, bytes: names.reduce((n, x) => n + 4 + x.length, 0) };
  } finally {
    c.close();
  }
}

function getMetrics(sock: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: sock, path: '/metrics', timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('metrics timed out')));
    req.on('error', reject);
  });
}

async function appliedSeq(sock: string): Promise<number> {
  const text = await getMetrics(sock);
  return Number(/^bees_applied_sequence (\S+)/m.exec(text)?.[1] ?? NaN);
}

/** Waits until the agent's reconcile passes have seen `target`; resolves with when (ms since epoch). */
async function untilApplied(sock: string, target: number, withinMs: number, what: string): Promise<number> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const seq = await appliedSeq(sock).catch(() => NaN);
    if (seq >= target) return Date.now();
    if (Date.now() > deadline) throw new Error(`timed out after ${withinMs} ms: ${what} (applied ${seq}, want ${target})`);
    await sleep(100);
  }
}

/** CPU seconds (user + system) the process has used: wall time on a shared machine says little on its own. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Asks the agent (through gc-hook.mjs) to collect garbage and report its memory. */
async function memoryAfterGc(pid: number, file: string): Promise<NodeJS.MemoryUsage> {
  const before = Date.now();
  process.kill(pid, 'SIGUSR2');
  for (let i = 0; i < 200; i++) {
    await sleep(50);
    try {
      const m = JSON.parse(readFileSync(file, 'utf8')) as NodeJS.MemoryUsage & { at: number };
      if (m.at >= before) return m;
    } catch {
      // not written yet
    }
  }
  throw new Error('the agent did not report its memory (gc-hook.mjs not loaded?)');
}

/**
 * The agent as production starts it: app/main.ts's first line sets node flags (a small young generation, V8's
 * size-optimised mode) and MALLOC_ARENA_MAX, which beesArgv() (node + tsx + the source) leaves out; memory read
 * without them says little about a deployed agent.
 */
// SCALE_DEFAULT_FLAGS=1: node's defaults instead, to compare (memory against sync and apply CPU).
const LAUNCH = process.env.SCALE_DEFAULT_FLAGS
  ? { env: {}, nodeArgs: [] }
  : productionLaunch(readFileSync(join(HERE, '..', '..', 'app', 'main.ts'), 'utf8').split('\n')[0]!);
const productionArgv = (argv: string[]): string[] => [argv[0]!, ...LAUNCH.nodeArgs, ...argv.slice(1)];

/** `node ARGS` with a CPU profile written to `dir` on exit (--cpu-prof is not allowed in NODE_OPTIONS). */
function profiled(argv: string[], dir: string): string[] {
  return [argv[0]!, '--cpu-prof', `--cpu-prof-dir=${dir}`, ...argv.slice(1)];
}

class RealAgent {
  proc: ReturnType<Harness['spawn']> | undefined;
  readonly hostId = randomUUID();
  readonly runDir: string;
  readonly memFile: string;
  readonly workloads: WorkloadClient;

  constructor(
    private readonly harness: Harness,
    private readonly storeUrl: string,
  ) {
    const h = harness.hosts[0]!;
    this.runDir = join(h.stateDir, 'run');
    this.memFile = join(h.stateDir, 'memory.json');
    this.workloads = new WorkloadClient(join(this.runDir, 'workload.sock'), 120_000);
  }

  get apiSock(): string {
    return join(this.runDir, 'api.sock');
  }

  /** When the last start() saw the workload API answer ready (ms since epoch). */
  readyAt = 0;
  /** When the last start() saw the agent's first line, i.e. its code loaded (ms since epoch; 0: not seen). */
  loadedAt = 0;

  /** Starts the agent; resolves with the start time once its workload API answers ready. */
  async start(): Promise<number> {
    const h = this.harness.hosts[0]!;
    rmSync(this.memFile, { force: true });
    const logFile = join(h.stateDir, 'agent.log');
    const logFrom = existsSync(logFile) ? statSync(logFile).size : 0;
    this.loadedAt = 0;
    const at = Date.now();
    this.proc = this.harness.spawn(
      h,
      [
        ...(PROFILE ? profiled(productionArgv(beesArgv()), join(h.stateDir, 'prof')) : productionArgv(beesArgv())),
        'agent',
        '--store',
        this.storeUrl,
        '--host-id',
        this.hostId,
        '--host-name',
        `${this.harness.tag}-scale`,
        '--state-dir',
        h.stateDir,
        '--run-dir',
        this.runDir,
        '--underlay-ip',
        h.underlayIp,
        '--router-ns-prefix',
        h.routerNsPrefix,
      ],
      {
        logName: 'agent',
        env: {
          ...process.env,
          ...LAUNCH.env,
          BEES_SCALE_MEMFILE: this.memFile,
          ...(PROFILE
            ? {
                NODE_OPTIONS: `--import ${GC_HOOK} --import ${TRACE_HOOK}`,
                BEES_TRACE: '1',
              }
            : { NODE_OPTIONS: `--import ${GC_HOOK}` }),
        },
      },
    );
    const proc = this.proc;
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`the agent exited with ${proc.exitCode}; see ${h.stateDir}/agent.log`);
      if (this.loadedAt === 0 && existsSync(logFile) && readFileSync(logFile).subarray(logFrom).includes('bees-agent: host ')) {
        this.loadedAt = Date.now();
      }
      if (
        await this.workloads.status().then(
          (s) => s.ready,
          () => false,
        )
      ) {
        this.readyAt = Date.now();
        return at;
      }
      if (Date.now() > deadline) throw new Error(`the agent was not ready in ${TIMEOUT_MS / 1000} s; see ${h.stateDir}/agent.log`);
      await sleep(100);
    }
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    process.kill(p.pid!, 'SIGTERM');
    const t = setTimeout(() => p.kill('SIGKILL'), 20_000);
    await gone;
    clearTimeout(t);
    this.proc = undefined;
  }
}

async function step(ctx: BenchContext, ensemble: ZooKeeperEnsemble, size: Size, index: number, changes: number): Promise<StepResult> {
  const say = (m: string) => ctx.progress(`scale ${size.hosts}/${size.ports}: ${m}`);
  const root = `/bees-scale-${index}-${randomUUID().slice(0, 6)}`;
  const store = await ZooKeeperStore.open(`zk://${ensemble.connectString}${root}`);
  let harness: Harness | undefined;
  let agent: RealAgent | undefined;
  let failed = false;
  try {
    const zk0 = await mntr(ensemble);
    const world = await makeWorld(store, size);
    say(`registering ${size.hosts} hosts`);
    await addHosts(store, world, size.hosts);
    say(`writing ${size.ports} ports (250 per transaction, 4 in flight)`);
    const seedStart = Date.now();
    let lastSaid = Date.now();
    await addPorts(store, world, size.ports, {
      onCommit: (n) => {
        if (Date.now() - lastSaid > 5000) {
          lastSaid = Date.now();
          say(`${n} ports written`);
        }
      },
    });
    const seedSecs = (Date.now() - seedStart) / 1000;
    const zk1 = await mntr(ensemble);

    harness = await Harness.create({ hosts: 1 });
    const agentUrl = `zk://${ensemble.connectString.replaceAll('127.0.0.1', harness.rootIp)}${root}`;
    agent = new RealAgent(harness, agentUrl);
    say('starting the real agent (no local port)');
    let target = await store.lastSeq();
    const coldStart = await agent.start();
    const coldSyncSecs = ((await untilApplied(agent.apiSock, target, TIMEOUT_MS, 'cold full sync')) - coldStart) / 1000;
    const coldReadySecs = (agent.readyAt - coldStart) / 1000;
    const coldLoadSecs = agent.loadedAt ? (agent.loadedAt - coldStart) / 1000 : NaN;
    const coldSyncCpu = cpuSeconds(agent.proc!.pid!);
    say(`cold full sync ${coldSyncSecs.toFixed(1)} s; attaching a workload to ${networkName(0)}`);

    const netns = await harness.addWorkload(harness.hosts[0]!, 'w0');
    const a0 = Date.now();
    await agent.workloads.attach({ orchestrator: 'cli', workloadId: `${harness.tag}-w0`, ifname: 'eth0', netns, network: networkName(0) });
    const attachMs = Date.now() - a0;

    say(`change phase: ${changes} ports, one per transaction, 16 writers`);
    const c0 = Date.now();
    await addPorts(store, world, changes, { batch: 1, concurrency: 16 });
    const written = Date.now();
    target = await store.lastSeq();
    const applied = await untilApplied(agent.apiSock, target, TIMEOUT_MS, 'change phase applied');

    say('restarting the agent (its workload on sim0)');
    await agent.stop();
    const restartStart = await agent.start();
    const restartSyncSecs = ((await untilApplied(agent.apiSock, target, TIMEOUT_MS, 'restart full sync')) - restartStart) / 1000;
    const restartSyncCpu = cpuSeconds(agent.proc!.pid!);
    const restartLoadSecs = agent.loadedAt ? (agent.loadedAt - restartStart) / 1000 : NaN;
    await sleep(1000);
    const mem = await memoryAfterGc(agent.proc!.pid!, agent.memFile);
    const log = await logListing(ensemble.connectString, root);
    const result: StepResult = {
      ...size,
      remotePorts: world.ports,
      seedSecs: r1(seedSecs),
      seedPortsPerSec: Math.round(size.ports / Math.max(0.001, seedSecs)),
      zkZnodes: zk1.znodes - zk0.znodes,
      zkDataBytes: zk1.dataBytes - zk0.dataBytes,
      coldSyncSecs: r1(coldSyncSecs),
      coldReadySecs: r1(coldReadySecs),
      coldLoadSecs: r1(coldLoadSecs),
      restartLoadSecs: r1(restartLoadSecs),
      coldSyncCpu: r1(coldSyncCpu),
      restartSyncCpu: r1(restartSyncCpu),
      attachMs,
      changeWritesPerSec: Math.round(changes / ((written - c0) / 1000)),
      changeAppliedPerSec: Math.round(changes / ((applied - c0) / 1000)),
      changeLagMs: applied - written,
      restartSyncSecs: r1(restartSyncSecs),
      rssMiB: r1(mem.rss / MiB),
      heapMiB: r1(mem.heapUsed / MiB),
      heapTotalMiB: r1(mem.heapTotal / MiB),
      externalMiB: r1(mem.external / MiB),
      logEntries: log.entries,
      logListingBytes: log.bytes,
      loadAvg: r1(loadavg()[0]!),
    };
    say(JSON.stringify(result));
    return result;
  } catch (err) {
    failed = true;
    if (harness && err instanceof Error) err.message += ` (logs kept in ${harness.baseDir})`;
    throw err;
  } finally {
    await agent?.stop().catch(() => undefined);
    if (PROFILE && harness) say(`logs and CPU profiles kept in ${harness.baseDir}`);
    await harness?.destroy({ keepLogs: failed || PROFILE });
    await store.close();
  }
}

export function perPortBytes(results: StepResult[]): { rss: number; heap: number } | undefined {
  const ok = results.filter((r) => !r.error);
  if (ok.length < 2) return undefined;
  const base = ok[0]!;
  const top = ok.at(-1)!;
  const d = top.remotePorts - base.remotePorts;
  if (d <= 0) return undefined;
  return { rss: ((top.rssMiB - base.rssMiB) * MiB) / d, heap: ((top.heapMiB - base.heapMiB) * MiB) / d };
}

export function writePlots(results: StepResult[], dir: string): string[] {
  const ok = results.filter((r) => !r.error);
  const memory = lineChart({
    title: 'Real agent memory after GC vs ports in the store',
    xLabel: 'ports (remote, on simulated hosts)',
    yLabel: 'MiB',
    series: [
      { name: 'RSS', points: ok.map((r) => [r.remotePorts, r.rssMiB]) },
      { name: 'V8 heap used', points: ok.map((r) => [r.remotePorts, r.heapMiB]) },
    ],
    goals:
      ok.length > 0
        ? [
            {
              y: ok[0]!.rssMiB + (2 * 1024 * Math.max(...ok.map((r) => r.remotePorts))) / MiB,
              label: 'goal: 2 KiB per port (at the largest size)',
            },
          ]
        : [],
  });
  const sync = lineChart({
    title: 'Real agent full sync vs simulated hosts',
    xLabel: 'hosts (ports = 100 per host)',
    yLabel: 'seconds (agent start → converged)',
    series: [
      { name: 'cold, no local port', points: ok.map((r) => [r.hosts, r.coldSyncSecs]) },
      { name: 'restart, a workload on sim0', points: ok.map((r) => [r.hosts, r.restartSyncSecs]) },
      { name: 'cold: CPU seconds the agent used', points: ok.map((r) => [r.hosts, r.coldSyncCpu]) },
    ],
    goals: [{ y: 10, label: 'goal: 10 s' }],
  });
  const files = ['agent-memory.svg', 'full-sync.svg'];
  writeFileSync(join(dir, files[0]!), memory);
  writeFileSync(join(dir, files[1]!), sync);
  return files;
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const sizes = sizesFrom(process.env.SCALE_SIZES, ctx.scale);
  const changes = Math.max(200, Math.round(1000 * Math.min(1, ctx.scale)));
  ctx.progress(`scale: starting a 3-server ZooKeeper ensemble`);
  const ensemble = await ZooKeeperEnsemble.start(3, { clientPortAddress: '0.0.0.0', heapMb: 1024 });
  const results: StepResult[] = [];
  try {
    for (const [i, size] of sizes.entries()) {
      try {
        results.push(await step(ctx, ensemble, size, i, changes));
      } catch (err) {
        ctx.progress(`scale ${size.hosts}/${size.ports}: FAILED ${(err as Error).message}`);
        results.push({ ...size, error: (err as Error).message } as StepResult);
        break; // a bigger size would fail the same way, later
      }
    }
  } finally {
    await ensemble.cleanup();
  }
  writeFileSync(join(HERE, 'results.json'), JSON.stringify({ changes, results }, null, 2) + '\n');
  return section(results, changes);
}

/** The results.md section of a run (also from a saved bench/scale/results.json: `--report`). */
export function section(results: StepResult[], changes: number): BenchSection {
  const plots = writePlots(results, HERE);
  const per = perPortBytes(results);
  const rows: BenchRow[] = results.map((r) =>
    r.error
      ? { name: `${r.hosts} hosts, ${r.ports} ports`, ours: {}, unit: '', note: `FAILED: ${r.error}` }
      : {
          name: `${r.hosts} hosts, ${r.ports} ports`,
          ours: {
            coldSync: r.coldSyncSecs,
            coldReady: r.coldReadySecs,
            ...(r.coldLoadSecs !== undefined ? { coldLoad: r.coldLoadSecs, restartLoad: r.restartLoadSecs ?? NaN } : {}),
            coldSyncCpu: r.coldSyncCpu,
            restartSyncCpu: r.restartSyncCpu,
            restartSync: r.restartSyncSecs,
            rssMiB: r.rssMiB,
            heapMiB: r.heapMiB,
            ...(r.heapTotalMiB !== undefined ? { heapTotalMiB: r.heapTotalMiB, externalMiB: r.externalMiB ?? NaN } : {}),
            attachMs: r.attachMs,
            appliedPerSec: r.changeAppliedPerSec,
            writesPerSec: r.changeWritesPerSec,
            seedPortsPerSec: r.seedPortsPerSec,
            zkMiB: r1(r.zkDataBytes / MiB),
            znodes: r.zkZnodes,
            logEntries: r.logEntries,
            logListingKiB: r1(r.logListingBytes / 1024),
            ...(r.loadAvg !== undefined ? { loadAvg: r.loadAvg } : {}),
          },
          unit: 'sync s; MiB; ms; ports/s',
          note: `${r.remotePorts} ports in the store at the memory reading`,
        },
  );
  if (per) {
    rows.push({
      name: 'agent memory per remote port (largest vs smallest size)',
      ours: { rssBytes: Math.round(per.rss), heapBytes: Math.round(per.heap) },
      unit: 'bytes per port',
      note: 'goal < 2,048 bytes',
    });
  }
  return {
    title: 'Scale by simulation: 1 real agent among simulated hosts on a 3-server ZooKeeper',
    method:
      `A 3-server ZooKeeper 3.8 ensemble on loopback (-Xmx1024m each, forceSync on). At each size a fresh root; ` +
      `simulated hosts and ports written through the Store API (250 ports per transaction, 4 in flight), one port ` +
      `network per 1,000 ports, ports spread over every host and network; one real agent in a harness host. ` +
      `coldSync: agent start until its first reconcile pass has seen the newest change (no local port); restartSync: ` +
      `the same after a restart with one real workload on sim0 (its remote ports programmed). Change phase: ${changes} ` +
      `ports created one per transaction by 16 writers; appliedPerSec counts until the agent's passes saw the last ` +
      `one. The agent runs under app/main.ts's production node flags and MALLOC_ARENA_MAX. Memory: RSS, V8 heap ` +
      `used and reserved (heapTotal) and external after two full GCs, after the restart. logListingKiB: one ` +
      `listing of log/ (no longer read per change: followers read new entries by name). zkMiB/znodes: growth of ` +
      `zk_approximate_data_size and zk_znode_count over the seeding. One run per size (no reference: no rounds). ` +
      `Plots: ![agent memory vs ports](scale/${plots[0]}) ![full sync vs hosts](scale/${plots[1]})`,
    columns: ['figures', '—'],
    rows,
  };
}

// `node --import tsx bench/scale/bench.ts` runs this area alone and prints its rows (npm run bench -- scale also
// writes results.md).
// `--report` redraws the plots and prints the section's markdown from the saved results.json, without running.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && existsSync(GC_HOOK.replace('file://', ''))) {
  if (process.argv.includes('--report')) {
    const raw = JSON.parse(readFileSync(join(HERE, 'results.json'), 'utf8')) as { changes: number; results: StepResult[] } | StepResult[];
    // Files of the first runs hold the steps alone (1,000 changes each).
    const saved = Array.isArray(raw) ? { changes: 1000, results: raw } : raw;
    const measuredAt = statSync(join(HERE, 'results.json')).mtime.toISOString();
    const md = markdown([{ area: 'scale', measuredAt, scale: 1, ...section(saved.results, saved.changes) }], []);
    console.log(md.slice(md.indexOf('## ')));
  } else {
    const out = await run({ scale: Number(process.env.BENCH_SCALE ?? '1'), progress: (m) => process.stderr.write(`bench: ${m}\n`) });
    console.log(JSON.stringify(out, null, 2));
  }
}
