// The test suite's runner (`npm test`, `./bees test`): the type check and the linters side by side, then every test
// file in one of two lanes that run at once. The kernel lane holds the files that build hosts, clusters, containers
// and kernel datapaths, one file at a time, as before; the light lane holds the files that need none of that (the
// API, the CLI against an API, the stores, IPAM, planning, compilers and simulators, the chart, the controller
// against the API server double). Those spend their time in their own process and a ZooKeeper of their own, so
// running them beside the kernel lane takes minutes off the suite without putting two multi-host clusters on two
// cores at once. Arguments (files, --match) run ava as given, in one process.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Test files that need no namespace host, cluster, container runtime or datapath of their own. */
const LIGHT: RegExp[] = [
  /^core\/test\/(api[^/]*|cli[^/]*|store-[^/]*|ipam[^/]*|topology|plan|plan-lb|cache-scale|security-groups|keyed-mutex|ip|ifname)\.test\.ts$/,
  /^core\/test\/(policy-(compile|model|simulate|support|trace)|lb-compile|lb-health|errors-listen|metrics-dashboard|metrics-lb|attrib-parse|router-chains-compile)\.test\.ts$/,
  /^kubernetes\/test\/(chart|controller|controller-tenancy|controller-resilience|netpol-simulate)\.test\.ts$/,
  /^e2e\/kube\/test\/(apiserver|controllers)\.test\.ts$/,
  /^app\/test\/(boundaries|cli-help)\.test\.ts$/,
  /^(bench\/test\/report|swarm\/test\/(flags|listen|protocol)|testbed\/test\/bees-entry)\.test\.ts$/,
];

function testFiles(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist' || e.name.startsWith('.')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) testFiles(p, out);
    else if (e.name.endsWith('.test.ts') && /(^|\/)test\//.test(relative(ROOT, p))) out.push(relative(ROOT, p));
  }
  return out;
}

interface Run {
  name: string;
  code: number;
  seconds: number;
}

/** Runs a command from the repository root; its output goes to ours a whole line at a time, so lanes interleave by line. */
function run(name: string, cmd: string, args: string[]): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
  createInterface({ input: child.stdout }).on('line', (l) => process.stdout.write(`${l}\n`));
  createInterface({ input: child.stderr }).on('line', (l) => process.stderr.write(`${l}\n`));
  return new Promise((resolve) =>
    child.on('close', (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), seconds: (performance.now() - t0) / 1000 })),
  );
}

const bin = (tool: string): string => join(ROOT, 'node_modules', '.bin', tool);

async function main(args: string[]): Promise<number> {
  const checks = await Promise.all([
    run('type check', bin('tsc'), ['-p', 'tsconfig.json', '--noEmit']),
    run('lint', 'npm', ['run', '-s', 'lint']),
  ]);
  for (const c of checks) console.log(`${c.name}: ${c.code === 0 ? 'ok' : `failed (exit ${c.code})`} in ${c.seconds.toFixed(0)} s`);
  if (checks.some((c) => c.code !== 0)) return 1;
  if (args.length > 0) return (await run('ava', bin('ava'), args)).code;

  const files = testFiles(ROOT).sort();
  const light = files.filter((f) => LIGHT.some((r) => r.test(f)));
  const kernel = files.filter((f) => !light.includes(f));
  console.log(`${files.length} test files: ${kernel.length} in the kernel lane, ${light.length} in the light lane, run side by side`);
  const lanes = await Promise.all([run('kernel lane', bin('ava'), kernel), run('light lane', bin('ava'), light)]);
  for (const l of lanes) console.log(`${l.name}: exit ${l.code} after ${(l.seconds / 60).toFixed(1)} min`);
  return lanes.some((l) => l.code !== 0) ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
