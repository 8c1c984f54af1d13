// Nothing outlives a workload: after detach, and after gc through the workload API, no link, address, route,
// neighbour/FDB entry, namespace or nft rule made for it remains on any host (remote hosts' FDB and neighbour
// entries included). And port security: a workload that changes its IP or MAC is cut off.
import test from 'ava';
import { clusterSnapshot, snapshotDiff } from '../lib/snapshot.js';
import { eventually, startCluster } from '../../testbed/cluster.js';

test('detach and gc leave nothing on any host', async (t) => {
  const c = await startCluster({ hosts: 3 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const [h1, h2, h3] = c.hosts as [typeof c.hosts[0], typeof c.hosts[0], typeof c.hosts[0]];
  const create = { subnets: [{ cidr: '10.70.0.0/24' }, { cidr: 'fd00:70::/64' }] };
  const w2 = await c.attach(h2, 'w2', { network: 'n', create });
  const w3 = await c.attach(h3, 'w3', { network: 'n' });
  t.true(await c.pingEventually(w2.netns, w3.ip4!));
  await new Promise((r) => setTimeout(r, 1500));
  const before = await clusterSnapshot(c.harness);

  const settled = async (what: string) => eventually(async () => {
    const d = snapshotDiff(before, await clusterSnapshot(c.harness));
    return Object.keys(d).length === 0 ? d : undefined;
  }, 15_000, what, 300).catch(async () => snapshotDiff(before, await clusterSnapshot(c.harness)));

  // Detach.
  const w1 = await c.attach(h1, 'w1', { network: 'n' });
  t.true(await c.pingEventually(w1.netns, w3.ip4!));
  t.true(await c.pingEventually(w2.netns, w1.ip6!));
  const during = snapshotDiff(before, await clusterSnapshot(c.harness));
  t.truthy(during.h1 && during.h2 && during.h3, 'the attach is visible on every host (the check can see leaks)');
  t.true(during.h2!.added.some((l) => l.includes(w1.result.interface.mac.toLowerCase())), 'remote FDB entry for w1 on h2');
  await c.detach(w1);
  t.deepEqual(await settled('detach leaves nothing'), {});

  // gc: h1's only cli attachment is not in the valid list.
  const w4 = await c.attach(h1, 'w4', { network: 'n' });
  t.true(await c.pingEventually(w4.netns, w2.ip4!));
  const gc = await h1.workloads.gc({ orchestrator: 'cli', valid: [] });
  t.deepEqual(gc.removed.map((r) => r.workloadId), [w4.workloadId]);
  await c.harness.removeWorkload(w4.netns);
  t.deepEqual(await settled('gc leaves nothing'), {});
  t.deepEqual((await h2.api.list('Port')).filter((p) => p.type === 'bridge' && !p.peerId).map((p) => p.id).sort(), [w2.result.portId, w3.result.portId].sort());
});

test('port security: a workload that changes its IP or its MAC is cut off', async (t) => {
  const c = await startCluster({ hosts: 2 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [typeof c.hosts[0], typeof c.hosts[0]];
  const w1 = await c.attach(h1, 'w1', { network: 'n', create: { subnets: [{ cidr: '10.71.0.0/24' }] } });
  const w2 = await c.attach(h2, 'w2', { network: 'n' });
  t.true(await c.pingEventually(w1.netns, w2.ip4!));
  const sh = (cmd: string) => c.harness.exec(w1.netns, ['sh', '-c', cmd]);

  // Another address of the subnet, not the one the port owns.
  await sh(`ip addr del ${w1.ip4}/24 dev eth0 && ip addr add 10.71.0.200/24 dev eth0`);
  t.false(await c.ping(w1.netns, w2.ip4!, { count: 3, timeoutSec: 1 }), 'spoofed source address is dropped');
  t.false(await c.ping(w2.netns, '10.71.0.200', { count: 2, timeoutSec: 1 }), 'the stolen address is unreachable');
  await sh(`ip addr del 10.71.0.200/24 dev eth0 && ip addr add ${w1.ip4}/24 dev eth0`);
  t.true(await c.pingEventually(w1.netns, w2.ip4!, 5000), 'the owned address works again');

  // Another MAC.
  await sh('ip link set dev eth0 address 02:00:00:aa:bb:cc');
  await sh(`ip neigh flush dev eth0`);
  t.false(await c.ping(w1.netns, w2.ip4!, { count: 3, timeoutSec: 1 }), 'spoofed source MAC is dropped');
  await sh(`ip link set dev eth0 address ${w1.result.interface.mac}`);
  t.true(await c.pingEventually(w1.netns, w2.ip4!, 5000), 'the owned MAC works again');
});
