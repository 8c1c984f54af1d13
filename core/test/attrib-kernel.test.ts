// Attribution in the kernel: a denied packet appears in the host's flow log (NFLOG, read in-process) with the id
// of the rule that dropped it and the bridge port it was going to, and the per-rule counters of one nft listing
// move with real traffic. One harness host namespace, one bees bridge, two workloads.
import test from 'ava';
import { bridgeName } from '../datapath/names.js';
import { nftApply } from '../datapath/nft/index.js';
import { applyChains, bindStage, bridgeZoneScript, ensureConntrack, ruleCounters } from '../datapath/nft/policy.js';
import { FlowLog } from '../datapath/flow-log.js';
import { compileChain, DEFAULT_DROP_LOG, type CompileContext } from '../policy/compile.js';
import { ETH_ARP, PROTO_ICMP, type PolicyRule } from '../policy/simulate.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, type TestPort } from './datapath-helpers.js';

test.serial('a dropped ping is logged with its rule id and port; rule counters move with traffic', async (t) => {
  t.timeout(120_000);
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const vni = randomVni();
  const ports: TestPort[] = [0, 1].map((i) => ({ host, vni, mac: mac(), ips: [`10.79.0.${i + 2}/24`], portSecurity: true }));
  await dp.ensureBridge(desiredBridge(host, vni, ports));
  await plugAll(c, ports);
  const [A, B] = ports as [TestPort, TestPort];
  const ns = host.netns;
  const log = new FlowLog({ netns: ns, pollMs: 50 });
  log.start();
  t.teardown(() => log.stop());

  // B takes ARP and replies, nothing new: A's ping to B is dropped by rule "b-drop", B's ping to A passes.
  const rules: PolicyRule[] = [
    { id: 'b-arp', chainId: 'to-b', position: 1, action: 'accept', condition: { ethertype: ETH_ARP } },
    { id: 'b-return', chainId: 'to-b', position: 2, action: 'accept', condition: { matchReturnFlow: true } },
    { id: 'b-drop', chainId: 'to-b', position: 3, action: 'drop', condition: { nwProto: PROTO_ICMP } },
  ];
  const ctx: CompileContext = { macOf: () => undefined, chainExists: () => true, dropLog: DEFAULT_DROP_LOG };
  await ensureConntrack(ns);
  await nftApply(ns, bridgeZoneScript(bridgeName(vni), 9), 'zone');
  await applyChains(ns, [compileChain('to-b', rules, ctx)]);
  await bindStage(ns, 'port-outbound', B.hostIfname!, 'to-b');

  t.true(await c.h.ping(B.netns!, ipOf(A), { timeoutSec: 1 }), 'B reaches A, and the reply passes by return flow');
  t.false(await c.h.ping(A.netns!, ipOf(B), { timeoutSec: 1 }), 'A does not reach B');

  const counters = new Map((await ruleCounters(ns)).map((x) => [x.ruleId, x]));
  t.true((counters.get('b-drop')?.packets ?? 0) >= 1, JSON.stringify([...counters.values()]));
  t.true((counters.get('b-return')?.packets ?? 0) >= 1, 'the echo reply counted on the return-flow rule');
  t.true((counters.get('b-drop')?.bytes ?? 0) > 0);

  const end = Date.now() + 3000;
  let drops = log.records(B.hostIfname!);
  while (!drops.length && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    await log.poll();
    drops = log.records(B.hostIfname!);
  }
  t.log(JSON.stringify(drops[0]));
  t.true(drops.length >= 1, 'the drop is in the log of the port it was going to');
  const d = drops[0]!;
  t.like(d, { verdict: 'drop', ruleId: 'b-drop', srcIp: ipOf(A), dstIp: ipOf(B), proto: PROTO_ICMP, icmpType: 8, outIfname: B.hostIfname });
  t.is(d.srcMac, A.mac.toLowerCase());
  t.deepEqual(
    log.records(B.hostIfname!).filter((r) => r.ruleId !== 'b-drop'),
    [],
    'accepted packets are not logged',
  );
  t.true(
    log.records(A.hostIfname!).some((r) => r.ruleId === 'b-drop'),
    'and in the log of the port it came from',
  );
});
