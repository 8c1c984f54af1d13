// The store going away under a real agent (ZooKeeper through a TCP relay): the ZooKeeper server stopped, and a
// partition (the relay cut). Through the real plugin: STATUS fails (code 50) while the store is unreachable, ADD
// fails fast (code 11) leaving no interface, port or address, DEL still removes the kernel side, and once the
// store is back the release reaches it; the agent's readiness, the REST status and bees_store_up follow. And no
// silent gap: an agent partitioned while others write past the change log's retention relists once healed, so its
// kernel state (the FDB of remote ports) converges.
import test, { type ExecutionContext } from 'ava';
import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import { parseNetworkConfig } from '../harness/config.js';
import { CniHarness, PluginError } from '../harness/libcni.js';
import { addrsIn, randomSuffix } from '../harness/netns.js';
import { AgentClient } from '../plugin/agent-client.js';
import { ZooKeeperStore } from '../../core/store/zookeeper.js';
import { TcpProxy } from '../../core/testing/tcp-proxy.js';
import { Topology } from '../../core/topology/service.js';
import { ZooKeeperServer } from '../../core/testing/zookeeper.js';
import { buildPlugin, REFERENCE_DIR, randomSubnet, tempDir } from './helpers.js';
import { heldBy as agentHeld, portsOf as agentPorts, startAgents, workloadVeths, type AgentCluster, type HostAgent } from './real-agent.js';

let zk: ZooKeeperServer;
let proxy: TcpProxy;
let cluster: AgentCluster;
let agent: HostAgent;
const zkRoot = `/bees-outage-${randomBytes(3).toString('hex')}`;

test.before(async () => {
  await buildPlugin();
  zk = await ZooKeeperServer.start({ forceSync: false });
  cluster = await startAgents(1, {
    store: async (harness) => {
      proxy = await TcpProxy.start({ host: '127.0.0.1', port: zk.port }, harness.rootIp);
      return `zk://${proxy.address}${zkRoot}`;
    },
  });
  agent = cluster.agents[0]!;
});
test.after.always(async () => {
  await cluster?.close();
  await proxy?.close();
  await zk?.cleanup();
});

function metric(name: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: agent.apiSocket, path: '/metrics', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString('utf8')));
      res.on('end', () => {
        const line = body.split('\n').find((l) => l.startsWith(`${name} `));
        resolve(line === undefined ? undefined : Number(line.slice(name.length + 1)));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(what: string, fn: () => Promise<boolean>, withinMs = 30_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const statusOf = () => new AgentClient(agent.socket).status();
const portsOf = (workloadId: string) => agentPorts(agent, workloadId);
const heldBy = (workloadId: string) => agentHeld(agent, workloadId);

async function outage(t: ExecutionContext, fault: () => Promise<void>, heal: () => Promise<void>): Promise<void> {
  const h = new CniHarness({
    pluginDirs: [await buildPlugin(), REFERENCE_DIR],
    cacheDir: await tempDir(t, 'cache'),
    hostNetns: agent.host.netns,
  });
  const subnet = randomSubnet();
  const list = parseNetworkConfig(
    JSON.stringify({
      cniVersion: '1.1.0',
      name: `mn-${randomSuffix()}`,
      plugins: [{ type: 'midonet', agentSocket: agent.socket, network: `n-${randomSuffix()}`, subnet: subnet.cidr }],
    }),
  );
  // An earlier test's heal may still be reconnecting.
  await until('the agent is ready', async () => (await statusOf()).ready, 60_000);
  const workload = async () => {
    const path = await cluster.harness.addWorkload(agent.host, `w${randomSuffix()}`);
    t.teardown(() => cluster.harness.removeWorkload(path).catch(() => undefined));
    return path;
  };
  const before = { containerId: `b${randomSuffix(6)}`, netns: await workload(), ifname: 'eth0' };
  await h.addNetworkList(list, before);
  await h.getStatusNetworkList(list);
  t.is(await metric('bees_store_up'), 1);
  // One more, added just before the fault: the agent's cache (which follows the store's change stream) may not
  // have seen its port yet when the store goes, and its DEL must still find the interface.
  const fresh = { containerId: `f${randomSuffix(6)}`, netns: await workload(), ifname: 'eth0' };
  const vethsBefore = await workloadVeths(cluster.harness, agent.host);
  await h.addNetworkList(list, fresh);

  await fault();
  t.teardown(heal);
  // The agent sees its ZooKeeper connection drop: STATUS, readiness, bees status and the metric follow.
  const statusCode = () =>
    h.getStatusNetworkList(list).then(
      () => 0,
      (e: unknown) => (e instanceof PluginError ? e.code : -1),
    );
  await until('STATUS fails', async () => (await statusCode()) === 50, 15_000);
  t.is(await metric('bees_store_up'), 0);
  const st = await agent.api<{ reachable: boolean; error?: string }>('/v1/status');
  t.false(st.reachable);
  t.regex(st.error ?? '', /ZooKeeper|disconnected/i);

  // ADD fails fast with "try again later" and leaves nothing.
  const during = { containerId: `d${randomSuffix(6)}`, netns: await workload(), ifname: 'eth0' };
  const started = Date.now();
  const add = await t.throwsAsync(h.addNetworkList(list, during), { instanceOf: PluginError });
  const took = Date.now() - started;
  t.like(add, { plugin: 'midonet', code: 11 });
  t.true(took < 3000, `ADD failed after ${took} ms`);
  t.is((await workloadVeths(cluster.harness, agent.host)).length, vethsBefore.length + 1, 'only the fresh workload was added');
  t.false((await addrsIn(during.netns.replace('/run/netns/', ''))).some((l) => l.ifname === 'eth0'));

  // DEL of the workload added just before the fault removes its interface too.
  await h.delNetworkList(list, fresh);
  t.deepEqual(await workloadVeths(cluster.harness, agent.host), vethsBefore, 'the fresh workload left no interface');
  t.false((await addrsIn(fresh.netns.replace('/run/netns/', ''))).some((l) => l.ifname === 'eth0'));

  // DEL of the earlier workload removes its kernel side now.
  await h.delNetworkList(list, before);
  const vethsAfterDel = await workloadVeths(cluster.harness, agent.host);
  t.is(vethsAfterDel.length, vethsBefore.length - 1);
  t.false((await addrsIn(before.netns.replace('/run/netns/', ''))).some((l) => l.ifname === 'eth0'));

  await heal();
  await until('STATUS passes again', async () => (await statusCode()) === 0, 60_000);
  t.is(await metric('bees_store_up'), 1);
  // The release queued while the store was away reaches it; the failed ADD recorded nothing.
  const released = async () =>
    (
      await Promise.all([before, fresh].map(async (w) => (await portsOf(w.containerId)).length + (await heldBy(w.containerId)).length))
    ).every((n) => n === 0);
  await until('the detached ports leave the store', released, 30_000);
  t.deepEqual(await portsOf(during.containerId), []);
  t.deepEqual(await heldBy(during.containerId), []);
  // And the agent works again.
  const after = { containerId: `a${randomSuffix(6)}`, netns: await workload(), ifname: 'eth0' };
  await h.addNetworkList(list, after);
  await h.delNetworkList(list, after);
}

test.serial('ZooKeeper server stopped: STATUS 50, ADD 11 within 3 s leaving nothing, DEL unplugs, release after restart', async (t) => {
  await outage(
    t,
    () => zk.stop(),
    async () => {
      if (!zk.running) await zk.launch();
    },
  );
});

test.serial('partition through the relay: STATUS 50, ADD 11 within 3 s leaving nothing, DEL unplugs, release after heal', async (t) => {
  await outage(
    t,
    () => proxy.cut(),
    () => proxy.restore(),
  );
});

/** MACs in the agent host's FDB (every device). */
async function fdbMacs(): Promise<Set<string>> {
  const r = await cluster.harness.exec(agent.host, ['bridge', '-j', 'fdb', 'show']);
  return new Set((JSON.parse(r.stdout || '[]') as { mac: string }[]).map((f) => f.mac));
}

test.serial('a partitioned agent that fell behind the log retention relists once healed: its FDB converges', async (t) => {
  // Another writer of the same tree, keeping only 2 log entries: it trims behind the agent while it is away.
  const writer = await ZooKeeperStore.open(`zk://${zk.connectString}${zkRoot}`, { retention: 2, sessionTimeoutMs: 4000 });
  t.teardown(() => writer.close());
  const topo = new Topology(writer);
  const client = new AgentClient(agent.socket);
  const netns = await cluster.harness.addWorkload(agent.host, `g${randomSuffix()}`);
  t.teardown(() => cluster.harness.removeWorkload(netns).catch(() => undefined));
  // An earlier test's heal may still be reconnecting.
  await until('the agent is ready', async () => (await statusOf()).ready, 60_000);
  const network = `gap-${randomSuffix()}`;
  const local = await client.attach({
    orchestrator: 'cli',
    workloadId: 'gap-local',
    ifname: 'eth0',
    network,
    netns,
    create: { subnets: [{ cidr: randomSubnet().cidr }] },
  });
  t.teardown(() => client.detach({ orchestrator: 'cli', workloadId: 'gap-local', ifname: 'eth0' }).catch(() => undefined));
  // A remote host with ports on the same bridge: the agent sends their MACs to it (FDB).
  const hostId = `gap-host-${randomSuffix()}`;
  await topo.create('Host', { id: hostId, name: hostId, addresses: ['192.0.2.77'], tunnelZones: [], tunnelPort: 6677, underlayMtu: 1500 });
  const remote = (mac: string) =>
    topo.create('Port', {
      type: 'bridge',
      bridgeId: local.bridgeId,
      mac,
      ips: [],
      hostId,
      interfaceName: 'bvremote',
      adminStateUp: true,
      status: 'up',
      portSecurity: true,
      portGroupIds: [],
      options: {},
    });
  const gone = await remote('0a:58:c0:00:02:01');
  await until('the remote MAC is in the FDB', async () => (await fdbMacs()).has('0a:58:c0:00:02:01'));

  await proxy.cut();
  t.teardown(() => proxy.restore());
  await until('the agent sees the partition', async () => !(await client.status()).ready, 15_000);
  await topo.delete('Port', gone.id);
  await remote('0a:58:c0:00:02:02');
  // Enough further transactions that the log holds nothing the agent has seen.
  for (let i = 0; i < 6; i++) await topo.create('Tenant', { name: `gap-churn-${randomSuffix()}` });
  await new Promise((r) => setTimeout(r, 500)); // the writer trims in the background after each commit
  await proxy.restore();

  await until(
    'the FDB converges',
    async () => {
      const macs = await fdbMacs();
      return macs.has('0a:58:c0:00:02:02') && !macs.has('0a:58:c0:00:02:01');
    },
    30_000,
  );
  t.pass();
});
