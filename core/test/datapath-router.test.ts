// Distributed routing, tenant isolation, external access and anti-spoofing on three namespace hosts.
import test from 'ava';
import { spawnCounter, type DesiredRouter, type GatewayAddress } from '../datapath/index.js';
import { OUTSIDE_IP } from '../../testbed/index.js';
import { routerNsName } from '../datapath/names.js';
import { announce } from '../datapath/announce.js';
import { getLink } from '../datapath/netlink/link.js';
import { withNetlink } from '../datapath/netlink/netns.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, type Cluster, type TestPort } from './datapath-helpers.js';

// v6/gw6 undefined: an IPv4-only network (tests spread a net and blank them).
interface Net {
  vni: number;
  v4: string;
  v6?: string | undefined;
  gw4: string;
  gw6?: string | undefined;
  gwMac: string;
}

function net(third: number, octet2 = 60): Net {
  return {
    vni: randomVni(),
    v4: `10.${octet2}.${third}.0/24`,
    v6: `fd00:${octet2}:${third}::/64`,
    gw4: `10.${octet2}.${third}.1`,
    gw6: `fd00:${octet2}:${third}::1`,
    gwMac: mac(),
  };
}

function port(c: Cluster, host: string, n: Net, last: number, portSecurity = false): TestPort {
  const ips = [n.v4.replace(/0\/24$/, `${last}/24`)];
  if (n.v6) ips.push(n.v6.replace(/::\/64$/, `::${last}/64`));
  return { host: c.h.host(host), vni: n.vni, mac: mac(), ips, gateways: [n.gw4, ...(n.gw6 ? [n.gw6] : [])], portSecurity };
}

const gateways = (n: Net): GatewayAddress[] => [{ ip: n.gw4, mac: n.gwMac }, ...(n.gw6 ? [{ ip: n.gw6, mac: n.gwMac }] : [])];

function router(id: string, nets: Net[], ports: TestPort[], extra: Partial<DesiredRouter> = {}): DesiredRouter {
  return {
    id,
    legs: nets.map((n) => ({ vni: n.vni, mac: n.gwMac, addresses: [`${n.gw4}/24`, ...(n.gw6 ? [`${n.gw6}/64`] : [])] })),
    neighbours: ports
      .filter((p) => nets.some((n) => n.vni === p.vni))
      .flatMap((p) => p.ips.map((c) => ({ ip: c.split('/')[0]!, mac: p.mac, vni: p.vni }))),
    ...extra,
  };
}

/** Bridges on every host (all hosts take part), ports plugged, a router instance on every host. */
async function topology(c: Cluster, nets: Net[], ports: TestPort[], routers: DesiredRouter[]): Promise<void> {
  for (const host of c.h.hosts) {
    for (const n of nets) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, n.vni, ports, gateways(n)));
  }
  await plugAll(c, ports);
  for (const host of c.h.hosts) for (const r of routers) await c.dp.get(host.name)!.ensureRouter(r);
}

async function teardownAll(c: Cluster, ports: TestPort[], nets: Net[], routers: DesiredRouter[]): Promise<void> {
  for (const p of ports) await c.dp.get(p.host.name)!.unplug(p.hostIfname!);
  for (const host of c.h.hosts) {
    const dp = c.dp.get(host.name)!;
    for (const r of routers) await dp.removeRouter(r.id);
    for (const n of nets) await dp.removeBridge(n.vni);
    await dp.sweep({});
  }
}

test.serial(
  'a distributed router joins two bridges: cross-host cross-bridge traffic is routed locally and crosses the underlay once',
  async (t) => {
    const c = await cluster(t);
    const a = net(1);
    const b = net(2);
    const ports = [port(c, 'h1', a, 10), port(c, 'h3', b, 30), port(c, 'h1', b, 11)];
    const r = router('00000000-0000-4000-8000-0000000000a1', [a, b], ports, { snat: true, hostReachable: [a.v4, b.v4] });
    await topology(c, [a, b], ports, [r]);
    const [wa1, wb3, wb1] = ports as [TestPort, TestPort, TestPort];

    t.true(await c.h.pingEventually(wa1.netns!, ipOf(wb3)), 'h1/A -> h3/B over IPv4');
    t.true(await c.h.pingEventually(wa1.netns!, ipOf(wb3, 6)), 'h1/A -> h3/B over IPv6');
    t.true(await c.h.pingEventually(wa1.netns!, ipOf(wb1)), 'h1/A -> h1/B (same host)');
    t.true(await c.h.pingEventually(wa1.netns!, b.gw4), 'the gateway answers');

    // Count VXLAN packets of a recognisable size: 1000 B payload + 8 ICMP + 20 IP + 14 Ethernet + 8 VXLAN + 8 UDP + 20 IP.
    const h1 = c.h.host('h1').underlayIp;
    const h2 = c.h.host('h2').underlayIp;
    const h3 = c.h.host('h3').underlayIp;
    const there = await c.h.underlayCounter(`ip saddr ${h1} ip daddr ${h3} udp dport 6677 ip length 1078`);
    const back = await c.h.underlayCounter(`ip saddr ${h3} ip daddr ${h1} udp dport 6677 ip length 1078`);
    const viaH2 = await c.h.underlayCounter(`ip daddr ${h2} udp dport 6677 ip length 1078`);
    t.true(await c.h.ping(wa1.netns!, ipOf(wb3), { count: 5, size: 1000 }));
    t.is(await there(), 5, 'each request crossed the underlay exactly once, straight to h3');
    t.is(await back(), 5, 'each reply crossed once, routed on h3');
    t.is(await viaH2(), 0, 'nothing hairpinned through another host');

    // External access (SNAT in the router, masquerade on the host) and the host reaching its local workloads.
    t.true(await c.h.pingEventually(wa1.netns!, OUTSIDE_IP), 'workload reaches the outside');
    t.true(await c.h.pingEventually(wb3.netns!, OUTSIDE_IP), 'workload on h3 reaches the outside');
    t.true(await c.h.pingEventually(c.h.host('h1').netns, ipOf(wa1)), 'host h1 reaches its local workload');

    // Convergence: a second ensureRouter is a no-op; dropping the route to the host removes it.
    await c.dp.get('h1')!.ensureRouter(r);
    await c.dp.get('h1')!.ensureRouter({ ...r, hostReachable: [b.v4] });
    const routes = await c.h.exec(c.h.host('h1'), ['ip', 'route', 'show', a.v4]);
    t.is(routes.stdout.trim(), '', 'host route to A removed');
    t.true(await c.h.ping(wa1.netns!, OUTSIDE_IP));
    t.deepEqual((await c.dp.get('h1')!.inventory()).routers, [r.id]);

    // Neighbours alone change (every attach and detach does this) in-process: gone ones are removed (also ones
    // already absent), new ones added, and no process is started.
    const ns = routerNsName(c.h.host('h1').routerNsPrefix, r.id);
    const permanent = async (): Promise<string[]> => {
      const out = await c.h.exec(c.h.host('h1'), ['ip', '-n', ns, '-j', 'neigh', 'show', 'nud', 'permanent']);
      return (JSON.parse(out.stdout || '[]') as { dst: string; lladdr: string }[]).map((n) => `${n.dst} ${n.lladdr}`).sort();
    };
    const gone = r.neighbours!.filter((n) => n.mac === wb3.mac);
    const extra = { ip: b.v4.replace(/0\/24$/, '77'), mac: mac(), vni: b.vni };
    const spawnsBefore = spawnCounter.count;
    await c.dp.get('h1')!.setRouterNeighbours(r.id, [extra], [...gone, { ip: b.v4.replace(/0\/24$/, '78'), mac: mac(), vni: b.vni }]);
    t.is(spawnCounter.count, spawnsBefore, 'setRouterNeighbours spawned a process');
    const expected = [...r.neighbours!.filter((n) => n.mac !== wb3.mac), extra].map((n) => `${n.ip} ${n.mac}`).sort();
    t.deepEqual(await permanent(), expected);
    await c.dp.get('h1')!.ensureRouter(r);
    t.deepEqual(await permanent(), r.neighbours!.map((n) => `${n.ip} ${n.mac}`).sort(), 'neighbours back to the plan');
    // The full ensure of a converged router (every periodic resync) reads the host, the namespace, the gateway FDB
    // entries and the sysctls in-process, finds every setting held, and starts no process.
    const resync = spawnCounter.count;
    await c.dp.get('h1')!.ensureRouter(r);
    t.is(spawnCounter.count - resync, 0, `a full ensureRouter of a converged router started ${spawnCounter.count - resync} processes`);

    await teardownAll(c, ports, [a, b], [r]);
    t.deepEqual(await c.h.allLeaks(), {});
  },
);

test.serial('two tenants with identical subnets are isolated, and both reach the outside', async (t) => {
  const c = await cluster(t);
  const x = { ...net(5, 70), v6: undefined, gw6: undefined };
  const y = { ...net(5, 70), v6: undefined, gw6: undefined }; // same subnet, same gateway IP, other VNI
  const px = [port(c, 'h1', x, 2), port(c, 'h2', x, 3)];
  const py = [port(c, 'h1', y, 3), port(c, 'h2', y, 4)];
  const ports = [...px, ...py];
  const rx = router('00000000-0000-4000-8000-0000000000b1', [x], ports, { snat: true });
  const ry = router('00000000-0000-4000-8000-0000000000b2', [y], ports, { snat: true });
  await topology(c, [x, y], ports, [rx, ry]);

  t.true(await c.h.pingEventually(px[0]!.netns!, '10.70.5.3'), 'X reaches its own 10.70.5.3');
  const n = await c.h.exec(px[0]!.netns!, ['ip', '-j', 'neigh', 'show', '10.70.5.3']);
  t.is((JSON.parse(n.stdout) as { lladdr: string }[])[0]?.lladdr, px[1]!.mac, "and it is X's workload, not Y's");
  t.false(await c.h.ping(px[0]!.netns!, '10.70.5.4'), "X does not reach Y's 10.70.5.4");
  t.true(await c.h.pingEventually(py[1]!.netns!, '10.70.5.3'), 'Y reaches its own 10.70.5.3');
  t.true(await c.h.pingEventually(px[1]!.netns!, OUTSIDE_IP), 'X reaches the outside');
  t.true(await c.h.pingEventually(py[1]!.netns!, OUTSIDE_IP), 'Y reaches the outside');

  await teardownAll(c, ports, [x, y], [rx, ry]);
  t.deepEqual(await c.h.allLeaks(), {});
});

/** Named nft counters at eth0 ingress of a namespace; returns a reader of one counter's packets. */
async function ingressSpy(c: Cluster, netns: string, counters: Record<string, string>): Promise<(name: string) => Promise<number>> {
  const script =
    [
      'table netdev bees_test_spy {',
      ...Object.keys(counters).map((n) => `  counter ${n} {}`),
      '  chain in {',
      '    type filter hook ingress device "eth0" priority 0;',
      ...Object.entries(counters).map(([n, m]) => `    ${m} counter name ${n}`),
      '  }',
      '}',
    ].join('\n') + '\n';
  const r = await c.h.exec(netns, ['nft', '-f', '-'], script);
  if (r.code !== 0) throw new Error(`spy in ${netns}: ${r.stderr}`);
  return async (name) => {
    const out = await c.h.exec(netns, ['nft', 'list', 'counter', 'netdev', 'bees_test_spy', name]);
    const m = /packets (\d+)/.exec(out.stdout);
    if (!m) throw new Error(`spy: no counter ${name}: ${out.stderr}`);
    return Number(m[1]);
  };
}

test.serial('port security drops spoofed source MAC and IP, and removing a port removes exactly its rules', async (t) => {
  const c = await cluster(t, 2);
  const a = { ...net(9, 80), gw6: undefined, v6: undefined };
  const ports = [port(c, 'h1', a, 2, true), port(c, 'h2', a, 3, true), port(c, 'h1', a, 4, true)];
  for (const host of c.h.hosts) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, a.vni, ports));
  await plugAll(c, ports);
  const [w1, w2, w3] = ports as [TestPort, TestPort, TestPort];
  t.true(await c.h.pingEventually(w1.netns!, ipOf(w2)), 'legitimate traffic passes');

  // Whether a spoofed frame reaches anyone is counted where it would arrive (an nft ingress counter in w2 and w3):
  // a failed ping proves nothing, since the replies to an address or MAC the port does not own never come back
  // with or without the rule. w1 addresses its peers by pinned neighbour entries, so no ARP stands in the way.
  const SPOOF_IP = '10.80.9.99';
  const SPOOF_MAC = mac();
  const spies = await Promise.all(
    [w2, w3].map((w) =>
      ingressSpy(c, w.netns!, {
        owned: `ip saddr ${ipOf(w1)} icmp type echo-request`,
        spoofed_ip: `ip saddr ${SPOOF_IP}`,
        spoofed_mac: `ether saddr ${SPOOF_MAC}`,
      }),
    ),
  );
  const pin = async () => {
    for (const w of [w2, w3])
      await c.h.exec(w1.netns!, ['ip', 'neigh', 'replace', ipOf(w), 'lladdr', w.mac, 'dev', 'eth0', 'nud', 'permanent']);
  };
  await pin();
  for (const w of [w2, w3]) await c.h.ping(w1.netns!, ipOf(w), { count: 1, timeoutSec: 2 });
  for (const seen of spies) t.true((await seen('owned')) >= 1, 'the spies count legitimate frames from w1');

  // Spoofed source IP: a second address the port does not own.
  await c.h.exec(w1.netns!, ['ip', 'addr', 'add', `${SPOOF_IP}/24`, 'dev', 'eth0']);
  for (const w of [w2, w3]) await c.h.exec(w1.netns!, ['ping', '-c', '2', '-W', '1', '-I', SPOOF_IP, ipOf(w)]);
  t.is(await spies[0]!('spoofed_ip'), 0, 'spoofed source IP dropped (remote port)');
  t.is(await spies[1]!('spoofed_ip'), 0, 'spoofed source IP dropped (local port)');
  await c.h.exec(w1.netns!, ['ip', 'addr', 'del', `${SPOOF_IP}/24`, 'dev', 'eth0']);
  t.true(await c.h.pingEventually(w1.netns!, ipOf(w2)));

  // Spoofed source MAC.
  await c.h.exec(w1.netns!, ['ip', 'link', 'set', 'dev', 'eth0', 'address', SPOOF_MAC]);
  await pin();
  for (const w of [w2, w3]) await c.h.ping(w1.netns!, ipOf(w), { count: 2, timeoutSec: 1 });
  t.is(await spies[0]!('spoofed_mac'), 0, 'spoofed source MAC dropped (remote port)');
  t.is(await spies[1]!('spoofed_mac'), 0, 'spoofed source MAC dropped (local port)');
  t.true(
    (await c.dp.get('h1')!.checkPlug({ vni: a.vni, netns: w1.netns!, ifname: 'eth0', mac: w1.mac, ips: w1.ips, portSecurity: true })).some(
      (p) => p.includes('MAC'),
    ),
    'checkPlug notices the MAC change',
  );

  // Removing w1 removes its chain only: w3 keeps its protection.
  await c.dp.get('h1')!.unplug(w1.hostIfname!);
  const rules = await c.h.exec(c.h.host('h1'), ['nft', 'list', 'table', 'bridge', 'bees']);
  t.false(rules.stdout.includes(w1.hostIfname!));
  t.true(rules.stdout.includes(w3.hostIfname!));
  t.true(rules.stdout.includes(w3.mac));

  for (const p of [w2, w3]) await c.dp.get(p.host.name)!.unplug(p.hostIfname!);
  for (const host of c.h.hosts) {
    await c.dp.get(host.name)!.removeBridge(a.vni);
    await c.dp.get(host.name)!.sweep({});
  }
  t.deepEqual(await c.h.allLeaks(), {});
});

test.serial("port security: a workload cannot claim a neighbour's IPv6 address with a neighbour advertisement", async (t) => {
  const c = await cluster(t, 1);
  const n = { ...net(7, 81), gw6: undefined };
  const ports = [port(c, 'h1', n, 2, true), port(c, 'h1', n, 3, true), port(c, 'h1', n, 4, true)];
  await c.dp.get('h1')!.ensureBridge(desiredBridge(c.h.host('h1'), n.vni, ports));
  await plugAll(c, ports);
  const [attacker, observer, victim] = ports as [TestPort, TestPort, TestPort];
  const v6 = (p: TestPort) => p.ips[1]!.split('/')[0]!;
  const lladdrSeen = async (): Promise<string | undefined> => {
    const r = await c.h.exec(observer.netns!, ['ip', '-6', '-j', 'neigh', 'show', v6(victim), 'dev', 'eth0']);
    return (JSON.parse(r.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr;
  };
  t.true(await c.h.pingEventually(observer.netns!, v6(victim)), 'the observer reaches the victim over IPv6');
  t.is(await lladdrSeen(), victim.mac);
  // Let the victim's own announcements after its plug (at link up and 300 ms later) pass first: one arriving
  // after the attack would put its MAC back and hide a missing rule.
  await new Promise((r) => setTimeout(r, 1000));
  // A kernel announcing an address it took would use that address as the source, which port security drops
  // anyway; an advertisement sent from the attacker's own address naming the victim's address as its target, with
  // the override flag (the datapath's own announcer, pointed at the wrong address), is what the target rule is for.
  const ifindex = (await withNetlink(attacker.netns, (s) => getLink(s, 'eth0')))!.index;
  t.deepEqual(announce(attacker.netns, ifindex, [{ ip: v6(victim), mac: attacker.mac }]), []);
  await new Promise((r) => setTimeout(r, 300));
  t.is(await lladdrSeen(), victim.mac, 'the observer still resolves the victim to the victim');
  t.true(await c.h.pingEventually(observer.netns!, v6(victim)));

  for (const p of ports) await c.dp.get('h1')!.unplug(p.hostIfname!);
  await c.dp.get('h1')!.removeBridge(n.vni);
  await c.dp.get('h1')!.sweep({});
  t.deepEqual(await c.h.allLeaks(), {});
});

test.serial('router routes and legs in both families: next hops, blackhole and reject routes, a new MAC, a dropped address', async (t) => {
  const c = await cluster(t, 1);
  const h1 = c.h.host('h1');
  const a = net(1, 62);
  const b = net(2, 62);
  const ports = [port(c, 'h1', a, 10)];
  const routes: DesiredRouter['routes'] = [
    { dst: '10.62.9.0/24', via: '10.62.2.254', vni: b.vni },
    { dst: 'fd00:62:9::/48', via: 'fd00:62:2::fe', vni: b.vni },
    { dst: '10.62.8.0/24', type: 'blackhole' },
    { dst: 'fd00:62:8::/48', type: 'reject' },
  ];
  const r = router('00000000-0000-4000-8000-0000000000c1', [a, b], ports, { routes });
  await topology(c, [a, b], ports, [r]);
  const ns = routerNsName(h1.routerNsPrefix, r.id);
  const ip = async (...args: string[]): Promise<unknown[]> =>
    JSON.parse((await c.h.exec(h1, ['ip', '-n', ns, '-j', ...args])).stdout || '[]') as unknown[];
  const ours = async (): Promise<string[]> =>
    [...(await ip('-4', 'route', 'show', 'proto', 'boot')), ...(await ip('-6', 'route', 'show', 'proto', 'boot'))]
      .map((x) => {
        const rt = x as { dst: string; type?: string; gateway?: string; dev?: string };
        return `${rt.type && rt.type !== 'unicast' ? `${rt.type} ` : ''}${rt.dst}${rt.gateway ? ` via ${rt.gateway}` : ''}`;
      })
      .sort();
  t.deepEqual(
    await ours(),
    ['blackhole 10.62.8.0/24', 'prohibit fd00:62:8::/48', '10.62.9.0/24 via 10.62.2.254', 'fd00:62:9::/48 via fd00:62:2::fe'].sort(),
  );
  t.true(await c.h.pingEventually(ports[0]!.netns!, b.gw4), 'routed to the other leg');

  // Another next hop, the blackhole gone, leg A's MAC changed and its IPv6 gateway dropped.
  const legA = `l-${a.vni.toString(16)}`;
  const newMac = mac();
  const next: DesiredRouter = {
    ...r,
    legs: [{ ...r.legs[0]!, mac: newMac, addresses: [`${a.gw4}/24`] }, r.legs[1]!],
    routes: [{ ...routes[0]!, via: '10.62.2.253' }, routes[1]!, routes[3]!],
  };
  const changing = spawnCounter.count;
  await c.dp.get('h1')!.ensureRouter(next);
  // Every one of these changes is a netlink request: a new MAC, removals of an address and a route, typed routes.
  t.is(spawnCounter.count - changing, 0, 'changing a router in place starts no process');
  t.deepEqual(await ours(), ['10.62.9.0/24 via 10.62.2.253', 'fd00:62:9::/48 via fd00:62:2::fe', 'prohibit fd00:62:8::/48'].sort());
  const link = (await ip('addr', 'show', 'dev', legA))[0] as { address: string; addr_info: { local: string; scope: string }[] };
  t.is(link.address, newMac);
  t.deepEqual(
    link.addr_info.filter((x) => x.scope !== 'link').map((x) => x.local),
    [a.gw4],
  );
  // Setting the MAC flushed the leg's neighbours: they were put back in the same ensure.
  const neigh = (await ip('neigh', 'show', 'dev', legA, 'nud', 'permanent')).map((x) => (x as { dst: string }).dst).sort();
  t.deepEqual(neigh, ports[0]!.ips.map((x) => x.split('/')[0]!).sort());

  const resync = spawnCounter.count;
  await c.dp.get('h1')!.ensureRouter(next);
  t.is(spawnCounter.count - resync, 0, 'a converged router starts no process');

  // Removal reads and deletes the links through netlink: the namespace's `ip netns del` is its one process.
  const removing = spawnCounter.count;
  await c.dp.get('h1')!.removeRouter(next.id);
  t.is(spawnCounter.count - removing, 1, 'removeRouter starts only `ip netns del`');
  t.false((await c.h.exec(h1, ['ip', 'netns', 'list'])).stdout.includes(ns));

  await teardownAll(c, ports, [a, b], [next]); // removes the router again: nothing left to do, no error
  t.deepEqual(await c.h.allLeaks(), {});
});
