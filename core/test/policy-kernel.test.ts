// Compiled chains in the kernel agree with the simulator: one host namespace, one bees bridge, four workloads, a
// small MidoNet policy (an allow-list with return-flow matching, a jump chain, an address group, a port inbound
// drop, a bridge inbound reject) probed with real TCP, UDP and ICMP between every ordered pair. For every cell the
// kernel's outcome (connect / echo answered or not) must equal simulateExchange()'s.
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Chain, IpAddrGroup } from '../model/types.js';
import { bridgeName } from '../datapath/names.js';
import { nftApply, nftQuery } from '../datapath/nft/index.js';
import { addrGroupScript, applyChains, portGroupScript, bindStage, bridgeZoneScript, ensureConntrack } from '../datapath/nft/policy.js';
import { compileChain, type CompileContext } from '../policy/compile.js';
import { ETH_ARP, PROTO_ICMP, PROTO_TCP, PROTO_UDP, simulateExchange, type PolicyRule, type PolicyView } from '../policy/simulate.js';
import {
  PROBES,
  PROBE_SERVER,
  probeClientArgv,
  probeLabel,
  probePacket,
  probeReport,
  type Probe,
  type ProbeCell,
} from '../../testbed/probes.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, type TestPort } from './datapath-helpers.js';

test.serial('the kernel enforces compiled chains exactly as the simulator predicts (TCP, UDP, ICMP truth table)', async (t) => {
  t.timeout(240_000);
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const vni = randomVni();
  const names = ['a', 'b', 'c', 'd'] as const;
  const ports: TestPort[] = names.map((_, i) => ({ host, vni, mac: mac(), ips: [`10.77.0.${i + 2}/24`], portSecurity: true }));
  await dp.ensureBridge(desiredBridge(host, vni, ports));
  await plugAll(c, ports);
  const [A, B, C, D] = ports as [TestPort, TestPort, TestPort, TestPort];
  const idOf = (p: TestPort): string => `port-${names[ports.indexOf(p)]}`;

  // The policy, Neutron-shaped: ARP always passes, replies pass by return flow, then the allow-list.
  const group: IpAddrGroup = { id: 'ag-web', tenantId: 't', name: 'web clients', addresses: [ipOf(A), ipOf(C)] };
  let pos = 0;
  const r = (
    chainId: string,
    id: string,
    action: PolicyRule['action'],
    condition: PolicyRule['condition'] = {},
    jumpChainId?: string,
  ): PolicyRule => ({ id, chainId, position: ++pos, action, condition, jumpChainId });
  const rules: PolicyRule[] = [
    // Traffic to A: nothing new, replies only.
    r('to-a', 'a-arp', 'accept', { ethertype: ETH_ARP }),
    r('to-a', 'a-return', 'accept', { matchReturnFlow: true }),
    r('to-a', 'a-drop', 'drop'),
    // Traffic to B: replies; the jump chain (D is banned); TCP 80 from anyone; UDP 5353 and ping from the group.
    r('to-b', 'b-arp', 'accept', { ethertype: ETH_ARP }),
    r('to-b', 'b-return', 'accept', { matchReturnFlow: true }),
    r('to-b', 'b-jump', 'jump', {}, 'banned'),
    r('to-b', 'b-web', 'accept', { nwProto: PROTO_TCP, tpDst: { start: 80, end: 80 } }),
    r('to-b', 'b-dns', 'accept', { nwProto: PROTO_UDP, tpDst: { start: 5353, end: 5353 }, ipAddrGroupSrc: group.id }),
    r('to-b', 'b-ping', 'accept', { nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 }, ipAddrGroupSrc: group.id }),
    r('to-b', 'b-drop', 'drop'),
    r('banned', 'ban-d', 'drop', { nwSrc: `${ipOf(D)}/32` }),
    r('banned', 'ban-return', 'return'),
    // From D: no TCP 8080 anywhere.
    r('from-d', 'd-8080', 'drop', { nwProto: PROTO_TCP, tpDst: { start: 8080, end: 8080 } }),
    // Bridge inbound: UDP 7777 rejected (a drop on a bridge).
    r('bridge-in', 'br-7777', 'reject', { nwProto: PROTO_UDP, tpDst: { start: 7777, end: 7777 } }),
    // Bridge outbound: only the "ops" port group may ping D.
    r('bridge-out', 'bo-ops', 'accept', { portGroupSrc: 'ops' }),
    r('bridge-out', 'bo-ping-d', 'drop', { nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 }, nwDst: ipOf(D) }),
  ];
  const chains: Chain[] = ['to-a', 'to-b', 'banned', 'from-d', 'bridge-in', 'bridge-out'].map((id) => ({ id, name: id }));
  const view: PolicyView = {
    chains,
    rules,
    ipAddrGroups: [group],
    ports: [
      { id: idOf(A), portGroupIds: [], adminStateUp: true, outboundFilterId: 'to-a' },
      { id: idOf(B), portGroupIds: [], adminStateUp: true, outboundFilterId: 'to-b' },
      { id: idOf(C), portGroupIds: ['ops'], adminStateUp: true },
      { id: idOf(D), portGroupIds: [], adminStateUp: true, inboundFilterId: 'from-d' },
    ],
  };
  const bridge = { id: 'br', inboundFilterId: 'bridge-in', outboundFilterId: 'bridge-out' };

  // Compile and install: conntrack zone for the bridge, sets, chains, stage bindings.
  const ctx: CompileContext = {
    macOf: (id) => ports.find((p) => idOf(p) === id)?.mac,
    chainExists: (id) => chains.some((x) => x.id === id),
  };
  const ns = host.netns;
  await ensureConntrack(ns);
  await nftApply(ns, bridgeZoneScript(bridgeName(vni), 7), 'zone');
  await applyChains(
    ns,
    chains.map((x) => compileChain(x.id, rules, ctx)),
  );
  await nftApply(ns, addrGroupScript(group) + portGroupScript('ops', [C.mac]), 'groups');
  await bindStage(ns, 'port-outbound', A.hostIfname!, 'to-a');
  await bindStage(ns, 'port-outbound', B.hostIfname!, 'to-b');
  await bindStage(ns, 'port-inbound', D.hostIfname!, 'from-d');
  for (const p of ports) await bindStage(ns, 'bridge-inbound', p.hostIfname!, 'bridge-in');
  for (const p of ports) await bindStage(ns, 'bridge-outbound', p.hostIfname!, 'bridge-out');

  // Servers, ready when they answer on loopback (which no bridge stage sees).
  for (const p of ports) c.h.spawn(p.netns!, ['python3', '-c', PROBE_SERVER], { logName: `srv-${idOf(p)}` });
  const client = (from: TestPort, proto: 'tcp' | 'udp', ip: string, port: number) =>
    c.h.exec(from.netns!, probeClientArgv(proto, ip, port)).then((x) => x.code === 0);
  for (const p of ports) {
    const end = Date.now() + 10_000;
    while (!(await client(p, 'tcp', '127.0.0.1', 8080)) && Date.now() < end) await new Promise((res) => setTimeout(res, 100));
  }

  const endOf = (p: TestPort) => ({ mac: p.mac, ip: ipOf(p), portId: idOf(p) });
  const kernel = (src: TestPort, dst: TestPort, probe: Probe): Promise<boolean> =>
    probe.proto === 'icmp' ? c.h.ping(src.netns!, ipOf(dst), { timeoutSec: 1 }) : client(src, probe.proto, ipOf(dst), probe.port!);

  const cells: ProbeCell[] = [];
  const jobs: Promise<void>[] = [];
  for (const src of ports) {
    // One source at a time per destination set, all sources in parallel: each probe's outcome is independent.
    jobs.push(
      (async () => {
        for (const dst of ports) {
          if (src === dst) continue;
          for (const probe of PROBES) {
            const predicted = simulateExchange(view, bridge, probePacket(endOf(src), endOf(dst), probe)).delivered;
            const observed = await kernel(src, dst, probe);
            cells.push({ cell: `${names[ports.indexOf(src)]}->${names[ports.indexOf(dst)]} ${probeLabel(probe)}`, predicted, observed });
          }
        }
      })(),
    );
  }
  await Promise.all(jobs);
  cells.sort((x, y) => x.cell.localeCompare(y.cell));
  t.log(probeReport(cells));
  t.deepEqual(
    cells.filter((x) => x.predicted !== x.observed),
    [],
    'kernel and simulator disagree',
  );
  // Not a table that cannot fail: both outcomes occur, and the cells that hinge on each feature are there.
  const at = (cell: string) => cells.find((x) => x.cell === cell)!;
  t.true(at('a->b tcp/80').predicted, 'allowed, and the reply to A passes by return flow only');
  t.false(at('c->a tcp/80').predicted, 'A accepts nothing new');
  t.false(at('d->b tcp/80').predicted, 'the jump chain bans D');
  t.true(at('c->b udp/5353').predicted, 'in the address group');
  t.false(at('d->b icmp').predicted, 'not in the address group');
  t.true(at('a->c tcp/8080').predicted, 'C is open');
  t.false(at('a->d icmp').predicted, 'bridge outbound filter');
  t.true(at('c->d icmp').predicted, 'the port group is let through first');
  t.false(at('d->c tcp/8080').predicted, 'port inbound filter of D');
  t.false(at('a->c udp/7777').predicted, 'bridge inbound reject');

  // Attribution: the rule that dropped D's ping to B counted it.
  const listing = await nftQuery(ns, 'list chain bridge bees c-to-b', 'nft');
  const drop = listing.split('\n').find((l) => l.includes('comment "r=b-drop"'));
  t.regex(drop ?? '', /counter packets [1-9]/, listing);

  // Incremental: changing one chain (A now answers ping) replaces that chain only and holds at once.
  const aDrop = rules.find((x) => x.id === 'a-drop')!;
  rules.push({ ...r('to-a', 'a-ping', 'accept', { nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 } }), position: aDrop.position - 0.5 });
  const before = await nftQuery(ns, 'list chain bridge bees c-to-b', 'nft');
  const start = process.hrtime.bigint();
  await applyChains(ns, [compileChain('to-a', rules, ctx)]);
  t.log(`one chain replaced (compile + transaction) in ${(Number(process.hrtime.bigint() - start) / 1e6).toFixed(2)} ms`);
  t.true(simulateExchange(view, bridge, probePacket(endOf(C), endOf(A), { proto: 'icmp' })).delivered);
  t.true(await c.h.ping(C.netns!, ipOf(A), { timeoutSec: 1 }), 'the new rule holds for the next packet');
  t.is(await nftQuery(ns, 'list chain bridge bees c-to-b', 'nft'), before, 'another chain was not rewritten (its counters kept)');
});

// A UDP peer on port argv[1]: optionally sends one datagram to argv[4]:argv[5] from that port, then creates the file
// argv[2] (bound, and sent if it was to), then receives: exit 0 on a datagram, 1 once the file argv[3] exists (or
// after a minute, a hang guard); send-only when argv[3] is '-'. The files let the test wait for the peer instead
// of guessing how long python takes to start on a busy machine.
const UDP_PEER = `
import os, socket, sys, time
port, ready, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', port))
if len(sys.argv) > 4:
    s.sendto(b'x', (sys.argv[4], int(sys.argv[5])))
open(ready, 'w').close()
if stop == '-':
    sys.exit(0)
s.settimeout(0.1)
end = time.time() + 60
while time.time() < end:
    try:
        s.recvfrom(100)
        sys.exit(0)
    except socket.timeout:
        if os.path.exists(stop):
            sys.exit(1)
sys.exit(1)
`;

test.serial('conntrack zones per bridge: a connection on one bridge is no return flow on another with the same addresses', async (t) => {
  t.timeout(120_000);
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const [x, y] = [randomVni(), randomVni() + 1];
  // Two tenants, identical subnets and addresses.
  const mk = (vni: number, last: number): TestPort => ({ host, vni, mac: mac(), ips: [`10.78.0.${last}/24`], portSecurity: true });
  const [A1, B1, A2, B2] = [mk(x, 2), mk(x, 3), mk(y, 2), mk(y, 3)];
  const all = [A1, B1, A2, B2];
  await dp.ensureBridge(desiredBridge(host, x, all));
  await dp.ensureBridge(desiredBridge(host, y, all));
  await plugAll(c, all);
  const ns = host.netns;
  await ensureConntrack(ns);
  await nftApply(ns, bridgeZoneScript(bridgeName(x), 101) + bridgeZoneScript(bridgeName(y), 102), 'zones');
  // A2 accepts replies only (and ARP).
  const rules: PolicyRule[] = [
    { id: 'arp', chainId: 'to-a2', position: 1, action: 'accept', condition: { ethertype: ETH_ARP } },
    { id: 'ret', chainId: 'to-a2', position: 2, action: 'accept', condition: { matchReturnFlow: true } },
    { id: 'end', chainId: 'to-a2', position: 3, action: 'drop', condition: {} },
  ];
  const view: PolicyView = {
    chains: [{ id: 'to-a2', name: 'to-a2' }],
    rules,
    ipAddrGroups: [],
    ports: [
      { id: 'a2', portGroupIds: [], adminStateUp: true, outboundFilterId: 'to-a2' },
      { id: 'b2', portGroupIds: [], adminStateUp: true },
    ],
  };
  await applyChains(ns, [compileChain('to-a2', rules, { macOf: () => undefined, chainExists: () => true })]);
  await bindStage(ns, 'port-outbound', A2.hostIfname!, 'to-a2');
  const dir = await mkdtemp(join(tmpdir(), 'bees-udp-peer-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let peers = 0;
  /** Starts a peer in p's namespace; resolves once it is bound (and has sent), with its outcome and its stop. */
  const udp = async (p: TestPort, port: number, to?: [string, number], receive = true) => {
    const ready = join(dir, `${++peers}.ready`);
    const stopFile = join(dir, `${peers}.stop`);
    const argv = ['python3', '-c', UDP_PEER, String(port), ready, receive ? stopFile : '-', ...(to ? [to[0], String(to[1])] : [])];
    const done = c.h.exec(p.netns!, argv).then((r) => r.code === 0);
    let exited = false;
    void done.then(() => (exited = true));
    const deadline = Date.now() + 60_000;
    while (!existsSync(ready) && !exited && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    if (!existsSync(ready)) throw new Error(`UDP peer on ${ipOf(p)}:${port} never became ready`);
    return { received: done, stop: () => writeFile(stopFile, '') };
  };
  const send = async (p: TestPort, port: number, to: [string, number]) => (await udp(p, port, to, false)).received;
  // Whether a receiver got a datagram sent just now. A datagram crosses the bridge within the send, or soon after in
  // a softirq; a second is a wide margin before the receiver is told nothing more will come.
  const outcome = async (peer: Awaited<ReturnType<typeof udp>>) => {
    const timer = setTimeout(() => void peer.stop(), 1000);
    try {
      return await peer.received;
    } finally {
      clearTimeout(timer);
    }
  };

  // On bridge X, A1:5000 → B1:5353 is delivered (no filters there): conntrack now holds that connection.
  const b1 = await udp(B1, 5353);
  t.true(await send(A1, 5000, [ipOf(B1), 5353]));
  t.true(await outcome(b1), 'B1 got the datagram');

  // On bridge Y, B2:5353 → A2:5000 has the reply tuple of X's connection. It is not a reply on Y.
  const unsolicited = { srcIp: ipOf(B2), dstIp: ipOf(A2), proto: PROTO_UDP, srcPort: 5353, dstPort: 5000, inPortId: 'b2', outPortId: 'a2' };
  t.false(simulateExchange(view, { id: 'y' }, unsolicited).delivered);
  const a2 = await udp(A2, 5000);
  t.true(await send(B2, 5353, [ipOf(A2), 5000]));
  t.false(await outcome(a2), "the kernel took it for a reply of the other tenant's connection");

  // Control: once A2 itself sent to B2:5353, the same datagram is a return flow and passes.
  const request = { ...unsolicited, srcIp: ipOf(A2), dstIp: ipOf(B2), srcPort: 5000, dstPort: 5353, inPortId: 'a2', outPortId: 'b2' };
  t.true(simulateExchange(view, { id: 'y' }, request).delivered);
  const a2again = await udp(A2, 5000, [ipOf(B2), 5353]);
  t.true(await send(B2, 5353, [ipOf(A2), 5000]));
  t.true(await outcome(a2again), 'a real reply on Y passes');
});
