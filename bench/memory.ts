// Agent memory (issue 12 item 4): the resident size of an idle agent, and what local ports add to it, for the agent
// as it runs in production (the built dist/, with the node flags of app/main.ts's first line: the installed `bees`,
// the image and the ./bees launcher all use them) next to the same build under node's default flags, in the same
// run, interleaved. One agent at a time on the embedded file store, in a network namespace of its own with a veth
// for its underlay; workloads are namespaces attached through the workload API, then detached.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AgentClient } from '../cni/plugin/agent-client.js';
import { interleavedRounds, median, pairedRatio, type BenchContext, type BenchRow, type BenchSection } from './report.js';

const sh = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN_JS = join(ROOT, 'dist', 'app', 'main.js');

interface Launch {
  env: Record<string, string>;
  nodeArgs: string[];
}

/** What app/main.ts's `#!/usr/bin/env -S VAR=… node FLAGS` line runs: its environment assignments and node flags. */
export function productionLaunch(shebang: string): Launch {
  const m = /^#!\/usr\/bin\/env -S (.*)$/.exec(shebang.trim());
  if (!m) throw new Error(`app/main.ts does not start with a '#!/usr/bin/env -S' line: ${shebang}`);
  const words = m[1]!.split(/\s+/);
  const at = words.indexOf('node');
  if (at < 0) throw new Error(`no node in ${shebang}`);
  const env = Object.fromEntries(words.slice(0, at).map((w) => w.split('=', 2) as [string, string]));
  return { env, nodeArgs: words.slice(at + 1) };
}

interface Sample {
  idleMiB: number;
  loadedMiB: number;
  perThousandMiB: number;
}

function rssOf(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Lowest of a few readings a second apart: a reading in the middle of a GC cycle says little about steady state. */
async function steadyRss(pid: number): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    await sleep(1000);
    readings.push(rssOf(pid));
  }
  return Math.min(...readings);
}

async function measure(launch: Launch, ports: number): Promise<Sample> {
  const tag = `bm${randomBytes(3).toString('hex')}`;
  const ns = `${tag}-host`;
  const dir = mkdtempSync(join(tmpdir(), 'bees-mem-'));
  const workloads: string[] = [];
  let agent: ChildProcess | undefined;
  await sh('ip', ['netns', 'add', ns]);
  try {
    await sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    await sh('ip', ['-n', ns, 'link', 'add', 'ul0', 'type', 'veth', 'peer', 'name', 'ul1']);
    await sh('ip', ['-n', ns, 'addr', 'add', '10.254.0.1/24', 'dev', 'ul0']);
    for (const l of ['ul0', 'ul1']) await sh('ip', ['-n', ns, 'link', 'set', l, 'up']);
    const argv = [...launch.nodeArgs, MAIN_JS, 'agent', '--store', `file:${dir}/store`, '--state-dir', dir, '--run-dir', join(dir, 'run')];
    agent = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'env',
        ...Object.entries(launch.env).map(([k, v]) => `${k}=${v}`),
        process.execPath,
        ...argv,
        '--router-ns-prefix',
        `${tag}-r-`,
        '--underlay-ip',
        '10.254.0.1',
      ],
      {
        stdio: 'ignore',
      },
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
    // `ip netns exec` execs: the child is the agent.
    const pid = agent.pid!;
    const idleMiB = await steadyRss(pid);
    for (let i = 0; i < ports; i++) {
      const w = `${tag}-w${i}`;
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
    const loadedMiB = await steadyRss(pid);
    for (const w of workloads) await client.detach({ orchestrator: 'cli', workloadId: w, ifname: 'eth0' });
    return { idleMiB, loadedMiB, perThousandMiB: ((loadedMiB - idleMiB) * 1000) / Math.max(1, ports) };
  } finally {
    agent?.kill('SIGTERM');
    if (agent && agent.exitCode === null) await new Promise((r) => agent!.once('exit', r));
    for (const w of workloads) await sh('ip', ['netns', 'del', w]).catch(() => undefined);
    // The agent leaves its datapath (bridges, router namespaces) when it stops: they go with its namespace here.
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
  const production = productionLaunch(readFileSync(join(ROOT, 'app', 'main.ts'), 'utf8').split('\n')[0]!);
  const defaults: Launch = { env: {}, nodeArgs: [] };
  const ports = Math.max(50, Math.round(300 * ctx.scale));
  const rounds = 3;
  ctx.progress(`memory: ${rounds} interleaved rounds, ${ports} local ports each`);
  const { a, b } = await interleavedRounds(
    rounds,
    async (r) => {
      ctx.progress(`memory: round ${r + 1}: production flags`);
      return measure(production, ports);
    },
    async (r) => {
      ctx.progress(`memory: round ${r + 1}: node defaults`);
      return measure(defaults, ports);
    },
  );
  const row = (name: string, pick: (s: Sample) => number, note: string): BenchRow => {
    const { ratio, roundRatios } = pairedRatio(a.map(pick), b.map(pick));
    return {
      name,
      ours: { median: round1(median(a.map(pick))), min: round1(Math.min(...a.map(pick))), max: round1(Math.max(...a.map(pick))) },
      reference: { median: round1(median(b.map(pick))), min: round1(Math.min(...b.map(pick))), max: round1(Math.max(...b.map(pick))) },
      ratio,
      roundRatios,
      compares: `the same built agent (dist/) under the production node flags (${[...Object.entries(production.env).map(([k, v]) => `${k}=${v}`), ...production.nodeArgs].join(' ')}) ÷ under node's defaults; lower is better`,
      unit: 'MiB',
      note,
    };
  };
  return {
    title: 'Agent memory: resident size idle and per 1,000 local ports',
    method:
      `One agent at a time from the built dist/ on the embedded file store, in a namespace of its own. Idle: the lowest of five RSS readings a second apart once ready. Loaded: the same after ${ports} workloads (each a namespace, attached through the workload API to one network). ` +
      `${rounds} interleaved rounds (production flags first in odd rounds). Goals in issue 12: baseline ≤ 80 MB, < 10 MiB per 1,000 local ports.`,
    columns: ['production flags', 'node defaults'],
    rows: [
      row('agent RSS, idle after start', (s) => s.idleMiB, 'goal ≤ 80 MB'),
      row(`agent RSS with ${ports} local ports`, (s) => s.loadedMiB, ''),
      row('RSS added per 1,000 local ports', (s) => s.perThousandMiB, `goal < 10 MiB; from ${ports} ports, scaled`),
    ],
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}
