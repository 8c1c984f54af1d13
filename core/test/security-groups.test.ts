// Security groups as plain chains, rules and groups, against the real file store; what they mean is checked with
// the policy simulator (the compiler's oracle), so the layout is tested for its effect, not only its shape.
import test, { type ExecutionContext } from 'ava';
import { compileChain } from '../policy/compile.js';
import { PROTO_TCP, PROTO_UDP, simulateBridged, simulateExchange, type Packet, type PolicyView } from '../policy/simulate.js';
import { TopologyError } from '../topology/errors.js';
import { SecurityGroups } from '../topology/security-groups.js';
import type { Topology } from '../topology/service.js';
import { freshTopology } from './topology-fixture.js';

async function fresh(t: ExecutionContext): Promise<{ topo: Topology; sgs: SecurityGroups }> {
  const topo = await freshTopology(t, 'bees-sg-');
  return { topo, sgs: new SecurityGroups(topo) };
}

async function policyView(topo: Topology): Promise<PolicyView> {
  return {
    chains: await topo.list('Chain'),
    rules: await topo.list('Rule'),
    ipAddrGroups: await topo.list('IpAddrGroup'),
    ports: await topo.list('Port'),
  };
}

async function setup(t: ExecutionContext) {
  const { topo, sgs } = await fresh(t);
  const bridge = await topo.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.1.0.0/24' }] });
  const port = (ip: string) => topo.create('Port', { bridgeId: bridge.id, ips: [ip] });
  const [a, b, c] = [await port('10.1.0.2'), await port('10.1.0.3'), await port('10.1.0.4')];
  return { topo, sgs, bridge, a, b, c };
}

const tcpTo = (from: { id: string; ips: string[] }, to: { id: string; ips: string[] }, dstPort: number, proto = PROTO_TCP): Packet => ({
  srcIp: from.ips[0],
  dstIp: to.ips[0],
  proto,
  srcPort: 40000,
  dstPort,
  inPortId: from.id,
  outPortId: to.id,
});

test('groups compile to chains that allow what the rules say, return flows, and nothing else', async (t) => {
  const { topo, sgs, bridge, a, b, c } = await setup(t);
  const client = await sgs.create({ name: 'client' });
  const web = await sgs.create({ name: 'web' });
  await sgs.addRule(client.id, { direction: 'egress', ethertype: 'ipv4' });
  const http = await sgs.addRule(web.id, {
    direction: 'ingress',
    ethertype: 'ipv4',
    protocol: 'tcp',
    portMin: 80,
    portMax: 80,
    remoteGroupId: client.id,
  });
  t.like(http, { direction: 'ingress', protocol: 'tcp', portMin: 80, portMax: 80, remoteGroupId: client.id });
  await sgs.addRule(web.id, { direction: 'ingress', ethertype: 'ipv4', protocol: 'udp', portMin: 53, remoteCidr: '10.1.0.4/32' });
  await sgs.attach(client.id, a.id);
  const w = await sgs.attach(web.id, b.id);
  t.deepEqual(w.portIds, [b.id]);
  t.deepEqual(w.rules.map((r) => r.id).sort(), (await sgs.get(web.id)).rules.map((r) => r.id).sort());
  t.deepEqual((await topo.get('IpAddrGroup', client.ipAddrGroupId)).addresses, ['10.1.0.2']);
  t.deepEqual((await topo.get('IpAddrGroup', web.ipAddrGroupId)).addresses, ['10.1.0.3']);
  const pb = await topo.get('Port', b.id);
  t.truthy(pb.inboundFilterId);
  t.truthy(pb.outboundFilterId);
  t.deepEqual(pb.portGroupIds, [web.id]);

  const view = await policyView(topo);
  const verdict = (p: Packet) => simulateBridged(view, bridge, p).verdict;
  t.true(simulateExchange(view, bridge, tcpTo(a, b, 80)).delivered, 'client -> web:80 and its reply');
  t.is(verdict(tcpTo(a, b, 22)), 'drop', 'web allows only 80 from clients');
  t.is(verdict(tcpTo(c, b, 80)), 'drop', 'c is not a client');
  t.is(verdict(tcpTo(c, b, 53, PROTO_UDP)), 'accept', 'remote prefix');
  t.is(verdict(tcpTo(a, b, 53, PROTO_UDP)), 'drop', 'remote prefix is c only');
  t.is(verdict(tcpTo(b, c, 80)), 'drop', 'web has no egress rule');
  t.is(verdict({ ...tcpTo(b, a, 80), returnFlow: true }), 'accept', 'but replies leave');
  t.is(verdict({ ...tcpTo(b, a, 0), proto: undefined, srcIp: undefined, dstIp: undefined, ethertype: 0x0806 }), 'accept', 'ARP passes');
  t.is(verdict(tcpTo(a, c, 9)), 'accept', "a port with no group keeps today's behaviour");
  t.is((await topo.get('Port', c.id)).inboundFilterId, undefined);

  // The kernel compiler takes every chain of the layout (what the agent will load).
  const chainIds = new Set(view.chains.map((ch) => ch.id));
  for (const ch of view.chains) {
    const out = compileChain(ch.id, view.rules, { macOf: () => undefined, chainExists: (id) => chainIds.has(id) });
    t.is(out.rules.length, view.rules.filter((r) => r.chainId === ch.id).length, ch.name);
  }

  // Removing the rule takes the allow away.
  await sgs.removeRule(web.id, http.id);
  t.is(simulateBridged(await policyView(topo), bridge, tcpTo(a, b, 80)).verdict, 'drop');
});

test('detach and port delete undo everything; a port created in a group is filtered from its first write', async (t) => {
  const { topo, sgs, bridge, a, b } = await setup(t);
  const before = { chains: (await topo.list('Chain')).length, rules: (await topo.list('Rule')).length };
  const g = await sgs.create({ name: 'g' });
  await sgs.addRule(g.id, { direction: 'ingress', ethertype: 'ipv4', remoteGroupId: g.id });
  await sgs.attach(g.id, a.id);
  await sgs.attach(g.id, b.id);
  t.deepEqual((await topo.get('IpAddrGroup', g.ipAddrGroupId)).addresses, ['10.1.0.2', '10.1.0.3']);
  await sgs.detach(g.id, b.id);
  const pb = await topo.get('Port', b.id);
  t.is(pb.inboundFilterId, undefined);
  t.is(pb.outboundFilterId, undefined);
  t.deepEqual(pb.portGroupIds, []);
  t.deepEqual((await topo.get('IpAddrGroup', g.ipAddrGroupId)).addresses, ['10.1.0.2']);
  await topo.delete('Port', a.id);
  t.deepEqual((await topo.get('IpAddrGroup', g.ipAddrGroupId)).addresses, []);
  // Only the group's own two chains and its rule remain.
  t.is((await topo.list('Chain')).length, before.chains + 2);
  t.is((await topo.list('Rule')).length, before.rules + 1);

  // A port plugged with the group already in its portGroupIds has its filters in the same write.
  const d = await topo.create('Port', { bridgeId: bridge.id, ips: ['10.1.0.9'], portGroupIds: [g.id] });
  t.truthy(d.inboundFilterId);
  t.deepEqual((await topo.get('IpAddrGroup', g.ipAddrGroupId)).addresses, ['10.1.0.9']);
  const view = await policyView(topo);
  t.is(simulateBridged(view, bridge, tcpTo(b, d, 80)).verdict, 'drop');
  await topo.update('Port', d.id, { ips: ['10.1.0.10'] });
  t.deepEqual((await topo.get('IpAddrGroup', g.ipAddrGroupId)).addresses, ['10.1.0.10']);
});

test('bad input is a 400 naming the field and writes nothing; deletes refuse while in use', async (t) => {
  const { topo, sgs, a } = await setup(t);
  const g = await sgs.create({ name: 'g' });
  const h = await sgs.create({ name: 'h' });
  const count = async () => (await topo.list('Rule')).length;
  const n = await count();
  const bad = async (input: object, field: string) => {
    const err = await t.throwsAsync(sgs.addRule(g.id, { direction: 'ingress', ethertype: 'ipv4', ...input }), {
      instanceOf: TopologyError,
    });
    t.is(err.code, 'invalid', err.message);
    t.is(err.field, field, err.message);
  };
  await bad({ direction: 'sideways' }, 'direction');
  await bad({ ethertype: 'ipx' }, 'ethertype');
  await bad({ protocol: 'tcpp' }, 'protocol');
  await bad({ portMin: 80 }, 'portMin');
  await bad({ protocol: 'tcp', portMin: 90, portMax: 80 }, 'portMax');
  await bad({ remoteCidr: '10.0.0.0/33' }, 'remoteCidr');
  await bad({ remoteCidr: 'fd00::/64' }, 'remoteCidr');
  await bad({ remoteCidr: '10.0.0.0/8', remoteGroupId: h.id }, 'remoteGroupId');
  await bad({ remoteGroupId: 'nope' }, 'remoteGroupId');
  await bad({ protocol: 'icmp', ethertype: 'ipv6' }, 'protocol');
  t.is(await count(), n);
  await t.throwsAsync(sgs.create({ name: 'g' }), { instanceOf: TopologyError, message: /already exists/ });

  await sgs.addRule(g.id, { direction: 'egress', ethertype: 'ipv4', remoteGroupId: h.id });
  await t.throwsAsync(sgs.delete(h.id), { instanceOf: TopologyError, message: /remote group/ });
  await sgs.attach(g.id, a.id);
  await t.throwsAsync(sgs.delete(g.id), { instanceOf: TopologyError, message: /still has ports/ });
  // A port with a filter of its own is not silently taken over.
  const own = await topo.create('Chain', { name: 'mine' });
  const b = await topo.create('Port', { bridgeId: a.bridgeId, ips: ['10.1.0.20'], inboundFilterId: own.id });
  const err = await t.throwsAsync(sgs.attach(g.id, b.id), { instanceOf: TopologyError });
  t.is(err.field, 'inboundFilterId');
  t.deepEqual((await topo.get('Port', b.id)).portGroupIds, []);
  await sgs.detach(g.id, a.id);
  await sgs.delete(g.id);
  await sgs.delete(h.id);
  t.deepEqual(await sgs.list(), []);
  t.deepEqual(
    (await topo.list('Chain')).map((c) => c.name),
    ['mine'],
  );
  t.deepEqual(await topo.list('IpAddrGroup'), []);
  t.deepEqual(await topo.list('PortGroup'), []);
});
