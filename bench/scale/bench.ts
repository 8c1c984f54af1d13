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
import { flagVariants, interleavedOrder, type FlagVariant, type Launch } from '../node-flags.js';
import { markdown, median, type BenchContext, type BenchRow, type BenchSection } from '../report.js';
import { addHosts, addPorts, makeWorld, networkName, removePorts } from './simulate.js';
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
  /** The agent's node flags and environment (bench/node-flags.ts launchName); absent in runs before variants. */
  flags?: string;
  /** Which round of the interleaved variants (0-based). */
  round?: number;
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
  /** CPU the agent spent over the change phase, per port changed (ms): what load blurs least of the apply rate. */
  changeCpuMsPerPort?: number;
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
 * The node flags the agent runs under: app/main.ts's first line (production's flags and MALLOC_ARENA_MAX, which
 * beesArgv(), node + tsx + the source, leaves out) unless BENCH_NODE_FLAGS names variants to compare
 * (bench/node-flags.ts); SCALE_DEFAULT_FLAGS=1 is BENCH_NODE_FLAGS=defaults, node's own.
 */
function variantsFromEnv(): FlagVariant[] {
  return flagVariants(process.env.BENCH_NODE_FLAGS ?? (process.env.SCALE_DEFAULT_FLAGS ? 'defaults' : undefined));
}
const withFlags = (launch: Launch, argv: string[]): string[] => [argv[0]!, ...launch.nodeArgs, ...argv.slice(1)];

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
    private readonly launch: Launch,
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
        ...(PROFILE ? profiled(withFlags(this.launch, beesArgv()), join(h.stateDir, 'prof')) : withFlags(this.launch, beesArgv())),
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
          ...this.launch.env,
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

/** A size's store, seeded once: every flag variant's agent runs against the same one. */
interface Seeded {
  store: ZooKeeperStore;
  root: string;
  world: Awaited<ReturnType<typeof makeWorld>>;
  seedSecs: number;
  zkZnodes: number;
  zkDataBytes: number;
}

async function seed(ctx: BenchContext, ensemble: ZooKeeperEnsemble, size: Size, index: number): Promise<Seeded> {
  const say = (m: string) => ctx.progress(`scale ${size.hosts}/${size.ports}: ${m}`);
  const root = `/bees-scale-${index}-${randomUUID().slice(0, 6)}`;
  const store = await ZooKeeperStore.open(`zk://${ensemble.connectString}${root}`);
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
    return { store, root, world, seedSecs, zkZnodes: zk1.znodes - zk0.znodes, zkDataBytes: zk1.dataBytes - zk0.dataBytes };
  } catch (err) {
    await store.close();
    throw err;
  }
}

/**
 * One real agent under `variant`'s flags on a seeded store: cold sync, attach, change phase, restart, memory. The
 * change phase's ports are deleted at the end, so the next variant's agent finds the store as this one did.
 */
async function agentRun(
  ctx: BenchContext,
  ensemble: ZooKeeperEnsemble,
  size: Size,
  seeded: Seeded,
  variant: FlagVariant,
  round: number,
  changes: number,
): Promise<StepResult> {
  const say = (m: string) => ctx.progress(`scale ${size.hosts}/${size.ports} [${variant.name}, round ${round + 1}]: ${m}`);
  const { store, root, world } = seeded;
  let harness: Harness | undefined;
  let agent: RealAgent | undefined;
  let failed = false;
  let changed: string[] = [];
  try {
    harness = await Harness.create({ hosts: 1 });
    const agentUrl = `zk://${ensemble.connectString.replaceAll('127.0.0.1', harness.rootIp)}${root}`;
    agent = new RealAgent(harness, agentUrl, variant.launch);
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
    const cpu0 = cpuSeconds(agent.proc!.pid!);
    const c0 = Date.now();
    changed = await addPorts(store, world, changes, { batch: 1, concurrency: 16 });
    const written = Date.now();
    target = await store.lastSeq();
    const applied = await untilApplied(agent.apiSock, target, TIMEOUT_MS, 'change phase applied');
    const changeCpu = cpuSeconds(agent.proc!.pid!) - cpu0;

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
      flags: variant.name,
      round,
      remotePorts: size.ports + changes,
      seedSecs: r1(seeded.seedSecs),
      seedPortsPerSec: Math.round(size.ports / Math.max(0.001, seeded.seedSecs)),
      zkZnodes: seeded.zkZnodes,
      zkDataBytes: seeded.zkDataBytes,
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
      changeCpuMsPerPort: r1((changeCpu * 1000) / changes),
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
    if (changed.length) await removePorts(store, changed);
  }
}

/** A size: seeded once, then every variant's agent, `rounds` times, interleaved (the order reversed every other round). */
async function step(
  ctx: BenchContext,
  ensemble: ZooKeeperEnsemble,
  size: Size,
  index: number,
  changes: number,
  variants: FlagVariant[],
  rounds: number,
): Promise<StepResult[]> {
  const seeded = await seed(ctx, ensemble, size, index);
  const out: StepResult[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const i of interleavedOrder(variants.length, r)) {
        const v = variants[i]!;
        try {
          out.push(await agentRun(ctx, ensemble, size, seeded, v, r, changes));
        } catch (err) {
          ctx.progress(`scale ${size.hosts}/${size.ports} [${v.name}]: FAILED ${(err as Error).message}`);
          out.push({ ...size, flags: v.name, round: r, error: (err as Error).message } as StepResult);
        }
      }
    }
    return out;
  } finally {
    await seeded.store.close();
  }
}

/** The medians over rounds of one variant's runs of one size. */
function medianOf(runs: StepResult[], pick: (r: StepResult) => number | undefined): number {
  return median(runs.map(pick).filter((x): x is number => x !== undefined && Number.isFinite(x)));
}

/** Memory per remote port of one variant's runs: the largest size's median RSS minus the smallest's, per port. */
export function perPortBytes(results: StepResult[]): { rss: number; heap: number } | undefined {
  const ok = results.filter((r) => !r.error);
  const sizes = [...new Set(ok.map((r) => r.remotePorts))].sort((x, y) => x - y);
  if (sizes.length < 2) return undefined;
  const at = (n: number) => ok.filter((r) => r.remotePorts === n);
  const [lo, hi] = [at(sizes[0]!), at(sizes.at(-1)!)];
  const d = sizes.at(-1)! - sizes[0]!;
  return {
    rss: ((medianOf(hi, (r) => r.rssMiB) - medianOf(lo, (r) => r.rssMiB)) * MiB) / d,
    heap: ((medianOf(hi, (r) => r.heapMiB) - medianOf(lo, (r) => r.heapMiB)) * MiB) / d,
  };
}

/** The variants' names in the order the results first name them (runs before variants: one, unnamed). */
function variantNames(results: StepResult[]): (string | undefined)[] {
  return [...new Set(results.map((r) => r.flags))];
}

export function writePlots(results: StepResult[], dir: string): string[] {
  // The first variant's first run at each size (with variants, the table compares them; the plots show one).
  const first = variantNames(results)[0];
  const ok = results.filter(
    (r, i, all) => !r.error && r.flags === first && all.findIndex((x) => !x.error && x.flags === first && x.ports === r.ports) === i,
  );
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
  const variants = variantsFromEnv();
  const rounds = Number(process.env.SCALE_ROUNDS ?? (variants.length > 1 ? 2 : 1));
  ctx.progress(`scale: starting a 3-server ZooKeeper ensemble`);
  const ensemble = await ZooKeeperEnsemble.start(3, { clientPortAddress: '0.0.0.0', heapMb: 1024 });
  const results: StepResult[] = [];
  try {
    for (const [i, size] of sizes.entries()) {
      try {
        const runs = await step(ctx, ensemble, size, i, changes, variants, rounds);
        results.push(...runs);
        if (runs.every((r) => r.error)) break; // a bigger size would fail the same way, later
      } catch (err) {
        ctx.progress(`scale ${size.hosts}/${size.ports}: FAILED ${(err as Error).message}`);
        results.push({ ...size, error: (err as Error).message } as StepResult);
        break;
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
  const names = variantNames(results);
  const label = (r: StepResult) =>
    `${r.hosts} hosts, ${r.ports} ports${names.length > 1 || r.flags ? ` [${r.flags ?? 'production'}${r.round !== undefined ? `, round ${r.round + 1}` : ''}]` : ''}`;
  const rows: BenchRow[] = results.map((r) =>
    r.error
      ? { name: label(r), ours: {}, unit: '', note: `FAILED: ${r.error}` }
      : {
          name: label(r),
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
            ...(r.changeCpuMsPerPort !== undefined ? { changeCpuMsPerPort: r.changeCpuMsPerPort } : {}),
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
  for (const name of names) {
    const runs = results.filter((r) => r.flags === name && !r.error);
    const per = perPortBytes(runs);
    const tag = names.length > 1 || name ? ` [${name ?? 'production'}]` : '';
    const largest = runs.filter((r) => r.ports === Math.max(...runs.map((x) => x.ports)));
    if (names.length > 1 && largest.length > 0) {
      const m = (pick: (r: StepResult) => number | undefined) => r1(medianOf(largest, pick));
      rows.push({
        name: `medians at ${largest[0]!.hosts} hosts, ${largest[0]!.ports} ports${tag}`,
        ours: {
          coldSync: m((r) => r.coldSyncSecs),
          coldSyncCpu: m((r) => r.coldSyncCpu),
          restartSync: m((r) => r.restartSyncSecs),
          restartSyncCpu: m((r) => r.restartSyncCpu),
          appliedPerSec: m((r) => r.changeAppliedPerSec),
          changeCpuMsPerPort: m((r) => r.changeCpuMsPerPort),
          rssMiB: m((r) => r.rssMiB),
          runs: largest.length,
        },
        unit: 'sync s; CPU s; ports/s; ms; MiB',
        note: `load ${r1(Math.min(...largest.map((r) => r.loadAvg ?? NaN)))}-${r1(Math.max(...largest.map((r) => r.loadAvg ?? NaN)))}`,
      });
    }
    if (per) {
      rows.push({
        name: `agent memory per remote port (largest vs smallest size)${tag}`,
        ours: { rssBytes: Math.round(per.rss), heapBytes: Math.round(per.heap) },
        unit: 'bytes per port',
        note: 'goal < 2,048 bytes',
      });
    }
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
      `one. ${names.length > 1 ? `The agent runs under each set of node flags in turn, on the same seeded store (the change phase's ports deleted after each run), the order reversed every other round; medians per set at the largest size.` : `The agent runs under ${names[0] ? `these node flags and environment: ${names[0]}` : "app/main.ts's production node flags and MALLOC_ARENA_MAX"}.`} Memory: RSS, V8 heap ` +
      `used and reserved (heapTotal) and external after two full GCs, after the restart. logListingKiB: one ` +
      `listing of log/ (no longer read per change: followers read new entries by name). zkMiB/znodes: growth of ` +
      `zk_approximate_data_size and zk_znode_count over the seeding. ${names.length > 1 ? 'No reference (ours alone, flags against flags).' : 'One run per size (no reference: no rounds).'} ` +
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
