// Every bridge has its own conntrack zone, policy or not (core/agent/plan.ts policyDelta): br_netfilter conntracks
// every bridged frame in the host namespace, so two tenants with identical subnets on one host would otherwise
// share one connection for identical tuples (a reply of one tenant's flow updating the other's; a VIP's DNAT
// applied to the other tenant's flow). One host, two bridges, identical addresses, no filter anywhere: the agent's
// policy delta applied through the datapath, then the same UDP flow in both tenants.
import test from 'ava';
import { policyDelta, zoneOf, type HostPolicy } from '../agent/plan.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, type TestPort } from './datapath-helpers.js';

// Send one datagram from port argv[1] to argv[2]:argv[3]; or (argv[2] = "-") wait argv[3] s for one on port
// argv[1] and answer it (exit 0), exit 1 on timeout.
const UDP = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', int(sys.argv[1])))
if sys.argv[2] != '-':
    s.sendto(b'x', (sys.argv[2], int(sys.argv[3]))); sys.exit(0)
s.settimeout(float(sys.argv[3]))
try:
    data, peer = s.recvfrom(100)
except OSError:
    sys.exit(1)
if len(sys.argv) > 4:
    s.sendto(b'y', peer)
`;

test.serial('bridges without policy: two tenants with identical subnets keep their flows apart in conntrack', async (t) => {
  t.timeout(120_000);
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const x = randomVni();
  const y = x + 1;
  const mk = (vni: number, last: number): TestPort => ({ host, vni, mac: mac(), ips: [`10.79.0.${last}/24`], portSecurity: true });
  const [A1, B1, A2, B2] = [mk(x, 2), mk(x, 3), mk(y, 2), mk(y, 3)];
  const all = [A1, B1, A2, B2];
  await dp.ensureBridge(desiredBridge(host, x, all));
  await dp.ensureBridge(desiredBridge(host, y, all));

  // Conntrack runs in a namespace once some rule there needs it: on a real host Docker's or kube-proxy's FORWARD
  // rules, our BEES-FORWARD, a VIP's NAT. Here a table standing for any of them (this namespace is the harness's).
  await c.h
    .exec(host.netns, [
      'nft',
      'add table inet other; add chain inet other f { type filter hook forward priority 0; }; add rule inet other f ct state established counter',
    ])
    .then((r) => t.is(r.code, 0, r.stderr));
  // What the agent applies on a host with these two bridges and no filter bound anywhere.
  const policy: HostPolicy = {
    chains: new Map(),
    bindings: new Map(),
    sets: new Map(),
    zones: new Map([
      [x, zoneOf(x)],
      [y, zoneOf(y)],
    ]),
    errors: [],
  };
  await dp.applyPolicy(policyDelta(undefined, policy));
  await plugAll(c, all);

  const udp = (p: TestPort, args: (string | number)[]) =>
    c.h.exec(p.netns!, ['python3', '-c', UDP, ...args.map(String)]).then((r) => r.code === 0);
  const settle = () => new Promise((res) => setTimeout(res, 300));
  // Tenant X: A1:5000 → B1:5353, answered. Tenant Y: the identical tuple A2:5000 → B2:5353, not answered.
  const b1 = udp(B1, [5353, '-', 5, 'reply']);
  await settle();
  t.true(await udp(A1, [5000, ipOf(B1), 5353]));
  t.true(await b1, 'B1 got the datagram');
  const b2 = udp(B2, [5353, '-', 5]);
  await settle();
  t.true(await udp(A2, [5000, ipOf(B2), 5353]));
  t.true(await b2, 'B2 got the datagram');

  const r = await c.h.exec(host.netns, ['conntrack', '-L', '-p', 'udp', '--orig-port-dst', '5353', '--orig-port-src', '5000']);
  const entries = r.stdout.split('\n').filter((l) => l.includes(`src=${ipOf(A1)}`) && l.includes('dport=5353'));
  const zone = (l: string) => Number(/zone=(\d+)/.exec(l)?.[1] ?? 0);
  // One connection per tenant, each in its bridge's zone ...
  t.deepEqual(entries.map(zone).sort(), [zoneOf(x), zoneOf(y)].sort(), r.stdout + r.stderr);
  // ... and B1's reply answered X's connection only: Y's is still unreplied.
  t.false(entries.find((l) => zone(l) === zoneOf(x))!.includes('UNREPLIED'), entries.join('\n'));
  t.true(entries.find((l) => zone(l) === zoneOf(y))!.includes('UNREPLIED'), entries.join('\n'));
});
