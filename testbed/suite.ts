// The test suite's runner (`npm test`, `./bees test`): the type check and the linters side by side, then every test
// file in one of two lanes that run at once. The kernel lane holds the files that build agent clusters, containers
// and container runtimes, one file at a time, as before; the light lane holds the files that need none of that (the
// API, the CLI against an API, the stores, IPAM, planning, compilers and simulators, the chart, the controller
// against the API server double, and the datapath driven directly in namespaces of its own). Those spend their time
// in their own process, their own namespaces and a ZooKeeper of their own, so running them beside the kernel lane
// takes minutes off the suite without putting two multi-host clusters on two cores at once. At the end each lane's
// slowest files are listed. Arguments (files, --match) run ava as given, in one process.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Test files that need no agent cluster, container runtime or machine-wide state of their own. */
const LIGHT: RegExp[] = [
  /^core\/test\/(api[^/]*|cli[^/]*|store-[^/]*|ipam[^/]*|topology|plan|plan-lb|router-state|cache-scale|security-groups|keyed-mutex|ip|ifname)\.test\.ts$/,
  /^core\/test\/(policy-(compile|model|simulate|support|trace)|lb-compile|lb-health|errors-listen|metrics-dashboard|metrics-lb|attrib-parse|router-chains-compile)\.test\.ts$/,
  /^kubernetes\/test\/(chart|controller|controller-tenancy|controller-resilience|netpol-simulate)\.test\.ts$/,
  /^e2e\/kube\/test\/(apiserver|controllers)\.test\.ts$/,
  // launcher: the package step against stand-ins for dpkg, apt-get and systemctl on PATH (the real systemctl is only
  // asked what is active).
  /^app\/test\/(boundaries|cli-help|launcher)\.test\.ts$/,
  /^(bench\/test\/(report|policy|node-flags)|swarm\/test\/(flags|listen|protocol)|testbed\/test\/bees-entry)\.test\.ts$/,
  // The datapath against the kernel without an agent: each file makes its own network namespaces under a random
  // name (a testbed Harness, or `ip netns add` of a random tag), sets sysctls and nftables/iptables only inside
  // them, and starts no ZooKeeper, agent, dockerd or containerd: nothing they touch is another file's. Their time is
  // mostly `ip` and `nft` commands and waiting, not CPU. datapath-bandwidth stays in the kernel lane: it measures
  // rates with iperf3, which a busy neighbour could starve.
  /^core\/test\/(datapath-(bridge|nft|router|portmap|host-firewall)|netlink|link-reaper|policy-(kernel|kernel-inverted|plug)|attrib-kernel)\.test\.ts$/,
  /^core\/test\/(router-chains-kernel|lb-dual-stack|lb-removal-kernel|workload-server)\.test\.ts$/,
  /^e2e\/test\/harness\.test\.ts$/, // the testbed's own namespace hosts, no agents
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
  /** Per test file of a lane: seconds from the previous file's last result line to its own last one. */
  files: Map<string, number>;
}

/**
 * How ava names each test file in its result lines: `e2e › test › lb › ` for e2e/test/lb.test.ts, less the folders
 * all the files share (ava leaves out their common directory), nothing at all for a single file.
 */
function avaPrefixes(files: string[]): (readonly [string, string])[] {
  if (files.length === 1) return [[files[0]!, '']];
  let common = files[0]?.slice(0, files[0].lastIndexOf('/') + 1) ?? '';
  for (const f of files) while (!f.startsWith(common)) common = common.slice(0, common.lastIndexOf('/', common.length - 2) + 1);
  return files.map(
    (f) =>
      [
        f,
        `${f
          .slice(common.length)
          .replace(/\.test\.ts$/, '')
          .split('/')
          .join(' › ')} › `,
      ] as const,
  );
}

/**
 * Runs a command from the repository root; its output goes to ours a whole line at a time, so lanes interleave by
 * line. For a lane (ava with concurrency 1, one file after another) `files` names the files it runs: each result
 * line is timed, so a file's share of the lane (its start-up and hooks included) is known at the end.
 */
function run(name: string, cmd: string, args: string[], files: string[] = []): Promise<Run> {
  const t0 = performance.now();
  const child = spawn(cmd, args, {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FORCE_COLOR: '0', BEES_TEST_DIST: DIST },
  });
  const prefixes = avaPrefixes(files);
  const times = new Map<string, number>();
  let lastAt = t0;
  const timeLine = (l: string) => {
    const m = /^\s*(?:✔|✘(?: \[[a-z]+\]:)?) (.*)$/.exec(l);
    const file = m && prefixes.find(([, p]) => m[1]!.startsWith(p))?.[0];
    if (!file) return;
    const now = performance.now();
    times.set(file, (times.get(file) ?? 0) + (now - lastAt) / 1000);
    lastAt = now;
  };
  createInterface({ input: child.stdout }).on('line', (l) => {
    process.stdout.write(`${l}\n`);
    timeLine(l);
  });
  createInterface({ input: child.stderr }).on('line', (l) => process.stderr.write(`${l}\n`));
  return new Promise((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ name, code: code ?? (signal ? 1 : 0), seconds: (performance.now() - t0) / 1000, files: times }),
    ),
  );
}

/** The slowest files of a lane, for the next person cutting the suite's time. */
function slowest(lane: Run, n = 15): string {
  const rows = [...lane.files].sort((a, b) => b[1] - a[1]).slice(0, n);
  return [
    `${lane.name}, slowest files (seconds, start-up and hooks included):`,
    ...rows.map(([f, s]) => `  ${s.toFixed(0).padStart(5)}  ${f}`),
  ].join('\n');
}

const bin = (tool: string): string => join(ROOT, 'node_modules', '.bin', tool);

/**
 * The type check compiles the project into this scratch folder, named to the tests as BEES_TEST_DIST: the image test
 * packs it instead of compiling the whole project a second time (same tsc, tsconfig and sources; most of a minute
 * of the kernel lane on a busy machine). Emitting costs the type check a few seconds, beside a lint that takes longer.
 */
const DIST = mkdtempSync(join(tmpdir(), 'bees-test-dist-'));

async function main(args: string[]): Promise<number> {
  const checks = await Promise.all([
    run('type check', bin('tsc'), ['-p', 'tsconfig.json', '--outDir', DIST]),
    run('lint', 'npm', ['run', '-s', 'lint']),
  ]);
  for (const c of checks) console.log(`${c.name}: ${c.code === 0 ? 'ok' : `failed (exit ${c.code})`} in ${c.seconds.toFixed(0)} s`);
  if (checks.some((c) => c.code !== 0)) return 1;
  if (args.length > 0) return (await run('ava', bin('ava'), args)).code;

  const files = testFiles(ROOT).sort();
  const light = files.filter((f) => LIGHT.some((r) => r.test(f)));
  const kernel = files.filter((f) => !light.includes(f));
  console.log(`${files.length} test files: ${kernel.length} in the kernel lane, ${light.length} in the light lane, run side by side`);
  const lanes = await Promise.all([run('kernel lane', bin('ava'), kernel, kernel), run('light lane', bin('ava'), light, light)]);
  for (const l of lanes) console.log(slowest(l));
  for (const l of lanes) console.log(`${l.name}: exit ${l.code} after ${(l.seconds / 60).toFixed(1)} min`);
  return lanes.some((l) => l.code !== 0) ? 1 : 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} finally {
  rmSync(DIST, { recursive: true, force: true });
}
