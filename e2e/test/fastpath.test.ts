// The tc-BPF fast path (core/datapath/fastpath/, README "The fast path") on real agents, two namespace hosts, real
// ZooKeeper: traffic between unfiltered ports rides it both ways (its counters move) and still works in both
// families; what it must leave to the bridge still goes there: a spoofed source (port security), a port with a
// filter (the filter holds, from both hosts' side), a port down. Detach leaves no map entry behind.
import test from 'ava';
import { startCluster, eventually, type Cluster, type ClusterHost } from '../../testbed/cluster.js';
import type { AgentStatus } from '../../core/agent/agent-status.js';
import { PROTO_TCP } from '../../core/policy/simulate.js';
import { sample, scrape } from '../../testbed/metrics.js';

let cluster: Cluster | undefined;
test.before(async () => {
  cluster = await startCluster({ hosts: 2 });
});
test.after.always(() => cluster?.close());

type Fast = NonNullable<AgentStatus['datapath']['fastPath']>;
const fastOf = async (h: ClusterHost): Promise<Fast> => {
  const s = await h.api.request<AgentStatus>('GET', '/v1/agent/status');
  if (!s.datapath.fastPath) throw new Error('the agent reports no fast path');
  return s.datapath.fastPath;
};
const carried = async (h: ClusterHost): Promise<number> => (await fastOf(h)).ports;
const outcome = async (h: ClusterHost, o: string): Promise<number> => (await fastOf(h)).outcomes[o] ?? 0;

test.serial('unfiltered ports ride the fast path; spoofing, filters and admin state still take the bridge', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [ClusterHost, ClusterHost];
  const subnets = [{ cidr: '10.95.0.0/24' }, { cidr: 'fd00:95::/64' }];
  const a = await c.attach(h1, 'fa', { network: 'fast', create: { subnets } });
  const b = await c.attach(h2, 'fb', { network: 'fast' });
  t.true(await c.pingEventually(a.netns, b.ip4!), 'a -> b');
  await eventually(async () => (await carried(h1)) === 1 && (await carried(h2)) === 1, 20_000, 'both ports on the fast path');
  t.like(await fastOf(h1), { state: 'on' });

  // TCP both ways over IPv4 and IPv6: tx on the sender's host, rx on the receiver's.
  const server = await c.iperfServer(b.netns);
  try {
    const [tx0, rx0] = [await outcome(h1, 'tx_fast'), await outcome(h2, 'rx_fast')];
    t.true((await c.iperf(a.netns, b.ip4!, 1)) > 0, 'TCP over IPv4');
    t.true((await c.iperf(a.netns, b.ip6!, 1)) > 0, 'TCP over IPv6');
    t.true((await outcome(h1, 'tx_fast')) - tx0 > 1000, 'h1 sent on the fast path');
    t.true((await outcome(h2, 'rx_fast')) - rx0 > 1000, 'h2 delivered on the fast path');
    // The replies: b's tx on h2, a's rx on h1.
    t.true((await outcome(h2, 'tx_fast')) > 100 && (await outcome(h1, 'rx_fast')) > 100, 'the ACKs rode it back');
    // Metrics: the outcomes, and b's "to the workload" counters include what rx delivered past its host-side veth
    // (two 1 s streams at Gbit/s: far more than 10 MB; the veth's own transmit counter saw only the bridge's frames).
    const m = await scrape(`${h2.runDir}/api.sock`);
    t.true((sample(m, 'bees_fastpath_frames_total', { outcome: 'rx_fast' }) ?? 0) > 1000, 'bees_fastpath_frames_total');
    t.is(sample(m, 'bees_fastpath_ports'), 1);
    t.true((sample(m, 'bees_port_tx_bytes_total', { port: b.result.portId }) ?? 0) > 10e6, 'bees_port_tx_bytes_total counts the fast path');
  } finally {
    server.stop();
  }
  t.true(await c.pingEventually(a.netns, b.ip6!), 'IPv6 ping (ND through the bridge, echo on the fast path)');
  // Neighbour caches emptied: ARP and ND go through the bridge and its ARP suppression, the echo after them.
  await c.harness.exec(a.netns, ['ip', 'neigh', 'flush', 'all']);
  t.true(await c.ping(a.netns, b.ip4!), 'ARP resolves and IPv4 works after a flush');
  t.true(await c.ping(a.netns, b.ip6!), 'ND resolves and IPv6 works after a flush');

  // A source address that is not the port's: left to the bridge, whose port security drops it.
  const spoof0 = await outcome(h1, 'tx_spoof');
  await c.harness.exec(a.netns, ['ip', 'addr', 'add', '10.95.0.250/32', 'dev', 'eth0']);
  const spoofed = await c.harness.exec(a.netns, ['ping', '-n', '-q', '-c', '3', '-i', '0.2', '-W', '1', '-I', '10.95.0.250', b.ip4!]);
  t.not(spoofed.code, 0, 'a spoofed source gets no reply');
  await c.harness.exec(a.netns, ['ip', 'addr', 'del', '10.95.0.250/32', 'dev', 'eth0']);
  t.true((await outcome(h1, 'tx_spoof')) > spoof0, 'the spoofed frames were handed to the bridge');

  // A filter on b (drop TCP to port 5201, allow the rest): b leaves the fast path on h2 before the filter is in,
  // and the filter holds for a's frames, which h1 still sends on the fast path (a has no filter).
  const api = h1.api;
  const { tenantId } = await api.get('Bridge', b.result.bridgeId);
  const chain = await api.create('Chain', { tenantId, name: 'no-5201' });
  await api.create('Rule', {
    chainId: chain.id,
    position: 1,
    action: 'drop',
    condition: { nwProto: PROTO_TCP, tpDst: { start: 5201, end: 5201 } },
  });
  await api.update('Port', b.result.portId, { outboundFilterId: chain.id });
  await eventually(async () => (await carried(h2)) === 0, 20_000, 'b off the fast path');
  t.is(await carried(h1), 1, 'a stays on it');
  const server2 = await c.iperfServer(b.netns);
  try {
    const r = await c.harness.exec(a.netns, ['nc', '-z', '-w', '2', b.ip4!, '5201']);
    t.not(r.code, 0, 'the filter drops TCP to 5201 although a sends on the fast path');
  } finally {
    server2.stop();
  }
  t.true(await c.ping(a.netns, b.ip4!), 'the rest still passes');
  await api.update('Port', b.result.portId, { outboundFilterId: null });
  await eventually(async () => (await carried(h2)) === 1, 20_000, 'b back on the fast path');

  // A port down: off the fast path, and cut.
  await api.update('Port', a.result.portId, { adminStateUp: false });
  await eventually(async () => (await carried(h1)) === 0, 20_000, 'a off the fast path while down');
  await eventually(async () => !(await c.ping(b.netns, a.ip4!, { timeoutSec: 1 })), 20_000, 'b no longer reaches a');
  await api.update('Port', a.result.portId, { adminStateUp: true });
  t.true(await c.pingEventually(b.netns, a.ip4!, 20_000), 'up again');

  // Detach: the ports leave the maps.
  await c.detach(a);
  await c.detach(b);
  await eventually(async () => (await carried(h1)) + (await carried(h2)) === 0, 20_000, 'no port left on the fast path');
});

test.serial('an agent killed and restarted: traffic keeps flowing, and the new agent takes the fast path over', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [ClusterHost, ClusterHost];
  const a = await c.attach(h1, 'ra', { network: 'restart', create: { subnets: [{ cidr: '10.96.0.0/24' }] } });
  const b = await c.attach(h2, 'rb', { network: 'restart' });
  t.true(await c.pingEventually(a.netns, b.ip4!), 'a -> b');
  await eventually(async () => (await carried(h2)) === 1, 20_000, 'b on the fast path');
  const server = await c.iperfServer(b.netns);
  try {
    // With h2's agent gone, its programs and maps stay in the kernel (the filters hold them) and keep carrying.
    await c.killAgent(h2);
    t.true((await c.iperf(a.netns, b.ip4!, 1)) > 0, 'TCP while the agent is down');
    await c.startAgent(h2);
    // The new agent loads its own object and replaces the filters; its counters start at zero and move.
    await eventually(async () => (await carried(h2)) === 1, 30_000, "b on the new agent's fast path");
    t.true((await c.iperf(a.netns, b.ip4!, 1)) > 0, 'TCP after the restart');
    t.true((await outcome(h2, 'rx_fast')) > 1000, "the new agent's program carries b's traffic");
  } finally {
    server.stop();
  }

  // A filter on b's own frames bound while h2's agent is down: the old program on b's veth still has b in its maps.
  // The new agent takes the veth over (removes the old filter) and leaves b on the bridge, where the filter runs.
  const serverA = await c.iperfServer(a.netns);
  try {
    t.is((await c.harness.exec(b.netns, ['nc', '-z', '-w', '2', a.ip4!, '5201'])).code, 0, 'b reaches a:5201 before');
    await c.killAgent(h2);
    const { tenantId } = await h1.api.get('Bridge', b.result.bridgeId);
    const chain = await h1.api.create('Chain', { tenantId, name: 'b-no-5201' });
    await h1.api.create('Rule', {
      chainId: chain.id,
      position: 1,
      action: 'drop',
      condition: { nwProto: PROTO_TCP, tpDst: { start: 5201, end: 5201 } },
    });
    await h1.api.update('Port', b.result.portId, { inboundFilterId: chain.id });
    await c.startAgent(h2);
    await eventually(
      async () => (await c.harness.exec(b.netns, ['nc', '-z', '-w', '1', a.ip4!, '5201'])).code !== 0,
      20_000,
      "b's new filter holds after the restart",
    );
    t.is(await carried(h2), 0, 'b is off the fast path');
    t.true(await c.ping(b.netns, a.ip4!), 'the rest of b traffic passes');
  } finally {
    serverA.stop();
  }
  await c.detach(a);
  await c.detach(b);
});

test.serial('a shaped port stays on the bridge path, where its rate limits are', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [ClusterHost, ClusterHost];
  const a = await c.attach(h1, 'sa', { network: 'shaped', create: { subnets: [{ cidr: '10.97.0.0/24' }] } });
  const b = await c.attach(h2, 'sb', {
    network: 'shaped',
    // Towards the workload only: a tbf at the veth's root and no ingress qdisc, so only the qdisc check can tell.
    bandwidth: { ingressRate: 20_000_000, ingressBurst: 2_000_000 },
  });
  t.true(await c.pingEventually(a.netns, b.ip4!), 'a -> b');
  await eventually(async () => (await carried(h1)) === 1, 20_000, 'a (unshaped) on the fast path');
  t.is(await carried(h2), 0, 'b (shaped) is not');
  const server = await c.iperfServer(b.netns);
  try {
    const gbps = await c.iperf(a.netns, b.ip4!, 2);
    t.true(gbps < 0.05, `b's ingress rate (20 Mbit/s) holds although a sends on the fast path: ${gbps} Gbit/s`);
  } finally {
    server.stop();
  }
  await c.detach(a);
  await c.detach(b);
});
