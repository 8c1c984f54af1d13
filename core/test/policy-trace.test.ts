// `bees trace`'s core (core/policy/trace.ts): resolving the two ends and naming every chain and rule on the path.
import test from 'ava';
import type { Bridge, Chain, Port, Rule } from '../model/types.js';
import { formatTrace, TraceError, traceTopology, type TraceTopology } from '../policy/trace.js';
import { ADMIN_DOWN } from '../policy/simulate.js';
import { parseRuleCounters } from '../datapath/nft/policy.js';

const port = (id: string, bridgeId: string, ip: string, mac: string, extra: Partial<Port> = {}): Port => ({
  id,
  tenantId: 't',
  type: 'bridge',
  bridgeId,
  mac,
  ips: [ip],
  adminStateUp: true,
  status: 'up',
  portSecurity: true,
  portGroupIds: [],
  options: {},
  hostId: 'h',
  interfaceName: `bv${id}`,
  owner: { orchestrator: 'cli', workloadId: `wl-${id}`, ifname: 'eth0' },
  ...extra,
});
const bridge = (id: string, extra: Partial<Bridge> = {}): Bridge =>
  ({ id, name: id, tenantId: 't', subnets: [], adminStateUp: true, tunnelKey: 1, ...extra }) as Bridge;

function topo(): TraceTopology {
  const chains: Chain[] = [
    { id: 'in', name: 'to-b' },
    { id: 'j', name: 'jumped' },
  ];
  const rules: Rule[] = [
    { id: 'r1', chainId: 'in', position: 1, action: 'accept', condition: { matchReturnFlow: true } },
    { id: 'r2', chainId: 'in', position: 2, action: 'jump', jumpChainId: 'j', condition: {} },
    { id: 'r3', chainId: 'in', position: 3, action: 'drop', condition: {} },
    { id: 'r4', chainId: 'j', position: 1, action: 'accept', condition: { nwProto: 6, tpDst: { start: 80, end: 80 } } },
  ];
  return {
    ports: [
      port('a', 'br1', '10.0.0.1', '02:00:00:00:00:01'),
      port('b', 'br1', '10.0.0.2', '02:00:00:00:00:02', { outboundFilterId: 'in' }),
      // Another tenant's network with the same addresses.
      port('x', 'br2', '10.0.0.1', '02:00:00:00:00:11'),
      port('y', 'br2', '10.0.0.2', '02:00:00:00:00:12'),
    ],
    bridges: [bridge('br1'), bridge('br2')],
    chains,
    rules,
    ipAddrGroups: [],
  };
}

test('trace: every chain and rule on the path, the deciding rule, and the reply as a return flow', (t) => {
  const ok = traceTopology(topo(), { src: 'a', dst: 'b', proto: 'tcp', port: 80 });
  t.true(ok.delivered);
  t.is(ok.request.verdict, 'accept');
  t.deepEqual(
    ok.request.hops.map((h) => [h.stage, h.chainId, h.ruleId ?? 'enter', h.result]),
    [
      ['port-outbound', 'in', 'enter', 'enter'],
      ['port-outbound', 'in', 'r1', 'continue'],
      ['port-outbound', 'in', 'r2', 'jump'],
      ['port-outbound', 'j', 'enter', 'enter'],
      ['port-outbound', 'j', 'r4', 'accept'],
    ],
  );
  t.is(ok.request.hops[0]!.device, 'port b');
  t.is(ok.request.hops[0]!.chainName, 'to-b');
  t.deepEqual(ok.reply?.hops, [], 'the reply meets no filter here');
  const dropped = traceTopology(topo(), { src: 'wl-a', dst: '10.0.0.2', proto: 'udp', port: 53 });
  t.false(dropped.delivered);
  t.like(dropped.request, { verdict: 'drop', stage: 'port-outbound', ruleId: 'r3' });
  t.regex(formatTrace(dropped), /DROP at port-outbound by rule r3/);
  t.regex(formatTrace(ok), /rule r4: matched → accept/);
});

test('trace: a port administratively down drops at its own stage, both ways, whatever its filters', (t) => {
  const tp = topo();
  const down = { ...tp, ports: tp.ports.map((p) => (p.id === 'a' ? { ...p, adminStateUp: false } : p)) };
  const out = traceTopology(down, { src: 'a', dst: 'b', proto: 'icmp' });
  t.like(out, { delivered: false, request: { verdict: 'drop', stage: 'port-inbound', ruleId: ADMIN_DOWN, hops: [] } });
  t.regex(formatTrace(out), /request: DROP at port-inbound \(administratively down\)/);
  t.like(traceTopology(down, { src: 'b', dst: 'a', proto: 'icmp' }).request, {
    verdict: 'drop',
    stage: 'port-outbound',
    ruleId: ADMIN_DOWN,
  });
});

test('trace: addresses reused across tenants resolve through the other end, ambiguity and strangers are refused', (t) => {
  // By port id on one side, the address names the port on the same network.
  t.is(traceTopology(topo(), { src: 'x', dst: '10.0.0.2', proto: 'icmp' }).dst.portId, 'y');
  const amb = t.throws(() => traceTopology(topo(), { src: '10.0.0.1', dst: '10.0.0.2' }), { instanceOf: TraceError });
  t.regex(amb.message, /ambiguous/);
  t.throws(() => traceTopology(topo(), { src: 'nobody', dst: 'b' }), { message: /no port, workload address or workload id "nobody"/ });
  t.throws(() => traceTopology(topo(), { src: 'a', dst: 'y' }), { message: /share no network/ });
  t.throws(() => traceTopology(topo(), { src: 'a', dst: 'b', port: 70000 }), { message: /not in 1–65535/ });
});

test('rule counters: summed per MidoNet rule over its nft expansions, compiled chains only', (t) => {
  const listing = `table bridge bees {
	chain p-bv1 {
		ether saddr != 02:00:00:00:00:01 counter packets 9 bytes 9 drop comment "r=nope"
	}
	chain c-in {
		meta mark & 0x80000000 == 0x80000000 counter packets 3 bytes 180 accept comment "r=r1"
		ether type != ip counter packets 1 bytes 60 drop comment "r=r2"
		ip saddr != 10.0.0.0/8 counter packets 2 bytes 120 drop comment "r=r2"
	}
}`;
  t.deepEqual(parseRuleCounters(listing), [
    { chainId: 'in', ruleId: 'r1', packets: 3, bytes: 180 },
    { chainId: 'in', ruleId: 'r2', packets: 3, bytes: 180 },
  ]);
});
