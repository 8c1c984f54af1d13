// `bees up` stopped with Ctrl-C while its demo runs: the demo's workloads (two network namespaces, their ports and
// addresses) are removed through the still-running agent before it stops. It used to stop the agent at once and
// leave the namespaces behind. And `bees up` beside a router namespace it did not make (another store's, e.g. a
// `bees up` whose state directory was wiped) says so and how to fix it, and leaves it alone. Runs the real entry
// point in a harness host namespace, on a file store of its own, with router namespaces of a prefix of its own: the
// default names are machine wide, and a real `bees up` may have run on this machine.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beesArgv } from '../../testbed/bees-entry.js';
import { Harness } from '../../testbed/harness.js';
import { openStore } from '../../core/store/open.js';
import { routerId } from '../../core/model/ids.js';
import { routerNsName } from '../../core/datapath/names.js';

const nsPrefix = () => `bu${randomBytes(3).toString('hex')}-`;

/** `bees up` in the harness host's namespace, on its own state and run directories and router prefix; output collected. */
function beesUp(host: { nsName: string; underlayIp: string }, stateDir: string, prefix: string, args: string[]) {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      host.nsName,
      ...beesArgv(),
      'up',
      '--state-dir',
      stateDir,
      '--no-docker',
      '--underlay-ip',
      host.underlayIp,
      '--router-ns-prefix',
      prefix,
      '--run-dir',
      join(stateDir, 'run'),
      ...args,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const run = { child, out: '', exited: new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code))) };
  child.stdout.on('data', (d: Buffer) => (run.out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (run.out += d.toString()));
  return run;
}

test.serial('Ctrl-C during the bees up demo removes the demo workloads and exits cleanly', async (t) => {
  // The router namespace stays when the agent stops (the datapath outlives the agent); this test removes it.
  const prefix = nsPrefix();
  const h = await Harness.create({ hosts: 1 });
  const stateDir = mkdtempSync(join(tmpdir(), 'bees-up-'));
  try {
    const host = h.hosts[0]!;
    const up = beesUp(host, stateDir, prefix, ['--subnet', '10.77.0.0/24', '--subnet6', 'fd00:77::/64']);
    const { child, exited } = up;
    // `ip netns exec` execs the command: the child's pid is the agent's, which names the demo's namespaces.
    const demoNs = [`bees-demo-a-${child.pid}`, `bees-demo-b-${child.pid}`];
    const deadline = Date.now() + 120_000;
    // Interrupt once the demo has made its workloads and is probing them.
    while (!/bees: demo: .* -> /.test(up.out)) {
      if (Date.now() > deadline || child.exitCode !== null) t.fail(`the demo never started probing:\n${up.out}`);
      if (child.exitCode !== null || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    t.true(
      demoNs.every((n) => existsSync(`/run/netns/${n}`)),
      'the demo namespaces exist while it runs',
    );
    child.kill('SIGINT');
    const code = await exited;
    t.is(code, 0, up.out);
    t.regex(up.out, /bees: demo: workloads removed/);
    // A terminal's log: plain lines (the operation lines used to come out as pino's JSON).
    t.notRegex(up.out, /\{"level":/);
    t.regex(up.out, /bees-agent: attach done .*\[request [0-9a-f-]+\]/);
    t.deepEqual(
      demoNs.filter((n) => existsSync(`/run/netns/${n}`)),
      [],
      'no demo namespace left behind',
    );
    // Their ports went through the agent: no veth of a workload is left in the host namespace.
    const links = execFileSync('ip', ['-n', host.nsName, '-o', 'link', 'show']).toString();
    t.notRegex(links, /: bv[0-9a-f]+@/, links);
    // …and their ports (those with a workload owner: the router's own ports stay) and addresses left the store (a detach through a stopped agent could not release them).
    const store = await openStore(`file:${stateDir}/store`);
    try {
      t.deepEqual(
        (await store.list('Port')).filter((p) => p.value.owner).map((p) => p.value.id),
        [],
        'no demo port left in the store',
      );
      const held = (await store.list('IpamBlock')).flatMap((b) => Object.values(b.value.allocations));
      t.deepEqual(held, [], 'no address left allocated');
    } finally {
      await store.close();
    }
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
    await h.destroy();
    for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) execFileSync('ip', ['netns', 'del', n]);
  }
});

test.serial('bees up beside a router namespace another store left: a clear error naming it, and the namespace left alone', async (t) => {
  const prefix = nsPrefix();
  // What a `bees up` whose state directory was since wiped leaves: the default router's namespace, with its legs.
  const leftover = routerNsName(prefix, routerId('default', 'default'));
  execFileSync('ip', ['netns', 'add', leftover]);
  execFileSync('ip', ['-n', leftover, 'link', 'add', 'l-1', 'type', 'veth', 'peer', 'name', 'l-1p']);
  const h = await Harness.create({ hosts: 1 });
  const stateDir = mkdtempSync(join(tmpdir(), 'bees-up-'));
  try {
    const host = h.hosts[0]!;
    const up = beesUp(host, stateDir, prefix, ['--subnet', '10.78.0.0/24']);
    const { child, exited } = up;
    const deadline = Date.now() + 120_000;
    while (!/exists already and this agent cannot prove it made it/.test(up.out) && child.exitCode === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    if (child.exitCode === null) child.kill('SIGINT');
    await exited;
    t.regex(up.out, new RegExp(`namespace /run/netns/${leftover} exists already and this agent cannot prove it made it`), up.out);
    t.regex(up.out, new RegExp(`ip netns del ${leftover}`));
    t.notRegex(up.out, /RTNETLINK answers: File exists/);
    // Untouched: still there, with its own interface and nothing of ours in it.
    const links = execFileSync('ip', ['-n', leftover, '-o', 'link', 'show']).toString();
    t.regex(links, /: l-1@l-1p: /);
    t.is(links.trim().split('\n').length, 3, links);
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
    await h.destroy();
    for (const n of readdirSync('/run/netns')) if (n.startsWith(prefix)) execFileSync('ip', ['netns', 'del', n]);
  }
});
