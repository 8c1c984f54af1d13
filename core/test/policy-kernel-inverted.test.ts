// Two inverted matches in one MidoNet condition mean "not this AND not that". nft 1.0.6 merges `!=` compares of
// contiguous header fields into one wider `!=`, true when EITHER field differs, so without care the kernel drops
// frames that differ in only one of the two fields. Each case below is one such pair, installed through
// applyChains (the text path the agent's policy passes use) on the port-outbound stage of B. For the link-layer
// pairs C sends frames equal in the first field and different in the second, A frames different in both: C must
// reach B, A not. For the transport pairs the echo request (type 8, code 0) and the connection to port 8080 differ
// in one field only, from both. The simulator is the oracle.
import test from 'ava';
import { bindStage, applyChains, bridgeZoneScript, ensureConntrack } from '../datapath/nft/policy.js';
import { nftApply } from '../datapath/nft/index.js';
import { bridgeName } from '../datapath/names.js';
import { compileChain, type CompileContext } from '../policy/compile.js';
import {
  ETH_ARP,
  ETH_IPV6,
  PROTO_ICMP,
  PROTO_TCP,
  simulateExchange,
  type PolicyCondition,
  type PolicyRule,
  type PolicyView,
} from '../policy/simulate.js';
import { PROBE_SERVER, probeClientArgv, probePacket, type Probe } from '../../testbed/probes.js';
import { ipOf, plugAll, threePorts, type TestPort } from './datapath-helpers.js';

test.serial('inverted matches on adjacent header fields keep AND semantics in the kernel', async (t) => {
  t.timeout(240_000);
  const { c, host, vni, A, B, C } = await threePorts(t, '10.79.0');
  await plugAll(c, [B]);
  const ports = [A, B, C];
  const idOf = (p: TestPort): string => `port-${'abc'[ports.indexOf(p)]}`;
  const ns = host.netns;
  await ensureConntrack(ns);
  await nftApply(ns, bridgeZoneScript(bridgeName(vni), 9), 'zone');
  const ctx: CompileContext = { macOf: (id) => ports.find((p) => idOf(p) === id)?.mac, chainExists: () => true };

  // The pairs compile.ts writes next to each other (core/datapath/README.md, "nft merges `!=`").
  const cases: { name: string; probe: Probe; drop: PolicyCondition; aPasses?: true }[] = [
    {
      name: 'in-port, ethertype',
      probe: { proto: 'icmp' },
      drop: { inPortIds: [idOf(C)], invInPorts: true, ethertype: ETH_IPV6, invEthertype: true },
    },
    { name: 'dlSrc, ethertype', probe: { proto: 'icmp' }, drop: { dlSrc: C.mac, invDlSrc: true, ethertype: ETH_IPV6, invEthertype: true } },
    {
      name: "in-port, an address's ethertype",
      probe: { proto: 'icmp' },
      drop: { inPortIds: [idOf(C)], invInPorts: true, nwSrc: 'fd00::/8', invNwSrc: true },
    },
    {
      name: "dlSrc, an address's ethertype",
      probe: { proto: 'icmp' },
      drop: { dlSrc: C.mac, invDlSrc: true, nwDst: 'fd00::/8', invNwDst: true },
    },
    { name: 'out-port, dlSrc', probe: { proto: 'icmp' }, drop: { outPortIds: [idOf(A)], invOutPorts: true, dlSrc: C.mac, invDlSrc: true } },
    {
      name: 'ICMP type, code',
      probe: { proto: 'icmp' },
      drop: { nwProto: PROTO_ICMP, tpSrc: { start: 0, end: 0 }, invTpSrc: true, tpDst: { start: 0, end: 0 }, invTpDst: true },
      aPasses: true,
    },
    {
      name: 'source port, destination port',
      probe: { proto: 'tcp', port: 8080 },
      drop: { nwProto: PROTO_TCP, tpSrc: { start: 1, end: 1 }, invTpSrc: true, tpDst: { start: 8080, end: 8080 }, invTpDst: true },
      aPasses: true,
    },
  ];

  c.h.spawn(B.netns!, ['python3', '-c', PROBE_SERVER], { logName: 'srv-b' });
  const tcp = (from: TestPort, ip: string) => c.h.exec(from.netns!, probeClientArgv('tcp', ip, 8080)).then((x) => x.code === 0);
  const end = Date.now() + 10_000;
  while (!(await tcp(B, '127.0.0.1')) && Date.now() < end) await new Promise((res) => setTimeout(res, 100));
  const kernel = (src: TestPort, probe: Probe): Promise<boolean> =>
    probe.proto === 'icmp' ? c.h.ping(src.netns!, ipOf(B), { timeoutSec: 1 }) : tcp(src, ipOf(B));
  const endOf = (p: TestPort) => ({ mac: p.mac, ip: ipOf(p), portId: idOf(p) });

  await bindStage(ns, 'port-outbound', B.hostIfname!, 'to-b');
  const mismatches: string[] = [];
  for (const k of cases) {
    // ARP always passes (the simulator knows no ARP): what is probed is the IP exchange.
    const rules: PolicyRule[] = [
      { id: 'arp', chainId: 'to-b', position: 1, action: 'accept', condition: { ethertype: ETH_ARP } },
      { id: 'pair', chainId: 'to-b', position: 2, action: 'drop', condition: k.drop },
    ];
    const view: PolicyView = {
      chains: [{ id: 'to-b', name: 'to-b' }],
      rules,
      ipAddrGroups: [],
      ports: ports.map((p) => ({ id: idOf(p), portGroupIds: [], adminStateUp: true, ...(p === B ? { outboundFilterId: 'to-b' } : {}) })),
    };
    await applyChains(ns, [compileChain('to-b', rules, ctx)]);
    for (const src of [C, A]) {
      const predicted = simulateExchange(view, { id: 'br' }, probePacket(endOf(src), endOf(B), k.probe)).delivered;
      t.is(predicted, src === C || !!k.aPasses, `${k.name}: the oracle's verdict as designed`);
      const observed = await kernel(src, k.probe);
      if (observed !== predicted) mismatches.push(`${k.name}: ${src === C ? 'C' : 'A'} predicted ${predicted}, kernel ${observed}`);
    }
  }
  t.deepEqual(mismatches, [], 'the kernel matched an inverted pair when only one field differed');
});
