// MidoNet's admin state in the kernel (issue 10): a port that is administratively down drops everything in and out
// of it (ARP included), on every host, and forwards again when it comes up, without a re-plug; a router port down
// cuts the routed traffic of its network. `bees trace` (the simulator, and its kernel probe) says the same. Real
// agents on two namespace hosts, real ZooKeeper; nothing mocked.
import test from 'ava';
import { startCluster, eventually, type Cluster } from '../../testbed/cluster.js';
import type { TraceResult } from '../../core/policy/trace.js';
import type { ProbeReport } from '../../core/api/attribution.js';
import { ADMIN_DOWN } from '../../core/policy/simulate.js';

let cluster: Cluster | undefined;
test.before(async () => {
  cluster = await startCluster({ hosts: 2 });
});
test.after.always(() => cluster?.close());

/** The `c-admin/down` chain on a host, or undefined: its drop counter in packets. */
async function adminDownPackets(c: Cluster, i: number): Promise<number | undefined> {
  const r = await c.harness.exec(c.hosts[i]!.host, ['/usr/sbin/nft', 'list', 'chain', 'bridge', 'bees', `c-${ADMIN_DOWN}`]);
  if (r.code !== 0) return undefined;
  return Number(/counter packets (\d+)/.exec(r.stdout)?.[1] ?? NaN);
}

test.serial('a port down drops both ways and ARP, up forwards again; a router port down cuts routing', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0]];
  const api = h1.api;
  const a = await c.attach(h1, 'a', { network: 'red', create: { subnets: [{ cidr: '10.93.0.0/24' }] } });
  const b = await c.attach(h2, 'b', { network: 'red' });
  const g = await c.attach(h1, 'g', { network: 'green', create: { subnets: [{ cidr: '10.94.0.0/24' }] } });
  t.true(await c.pingEventually(a.netns, b.ip4!), 'a -> b before');
  t.true(await c.pingEventually(b.netns, a.ip4!), 'b -> a before');
  t.true(await c.pingEventually(a.netns, g.ip4!), 'a -> g (routed) before');

  // a's port down: nothing in or out, from this host's side and from the other host's.
  await api.update('Port', a.result.portId, { adminStateUp: false });
  await eventually(async () => (await adminDownPackets(c, 0)) !== undefined, 20_000, 'the drop chain on h1');
  // bees trace: the simulator and a real probe of the kernels agree on the drop and its reason. First, while a still
  // knows b's MAC (the probe's echo is sent only once its neighbour resolves, and ARP is cut too).
  const tr = await api.request<TraceResult & { probe?: ProbeReport }>('POST', '/v1/trace', {
    src: a.result.portId,
    dst: b.result.portId,
    proto: 'icmp',
    probe: true,
  });
  t.like(tr, { delivered: false, request: { verdict: 'drop', stage: 'port-inbound', ruleId: ADMIN_DOWN } });
  t.like(tr.probe, { kernel: { request: 'drop', requestRuleId: ADMIN_DOWN }, agrees: true }, JSON.stringify(tr.probe));
  await eventually(async () => !(await c.ping(b.netns, a.ip4!, { timeoutSec: 1 })), 20_000, 'b no longer reaches a');
  t.false(await c.ping(a.netns, b.ip4!, { timeoutSec: 1 }), 'a -> b cut');
  t.false(await c.ping(a.netns, g.ip4!, { timeoutSec: 1 }), 'a -> its gateway and beyond cut');
  // ARP too: with its neighbour cache emptied, a cannot even resolve b (the VXLAN proxy's answer is dropped).
  await c.harness.exec(a.netns, ['ip', 'neigh', 'flush', 'all']);
  t.false(await c.ping(a.netns, b.ip4!, { timeoutSec: 1 }));
  const neigh = await c.harness.exec(a.netns, ['ip', '-j', 'neigh', 'show', b.ip4!]);
  t.falsy((JSON.parse(neigh.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr, `no ARP answer reached a: ${neigh.stdout}`);
  t.true(((await adminDownPackets(c, 0)) ?? 0) > 0, "h1's drop counter moved");

  const back = await h2.api.request<TraceResult>('POST', '/v1/trace', { src: b.result.portId, dst: a.result.portId, proto: 'icmp' });
  t.like(back, { delivered: false, request: { verdict: 'drop', stage: 'port-outbound', ruleId: ADMIN_DOWN } });

  // Up again: the same veth forwards again, both ways, without a re-plug.
  const veth = (await c.harness.exec(h1.host, ['ip', '-j', 'link', 'show', a.result.hostInterface.name])).stdout;
  await api.update('Port', a.result.portId, { adminStateUp: true });
  t.true(await c.pingEventually(a.netns, b.ip4!, 20_000), 'a -> b again');
  t.true(await c.pingEventually(b.netns, a.ip4!, 20_000), 'b -> a again');
  t.true(await c.pingEventually(a.netns, g.ip4!, 20_000), 'a -> g again');
  const ifindex = (s: string) => (JSON.parse(s) as { ifindex: number }[])[0]?.ifindex;
  t.is(ifindex((await c.harness.exec(h1.host, ['ip', '-j', 'link', 'show', a.result.hostInterface.name])).stdout), ifindex(veth));
  t.is(await adminDownPackets(c, 0), undefined, 'the drop chain went with its last binding');
  const up = await api.request<TraceResult>('POST', '/v1/trace', { src: a.result.portId, dst: b.result.portId, proto: 'icmp' });
  t.true(up.delivered);

  // The router's port on green down: routed traffic between red and green stops both ways; red itself still works.
  const routerPorts = (await api.list('Port')).filter((p) => p.type === 'router');
  const greenLink = (await api.list('Port', { bridgeId: g.result.bridgeId })).find((p) => p.peerId)!;
  const rp = routerPorts.find((p) => p.id === greenLink.peerId)!;
  await api.update('Port', rp.id, { adminStateUp: false });
  await eventually(async () => !(await c.ping(a.netns, g.ip4!, { timeoutSec: 1 })), 20_000, 'a no longer reaches g');
  t.false(await c.ping(g.netns, a.ip4!, { timeoutSec: 1 }), 'g -> a cut');
  t.false(await c.ping(b.netns, g.ip4!, { timeoutSec: 1 }), 'b (on the other host) -> g cut');
  t.true(await c.ping(a.netns, b.ip4!), 'red is not affected');
  await api.update('Port', rp.id, { adminStateUp: true });
  t.true(await c.pingEventually(a.netns, g.ip4!, 20_000), 'a -> g again');
  t.true(await c.pingEventually(b.netns, g.ip4!, 20_000), 'b -> g again');

  // Detached while down: the port's stage chains and the drop chain leave with it.
  await api.update('Port', b.result.portId, { adminStateUp: false });
  await eventually(async () => (await adminDownPackets(c, 1)) !== undefined, 20_000, 'the drop chain on h2');
  await c.detach(b);
  await eventually(async () => (await adminDownPackets(c, 1)) === undefined, 20_000, 'the drop chain gone from h2');
  const left = await c.harness.exec(h2.host, ['/usr/sbin/nft', 'list', 'table', 'bridge', 'bees']);
  t.false(left.stdout.includes(b.result.hostInterface.name), `nothing of b's veth is left: ${left.stdout}`);
});
