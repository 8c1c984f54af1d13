// Nothing outlives a workload: after detach, and after gc through the workload API, no link, address, route,
// neighbour/FDB entry, namespace or nft rule made for it remains on any host (remote hosts' FDB and neighbour
// entries included). And port security: frames from an address or MAC a port does not own reach no one.
import test from 'ava';
import { clusterSnapshot, settledDiff, snapshotDiff, stableSnapshot } from '../lib/snapshot.js';
import { startCluster, type Cluster } from '../../testbed/cluster.js';

// One 3-host cluster for both tests, one after the other: the leak test compares whole-host snapshots, so nothing
// else may change the hosts while it runs; the port-security test uses its own network and workloads on h1 and h2.
// A cluster's start is a large part of either test's time.
let cluster: Cluster | undefined;
test.before(async () => {
  cluster = await startCluster({ hosts: 3 });
});
test.after.always(() => cluster?.close());

test.serial('detach and gc leave nothing on any host', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2, h3] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0], (typeof c.hosts)[0]];
  const create = { subnets: [{ cidr: '10.70.0.0/24' }, { cidr: 'fd00:70::/64' }] };
  const w2 = await c.attach(h2, 'w2', { network: 'n', create });
  const w3 = await c.attach(h3, 'w3', { network: 'n' });
  t.true(await c.pingEventually(w2.netns, w3.ip4!));
  const before = await stableSnapshot(c.harness);

  const settled = (what: string) => settledDiff(c.harness, before, what, 60_000, 300);

  // Detach.
  const w1 = await c.attach(h1, 'w1', { network: 'n' });
  t.true(await c.pingEventually(w1.netns, w3.ip4!));
  t.true(await c.pingEventually(w2.netns, w1.ip6!));
  const during = snapshotDiff(before, await clusterSnapshot(c.harness));
  t.truthy(during.h1 && during.h2 && during.h3, 'the attach is visible on every host (the check can see leaks)');
  t.true(
    during.h2!.added.some((l) => l.includes(w1.result.interface.mac.toLowerCase())),
    'remote FDB entry for w1 on h2',
  );
  await c.detach(w1);
  t.deepEqual(await settled('detach leaves nothing'), {});

  // gc: h1's only cli attachment is not in the valid list.
  const w4 = await c.attach(h1, 'w4', { network: 'n' });
  t.true(await c.pingEventually(w4.netns, w2.ip4!));
  const gc = await h1.workloads.gc({ orchestrator: 'cli', valid: [] });
  t.deepEqual(
    gc.removed.map((r) => r.workloadId),
    [w4.workloadId],
  );
  await c.harness.removeWorkload(w4.netns);
  t.deepEqual(await settled('gc leaves nothing'), {});
  t.deepEqual(
    (await h2.api.list('Port'))
      .filter((p) => p.type === 'bridge' && !p.peerId)
      .map((p) => p.id)
      .sort(),
    [w2.result.portId, w3.result.portId].sort(),
  );
});

/**
 * Counts, at the victim's eth0 ingress, the frames that arrive from a given source. A ping that gets no answer
 * proves nothing here: the ARP proxy never answers for an address no port owns and the replies to an owned address
 * go to the owned MAC, so the spoofer misses its replies with or without the anti-spoofing rule. What matters is
 * whether the spoofed frame reaches anyone.
 */
async function ingressSpy(c: Cluster, netns: string, counters: Record<string, string>) {
  const lines = [
    'table netdev bees_test_spy {',
    ...Object.keys(counters).map((name) => `  counter ${name} {}`),
    '  chain in {',
    '    type filter hook ingress device "eth0" priority 0;',
    ...Object.entries(counters).map(([name, match]) => `    ${match} counter name ${name}`),
    '  }',
    '}',
  ];
  const r = await c.harness.exec(netns, ['nft', '-f', '-'], lines.join('\n') + '\n');
  if (r.code !== 0) throw new Error(`spy: ${r.stderr}`);
  return async (name: string): Promise<number> => {
    const out = await c.harness.exec(netns, ['nft', 'list', 'counter', 'netdev', 'bees_test_spy', name]);
    const m = /packets (\d+)/.exec(out.stdout);
    if (!m) throw new Error(`spy: no counter ${name}: ${out.stderr}`);
    return Number(m[1]);
  };
}

test.serial('port security: frames with a source IP or MAC the port does not own never reach another workload', async (t) => {
  const c = cluster!;
  c.logAgentsOnFailure(t);
  const [h1, h2] = c.hosts as [(typeof c.hosts)[0], (typeof c.hosts)[0]];
  const w1 = await c.attach(h1, 'ps1', { network: 'ps', create: { subnets: [{ cidr: '10.71.0.0/24' }] } });
  const w2 = await c.attach(h2, 'ps2', { network: 'ps' });
  t.true(await c.pingEventually(w1.netns, w2.ip4!));
  const sh = (cmd: string) => c.harness.exec(w1.netns, ['sh', '-c', cmd]);
  const STOLEN_IP = '10.71.0.200';
  const STOLEN_MAC = '02:00:00:aa:bb:cc';
  const seen = await ingressSpy(c, w2.netns, {
    owned: `ip saddr ${w1.ip4} icmp type echo-request`,
    spoofed_ip: `ip saddr ${STOLEN_IP}`,
    spoofed_mac: `ether saddr ${STOLEN_MAC}`,
  });
  // w1 addresses w2 directly (a permanent neighbour entry), so no ARP exchange stands between its frames and w2.
  const pinNeighbour = () => sh(`ip neigh replace ${w2.ip4} lladdr ${w2.result.interface.mac} dev eth0 nud permanent`);
  await pinNeighbour();

  // The spy sees w1's legitimate echo requests arrive at w2: it can see what the rule must stop.
  t.true(await c.ping(w1.netns, w2.ip4!, { count: 2, timeoutSec: 2 }));
  t.true((await seen('owned')) >= 2, 'the spy counts legitimate frames from w1');

  // Another address of the subnet, not the one the port owns.
  await sh(`ip addr del ${w1.ip4}/24 dev eth0 && ip addr add ${STOLEN_IP}/24 dev eth0`);
  await pinNeighbour();
  await c.ping(w1.netns, w2.ip4!, { count: 3, timeoutSec: 1 });
  t.is(await seen('spoofed_ip'), 0, 'no frame with the spoofed source address reaches w2');
  await sh(`ip addr del ${STOLEN_IP}/24 dev eth0 && ip addr add ${w1.ip4}/24 dev eth0`);
  await pinNeighbour();
  t.true(await c.pingEventually(w1.netns, w2.ip4!), 'the owned address works again');

  // Another MAC, with the owned address.
  await sh(`ip link set dev eth0 address ${STOLEN_MAC}`);
  await pinNeighbour();
  await c.ping(w1.netns, w2.ip4!, { count: 3, timeoutSec: 1 });
  t.is(await seen('spoofed_mac'), 0, 'no frame with the spoofed source MAC reaches w2');
  await sh(`ip link set dev eth0 address ${w1.result.interface.mac}`);
  t.true(await c.pingEventually(w1.netns, w2.ip4!), 'the owned MAC works again');
});
