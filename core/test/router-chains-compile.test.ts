// Router chains without the kernel (core/policy/compile-router.ts, simulate-router.ts, nft/router-chains.ts): what
// a router port filter with forward NAT compiles to and how the simulator agrees, a group membership change as a
// script of set elements only, and MidoNet's dynamic NAT leaving other protocols untranslated.
import test from 'ava';
import type { Chain } from '../model/types.js';
import { routerChainsScript } from '../datapath/nft/router-chains.js';
import { BROKEN_PORT_CHAIN, compileRouterFilters, type RouterChainSource } from '../policy/compile-router.js';
import { simulateRoutedExchange, type RouterPolicyView } from '../policy/simulate-router.js';
import { ADMIN_DOWN, PROTO_SCTP, PROTO_TCP, type PolicyRule } from '../policy/simulate.js';

const chains: Chain[] = ['pre', 'pin', 'x'].map((id) => ({ id, name: id }));
const legs: Record<string, string> = { rp1: 'l-000001', rp2: 'l-000002' };
const ports: RouterPolicyView['ports'] = [
  { id: 'rp1', type: 'router', ips: ['10.0.1.1/24'], portGroupIds: [], adminStateUp: true, inboundFilterId: 'pin' },
  { id: 'rp2', type: 'router', ips: ['10.0.2.1/24'], portGroupIds: ['P'], adminStateUp: true },
  { id: 'w1', type: 'bridge', ips: ['10.0.1.5'], portGroupIds: ['P'], adminStateUp: true },
];
const source = (rules: PolicyRule[], groups: { id: string; addresses: string[] }[] = [], ps = ports): RouterChainSource => {
  const rulesByChain = new Map<string, PolicyRule[]>();
  for (const r of rules) rulesByChain.set(r.chainId, [...(rulesByChain.get(r.chainId) ?? []), r]);
  return {
    chains: new Map(chains.map((c) => [c.id, c])),
    rulesByChain,
    ifnameOf: (id) => legs[id],
    ipAddrGroups: new Map(groups.map((g) => [g.id, g])),
    ports: ps.map((p) => ({ id: p.id, type: p.type ?? 'bridge', ips: p.ips ?? [], portGroupIds: p.portGroupIds })),
  };
};
const two = {
  natTargets: [
    { addressFrom: '10.0.2.5', addressTo: '10.0.2.5', portFrom: 0, portTo: 0 },
    { addressFrom: '10.0.2.6', addressTo: '10.0.2.6', portFrom: 0, portTo: 0 },
  ],
  flowAction: 'accept' as const,
};

test('forward NAT in a router port filter fails that port closed, and the simulator drops there too', (t) => {
  const rules: PolicyRule[] = [
    { id: 'x1', chainId: 'x', position: 1, action: 'dnat', condition: {}, ...two },
    { id: 'p1', chainId: 'pin', position: 1, action: 'jump', jumpChainId: 'x', condition: {} },
    { id: 'r1', chainId: 'pre', position: 1, action: 'jump', jumpChainId: 'x', condition: {} },
  ];
  const f = compileRouterFilters({ inboundFilterId: 'pre' }, source(rules), ports)!;
  t.deepEqual(f.portInbound, { 'l-000001': BROKEN_PORT_CHAIN });
  t.is(f.errors.length, 1);
  t.regex(f.errors[0]!, /port rp1: chain x: rule x1: dnat in a router port's filter is not supported/);
  t.true(
    f.chains['ni-x']!.some((r) => r.includes('numgen random mod 2 0')),
    "the router's own view of the chain still translates",
  );
  const view = { chains, rules, ipAddrGroups: [], ports };
  const sim = simulateRoutedExchange(
    view,
    { id: 'r', inboundFilterId: 'pre' },
    { srcIp: '10.0.1.5', dstIp: '10.0.9.9', inPortId: 'rp1', proto: PROTO_TCP, srcPort: 1, dstPort: 80 },
    () => 'rp2',
  );
  t.like(sim.request, { verdict: 'drop', stage: 'router-port-inbound', ruleId: 'broken' });
});

test('a group membership change is set elements only: no chain is flushed', (t) => {
  const rules: PolicyRule[] = [
    { id: 'r1', chainId: 'pre', position: 1, action: 'drop', condition: { ipAddrGroupSrc: 'A', portGroupDst: 'P' } },
  ];
  const a = compileRouterFilters({ inboundFilterId: 'pre' }, source(rules, [{ id: 'A', addresses: ['10.0.1.0/28'] }]))!;
  t.deepEqual(a.sets?.['pg-P-v4']?.elements, ['10.0.1.5']);
  t.deepEqual(a.sets?.['pgif-P']?.elements, ['l-000002']);
  const moved = ports.map((p) => (p.id === 'w1' ? { ...p, ips: ['10.0.1.6'] } : p));
  const b = compileRouterFilters({ inboundFilterId: 'pre' }, source(rules, [{ id: 'A', addresses: ['10.0.1.0/28', '10.0.3.1'] }], moved))!;
  t.deepEqual(b.chains, a.chains);
  const script = routerChainsScript(a, b);
  t.false(script.includes('flush chain'), script);
  t.true(script.includes('delete element inet bees-r pg-P-v4 { 10.0.1.5 }'), script);
  t.true(script.includes('add element inet bees-r pg-P-v4 { 10.0.1.6 }'), script);
  t.true(script.includes('flush set inet bees-r iag-A-v4'), 'an interval set is refilled');
});

test('dynamic NAT (several targets) translates TCP, UDP and ICMP only: SCTP passes untranslated', (t) => {
  const rules: PolicyRule[] = [{ id: 'd', chainId: 'pre', position: 1, action: 'dnat', condition: { nwDst: '10.0.9.9/32' }, ...two }];
  const f = compileRouterFilters({ inboundFilterId: 'pre' }, source(rules))!;
  t.deepEqual(f.chains['f-pre'], [
    'ct direction original meta l4proto { tcp, udp, icmp } ip daddr 10.0.9.9/32 counter accept comment "r=d"',
  ]);
  const view = { chains, rules, ipAddrGroups: [], ports };
  const sctp = simulateRoutedExchange(
    view,
    { id: 'r', inboundFilterId: 'pre' },
    { srcIp: '10.0.1.5', dstIp: '10.0.9.9', inPortId: 'rp1', proto: PROTO_SCTP, srcPort: 1, dstPort: 80 },
    () => 'rp2',
  );
  t.is(sctp.request.packet.dstIp, '10.0.9.9');
  const tcp = simulateRoutedExchange(
    view,
    { id: 'r', inboundFilterId: 'pre' },
    { srcIp: '10.0.1.5', dstIp: '10.0.9.9', inPortId: 'rp1', proto: PROTO_TCP, srcPort: 1, dstPort: 80 },
    () => 'rp2',
    {
      choose: (_r, ts) => ({ ip: ts[1]!.addressFrom }),
    },
  );
  t.is(tcp.request.packet.dstIp, '10.0.2.6');
});

test('a router port administratively down drops what enters or leaves by it, either direction', (t) => {
  const view = (down: string) => ({
    chains,
    rules: [],
    ipAddrGroups: [],
    ports: ports.map((p) => (p.id === down ? { ...p, adminStateUp: false } : p)),
  });
  const req = { srcIp: '10.0.1.5', dstIp: '10.0.2.9', inPortId: 'rp1', proto: PROTO_TCP, srcPort: 1, dstPort: 80 };
  const route = (ip: string) => (ip.startsWith('10.0.2.') ? 'rp2' : 'rp1');
  t.true(simulateRoutedExchange(view('none'), { id: 'r' }, req, route).delivered);
  t.like(simulateRoutedExchange(view('rp1'), { id: 'r' }, req, route), {
    delivered: false,
    request: { verdict: 'drop', stage: 'router-port-inbound', ruleId: ADMIN_DOWN },
  });
  t.like(simulateRoutedExchange(view('rp2'), { id: 'r' }, req, route), {
    delivered: false,
    request: { verdict: 'drop', stage: 'router-port-outbound', ruleId: ADMIN_DOWN },
  });
});
