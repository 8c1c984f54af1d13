// Issue 10 item 2, router side: a router's MidoNet chains in force in its namespaces through real agents and real
// ZooKeeper. A router inbound drop rule cuts cross-network traffic and its removal restores it; a floating IP (DNAT
// in the router's inbound chain) reaches a workload from the outside and the workload sees the outside's address;
// a router SNAT rule gives a workload's connections to the outside the configured source; two tenants with
// identical subnets each get their own translation; a bridge filter applies on the router leg too; a router port's
// own filter holds on every host; and nothing is left on any host once the workloads are gone.
import test from 'ava';
import type { Rule } from '../../core/model/types.js';
import { eventually, startCluster, type Cluster, type Workload } from '../../testbed/cluster.js';
import { clusterSnapshot, settledDiff } from '../lib/snapshot.js';
import { routerNsName } from '../../core/datapath/names.js';

// Answers each TCP connection on 8080 with the address it came from.
const WHO_SERVER = `
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(a[0].encode()); c.close()
`;
const WHO_CLIENT = `
import socket, sys
s = socket.create_connection((sys.argv[1], 8080), timeout=1.5)
print(s.recv(100).decode())
`;

/** The address `to`:8080 saw the connection from, or undefined when it did not connect. */
async function whoAmI(c: Cluster, from: string, to: string): Promise<string | undefined> {
  const r = await c.harness.exec(from, ['python3', '-c', WHO_CLIENT, to]);
  return r.code === 0 ? r.stdout.trim() : undefined;
}

const FIP = '198.51.100.10';
const SNAT_A = '198.51.100.20';
const SNAT_B = '198.51.100.30';

test('router chains through the agents: inbound drop, floating IP, SNAT, overlapping tenants, bridge and router port filters, nothing left', async (t) => {
  t.timeout(300_000);
  const c = await startCluster({ hosts: 2 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const before = await clusterSnapshot(c.harness);
  const [h1, h2] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0]];
  const outside = `/run/netns/${c.harness.outsideNs}`;
  const underlay = `/run/netns/${c.harness.underlayNs}`;
  const api = h1.api;
  const red = { subnets: [{ cidr: '10.61.0.0/24' }] };
  const blue = { subnets: [{ cidr: '10.62.0.0/24' }] };
  const tenA = `rca-${c.harness.tag}`;
  const tenB = `rcb-${c.harness.tag}`;
  // Two tenants, the same two subnets and the same addresses: their routers must keep their state apart.
  const a1 = await c.attach(h1, 'a1', { tenant: tenA, network: 'red', create: red, ips: ['10.61.0.10'] });
  const a2 = await c.attach(h2, 'a2', { tenant: tenA, network: 'blue', create: blue, ips: ['10.62.0.10'] });
  const b1 = await c.attach(h1, 'b1', { tenant: tenB, network: 'red', create: red, ips: ['10.61.0.10'] });
  const b2 = await c.attach(h2, 'b2', { tenant: tenB, network: 'blue', create: blue, ips: ['10.62.0.10'] });
  t.true(await c.pingEventually(a1.netns, a2.ip4!), 'red -> blue in tenant A');
  t.true(await c.pingEventually(b1.netns, b2.ip4!), 'red -> blue in tenant B');
  const routers = await api.list('Router');
  const routerOf = (w: Workload) => routers.find((r) => r.tenantId === w.result.tenantId)!;
  const rA = routerOf(a1);
  const rB = routerOf(b1);
  t.truthy(rA && rB && rA.id !== rB.id);
  const rule = (chainId: string, position: number, action: Rule['action'], condition: Rule['condition'], extra: Partial<Rule> = {}) =>
    api.create('Rule', { chainId, position, action, condition, ...extra });

  // 1. A router inbound drop rule cuts red -> blue (routed), and only that; removing it restores it.
  const inA = await api.create('Chain', { tenantId: a1.result.tenantId, name: 'a-pre' });
  const dropRule = await rule(inA.id, 10, 'drop', { nwSrc: '10.61.0.0/24', nwDst: '10.62.0.0/24', nwProto: 1 });
  await api.update('Router', rA.id, { inboundFilterId: inA.id });
  await eventually(async () => !(await c.ping(a1.netns, a2.ip4!, { timeoutSec: 1 })), 60_000, 'router drop in force');
  t.true(await c.ping(b1.netns, b2.ip4!), "tenant B's router has no such rule");
  t.false(await c.ping(a2.netns, a1.ip4!, { timeoutSec: 1 }), 'blue -> red: the echo reply (red -> blue) meets the stateless rule');
  t.true(await c.ping(a1.netns, '10.61.0.1'), 'the router itself answers red (the rule names blue)');
  await api.delete('Rule', dropRule.id);
  t.true(await c.pingEventually(a1.netns, a2.ip4!), 'the rule removed, red -> blue again');

  // 2. A floating IP: DNAT in the inbound chain to a2 (on h2); the outside routes it to h2 (a2's host, where both
  // directions of the flow are routed) through the underlay's gateway. a2 sees the outside's own address.
  await c.helper(a2.netns, ['python3', '-c', WHO_SERVER], async () => (await whoAmI(c, a2.netns, '127.0.0.1')) !== undefined);
  await c.harness.exec(outside, ['ip', 'route', 'replace', `${FIP}/32`, 'via', '203.0.113.254']);
  await c.harness.exec(underlay, ['ip', 'route', 'replace', `${FIP}/32`, 'via', h2.host.underlayIp]);
  t.is(await whoAmI(c, outside, FIP), undefined, 'no floating IP yet');
  const fipRule = await rule(
    inA.id,
    20,
    'dnat',
    { nwDst: `${FIP}/32` },
    {
      flowAction: 'accept',
      natTargets: [{ addressFrom: a2.ip4!, addressTo: a2.ip4!, portFrom: 0, portTo: 0 }],
    },
  );
  const seen = await eventually(() => whoAmI(c, outside, FIP), 60_000, 'floating IP reaches a2').catch(() => undefined);
  t.is(seen, c.harness.outsideIp, 'a2 sees the outside address through its floating IP');

  // 3. A router SNAT rule (outbound chain): a1's connections to the outside leave as SNAT_A; tenant B's a1-twin
  // (same address) as SNAT_B through its own router.
  await c.helper(outside, ['python3', '-c', WHO_SERVER], async () => (await whoAmI(c, outside, '127.0.0.1')) !== undefined);
  for (const [addr, h] of [
    [SNAT_A, h1],
    [SNAT_B, h1],
  ] as const) {
    await c.harness.exec(outside, ['ip', 'route', 'replace', `${addr}/32`, 'via', '203.0.113.254']);
    await c.harness.exec(underlay, ['ip', 'route', 'replace', `${addr}/32`, 'via', h.host.underlayIp]);
  }
  const masq = await whoAmI(c, a1.netns, c.harness.outsideIp);
  t.is(masq, h1.host.underlayIp, 'without a SNAT rule: the host masquerade');
  for (const [w, r, addr] of [
    [a1, rA, SNAT_A],
    [b1, rB, SNAT_B],
  ] as const) {
    const out = await api.create('Chain', { tenantId: w.result.tenantId, name: 'post' });
    // Towards the outside only (MidoNet would translate east-west traffic too, and its replies are routed elsewhere).
    await rule(
      out.id,
      10,
      'snat',
      { nwSrc: `${w.ip4!}/32`, nwDst: '10.0.0.0/8', invNwDst: true },
      { flowAction: 'accept', natTargets: [{ addressFrom: addr, addressTo: addr, portFrom: 0, portTo: 0 }] },
    );
    await api.update('Router', r.id, { outboundFilterId: out.id });
  }
  t.is(
    await eventually(
      async () => ((await whoAmI(c, a1.netns, c.harness.outsideIp)) === SNAT_A ? SNAT_A : undefined),
      10_000,
      'SNAT A',
    ).catch(() => undefined),
    SNAT_A,
    "a1's connection leaves as its router's SNAT address",
  );
  t.is(
    await eventually(
      async () => ((await whoAmI(c, b1.netns, c.harness.outsideIp)) === SNAT_B ? SNAT_B : undefined),
      10_000,
      'SNAT B',
    ).catch(() => undefined),
    SNAT_B,
    "b1 (same address, other tenant) leaves as its own router's SNAT address",
  );
  t.true(await c.ping(a1.netns, a2.ip4!), 'east-west traffic is not translated away');
  t.is(await whoAmI(c, outside, FIP), c.harness.outsideIp, 'the floating IP still works');

  // 4. Incremental: a change of one router's chain rewrites that chain alone, in that router's namespaces.
  // Evidence: the counters of router A's outbound chain (it carried a1's SNAT connection) survive a change of its
  // inbound chain (a rewritten chain starts from zero), and router B's table is exactly as it was.
  const nsOf = (h: typeof h1, routerId: string) => `/run/netns/${routerNsName(h.host.routerNsPrefix, routerId)}`;
  const list = async (ns: string, what: string) =>
    (await c.harness.exec(ns, ['nft', 'list', ...what.split(' ')])).stdout.replace(/counter packets \d+ bytes \d+/g, 'counter');
  const count = async (ns: string, what: string) =>
    Number(/counter packets (\d+)/.exec((await c.harness.exec(ns, ['nft', 'list', ...what.split(' ')])).stdout)?.[1] ?? -1);
  const outA = (await api.get('Router', rA.id)).outboundFilterId!;
  const snatCount = () => count(nsOf(h1, rA.id), `chain inet bees-r f-${outA}`);
  const countBefore = await snatCount();
  const tableB = await list(nsOf(h1, rB.id), 'table inet bees-r');
  t.true(countBefore > 0, `router A's SNAT rule counted a1's connection (${countBefore})`);
  await api.update('Rule', fipRule.id, { condition: { nwDst: `${FIP}/32`, nwProto: 6 } });
  await eventually(
    async () => (await list(nsOf(h2, rA.id), `chain inet bees-r f-${inA.id}`)).includes('tcp'),
    10_000,
    'rule change in force',
  );
  await eventually(async () => (await list(nsOf(h1, rA.id), `chain inet bees-r f-${inA.id}`)).includes('tcp'), 60_000, 'rule change on h1');
  t.is(await whoAmI(c, outside, FIP), c.harness.outsideIp, 'floating IP after the rule change');
  t.true((await snatCount()) >= countBefore, "router A's other chain was not rewritten");
  t.is(await list(nsOf(h1, rB.id), 'table inet bees-r'), tableB, "router B's table was not touched");

  // 5. A bridge filter applies on the router leg: blue's inbound filter drops what enters blue from the router.
  const legDrop = await api.create('Chain', { tenantId: a2.result.tenantId, name: 'blue-in' });
  await rule(legDrop.id, 10, 'drop', { nwSrc: '10.61.0.0/24', nwProto: 1 });
  await api.update('Bridge', a2.result.bridgeId, { inboundFilterId: legDrop.id });
  await eventually(async () => !(await c.ping(a1.netns, a2.ip4!, { timeoutSec: 1 })), 60_000, 'bridge filter on the leg in force');
  t.true(await c.ping(b1.netns, b2.ip4!), 'the other tenant is untouched');
  await api.update('Bridge', a2.result.bridgeId, { inboundFilterId: null });
  const back = await c.pingEventually(a1.netns, a2.ip4!);
  if (!back) {
    for (const h of c.hosts) t.log(h.host.name, (await c.harness.exec(h.host, ['nft', 'list', 'ruleset'])).stdout);
  }
  t.true(back, 'bridge filter unset, traffic back');

  // 6. A router port's own filter (MidoNet's port inbound chain: what enters the router through that port), in
  // force in the router's instance on every host: with ICMP entering from blue dropped, blue's workloads on h2 (a2)
  // and on h1 (a3) no longer reach red, tenant B is untouched, and clearing the filter restores both.
  const a3 = await c.attach(h1, 'a3', { tenant: tenA, network: 'blue', ips: ['10.62.0.11'] });
  t.true(await c.pingEventually(a3.netns, a1.ip4!), 'blue on h1 -> red');
  const bluePort = (await api.list('Port')).find(
    (p) => p.type === 'router' && p.routerId === rA.id && p.ips.some((ip) => ip.startsWith('10.62.')),
  );
  t.truthy(bluePort, "router A's port on blue");
  const portIn = await api.create('Chain', { tenantId: a2.result.tenantId, name: 'blue-port-in' });
  await rule(portIn.id, 10, 'drop', { nwProto: 1 });
  await api.update('Port', bluePort!.id, { inboundFilterId: portIn.id });
  await eventually(async () => !(await c.ping(a2.netns, a1.ip4!, { timeoutSec: 1 })), 10_000, 'router port filter in force on h2');
  await eventually(async () => !(await c.ping(a3.netns, a1.ip4!, { timeoutSec: 1 })), 10_000, 'router port filter in force on h1');
  t.true(await c.ping(b2.netns, b1.ip4!), "tenant B's router port has no filter");
  t.true(await c.ping(a2.netns, a3.ip4!), 'inside blue (bridged, not routed) is untouched');
  await api.update('Port', bluePort!.id, { inboundFilterId: null });
  t.true(await c.pingEventually(a2.netns, a1.ip4!), 'router port filter cleared: h2 routes blue -> red again');
  t.true(await c.pingEventually(a3.netns, a1.ip4!), 'and h1');

  // 7. Gone with the workloads: no router namespace, no table of ours, nothing on any host.
  for (const w of [a1, a2, a3, b1, b2]) await c.detach(w);
  t.deepEqual(await settledDiff(c.harness, before, 'no leaks'), {}, 'leaks');
});
