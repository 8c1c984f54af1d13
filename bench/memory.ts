// Agent memory (issue 12 item 4): what an agent holds idle and what each local port adds, for the agent as it runs in
// production (the built dist/, with the node flags of app/main.ts's first line: the installed `bees`, the image and
// the ./bees launcher all use them). One agent per round on the embedded file store, in a network namespace of its
// own with a veth for its underlay; workloads are namespaces attached through the workload API. Every reading is
// taken after full garbage collections (bench/scale/gc-hook.mjs, preloaded), at several sizes: the slope between the
// smallest and the largest is the cost per port, apart from the one-off growth of the first ports (code compiled,
// heap and malloc arenas grown by the attach path), which a single "loaded minus idle" figure mixes in.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { AgentClient } from '../cni/plugin/agent-client.js';
import { flagVariants, interleavedOrder, type FlagVariant, type Launch } from './node-flags.js';
import { median, type BenchContext, type BenchRow, type BenchSection } from './report.js';

const sh = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN_JS = join(ROOT, 'dist', 'app', 'main.js');

/** Memory after GC at each size; index 0 is the idle agent. */
interface Curve {
  sizes: number[];
  rssMiB: number[];
  heapMiB: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const MiB = 1024 * 1024;
const GC_HOOK = pathToFileURL(join(ROOT, 'bench', 'scale', 'gc-hook.mjs')).href;

/** Asks the agent (through gc-hook.mjs) for two full GCs and its memory then; a second ask a moment later settles it. */
async function memoryAfterGc(pid: number, file: string): Promise<{ rss: number; heapUsed: number }> {
  let last: { rss: number; heapUsed: number } | undefined;
  for (let ask = 0; ask < 2; ask++) {
    // The first ask after the agent's malloc_trim timer (10 s, core/agent/agent.ts) has run once since the burst.
    await sleep(ask === 0 ? 11_000 : 1500);
    const before = Date.now();
    process.kill(pid, 'SIGUSR2');
    for (let i = 0; i < 400 && !last; i++) {
      await sleep(50);
      try {
        const m = JSON.parse(readFileSync(file, 'utf8')) as { at: number; rss: number; heapUsed: number };
        if (m.at >= before) last = m;
      } catch {
        // not written yet
      }
    }
    if (!last) throw new Error('the agent did not report its memory (gc-hook.mjs not loaded?)');
    if (ask === 0) last = undefined;
  }
  return last!;
}

async function measure(launch: Launch, sizes: number[]): Promise<Curve> {
  const tag = `bm${randomBytes(3).toString('hex')}`;
  const ns = `${tag}-host`;
  const dir = mkdtempSync(join(tmpdir(), 'bees-mem-'));
  const memFile = join(dir, 'memory.json');
  const workloads: string[] = [];
  let agent: ChildProcess | undefined;
  await sh('ip', ['netns', 'add', ns]);
  try {
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', ns, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1']);
    await sh('ip', ['-n', ns, 'addr', 'add', '10.254.0.1/24', 'dev', 'ul0']);
    for (const l of ['ul0', 'ul1']) await sh('ip', ['-n', ns, 'link', 'set', l, 'up']);
    const argv = [...launch.nodeArgs, MAIN_JS, 'agent', '--store', `file:${dir}/store`, '--state-dir', dir, '--run-dir', join(dir, 'run')];
    const env = { ...launch.env, NODE_OPTIONS: `--import ${GC_HOOK}`, BEES_SCALE_MEMFILE: memFile };
    agent = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'env',
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        ...argv,
        '--router-ns-prefix',
        `${tag}-r-`,
        '--underlay-ip',
        '10.254.0.1',
      ],
      { stdio: 'ignore' },
    );
    const client = new AgentClient(join(dir, 'run', 'workload.sock'));
    const deadline = Date.now() + 60_000;
    while (
      !(await client.status().then(
        (s) => s.ready,
        () => false,
      ))
    ) {
      if (Date.now() > deadline || agent.exitCode !== null) throw new Error('the agent did not become ready within 60 s');
      await sleep(200);
    }
    // `ip netns exec` and `env` exec: the child is the agent.
    const pid = agent.pid!;
    await sleep(2000);
    const curve: Curve = { sizes: [0], rssMiB: [], heapMiB: [] };
    const read = async () => {
      const m = await memoryAfterGc(pid, memFile);
      curve.rssMiB.push(m.rss / MiB);
      curve.heapMiB.push(m.heapUsed / MiB);
    };
    await read();
    for (const size of sizes) {
      while (workloads.length < size) {
        const w = `${tag}-w${workloads.length}`;
        await sh('ip', ['netns', 'add', w]);
        workloads.push(w);
        await client.attach({
          orchestrator: 'cli',
          workloadId: w,
          ifname: 'eth0',
          network: 'mem',
          netns: `/run/netns/${w}`,
          create: { subnets: [{ cidr: '10.201.0.0/16' }] },
        });
      }
      curve.sizes.push(size);
      await read();
    }
    return curve;
  } finally {
    agent?.kill('SIGTERM');
    if (agent && agent.exitCode === null) await new Promise((r) => agent!.once('exit', r));
    // Deleting a workload's namespace takes its veth pair along; the agent's datapath goes with its own namespace.
    for (const w of workloads) await sh('ip', ['netns', 'del', w]).catch(() => undefined);
    const { stdout } = await sh('ip', ['netns', 'list']);
    for (const line of stdout.split('\n')) {
      const name = line.split(' ')[0];
      if (name && name.startsWith(`${tag}-`)) await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(ctx: BenchContext): Promise<BenchSection> {
  // Always from a fresh build: a dist/ left from older sources would measure an older agent.
  ctx.progress('memory: building dist/ (npm run build)');
  await sh('npm', ['run', '-s', 'build'], { cwd: ROOT, maxBuffer: 1 << 24 });
  if (!existsSync(MAIN_JS)) throw new Error(`the build wrote no ${MAIN_JS}`);
  // BENCH_NODE_FLAGS compares flag sets (bench/node-flags.ts), interleaved per round; default: production's alone.
  const variants = flagVariants(process.env.BENCH_NODE_FLAGS);
  // BENCH_MEMORY_SIZES=100,400 picks the local port counts; `idle` measures the idle agent alone.
  const sizes = sizesFrom(process.env.BENCH_MEMORY_SIZES, ctx.scale);
  const rounds = Number(process.env.BENCH_MEMORY_ROUNDS ?? 3);
  const curves = new Map<FlagVariant, Curve[]>(variants.map((v) => [v, []]));
  const loads: number[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const i of interleavedOrder(variants.length, r)) {
      const v = variants[i]!;
      loads.push(loadavg()[0]!);
      ctx.progress(`memory: round ${r + 1} of ${rounds}, ${v.name}: ${sizes.join(', ') || 'idle'} (load ${loads.at(-1)!.toFixed(1)})`);
      curves.get(v)!.push(await measure(v.launch, sizes));
    }
  }
  const rows = variants.flatMap((v) => memoryRows(curves.get(v)!, sizes, variants.length > 1 ? `${v.name}: ` : ''));
  const load = `load average ${round1(Math.min(...loads))}-${round1(Math.max(...loads))} at the rounds' starts`;
  return {
    title: 'Agent memory: resident size idle and per 1,000 local ports',
    method:
      `One agent per round from the built dist/ under ${variants.length > 1 ? `each of ${variants.length} sets of node flags, interleaved (the order reversed every other round)` : `the production node flags (${variants[0]!.name})`}, on the embedded file store, in a namespace of its own. ` +
      `Every reading after two full GCs (bench/scale/gc-hook.mjs), idle once ready${sizes.length ? ` and after ${sizes.join(', ')} workloads (each a namespace, attached through the workload API to one network)` : ''}. ` +
      `${rounds} rounds; ${load}. No reference (node's defaults cost 20-25% more idle and ~3× per port in earlier runs). Goals in issue 12: baseline ≤ 80 MB, < 10 MiB per 1,000 local ports.`,
    rows,
  };
}

/** The local port counts: `idle` for none, else a comma list; default 100, 400, 1,000 × BENCH_SCALE. */
export function sizesFrom(env: string | undefined, scale: number): number[] {
  if (env === 'idle') return [];
  if (env) {
    const sizes = env.split(',').map(Number);
    if (sizes.some((n) => !Number.isInteger(n) || n < 1) || sizes.some((n, i) => i > 0 && n <= sizes[i - 1]!))
      throw new Error(`bad BENCH_MEMORY_SIZES ${env}: 'idle' or growing port counts`);
    return sizes;
  }
  return [100, 400, 1000].map((n) => Math.max(10, Math.round(n * scale)));
}

function memoryRows(curves: Curve[], sizes: number[], prefix: string): BenchRow[] {
  const spread = (pick: (c: Curve) => number): Record<string, number> => {
    const v = curves.map(pick);
    return { median: round1(median(v)), min: round1(Math.min(...v)), max: round1(Math.max(...v)) };
  };
  const idle: BenchRow[] = [
    { name: `${prefix}agent RSS after GC, idle`, ours: spread((c) => c.rssMiB[0]!), unit: 'MiB', note: 'goal ≤ 80 MB (76.3 MiB)' },
    { name: `${prefix}agent V8 heap used after GC, idle`, ours: spread((c) => c.heapMiB[0]!), unit: 'MiB' },
  ];
  if (sizes.length < 2) return idle;
  // Slopes between two sizes (indices into a curve; 0 is idle): from the smallest, and between the two largest, where
  // the one-off growth of the first ports (arenas, compiled code) is behind.
  const slope = (series: (c: Curve) => number[], from: number, to: number) => (c: Curve) =>
    ((series(c)[to]! - series(c)[from]!) * 1000) / (sizes[to - 1]! - sizes[from - 1]!);
  const s1 = 1;
  const s2 = sizes.length - 1;
  const s3 = sizes.length;
  const perThousand = (what: string, series: (c: Curve) => number[], from: number, note?: string): BenchRow => ({
    name: `${prefix}${what} per 1,000 local ports (slope ${sizes[from - 1]} → ${sizes[s3 - 1]})`,
    ours: spread(slope(series, from, s3)),
    unit: 'MiB',
    ...(note ? { note } : {}),
  });
  return [
    ...idle,
    ...sizes.map((n, i) => ({
      name: `${prefix}RSS and V8 heap after GC, ${n} local ports`,
      ours: { rss: round1(median(curves.map((c) => c.rssMiB[i + 1]!))), heap: round1(median(curves.map((c) => c.heapMiB[i + 1]!))) },
      unit: 'MiB (medians)',
    })),
    {
      name: `${prefix}one-off growth with the first ${sizes[0]} local ports (RSS)`,
      ours: spread((c) => c.rssMiB[s1]! - c.rssMiB[0]!),
      unit: 'MiB',
      note: 'code compiled, heap and malloc arenas grown by the attach path',
    },
    perThousand('RSS', (c) => c.rssMiB, s1, 'goal < 10 MiB'),
    ...(s2 > s1 ? [perThousand('RSS', (c) => c.rssMiB, s2, 'goal < 10 MiB')] : []),
    perThousand('V8 heap', (c) => c.heapMiB, s1),
    ...(s2 > s1 ? [perThousand('V8 heap', (c) => c.heapMiB, s2)] : []),
  ];
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
