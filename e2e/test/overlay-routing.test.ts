// Routing and isolation across hosts: two networks of one tenant joined by its router carry cross-host,
// cross-network traffic with each packet crossing the underlay once; two tenants with the same subnet are each
// fully connected inside and cut off from each other.
import test from 'ava';
import { startCluster, type Cluster, type Workload } from '../../testbed/cluster.js';

// One 3-host cluster for both tests (one after the other): they use networks of different tenants and workloads of
// different names, and a cluster's start is most of either test's time.
let cluster: Cluster | undefined;
test.before(async () => {
  cluster = await startCluster({ hosts: 3 });
});
test.after.always(() => cluster?.close());

test.serial(
  'two networks joined by the tenant router: cross-host, cross-network traffic crosses the underlay once per packet',
  async (t) => {
    const c = cluster!;
    c.logAgentsOnFailure(t);
    const [h1, h2, h3] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0], (typeof c.hosts)[0]];
    // Both networks have gateways, so the tenant's router "default" joins them on first attach.
    const a = await c.attach(h1, 'a', { network: 'red', create: { subnets: [{ cidr: '10.41.0.0/24' }] } });
    const b = await c.attach(h2, 'b', { network: 'blue', create: { subnets: [{ cidr: '10.42.0.0/24' }] } });
    const b3 = await c.attach(h3, 'b3', { network: 'blue' });
    t.true(await c.pingEventually(a.netns, b.ip4!), 'red on h1 -> blue on h2');
    t.true(await c.pingEventually(b.netns, a.ip4!), 'blue on h2 -> red on h1');
    t.true(await c.pingEventually(b3.netns, a.ip4!), 'blue on h3 -> red on h1');

    // Count VXLAN datagrams of the exact size a 1000-byte echo makes (UDP length = 8 + 8 VXLAN + 14 + 20 + 8 + 1000),
    // each direction apart: a router hop done on the far side too, or a flood, would show as extra datagrams.
    const n = 40;
    const udpLen = 8 + 8 + 14 + 20 + 8 + 1000;
    const there = await c.harness.underlayCounter(
      `ip saddr ${h1.host.underlayIp} ip daddr ${h2.host.underlayIp} udp dport 6677 udp length ${udpLen}`,
    );
    const back = await c.harness.underlayCounter(
      `ip saddr ${h2.host.underlayIp} ip daddr ${h1.host.underlayIp} udp dport 6677 udp length ${udpLen}`,
    );
    const elsewhere = await c.harness.underlayCounter(`ip daddr ${h3.host.underlayIp} udp dport 6677 udp length ${udpLen}`);
    const r = await c.harness.exec(a.netns, ['ping', '-n', '-q', '-c', String(n), '-i', '0.01', '-s', '1000', '-W', '2', b.ip4!]);
    t.regex(r.stdout, new RegExp(`${n} packets transmitted, ${n} received`), r.stdout);
    t.is(await there(), n, 'each echo request crossed the underlay once, h1 -> h2');
    t.is(await back(), n, 'each echo reply crossed the underlay once, h2 -> h1');
    t.is(await elsewhere(), 0, 'nothing was sent to h3, though it has a workload on blue');
  },
);

test.serial('two tenants with identical subnets: full reachability inside each, none across', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const subnets = { subnets: [{ cidr: '10.50.0.0/24' }] };
  // Same network name, same subnet, in two tenants. Addresses are fixed so that "across" has a target to miss:
  // tenant B holds .20–.22, which tenant A does not use, and B's .10 collides with A's on purpose.
  const tenants: Record<'A' | 'B', Workload[]> = { A: [], B: [] };
  const suffix = c.harness.tag;
  for (const [i, h] of c.hosts.entries()) {
    tenants.A.push(await c.attach(h, `a${i}`, { tenant: `acme-${suffix}`, network: 'app', create: subnets, ips: [`10.50.0.${10 + i}`] }));
    tenants.B.push(
      await c.attach(h, `b${i}`, { tenant: `bolt-${suffix}`, network: 'app', create: subnets, ips: [`10.50.0.${i === 2 ? 10 : 20 + i}`] }),
    );
  }
  t.not(tenants.A[0]!.result.bridgeId, tenants.B[0]!.result.bridgeId);
  for (const side of ['A', 'B'] as const) {
    for (const x of tenants[side]) {
      for (const y of tenants[side]) {
        if (x !== y) t.true(await c.pingEventually(x.netns, y.ip4!), `tenant ${side}: ${x.name} -> ${y.name} ${y.ip4}`);
      }
    }
  }
  for (const x of tenants.A) {
    for (const y of tenants.B)
      if (y.ip4 !== '10.50.0.10') t.false(await c.ping(x.netns, y.ip4!, { timeoutSec: 1 }), `A ${x.name} must not reach B ${y.name}`);
  }
  for (const x of tenants.B) {
    for (const y of tenants.A)
      if (y.ip4 !== '10.50.0.10' || x.ip4 === '10.50.0.10') {
        if (y.ip4 !== x.ip4 && !tenants.B.some((z) => z.ip4 === y.ip4))
          t.false(await c.ping(x.netns, y.ip4!, { timeoutSec: 1 }), `B ${x.name} must not reach A ${y.name}`);
      }
  }
  // The colliding address answers inside each tenant with that tenant's own workload.
  const macOf = async (from: string, ip: string) => {
    await c.ping(from, ip);
    const r = await c.harness.exec(from, ['ip', '-j', 'neigh', 'show', ip]);
    return (JSON.parse(r.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr;
  };
  t.is(await macOf(tenants.A[1]!.netns, '10.50.0.10'), tenants.A[0]!.result.interface.mac.toLowerCase());
  t.is(await macOf(tenants.B[1]!.netns, '10.50.0.10'), tenants.B[2]!.result.interface.mac.toLowerCase());
  // Each tenant's gateway is its own router: a workload of A reaching B through the routers would show here.
  t.false(await c.ping(tenants.A[0]!.netns, '10.50.0.21', { timeoutSec: 1 }));
});
