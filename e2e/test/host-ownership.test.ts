// What an agent may tear down, and who an agent is. An agent started against an empty or wrong store leaves the
// datapath it finds alone; a sweep never removes a foreign interface that merely shares our prefix; a second agent
// with a host id that is alive elsewhere (a cloned machine) refuses to start and changes nothing.
import test from 'ava';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readlinkSync } from 'node:fs';
import { bootId } from '../../core/agent/host-claim.js';
import { KINDS } from '../../core/model/types.js';
import { openStore } from '../../core/store/open.js';
import { beesArgv } from '../../testbed/bees-entry.js';
import { eventually, startCluster, type Cluster, type ClusterHost } from '../../testbed/cluster.js';

/** An agent for host `h` as Cluster.startAgent runs it, but against `store` and as `hostId`. */
function spawnAgent(c: Cluster, h: ClusterHost, store: string, hostId = h.hostId): ChildProcess {
  return c.harness.spawn(
    h.host,
    [
      ...beesArgv(),
      'agent',
      '--store',
      store,
      '--host-id',
      hostId,
      '--host-name',
      `${c.harness.tag}-${h.host.name}`,
      '--state-dir',
      h.host.stateDir,
      '--run-dir',
      h.runDir,
      '--underlay-ip',
      h.host.underlayIp,
      '--router-ns-prefix',
      h.host.routerNsPrefix,
    ],
    { logName: 'agent', env: { ...process.env, NODE_OPTIONS: '' } },
  );
}

async function ready(h: ClusterHost, proc: ChildProcess): Promise<void> {
  await eventually(
    async () => {
      if (proc.exitCode !== null) throw new Error(`agent of ${h.host.name} exited with ${proc.exitCode}`);
      return (await h.workloads.status()).ready;
    },
    90_000,
    `agent of ${h.host.name} ready`,
    200,
  );
}

async function exited(proc: ChildProcess, withinMs: number): Promise<number | null> {
  if (proc.exitCode !== null) return proc.exitCode;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent still running after ${withinMs} ms`)), withinMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function stopAgent(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const gone = new Promise((r) => proc.once('exit', r));
  process.kill(-proc.pid!, 'SIGKILL');
  await gone;
}

async function linkNames(c: Cluster, h: ClusterHost): Promise<string[]> {
  const r = await c.harness.exec(h.host, ['ip', '-j', 'link', 'show']);
  return (JSON.parse(r.stdout) as { ifname: string }[]).map((l) => l.ifname);
}

test('an agent on an empty or wrong store tears nothing down; a sweep spares a foreign bv… veth', async (t) => {
  const c = await startCluster({ hosts: 1 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const h1 = c.host(0);
  const w0 = await c.attach(h1, 'w0', { network: 'n0', create: { subnets: [{ cidr: '10.74.0.0/24' }] } });
  const w1 = await c.attach(h1, 'w1', { network: 'n1', create: { subnets: [{ cidr: '10.72.0.0/24' }] } });
  const bridges = async () => (await linkNames(c, h1)).filter((n) => n.startsWith('bb-') || n.startsWith('bx-'));
  const [vni0, vni1] = await Promise.all([w0, w1].map(async (w) => (await h1.api.get('Bridge', w.result.bridgeId)).tunnelKey.toString(16)));
  const of0 = [`bb-${vni0}`, `bx-${vni0}`, w0.result.hostInterface.name];
  const of1 = [`bb-${vni1}`, `bx-${vni1}`, w1.result.hostInterface.name];
  t.deepEqual((await bridges()).sort(), [of0[0], of0[1], of1[0], of1[1]].sort());
  // A veth of somebody else's, named like a plug of ours.
  const foreign = 'bv0f0e1a2b3c';
  await c.harness.exec(h1.host, ['ip', 'link', 'add', foreign, 'type', 'veth', 'peer', 'name', 'xv0f0e1a2b3c']);
  const survive = async (names: string[], when: string) => {
    const links = await linkNames(c, h1);
    for (const n of names) t.true(links.includes(n), `${n} survives ${when}`);
  };

  // The same agent (state dir, host id) restarted against an empty store: a zk root with a typo. Its first
  // reconcile pass, sweep included, runs before it answers ready.
  await c.killAgent(h1);
  const wrong = spawnAgent(c, h1, `${c.storeUrl}-typo`);
  t.teardown(() => stopAgent(wrong));
  await ready(h1, wrong);
  await new Promise((r) => setTimeout(r, 1000));
  await survive([...of0, ...of1, foreign], 'on a wrong store');
  t.is((await c.harness.exec(w1.netns, ['ip', 'link', 'show', 'eth0'])).code, 0, 'the workload keeps its eth0');
  t.regex(c.agentLog(h1), /NOT sweeping .*link bv0f0e1a2b3c.*earlier run for another store/);
  await stopAgent(wrong);

  // Back on the right store, with w0's port deleted behind the agent's back: its plug is the agent's own and goes
  // in the first sweep (its bridge stays: the router joining both networks still needs it); the foreign veth stays.
  const store = await openStore(c.storeUrl);
  t.teardown(() => store.close());
  await store.delete('Port', w0.result.portId);
  await c.startAgent(h1);
  await eventually(async () => !(await linkNames(c, h1)).includes(of0[2]!), 60_000, "w0's stale plug, made by this agent, is swept");
  await survive([...of1, foreign], 'a sweep that removed a stale link of our own');
  await c.killAgent(h1);

  // The right URL, but the store was wiped: it does not know this host, so it vouches for nothing made earlier.
  for (const kind of KINDS) for (const o of await store.list(kind)) await store.delete(kind, o.value.id);
  await c.startAgent(h1);
  await new Promise((r) => setTimeout(r, 1000));
  await survive([...of1, foreign], 'on a wiped store');
  t.regex(c.agentLog(h1), /does not know host .*datapath object\(s\) of earlier runs will NOT be swept/);
});

test('a second agent with a live host id refuses to start and changes nothing; gc stays on its host', async (t) => {
  const c = await startCluster({ hosts: 2 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const [h1, h2] = [c.host(0), c.host(1)];
  const w1 = await c.attach(h1, 'w1', { network: 'n', create: { subnets: [{ cidr: '10.73.0.0/24' }] } });
  const w2 = await c.attach(h2, 'w2', { network: 'n' });
  const store = await openStore(c.storeUrl);
  t.teardown(() => store.close());
  const record = async (id: string) => (await store.listEphemeral(`hosts/${id}`))[`hosts/${id}`] as Record<string, unknown> | undefined;
  const before = await record(h1.hostId);
  const hostBefore = await store.get('Host', h1.hostId);

  // h2's machine cloned from h1: same host id, while h1's agent lives.
  await c.killAgent(h2);
  const clone = spawnAgent(c, h2, c.storeUrl, h1.hostId);
  t.teardown(() => stopAgent(clone));
  t.not(await exited(clone, 60_000), 0, 'the clone exits with an error');
  t.regex(c.agentLog(h2), new RegExp(`host id ${h1.hostId} is in use by a live agent: process ${String(before!.pid)}`));
  t.deepEqual(await record(h1.hostId), before, 'the live agent keeps its liveness record');
  t.deepEqual(await store.get('Host', h1.hostId), hostBefore, 'the Host object is untouched');
  t.true(await c.pingEventually(w1.netns, w2.ip4!), 'h1 still serves its workload');

  // A record of another machine (another boot) is given the session timeout to expire, then refused too.
  const other = randomUUID();
  await store.putEphemeral(`hosts/${other}`, { hostId: other, pid: 1, since: Date.now(), boot: 'another-machine', hostname: 'clone' });
  const t0 = Date.now();
  const clone2 = spawnAgent(c, h2, c.storeUrl, other);
  t.teardown(() => stopAgent(clone2));
  t.not(await exited(clone2, 90_000), 0);
  t.true(Date.now() - t0 >= 12_000, 'it waited for the record to expire first');
  t.regex(c.agentLog(h2), new RegExp(`host id ${other} is in use by a live agent: process 1 on clone`));

  // A record of this boot whose process is dead is a crashed agent's: taken over at once.
  await store.removeEphemeral(`hosts/${other}`);
  const dead = randomUUID();
  const pidns = readlinkSync('/proc/self/ns/pid');
  await store.putEphemeral(`hosts/${dead}`, {
    hostId: dead,
    pid: 2 ** 22 + 1,
    since: Date.now(),
    boot: bootId(),
    pidns,
    hostname: 'crashed',
  });
  const successor = spawnAgent(c, h2, c.storeUrl, dead);
  t.teardown(() => stopAgent(successor));
  await ready(h2, successor);
  t.is((await record(dead))?.pid !== 2 ** 22 + 1, true, 'the successor holds the record');
  await stopAgent(successor);

  // GC on h2 with nothing valid removes h2's own workload only, never h1's.
  await c.startAgent(h2);
  const gc = await h2.workloads.gc({ orchestrator: 'cli', valid: [] });
  t.deepEqual(
    gc.removed.map((r) => r.workloadId),
    [w2.workloadId],
  );
  t.truthy(await store.get('Port', w1.result.portId), "h1's port is still there");
});
