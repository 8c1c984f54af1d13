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
