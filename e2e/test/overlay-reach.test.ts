// Deliverable 1 and 4 of the overlay: workloads on three hosts on one network reach each other over IPv4 and IPv6
// through real agents and real ZooKeeper; a workload reaches the outside; each host reaches its local workloads.
import test from 'ava';
import { startCluster } from '../../testbed/cluster.js';

test('three hosts, one network: every workload reaches every other over IPv4 and IPv6, the outside, and its host reaches it', async (t) => {
  const c = await startCluster({ hosts: 3 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const create = { subnets: [{ cidr: '10.31.0.0/24' }, { cidr: 'fd00:31::/64' }] };
  const ws = [];
  for (const [i, h] of c.hosts.entries()) ws.push(await c.attach(h, `w${i + 1}`, { network: 'net1', create }));
  for (const w of ws) {
    t.truthy(w.ip4, `${w.name} has an IPv4 address`);
    t.truthy(w.ip6, `${w.name} has an IPv6 address`);
  }
  for (const a of ws) {
    for (const b of ws) {
      if (a === b) continue;
      t.true(await c.pingEventually(a.netns, b.ip4!), `${a.name} -> ${b.name} ${b.ip4}`);
      t.true(await c.pingEventually(a.netns, b.ip6!), `${a.name} -> ${b.name} ${b.ip6}`);
    }
  }
  // A workload on another network's subnet that nothing routes to is not reachable: the pings above can fail.
  t.false(await c.ping(ws[0]!.netns, '10.32.0.9', { timeoutSec: 1 }));
  for (const w of ws) {
    t.true(await c.pingEventually(w.netns, c.harness.outsideIp), `${w.name} reaches the outside`);
    t.true(await c.pingEventually(w.on.host, w.ip4!), `${w.on.host.name} reaches its workload ${w.name}`);
  }
});

test('on a jumbo-frame underlay, workloads get its MTU less the VXLAN overhead and full-size frames cross hosts', async (t) => {
  const c = await startCluster({ hosts: 2, underlayMtu: 9000 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const w1 = await c.attach(c.host(0), 'j1', { network: 'jumbo', create: { subnets: [{ cidr: '10.33.0.0/24' }] } });
  const w2 = await c.attach(c.host(1), 'j2', { network: 'jumbo' });
  t.is(w1.result.mtu, 8950, 'the first workload of a host too');
  t.is(w2.result.mtu, 8950);
  t.regex((await c.harness.exec(w1.netns, ['ip', 'link', 'show', 'eth0'])).stdout, /mtu 8950/);
  t.true(await c.pingEventually(w1.netns, w2.ip4!));
  const full = await c.harness.exec(w1.netns, [
    'ping',
    '-n',
    '-q',
    '-c',
    '3',
    '-i',
    '0.2',
    '-W',
    '2',
    '-M',
    'do',
    '-s',
    String(8950 - 28),
    w2.ip4!,
  ]);
  t.is(full.code, 0, full.stdout + full.stderr);
});
