// Issue 10 item 2: MidoNet chains in force in the kernel through real agents. Chains, rules and groups are created
// through the API (stored in the real ZooKeeper); workloads on three hosts, in two tenants with identical subnets,
// probe each other with TCP, UDP and ICMP, and every cell must be what the simulator (core/policy/simulate.ts)
// predicts over the same topology. Then a rule change must be in force on every host within a bound, and removing
// the workloads must leave nothing behind (the leak snapshot covers every nft table, bees-ct included).
import test from 'ava';
import type { Port, Rule } from '../../core/model/types.js';
import { ETH_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, simulateExchange, type PolicyView } from '../../core/policy/simulate.js';
import { openStore } from '../../core/store/open.js';
import { eventually, startCluster, type Cluster, type Workload } from '../../testbed/cluster.js';
import * as probes from '../../testbed/probes.js';
import { clusterSnapshot, settledDiff } from '../lib/snapshot.js';

function probe(c: Cluster, from: Workload, to: Workload, p: probes.Probe): Promise<boolean> {
  if (p.proto === 'icmp') return c.ping(from.netns, to.ip4!, { timeoutSec: 1 });
  return c.harness.exec(from.netns, probes.probeClientArgv(p.proto, to.ip4!, p.port!)).then((x) => x.code === 0);
}

/** The simulator's view of the topology as stored (what `bees trace` reads too). */
async function policyView(c: Cluster): Promise<PolicyView & { portsFull: Port[] }> {
  const api = c.host(0).api;
  const [chains, rules, ipAddrGroups, ports] = await Promise.all([
    api.list('Chain'),
    api.list('Rule'),
    api.list('IpAddrGroup'),
    api.list('Port'),
  ]);
  return { chains: chains, rules: rules, ipAddrGroups: ipAddrGroups, ports, portsFull: ports };
}

test('chains in force through the agents: the kernel agrees with the simulator on every cell, rule changes hold fast, nothing leaks', async (t) => {
  t.timeout(300_000);
  const c = await startCluster({ hosts: 3 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const before = await clusterSnapshot(c.harness);
  const api = c.host(0).api;
  const subnet = { subnets: [{ cidr: '10.41.0.0/24' }] };
  // Two tenants, one network name and subnet each: addresses collide across tenants on purpose.
  const a1 = await c.attach(c.host(0), 'pa1', { tenant: 'pa', network: 'pol', create: subnet });
  const a2 = await c.attach(c.host(1), 'pa2', { tenant: 'pa', network: 'pol' });
  const a3 = await c.attach(c.host(2), 'pa3', { tenant: 'pa', network: 'pol' });
  const b1 = await c.attach(c.host(0), 'pb1', { tenant: 'pb', network: 'pol', create: subnet });
  const b2 = await c.attach(c.host(1), 'pb2', { tenant: 'pb', network: 'pol' });
  t.is(a1.ip4, b1.ip4, 'the tenants reuse addresses');
  const tenantA = a1.result.tenantId;

  // a3 is a server: it accepts return flows, TCP/80 from the address group (a1), ICMP from the port group (a2) by
  // a jump chain, and nothing else; it may start UDP/5353 and nothing else itself. The network drops UDP/7777.
  const ag = await api.create('IpAddrGroup', { tenantId: tenantA, name: 'clients', addresses: [a1.ip4!] });
  const pg = await api.create('PortGroup', { tenantId: tenantA, name: 'pingers', stateful: false });
  await api.update('Port', a2.result.portId, { portGroupIds: [pg.id] });
  const toA3 = await api.create('Chain', { tenantId: tenantA, name: 'to-a3' });
  const icmp = await api.create('Chain', { tenantId: tenantA, name: 'icmp' });
  const fromA3 = await api.create('Chain', { tenantId: tenantA, name: 'from-a3' });
  const bout = await api.create('Chain', { tenantId: tenantA, name: 'pol-out' });
  const rule = (chainId: string, position: number, action: Rule['action'], condition: Rule['condition'], extra: Partial<Rule> = {}) =>
    api.create('Rule', { chainId, position, action, condition, ...extra });
  // Neutron-shaped: ARP always passes (an allow-list that drops it starves IP too), then return flows, then the list.
  await rule(toA3.id, 1, 'accept', { ethertype: ETH_ARP });
  await rule(toA3.id, 2, 'accept', { matchReturnFlow: true });
  await rule(toA3.id, 3, 'accept', { nwProto: PROTO_TCP, tpDst: { start: 80, end: 80 }, ipAddrGroupSrc: ag.id });
  await rule(toA3.id, 4, 'jump', {}, { jumpChainId: icmp.id });
  await rule(toA3.id, 5, 'drop', {});
  await rule(icmp.id, 1, 'accept', { nwProto: PROTO_ICMP, portGroupSrc: pg.id });
  await rule(fromA3.id, 1, 'accept', { ethertype: ETH_ARP });
  await rule(fromA3.id, 2, 'accept', { matchReturnFlow: true });
  await rule(fromA3.id, 3, 'accept', { nwProto: PROTO_UDP, tpDst: { start: 5353, end: 5353 } });
  await rule(fromA3.id, 4, 'drop', {});
  const udpRule = await rule(bout.id, 1, 'drop', { nwProto: PROTO_UDP, tpDst: { start: 7777, end: 7777 }, matchForwardFlow: true });
  await api.update('Port', a3.result.portId, { inboundFilterId: fromA3.id, outboundFilterId: toA3.id });
  await api.update('Bridge', a1.result.bridgeId, { outboundFilterId: bout.id });

  const all = [a1, a2, a3, b1, b2];
  for (const w of all)
    await c.helper(w.netns, ['python3', '-c', probes.PROBE_SERVER], async () =>
      probe(c, w, { ...w, ip4: '127.0.0.1' }, { proto: 'tcp', port: 8080 }),
    );
  const bridges = new Map((await api.list('Bridge')).map((b) => [b.id, b]));
  const table = async () => {
    const view = await policyView(c);
    const endOf = (w: Workload) => ({ mac: w.result.interface.mac, ip: w.ip4!, portId: w.result.portId });
    const cells: probes.ProbeCell[] = [];
    await Promise.all(
      all.map(async (src) => {
        for (const dst of all) {
          if (src === dst || src.result.bridgeId !== dst.result.bridgeId) continue;
          const bridge = await api.get('Bridge', src.result.bridgeId);
          for (const p of probes.PROBES) {
            const predicted = simulateExchange(view, bridge, probes.probePacket(endOf(src), endOf(dst), p)).delivered;
            const observed = await probe(c, src, dst, p);
            cells.push({ cell: `${src.name}->${dst.name} ${probes.probeLabel(p)}`, predicted, observed });
          }
        }
      }),
    );
    return cells.sort((x, y) => x.cell.localeCompare(y.cell));
  };
  t.true(bridges.size >= 2);
  // The agents apply what the cache sees; wait until the most remote binding (a3's, on host 2) is in force.
  await eventually(async () => !(await probe(c, a2, a3, { proto: 'tcp', port: 8080 })), 10_000, 'a3 filters in force');
  const cells = await table();
  t.log(probes.probeReport(cells));
  if (cells.some((x) => x.predicted !== x.observed)) {
    for (const h of c.hosts) {
      const ruleset = await c.harness.exec(h.host, ['nft', 'list', 'ruleset']);
      const ct = await c.harness.exec(h.host, ['sh', '-c', 'conntrack -L 2>/dev/null | head -40']);
      t.log(`${h.host.name}:\n${ruleset.stdout}\n${ct.stdout}`);
    }
  }
  t.deepEqual(
    cells.filter((x) => x.predicted !== x.observed),
    [],
    'kernel and simulator disagree',
  );
  const at = (cell: string) => cells.find((x) => x.cell === cell)!.predicted;
  t.true(at('pa1->pa3 tcp/80'), "address group allows a1, and the reply passes a3's inbound filter as a return flow");
  t.false(at('pa2->pa3 tcp/80'), 'a2 is not in the address group');
  t.true(at('pa2->pa3 icmp'), 'port group through the jump chain');
  t.false(at('pa1->pa3 icmp'), 'a1 is not in the port group');
  t.true(at('pa3->pa1 udp/5353'), 'a3 may start UDP/5353');
  t.false(at('pa3->pa1 tcp/80'), 'a3 may start nothing else');
  t.false(at('pa1->pa2 udp/7777'), 'the bridge outbound filter');
  t.true(at('pa1->pa2 tcp/8080'));
  t.true(at('pb1->pb2 udp/7777'), 'the other tenant, same addresses, has no filters');
  t.true(at('pb2->pb1 tcp/80'));

  // A rule of the bridge's filter (bound on every host) changes: measure until each host's kernel holds it.
  const hosts = c.hosts.map((h) => h.host);
  // When the store announces the change, as the agents' watches see it: the claim below counts from there.
  const store = await openStore(c.storeUrl);
  t.teardown(() => store.close());
  let announced: number | undefined;
  const stopWatch = await store.watch(
    (ch) => {
      if (ch.type === 'update' && ch.id === udpRule.id && announced === undefined) announced = performance.now();
    },
    { kinds: ['Rule'] },
  );
  t.teardown(stopWatch);
  const t0 = performance.now();
  await api.update('Rule', udpRule.id, { condition: { nwProto: PROTO_UDP, tpDst: { start: 5353, end: 5353 }, matchForwardFlow: true } });
  const stored = performance.now() - t0;
  const inForce = await Promise.all(
    hosts.map(async (h) => {
      for (;;) {
        const r = await c.harness.exec(h, ['nft', 'list', 'chain', 'bridge', 'bees', `c-${bout.id}`]);
        if (r.stdout.includes('dport 5353')) return performance.now() - t0;
        if (performance.now() - t0 > 30_000) return Infinity; // a hang guard: a slow host still reports its time
      }
    }),
  );
  t.log(
    `rule change stored after ${stored.toFixed(0)} ms, in force after ${inForce.map((x) => x.toFixed(0)).join(', ')} ms on hosts 0, 1, 2 ` +
      '(from the API call, polled with `nft list` at its own pace)',
  );
  // The goal is 100 ms after the store has it, so the bound counts from the store's announcement: the API call's
  // own latency (935 ms seen under load here) is not what is claimed. It is generous for 2 cores shared with other
  // test runs (the agents' watches, their passes and the polling itself are in the figure).
  await eventually(async () => announced !== undefined, 60_000, 'the store announces the rule change');
  const afterAnnounced = inForce.map((x) => x - (announced! - t0));
  t.log(`in force ${afterAnnounced.map((x) => x.toFixed(0)).join(', ')} ms after the store announced the change`);
  t.true(
    Math.max(...afterAnnounced) < 1500,
    `rule change in force within 1.5 s of the store announcing it, on every host: ${afterAnnounced.join(', ')}`,
  );
  t.false(await probe(c, a1, a2, { proto: 'udp', port: 5353 }), 'new connections meet the changed rule');
  t.true(await probe(c, a1, a2, { proto: 'udp', port: 7777 }));

  // Gone with the workloads: nothing of the policy stays on any host.
  for (const w of all) await c.detach(w);
  t.deepEqual(await settledDiff(c.harness, before, 'no leaks'), {}, 'leaks');
});
