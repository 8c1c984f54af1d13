// The simulator against MidoNet's semantics (chains-lb.md §1.2–1.6), table-driven: each case is a rule set, a
// packet and the verdict and rule trace MidoNet's Chain.scala/Condition.java would give.
import test from 'ava';
import type { Chain } from '../model/types.js';
import {
  MAX_JUMP_DEPTH,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  PolicyError,
  Simulator,
  STAGE_ORDER,
  simulateBridged,
  simulateExchange,
  type Packet,
  type PolicyCondition,
  type PolicyRule,
  type PolicyView,
} from '../policy/simulate.js';

let seq = 0;
function rule(chainId: string, action: PolicyRule['action'], condition: PolicyCondition = {}, extra: Partial<PolicyRule> = {}): PolicyRule {
  seq++;
  return { id: `r${seq}`, chainId, position: seq, action, condition, ...extra };
}
const chain = (id: string): Chain => ({ id, name: id });

const tcp = (dstPort: number, extra: Partial<Packet> = {}): Packet => ({
  srcIp: '10.0.0.2',
  dstIp: '10.0.0.3',
  proto: PROTO_TCP,
  srcPort: 40000,
  dstPort,
  inPortId: 'pa',
  outPortId: 'pb',
  ...extra,
});

function view(rules: PolicyRule[], extra: Partial<PolicyView> = {}): PolicyView {
  const ids = new Set(rules.flatMap((r) => [r.chainId, ...(r.jumpChainId ? [r.jumpChainId] : [])]));
  return {
    chains: [...ids].map(chain),
    rules,
    ipAddrGroups: [],
    ports: [
      { id: 'pa', portGroupIds: ['g1'], adminStateUp: true },
      { id: 'pb', portGroupIds: ['g2'], adminStateUp: true },
    ],
    ...extra,
  };
}

test('the first matching decisive rule decides; falling off the top chain is accept', (t) => {
  const rules = [
    rule('c', 'drop', { nwProto: PROTO_UDP }),
    rule('c', 'accept', { tpDst: { start: 80, end: 80 }, nwProto: PROTO_TCP }),
    rule('c', 'drop'),
  ];
  const sim = new Simulator(view(rules));
  t.is(sim.process('c', tcp(80)), 'accept');
  t.is(sim.process('c', tcp(81)), 'drop');
  t.is(sim.process('c', { ...tcp(80), proto: PROTO_UDP }), 'drop');
  t.is(new Simulator(view([rule('e', 'continue')])).process('e', tcp(1)), 'accept');
  const trace: never[] = [];
  sim.process('c', tcp(81), trace);
  t.deepEqual(
    trace.map((s: { ruleId?: string; matched?: boolean }) => [s.ruleId, s.matched]),
    [
      [undefined, undefined],
      [rules[0]!.id, false],
      [rules[1]!.id, false],
      [rules[2]!.id, true],
    ],
  );
});

test('return ends the chain: at top level it is accept, in a jumped chain evaluation resumes after the jump', (t) => {
  const rules = [
    rule('top', 'jump', {}, { jumpChainId: 'sub' }),
    rule('top', 'drop'),
    rule('sub', 'return', { nwProto: PROTO_TCP }),
    rule('sub', 'accept'),
    rule('r', 'return'),
    rule('r', 'drop'),
  ];
  const sim = new Simulator(view(rules));
  t.is(sim.process('top', tcp(1)), 'drop', 'sub returned, top went on to drop');
  t.is(sim.process('top', { ...tcp(1), proto: PROTO_UDP }), 'accept', 'accept inside the jumped chain is final');
  t.is(sim.process('r', tcp(1)), 'accept');
});

test('a chain already visited in one evaluation is skipped, a missing target is continue, depth is bounded', (t) => {
  const rules = [
    rule('a', 'jump', {}, { jumpChainId: 'b' }),
    rule('b', 'jump', {}, { jumpChainId: 'a' }), // a cycle: MidoNet skips the visited chain
    rule('a', 'jump', {}, { jumpChainId: 'gone' }),
    rule('a', 'drop'),
  ];
  const v = view(rules);
  v.chains = v.chains.filter((c) => c.id !== 'gone');
  const trace: { result: string }[] = [];
  t.is(new Simulator(v).process('a', tcp(1), trace as never[]), 'drop');
  t.true(trace.some((s) => s.result === 'skipped-visited'));
  t.true(trace.some((s) => s.result === 'missing'));

  const deep: PolicyRule[] = [];
  for (let i = 0; i <= MAX_JUMP_DEPTH; i++) deep.push(rule(`d${i}`, 'jump', {}, { jumpChainId: `d${i + 1}` }));
  deep.push(rule(`d${MAX_JUMP_DEPTH + 1}`, 'drop'));
  t.throws(() => new Simulator(view(deep)).process('d0', tcp(1)), { instanceOf: PolicyError, message: /deeper than 12/ });
  t.is(new Simulator(view(deep), MAX_JUMP_DEPTH + 1).process('d0', tcp(1)), 'drop');
});

test('conditions: inversions, subnets, port ranges (matching portless packets), ICMP type/code slots, groups', (t) => {
  const groups = [{ id: 'ag', tenantId: 't', name: 'ag', addresses: ['10.0.0.2', '10.9.0.0/16'] }];
  const m = (c: PolicyCondition, p: Packet) => new Simulator(view([], { ipAddrGroups: groups })).matches(c, p);
  t.true(m({ nwSrc: '10.0.0.0/24' }, tcp(1)));
  t.false(m({ nwSrc: '10.0.0.0/24', invNwSrc: true }, tcp(1)));
  t.false(m({ nwDst: '10.0.0.2' }, tcp(1)));
  t.true(m({ nwDst: '10.0.0.3' }, tcp(1)));
  t.false(m({ nwSrc: '10.0.0.0/24' }, { proto: 0x11 }), 'no IP, no match');
  t.true(m({ tpDst: { start: 1000, end: 2000 } }, tcp(1500)));
  t.false(m({ tpDst: { start: 1000, end: 2000 } }, tcp(999)));
  t.true(m({ tpDst: { start: 1000, end: 2000 }, invTpDst: true }, tcp(999)));
  t.true(m({ tpDst: { start: 1000, end: 2000 } }, { ...tcp(0), proto: 47 }), 'a port range matches a packet without ports');
  t.true(
    m({ nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 }, tpDst: { start: 0, end: 0 } }, { proto: PROTO_ICMP, icmpType: 8, icmpCode: 0 }),
  );
  t.false(m({ nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 } }, { proto: PROTO_ICMP, icmpType: 0, icmpCode: 0 }));
  t.true(m({ nwProto: PROTO_TCP, invNwProto: true }, { ...tcp(1), proto: PROTO_UDP }));
  t.true(m({ ethertype: 0x0800 }, tcp(1)));
  t.true(m({ ethertype: 0x86dd, invEthertype: true }, tcp(1)));
  t.true(m({ ipAddrGroupSrc: 'ag' }, tcp(1)));
  t.true(m({ ipAddrGroupSrc: 'ag' }, tcp(1, { srcIp: '10.9.3.4' })));
  t.false(m({ ipAddrGroupDst: 'ag' }, tcp(1)));
  t.true(m({ ipAddrGroupDst: 'ag', invIpAddrGroupDst: true }, tcp(1)));
  t.true(m({ portGroupSrc: 'g1' }, tcp(1)));
  t.false(m({ portGroupSrc: 'g2' }, tcp(1)));
  t.true(m({ portGroupDst: 'g2' }, tcp(1)));
  t.true(m({ portGroupDst: 'g1', invPortGroupDst: true }, tcp(1)));
  t.true(m({ inPortIds: ['pa'] }, tcp(1)));
  t.true(m({ inPortIds: [] }, tcp(1)), 'an empty port set is no check');
  t.false(m({ outPortIds: ['pb'], invOutPorts: true }, tcp(1)));
  t.true(m({ matchForwardFlow: true }, tcp(1)));
  t.false(m({ matchReturnFlow: true }, tcp(1)));
  t.true(m({ matchReturnFlow: true }, tcp(1, { returnFlow: true })));
});

test('fragment policy is checked before inversion; the default follows L4 ports', (t) => {
  const m = (c: PolicyCondition, p: Packet) => new Simulator(view([])).matches(c, p);
  const later = tcp(80, { fragment: 'later' });
  t.false(m({ tpDst: { start: 80, end: 80 } }, later), 'header by default with ports');
  t.false(m({ tpDst: { start: 80, end: 80 }, invTpDst: true }, later), 'not rescued by an inversion');
  t.true(m({ nwProto: PROTO_TCP }, later), 'any by default without ports');
  t.true(m({ fragmentPolicy: 'nonheader' }, later));
  t.false(m({ fragmentPolicy: 'nonheader' }, tcp(80)));
  t.false(m({ fragmentPolicy: 'unfragmented' }, tcp(80, { fragment: 'first' })));
});

test('a bridged packet meets port inbound, bridge inbound, bridge outbound, port outbound in that order', (t) => {
  const rules = [
    rule('pin', 'continue'),
    rule('bin', 'continue'),
    rule('bout', 'continue'),
    rule('pout', 'drop', { tpDst: { start: 22, end: 22 } }),
  ];
  const v = view(rules);
  v.ports = [
    { id: 'pa', portGroupIds: [], adminStateUp: true, inboundFilterId: 'pin', outboundFilterId: 'unused' },
    { id: 'pb', portGroupIds: [], adminStateUp: true, inboundFilterId: 'unused', outboundFilterId: 'pout' },
  ];
  const bridge = { id: 'br', inboundFilterId: 'bin', outboundFilterId: 'bout' };
  const ok = simulateBridged(v, bridge, tcp(80));
  t.is(ok.verdict, 'accept');
  t.deepEqual([...new Set(ok.trace.map((s) => s.stage))], [...STAGE_ORDER]);
  t.deepEqual(
    ok.trace.filter((s) => s.result === 'enter').map((s) => s.chainId),
    ['pin', 'bin', 'bout', 'pout'],
  );
  const no = simulateBridged(v, bridge, tcp(22));
  t.like(no, { verdict: 'drop', stage: 'port-outbound', ruleId: rules[3]!.id });
  t.like(simulateBridged(v, { ...bridge, adminStateUp: false }, tcp(80)), { verdict: 'drop', stage: 'bridge-inbound' });
  t.is(simulateBridged(v, bridge, tcp(22, { vlan: 5 })).verdict, 'accept', 'tagged frames skip bridge filters');
});

test('an allow-list with return-flow: requests to the allowed port pass and so do their replies, others do not', (t) => {
  // Neutron's layout on port B: outbound chain = [return flow accept, tcp 80 accept, drop].
  const rules = [
    rule('in-b', 'accept', { matchReturnFlow: true }),
    rule('in-b', 'accept', { nwProto: PROTO_TCP, tpDst: { start: 80, end: 80 } }),
    rule('in-b', 'drop'),
  ];
  const v = view(rules);
  v.ports = [
    { id: 'pa', portGroupIds: [], adminStateUp: true, outboundFilterId: 'in-b' }, // A is filtered the same way
    { id: 'pb', portGroupIds: [], adminStateUp: true, outboundFilterId: 'in-b' },
  ];
  const bridge = { id: 'br' };
  t.true(simulateExchange(v, bridge, tcp(80)).delivered, 'reply to A is a return flow');
  const denied = simulateExchange(v, bridge, tcp(81));
  t.false(denied.delivered);
  t.is(denied.reply, undefined, 'a dropped request leaves no state for a reply');
  // Without the return-flow rule the reply to A (source port 80 → A's 40000) is dropped by A's own filter.
  const noReturn = view(rules.slice(1));
  noReturn.ports = v.ports;
  const r = simulateExchange(noReturn, bridge, tcp(80));
  t.false(r.delivered);
  t.is(r.reply?.stage, 'port-outbound');
});
