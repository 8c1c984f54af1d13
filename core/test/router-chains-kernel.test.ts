// Compiled router chains (core/policy/compile-router.ts, applied by core/datapath/nft/router-chains.ts) agree with
// their oracle (core/policy/simulate-router.ts) in the kernel: a router namespace with three legs, two clients and
// a server, an inbound chain with a floating IP (DNAT), a reverse SNAT, a drop, a jump chain with a reject, and an
// outbound chain with a SNAT, return-flow acceptance and forward-flow drops. Every probe (TCP, UDP, ICMP, to the
// server, to the floating IP and back) must be delivered exactly when the simulator says so, and the server must
// see the source address the simulator predicts. Then a chain change rewrites only that chain, and an unset filter
// takes the table away.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { execArgv, mustExec, nsArgv } from '../../testbed/shell.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { nftQuery } from '../datapath/nft/index.js';
import { ensureRouterChains, setRouterChains } from '../datapath/nft/router-chains.js';
import { compileRouterFilters, type RouterChainSource } from '../policy/compile-router.js';
import { simulateRoutedExchange } from '../policy/simulate-router.js';
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, type Packet, type PolicyRule, type PolicyView } from '../policy/simulate.js';
import type { Chain } from '../model/types.js';

// TCP on 80 and 8080, UDP on 5353 and 7777: each answers with the address the connection or datagram came from.
const SERVER = `
import socket, threading
def tcp(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall(a[0].encode()); c.close()
def udp(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', p))
    while True:
        d, a = s.recvfrom(100); s.sendto(a[0].encode(), a)
for f, p in ((tcp, 80), (tcp, 8080), (udp, 5353), (udp, 7777)):
    threading.Thread(target=f, args=(p,), daemon=True).start()
threading.Event().wait()
`;
// Prints what the server saw as our address; exits 1 when nothing came back.
const CLIENT = `
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.settimeout(1.5)
try:
    if proto == 'tcp':
        s.connect((ip, port)); print(s.recv(100).decode())
    else:
        s.sendto(b'x', (ip, port)); print(s.recvfrom(100)[0].decode())
except OSError:
    sys.exit(1)
`;

const FIP = '10.80.9.9';
const SNAT_TO = '10.80.8.1';
const LEGS = [
  { port: 'rp1', ifname: 'l-000001', gw: '10.80.1.1', peer: 'c1', ip: '10.80.1.2' },
  { port: 'rp2', ifname: 'l-000002', gw: '10.80.3.1', peer: 'c2', ip: '10.80.3.2' },
  { port: 'rp3', ifname: 'l-000003', gw: '10.80.2.1', peer: 'srv', ip: '10.80.2.2' },
] as const;
type Peer = (typeof LEGS)[number]['peer'];

interface Probe {
  proto: 'tcp' | 'udp' | 'icmp';
  port?: number;
}
const PROBES: Probe[] = [
  { proto: 'tcp', port: 80 },
  { proto: 'tcp', port: 8080 },
  { proto: 'udp', port: 5353 },
  { proto: 'udp', port: 7777 },
  { proto: 'icmp' },
];

test.serial('router chains in the kernel agree with the simulator: filters, floating IP, SNAT, return flows', async (t) => {
  t.timeout(180_000);
  const tag = `rtk${randomBytes(3).toString('hex')}`;
  const ns = (n: string) => `${tag}-${n}`;
  const path = (n: string) => `/run/netns/${ns(n)}`;
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const n of ['rt', ...LEGS.map((l) => l.peer)]) await execArgv(['ip', 'netns', 'del', ns(n)]);
  });
  for (const n of ['rt', ...LEGS.map((l) => l.peer)]) await mustExec(['ip', 'netns', 'add', ns(n)]);
  const rt: string[] = ['link set dev lo up'];
  for (const l of LEGS) {
    await mustExec(['ip', '-n', ns('rt'), 'link', 'add', l.ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(l.peer)]);
    rt.push(`addr add ${l.gw}/24 dev ${l.ifname}`, `link set dev ${l.ifname} up`);
    await mustExec(
      ['ip', '-n', ns(l.peer), '-batch', '-'],
      ['link set dev lo up', `addr add ${l.ip}/24 dev eth0`, 'link set dev eth0 up', `route add default via ${l.gw}`].join('\n') + '\n',
    );
  }
  await mustExec(['ip', '-n', ns('rt'), '-batch', '-'], rt.join('\n') + '\n');
  await mustExec(nsArgv(path('rt'), ['sysctl', '-qw', 'net.ipv4.ip_forward=1']));

  let pos = 0;
  const r = (
    chainId: string,
    id: string,
    action: PolicyRule['action'],
    condition: PolicyRule['condition'],
    extra: Partial<PolicyRule> = {},
  ): PolicyRule => ({
    id,
    chainId,
    position: ++pos,
    action,
    condition,
    ...extra,
  });
  const to = (ip: string) => ({ natTargets: [{ addressFrom: ip, addressTo: ip, portFrom: 0, portTo: 0 }], flowAction: 'accept' as const });
  const rules: PolicyRule[] = [
    // Inbound ("pre-routing"): the floating IP first, so c2's TCP 8080 to it passes though the jump chain rejects it.
    r('pre', 'p-fip', 'dnat', { nwDst: `${FIP}/32` }, to('10.80.2.2')),
    r('pre', 'p-rev', 'rev_snat', {}, { flowAction: 'accept' }),
    r('pre', 'p-udp', 'drop', { nwSrc: '10.80.3.0/24', nwProto: PROTO_UDP, tpDst: { start: 7777, end: 7777 } }),
    r('pre', 'p-jump', 'jump', {}, { jumpChainId: 'j' }),
    r('j', 'j-8080', 'reject', { nwSrc: '10.80.3.0/24', nwProto: PROTO_TCP, tpDst: { start: 8080, end: 8080 } }),
    r('j', 'j-ret', 'return', {}),
    // Outbound ("post-routing"): c1 reaches the server's subnet as SNAT_TO; replies pass; c2 may not open TCP 80;
    // the server may start no ICMP (its echo replies are return flows).
    r('post', 'o-snat', 'snat', { nwSrc: '10.80.1.2/32', nwDst: '10.80.2.0/24' }, to(SNAT_TO)),
    r('post', 'o-ret', 'accept', { matchReturnFlow: true }),
    r('post', 'o-80', 'drop', { matchForwardFlow: true, nwSrc: '10.80.3.0/24', nwProto: PROTO_TCP, tpDst: { start: 80, end: 80 } }),
    r('post', 'o-icmp', 'drop', { nwSrc: '10.80.2.0/24', nwProto: PROTO_ICMP }),
  ];
  const chains: Chain[] = ['pre', 'j', 'post'].map((id) => ({ id, name: id }));
  const router = { id: 'r', inboundFilterId: 'pre', outboundFilterId: 'post' };
  const source = (rs: PolicyRule[]): RouterChainSource => {
    const rulesByChain = new Map<string, PolicyRule[]>();
    for (const x of rs) rulesByChain.set(x.chainId, [...(rulesByChain.get(x.chainId) ?? []), x]);
    return { chains: new Map(chains.map((c) => [c.id, c])), rulesByChain, ifnameOf: (id) => LEGS.find((l) => l.port === id)?.ifname };
  };
  const filters = compileRouterFilters(router, source(rules))!;
  t.deepEqual(filters.errors, []);
  t.deepEqual(filters.addresses, [SNAT_TO, FIP]);
  await setRouterChains(path('rt'), undefined, filters, 'router chains');

  for (const l of LEGS) {
    const p = spawn('ip', ['netns', 'exec', ns(l.peer), 'python3', '-c', SERVER], { stdio: 'ignore' });
    procs.push(p);
  }
  const client = async (from: Peer, proto: 'tcp' | 'udp', ip: string, port: number): Promise<string | undefined> => {
    const x = await execArgv(nsArgv(path(from), ['python3', '-c', CLIENT, proto, ip, String(port)]));
    return x.code === 0 ? x.stdout.trim() : undefined;
  };
  for (const l of LEGS) {
    const end = Date.now() + 10_000;
    while ((await client(l.peer, 'tcp', '127.0.0.1', 80)) === undefined && Date.now() < end)
      await new Promise((res) => setTimeout(res, 100));
  }

  const view: PolicyView = { chains, rules, ipAddrGroups: [], ports: [] };
  const route = (ip: string) => LEGS.find((l) => l.ip.split('.').slice(0, 3).join('.') === ip.split('.').slice(0, 3).join('.'))?.port;
  const pairs: [Peer, string][] = [
    ['c1', '10.80.2.2'],
    ['c2', '10.80.2.2'],
    ['c1', FIP],
    ['c2', FIP],
    ['srv', '10.80.1.2'],
    ['srv', '10.80.3.2'],
    ['c1', '10.80.3.2'],
  ];
  const cells: { cell: string; predicted: string; observed: string }[] = [];
  for (const [from, dst] of pairs) {
    const leg = LEGS.find((l) => l.peer === from)!;
    for (const probe of PROBES) {
      const packet: Packet = {
        srcIp: leg.ip,
        dstIp: dst,
        inPortId: leg.port,
        ...(probe.proto === 'icmp'
          ? { proto: PROTO_ICMP, icmpType: 8, icmpCode: 0 }
          : { proto: probe.proto === 'tcp' ? PROTO_TCP : PROTO_UDP, srcPort: 40000, dstPort: probe.port! }),
      };
      const sim = simulateRoutedExchange(view, router, packet, route);
      // What the destination saw as the source (ICMP: only whether the echo came back).
      const predicted = !sim.delivered ? 'blocked' : probe.proto === 'icmp' ? 'delivered' : `from ${sim.request.packet.srcIp}`;
      let observed: string;
      if (probe.proto === 'icmp') {
        const x = await execArgv(nsArgv(path(from), ['ping', '-n', '-q', '-c', '1', '-W', '1', dst]));
        observed = x.code === 0 ? 'delivered' : 'blocked';
      } else {
        const seen = await client(from, probe.proto, dst, probe.port!);
        observed = seen === undefined ? 'blocked' : `from ${seen}`;
      }
      cells.push({ cell: `${from}->${dst} ${probe.proto}${probe.port ? `/${probe.port}` : ''}`, predicted, observed });
    }
  }
  t.log(cells.map((x) => `${x.cell}: ${x.predicted}${x.predicted === x.observed ? '' : ` BUT kernel ${x.observed}`}`).join('\n'));
  t.deepEqual(
    cells.filter((x) => x.predicted !== x.observed),
    [],
    'kernel and simulator disagree',
  );
  const at = (cell: string) => cells.find((x) => x.cell === cell)!.predicted;
  t.is(at('c1->10.80.2.2 tcp/80'), `from ${SNAT_TO}`, 'router SNAT');
  t.is(at(`c2->${FIP} tcp/8080`), 'from 10.80.3.2', 'floating IP, the client address kept, accepted before the jump');
  t.is(at('c2->10.80.2.2 tcp/8080'), 'blocked', 'reject in the jump chain');
  t.is(at('c2->10.80.2.2 udp/7777'), 'blocked', 'inbound drop');
  t.is(at('c2->10.80.2.2 tcp/80'), 'blocked', 'outbound forward-flow drop');
  t.is(at('c2->10.80.2.2 icmp'), 'delivered', "the server's echo reply is a return flow");
  t.is(at('srv->10.80.1.2 icmp'), 'blocked', 'the server may start no ICMP');

  // Incremental: one rule of the jump chain changes; only its chain is rewritten (the others keep their counters).
  const listing = () => nftQuery(path('rt'), 'list table inet bees-r', 'nft');
  const countOf = (text: string, rule: string) =>
    Number(new RegExp(`counter packets (\\d+) bytes \\d+ [^\\n]*"r=${rule}"`).exec(text)?.[1] ?? -1);
  const before = await listing();
  const next = compileRouterFilters(
    router,
    source(rules.map((x) => (x.id === 'j-8080' ? { ...x, condition: { ...x.condition, tpDst: { start: 8081, end: 8081 } } } : x))),
  )!;
  await setRouterChains(path('rt'), filters, next, 'router chains, one changed');
  const after = await listing();
  t.true(countOf(before, 'o-ret') > 0 && countOf(after, 'o-ret') === countOf(before, 'o-ret'), 'the outbound chain kept its counters');
  t.is(countOf(after, 'j-8080'), 0, 'the changed chain was rewritten');
  t.truthy(await client('c2', 'tcp', '10.80.2.2', 8080), 'and the change is in force');
  // A full apply (ensureRouter, as the periodic resync runs it) leaves an intact table alone, counters and all; a
  // table removed behind our back is rebuilt.
  const kept = countOf(await listing(), 'o-ret');
  await ensureRouterChains(path('rt'), next, 'resync');
  t.is(countOf(await listing(), 'o-ret'), kept, 'a resync does not rewrite an intact table');
  await mustExec(nsArgv(path('rt'), ['nft', 'delete', 'table', 'inet', 'bees-r']));
  await ensureRouterChains(path('rt'), next, 'repair');
  t.true((await listing()).includes('"r=o-ret"'), 'a removed table is rebuilt');
  // No filter left: the table goes.
  await setRouterChains(path('rt'), next, undefined, 'router chains removed');
  t.false((await nftQuery(path('rt'), 'list tables', 'nft')).includes('bees-r'));
});

// Each server answers with "<peer address> <local address>"; UDP on every address of its own (a UDP reply must
// leave from the address the datagram was sent to, or conntrack would not match it to its DNAT).
const SERVER2 = `
import socket, sys, threading
def tcp(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall(('%s %s' % (a[0], c.getsockname()[0])).encode()); c.close()
def udp(ip, p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((ip, p))
    while True:
        d, a = s.recvfrom(100); s.sendto(('%s %s' % (a[0], ip)).encode(), a)
for p in (80, 8080):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
for ip in sys.argv[1:]:
    for p in (5353, 7777):
        threading.Thread(target=udp, args=(ip, p), daemon=True).start()
threading.Event().wait()
`;

test.serial('router port filters, address and port groups and several NAT targets agree with the simulator', async (t) => {
  t.timeout(240_000);
  const tag = `rtg${randomBytes(3).toString('hex')}`;
  const ns = (n: string) => `${tag}-${n}`;
  const path = (n: string) => `/run/netns/${ns(n)}`;
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const n of ['rt', ...LEGS.map((l) => l.peer)]) await execArgv(['ip', 'netns', 'del', ns(n)]);
  });
  const SRV2 = '10.80.2.3';
  const addrsOf = (peer: Peer): string[] => (peer === 'srv' ? ['10.80.2.2', SRV2] : [LEGS.find((l) => l.peer === peer)!.ip]);
  for (const n of ['rt', ...LEGS.map((l) => l.peer)]) await mustExec(['ip', 'netns', 'add', ns(n)]);
  const rt: string[] = ['link set dev lo up'];
  for (const l of LEGS) {
    await mustExec(['ip', '-n', ns('rt'), 'link', 'add', l.ifname, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns(l.peer)]);
    rt.push(`addr add ${l.gw}/24 dev ${l.ifname}`, `link set dev ${l.ifname} up`);
    await mustExec(
      ['ip', '-n', ns(l.peer), '-batch', '-'],
      [
        'link set dev lo up',
        ...addrsOf(l.peer).map((a) => `addr add ${a}/24 dev eth0`),
        'link set dev eth0 up',
        `route add default via ${l.gw}`,
      ].join('\n') + '\n',
    );
  }
  await mustExec(['ip', '-n', ns('rt'), '-batch', '-'], rt.join('\n') + '\n');
  await mustExec(nsArgv(path('rt'), ['sysctl', '-qw', 'net.ipv4.ip_forward=1']));

  const FIP2 = '10.80.9.10';
  const SNAT2 = '10.80.8.2';
  let pos = 0;
  const r = (
    chainId: string,
    id: string,
    action: PolicyRule['action'],
    condition: PolicyRule['condition'],
    extra: Partial<PolicyRule> = {},
  ) => ({ id, chainId, position: ++pos, action, condition, ...extra });
  const targets = (...ts: [string, number?][]) => ({
    natTargets: ts.map(([ip, port]) => ({ addressFrom: ip, addressTo: ip, portFrom: port ?? 0, portTo: port ?? 0 })),
    flowAction: 'accept' as const,
  });
  const tcp = (port: number) => ({ nwProto: PROTO_TCP, tpDst: { start: port, end: port } });
  const udp = (port: number) => ({ nwProto: PROTO_UDP, tpDst: { start: port, end: port } });
  const rules: PolicyRule[] = [
    // c2's port: sees the floating IP before the router's DNAT (MidoNet's order), so c2 cannot reach it on TCP 80.
    r('pin2', 'i2-fip80', 'drop', { nwDst: `${FIP}/32`, ...tcp(80) }),
    r('pin2', 'i2-jump', 'jump', {}, { jumpChainId: 'pj' }),
    r('pj', 'pj-icmp', 'return', { nwProto: PROTO_ICMP }),
    r('pj', 'pj-ret', 'accept', { matchReturnFlow: true }),
    // Router inbound: two floating IPs with two targets each (one with ports), and non-members of A may not use
    // UDP 5353 to the server's subnet.
    r('pre2', 'p-fip', 'dnat', { nwDst: `${FIP}/32` }, targets(['10.80.2.2'], [SRV2])),
    r('pre2', 'p-fip2', 'dnat', { nwDst: `${FIP2}/32`, ...tcp(9000) }, targets(['10.80.2.2', 80], [SRV2, 8080])),
    r('pre2', 'p-a', 'drop', { ipAddrGroupSrc: 'A', invIpAddrGroupSrc: true, nwDst: '10.80.2.0/24', ...udp(5353) }),
    // Router outbound: UDP 7777 to members of P dropped (c2 by address, the server by its leg rp3); c1 to the
    // server's subnet leaves as one of two addresses (the SNAT's accept ends the chain: the drop comes first).
    r('post2', 'o-p', 'drop', { portGroupDst: 'P', ...udp(7777) }),
    r('post2', 'o-snat', 'snat', { nwSrc: '10.80.1.2/32', nwDst: '10.80.2.0/24' }, targets([SNAT_TO], [SNAT2])),
    // The server's port, outbound: members of A may not open TCP 8080 (seen before the SNAT), members of P start
    // no ICMP towards it.
    r('pout3', 'x-a', 'reject', { ipAddrGroupSrc: 'A', ...tcp(8080) }),
    r('pout3', 'x-p', 'drop', { portGroupSrc: 'P', nwProto: PROTO_ICMP, matchForwardFlow: true }),
  ];
  const chains: Chain[] = ['pin2', 'pj', 'pre2', 'post2', 'pout3'].map((id) => ({ id, name: id }));
  const router = { id: 'r', inboundFilterId: 'pre2', outboundFilterId: 'post2' };
  const groupA = { id: 'A', tenantId: 't', name: 'A', addresses: ['10.80.1.0/30', '10.80.1.2', '10.80.3.9'] };
  type RPort = { id: string; type: 'router' | 'bridge'; ips: string[]; portGroupIds: string[]; adminStateUp: boolean } & {
    inboundFilterId?: string;
    outboundFilterId?: string;
  };
  const ports: RPort[] = [
    { id: 'rp1', type: 'router', ips: ['10.80.1.1/24'], portGroupIds: [], adminStateUp: true },
    { id: 'rp2', type: 'router', ips: ['10.80.3.1/24'], portGroupIds: [], adminStateUp: true, inboundFilterId: 'pin2' },
    { id: 'rp3', type: 'router', ips: ['10.80.2.1/24'], portGroupIds: ['P'], adminStateUp: true, outboundFilterId: 'pout3' },
    { id: 'c2port', type: 'bridge', ips: ['10.80.3.2'], portGroupIds: ['P'], adminStateUp: true },
  ];
  const source = (rs: PolicyRule[], groups: (typeof groupA)[]): RouterChainSource => {
    const rulesByChain = new Map<string, PolicyRule[]>();
    for (const x of rs) rulesByChain.set(x.chainId, [...(rulesByChain.get(x.chainId) ?? []), x]);
    return {
      chains: new Map(chains.map((c) => [c.id, c])),
      rulesByChain,
      ifnameOf: (id) => LEGS.find((l) => l.port === id)?.ifname,
      ipAddrGroups: new Map(groups.map((g) => [g.id, g])),
      ports,
    };
  };
  const filters = compileRouterFilters(router, source(rules, [groupA]), ports)!;
  t.deepEqual(filters.errors, []);
  t.deepEqual(filters.portInbound, { 'l-000002': 'f-pin2' });
  t.deepEqual(filters.portOutbound, { 'l-000003': 'f-pout3' });
  t.deepEqual(filters.sets?.['pgif-P']?.elements, ['l-000003']);
  t.deepEqual(filters.addresses, [SNAT_TO, SNAT2, FIP2, FIP]);
  await setRouterChains(path('rt'), undefined, filters, 'router chains');

  for (const l of LEGS)
    procs.push(spawn('ip', ['netns', 'exec', ns(l.peer), 'python3', '-c', SERVER2, ...addrsOf(l.peer)], { stdio: 'ignore' }));
  const client = async (from: Peer, proto: 'tcp' | 'udp', ip: string, port: number): Promise<string | undefined> => {
    const x = await execArgv(nsArgv(path(from), ['python3', '-c', CLIENT, proto, ip, String(port)]));
    return x.code === 0 ? x.stdout.trim() : undefined;
  };
  for (const l of LEGS) {
    const end = Date.now() + 10_000;
    while ((await client(l.peer, 'tcp', '127.0.0.1', 80)) === undefined && Date.now() < end)
      await new Promise((res) => setTimeout(res, 100));
  }

  const route = (ip: string) => LEGS.find((l) => l.ip.split('.').slice(0, 3).join('.') === ip.split('.').slice(0, 3).join('.'))?.port;
  /** Every outcome the simulator allows: one run per choice of target of each NAT rule. */
  const outcomes = (rs: PolicyRule[], groups: (typeof groupA)[], packet: Packet, icmp: boolean): Set<string> => {
    const view = { chains, rules: rs, ipAddrGroups: groups, ports };
    const out = new Set<string>();
    for (let d = 0; d < 2; d++)
      for (let s = 0; s < 2; s++) {
        const choose = (rule: PolicyRule, ts: readonly { addressFrom: string; portFrom: number; portTo: number }[]) => {
          const x = ts[(rule.action === 'dnat' ? d : s) % ts.length]!;
          return { ip: x.addressFrom, port: x.portTo ? x.portFrom : undefined };
        };
        const sim = simulateRoutedExchange(view, router, packet, route, { choose });
        out.add(!sim.delivered ? 'blocked' : icmp ? 'delivered' : `${sim.request.packet.srcIp} ${sim.request.packet.dstIp}`);
      }
    return out;
  };
  const observe = async (from: Peer, dst: string, probe: Probe): Promise<string> => {
    if (probe.proto === 'icmp') {
      const x = await execArgv(nsArgv(path(from), ['ping', '-n', '-q', '-c', '1', '-W', '1', dst]));
      return x.code === 0 ? 'delivered' : 'blocked';
    }
    return (await client(from, probe.proto, dst, probe.port!)) ?? 'blocked';
  };
  const packetOf = (from: Peer, dst: string, probe: Probe): Packet => {
    const leg = LEGS.find((l) => l.peer === from)!;
    return {
      srcIp: leg.ip,
      dstIp: dst,
      inPortId: leg.port,
      ...(probe.proto === 'icmp'
        ? { proto: PROTO_ICMP, icmpType: 8, icmpCode: 0 }
        : { proto: probe.proto === 'tcp' ? PROTO_TCP : PROTO_UDP, srcPort: 40000, dstPort: probe.port! }),
    };
  };
  const probes: Probe[] = [...PROBES, { proto: 'tcp', port: 9000 }];
  const matrix = async (rs: PolicyRule[], groups: (typeof groupA)[], pairs: [Peer, string][]) => {
    const cells: { cell: string; predicted: string[]; observed: string }[] = [];
    for (const [from, dst] of pairs)
      // Only FIP2 is served on 9000 (its DNAT), nothing else listens there.
      for (const probe of probes.filter((p) => p.port !== 9000 || dst === FIP2)) {
        const predicted = [...outcomes(rs, groups, packetOf(from, dst, probe), probe.proto === 'icmp')].sort();
        cells.push({
          cell: `${from}->${dst} ${probe.proto}${probe.port ? `/${probe.port}` : ''}`,
          predicted,
          observed: await observe(from, dst, probe),
        });
      }
    t.log(
      cells
        .map((x) => `${x.cell}: ${x.predicted.join(' | ')}${x.predicted.includes(x.observed) ? '' : ` BUT kernel ${x.observed}`}`)
        .join('\n'),
    );
    t.deepEqual(
      cells.filter((x) => !x.predicted.includes(x.observed)),
      [],
      'kernel and simulator disagree',
    );
    return (cell: string) => cells.find((x) => x.cell === cell)!.predicted;
  };
  const pairs: [Peer, string][] = [
    ['c1', '10.80.2.2'],
    ['c2', '10.80.2.2'],
    ['c1', FIP],
    ['c2', FIP],
    ['c2', FIP2],
    ['c1', '10.80.3.2'],
    ['srv', '10.80.3.2'],
    ['srv', '10.80.1.2'],
  ];
  const at = await matrix(rules, [groupA], pairs);
  t.deepEqual(at('c1->10.80.2.2 tcp/80'), [`${SNAT_TO} 10.80.2.2`, `${SNAT2} 10.80.2.2`], 'SNAT to either of two targets');
  t.deepEqual(at(`c2->${FIP} tcp/80`), ['blocked'], "c2's port filter saw the floating IP before the router's DNAT");
  t.deepEqual(at(`c2->${FIP} tcp/8080`), ['10.80.3.2 10.80.2.2', `10.80.3.2 ${SRV2}`], 'DNAT to either of two targets');
  t.deepEqual(at(`c2->${FIP2} tcp/9000`), ['10.80.3.2 10.80.2.2', `10.80.3.2 ${SRV2}`], 'DNAT with ports to either target');
  t.deepEqual(at('c1->10.80.2.2 tcp/8080'), ['blocked'], "the server's port filter rejects a member of A (before SNAT)");
  t.deepEqual(at('c2->10.80.2.2 udp/5353'), ['blocked'], 'inverted address group: c2 is not in A');
  t.deepEqual(at('c1->10.80.2.2 udp/5353').length, 2, 'c1 is in A (by prefix)');
  t.deepEqual(at('c1->10.80.2.2 udp/7777'), ['blocked'], 'port group by leg: the server is behind a member port');
  t.deepEqual(at('c1->10.80.3.2 udp/7777'), ['blocked'], 'port group by address: c2 is a member');
  t.deepEqual(at('c2->10.80.2.2 icmp'), ['blocked'], 'port group source: c2 starts no ICMP towards the server');
  t.deepEqual(at('c1->10.80.2.2 icmp'), ['delivered']);

  // Every target is used: 16 connections each reach both (a miss has probability 2^-15).
  for (const [from, dst, port] of [
    ['c2', FIP, 8080],
    ['c2', FIP2, 9000],
    ['c1', '10.80.2.2', 80],
  ] as const) {
    const seen = new Set<string>();
    for (let i = 0; i < 16; i++) seen.add((await client(from, 'tcp', dst, port)) ?? 'blocked');
    t.is(seen.size, 2, `${from} -> ${dst}:${port} reached ${[...seen].join(', ')}`);
  }

  // A membership change is set elements only: no chain is rewritten (counters kept), and it is in force.
  const listing = () => nftQuery(path('rt'), 'list table inet bees-r', 'nft');
  const countOf = (text: string, rule: string) =>
    Number(new RegExp(`counter packets (\\d+) bytes \\d+ [^\\n]*"r=${rule}"`).exec(text)?.[1] ?? -1);
  const smaller = { ...groupA, addresses: ['10.80.3.9'] };
  const next = compileRouterFilters(router, source(rules, [smaller]), ports)!;
  t.deepEqual(next.chains, filters.chains, 'the chains do not depend on the members');
  const before = await listing();
  await setRouterChains(path('rt'), filters, next, 'group change');
  const after = await listing();
  t.true(countOf(before, 'x-a') > 0 && countOf(after, 'x-a') === countOf(before, 'x-a'), 'the port chain kept its counters');
  const at2 = await matrix(rules, [smaller], [['c1', '10.80.2.2']]);
  t.deepEqual(at2('c1->10.80.2.2 tcp/8080').length, 2, 'c1 left A: TCP 8080 passes');
  t.deepEqual(at2('c1->10.80.2.2 udp/5353'), ['blocked'], 'c1 left A: UDP 5353 is dropped');
  // The port filters unset: their base chain is emptied, the router's own filters stay.
  const bare: RPort[] = ports.map(({ inboundFilterId: _i, outboundFilterId: _o, ...p }) => p);
  const none = compileRouterFilters(router, { ...source(rules, [smaller]), ports: bare }, bare)!;
  t.is(none.portInbound, undefined);
  await setRouterChains(path('rt'), next, none, 'port filters unset');
  t.truthy(await client('c2', 'tcp', FIP, 80), 'c2 reaches the floating IP once its port filter is gone');
});
