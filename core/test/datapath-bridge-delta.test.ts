// A bridge's remote ports changed in place (core/datapath/bridge.ts updateBridgeRemotes, driven by plan.ts
// bridgeDelta): the kernel ends exactly where a full ensureBridge would have taken it, a workload arriving on
// another host is reachable at once, and the change costs one process instead of a full re-read.
import test from 'ava';
import { bridgeDelta } from '../agent/plan.js';
import { spawnCounter } from '../datapath/index.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, type TestPort } from './datapath-helpers.js';
import type { Harness, HarnessHost } from '../../testbed/harness.js';

/** The FDB and neighbour entries of the bridge's tunnel port, as text lines, sorted (the kernel's order varies). */
async function tunnelState(h: Harness, host: HarnessHost, vni: number): Promise<string[]> {
  const vx = `bx-${vni.toString(16)}`;
  const fdb = await h.exec(host, ['bridge', 'fdb', 'show', 'dev', vx]);
  const neigh = await h.exec(host, ['ip', 'neigh', 'show', 'dev', vx]);
  return [...fdb.stdout.split('\n'), ...neigh.stdout.split('\n')]
    .map((l) => l.trim())
    .filter(Boolean)
    .sort();
}

test.serial('a remote-ports delta leaves the kernel as a full ensureBridge would, without a process', async (t) => {
  const c = await cluster(t, 3);
  const vni = randomVni();
  const [h1, h2, h3] = c.h.hosts as [HarnessHost, HarnessHost, HarnessHost];
  const port = (host: HarnessHost, n: number): TestPort => ({ host, vni, mac: mac(), ips: [`10.51.0.${n}/24`, `fd00:51::${n}/64`] });
  const a = port(h1, 2);
  const b = port(h2, 3);
  const gone = port(h2, 4);
  const moved = port(h2, 5);
  const dp1 = c.dp.get('h1')!;
  const before = desiredBridge(h1, vni, [a, b, gone, moved]);
  for (const host of c.h.hosts) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, vni, [a, b, gone, moved]));

  // `gone` leaves, `moved` keeps its MAC but moves to h3 under a new address, and `fresh` arrives on h3.
  const fresh = port(h3, 6);
  const movedNow: TestPort = { ...moved, host: h3, ips: ['10.51.0.7/24'] };
  const after = desiredBridge(h1, vni, [a, b, movedNow, fresh]);
  const delta = bridgeDelta(before, after);
  if (!delta) return t.fail('a remote-ports change must give a delta');
  const spawns = spawnCounter.count;
  await dp1.setBridgeRemotes(vni, delta);
  t.is(spawnCounter.count - spawns, 0, 'FDB and neighbours through netlink: no process');
  const viaDelta = await tunnelState(c.h, h1, vni);

  // A full ensureBridge of the same desired state finds nothing to change.
  await dp1.ensureBridge(after);
  t.deepEqual(await tunnelState(c.h, h1, vni), viaDelta);
  t.true(
    viaDelta.some((l) => l.includes(fresh.mac) && l.includes(h3.underlayIp)),
    'the new port is tunnelled to h3',
  );
  t.false(
    viaDelta.some((l) => l.includes(gone.mac) || l.includes('10.51.0.4')),
    'nothing of the port that left',
  );

  // And it carries traffic: the new workload answers from h1 at once.
  for (const host of [h2, h3]) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, vni, [a, b, movedNow, fresh]));
  await plugAll(c, [a, fresh]);
  t.true(await c.h.ping(a.netns!, ipOf(fresh)), 'h1 reaches the port that arrived on h3');
});

test.serial('the resync of a converged bridge starts no process, and still repairs what changed behind its back', async (t) => {
  const c = await cluster(t, 2);
  const vni = randomVni();
  const [h1, h2] = c.h.hosts as [HarnessHost, HarnessHost];
  const a = { host: h1, vni, mac: mac(), ips: ['10.52.0.2/24', 'fd00:52::2/64'] };
  const b = { host: h2, vni, mac: mac(), ips: ['10.52.0.3/24', 'fd00:52::3/64'] };
  const dp1 = c.dp.get('h1')!;
  const want = desiredBridge(h1, vni, [a, b]);
  await dp1.ensureBridge(want);
  const converged = await tunnelState(c.h, h1, vni);

  // What every periodic resync does for a bridge: a full ensureBridge, and the sweep's inventory.
  const spawns = spawnCounter.count;
  await dp1.ensureBridge(want);
  const inv = await dp1.inventory();
  t.is(spawnCounter.count - spawns, 0, 'read and compared in-process');
  t.true(inv.bridges.includes(vni));
  t.deepEqual(await tunnelState(c.h, h1, vni), converged, 'nothing changed');

  // Entries and settings removed behind our back come back, still without a process.
  const vx = `bx-${vni.toString(16)}`;
  await c.h.exec(h1, ['bridge', 'fdb', 'del', b.mac, 'dev', vx, 'dst', h2.underlayIp, 'self']);
  await c.h.exec(h1, ['ip', 'neigh', 'del', '10.52.0.3', 'dev', vx]);
  await c.h.exec(h1, ['bridge', 'fdb', 'add', '02:00:00:00:99:99', 'dev', vx, 'dst', '192.0.2.99', 'self', 'permanent']);
  const repair = spawnCounter.count;
  await dp1.ensureBridge(want);
  t.is(spawnCounter.count - repair, 0, 'entries repaired through netlink');
  t.deepEqual(await tunnelState(c.h, h1, vni), converged, 'entries repaired, the stray one removed');

  // A link setting changed behind our back takes the one `ip -batch` of the links' set-up.
  await c.h.exec(h1, ['ip', 'link', 'set', 'dev', vx, 'type', 'bridge_slave', 'learning', 'on']);
  const relink = spawnCounter.count;
  await dp1.ensureBridge(want);
  t.is(spawnCounter.count - relink, 1);
  const port = JSON.parse((await c.h.exec(h1, ['ip', '-d', '-j', 'link', 'show', 'dev', vx])).stdout) as {
    linkinfo: { info_slave_data: { learning: boolean } };
  }[];
  t.false(port[0]!.linkinfo.info_slave_data.learning, 'learning off again');
});

test('bridgeDelta: only remote ports and flood hosts changed gives the entries, anything else a full ensure', (t) => {
  const base = { vni: 7, mtu: 1450, gateways: [{ ip: '10.0.0.1', mac: '02:00:00:00:00:01' }] };
  const r1 = { mac: '02:00:00:00:00:0A', ips: ['10.0.0.10'], hostIp: '192.0.2.2' };
  const r2 = { mac: '02:00:00:00:00:0b', ips: ['10.0.0.11'], hostIp: '192.0.2.2' };
  const prev = { ...base, remotes: [r1], floodHosts: ['192.0.2.2'] };
  t.is(bridgeDelta(undefined, prev), undefined, 'never applied: full');
  t.is(bridgeDelta(prev, { ...prev, mtu: 1400 }), undefined, 'MTU changed: full');
  t.is(bridgeDelta(prev, { ...prev, gateways: [] }), undefined, 'gateways changed: full');
  t.deepEqual(bridgeDelta(prev, prev), {
    neighbours: { add: [], remove: [] },
    tunnel: { add: [], remove: [] },
    macs: { add: [], remove: [] },
    flood: { add: [], remove: [] },
  });
  const r2moved = { ...r2, hostIp: '192.0.2.3' };
  t.deepEqual(
    bridgeDelta({ ...prev, remotes: [r1, r2], floodHosts: ['192.0.2.2'] }, { ...prev, remotes: [r2moved], floodHosts: ['192.0.2.3'] }),
    {
      neighbours: { add: [], remove: ['10.0.0.10'] },
      tunnel: {
        add: [{ mac: '02:00:00:00:00:0b', hostIp: '192.0.2.3' }],
        remove: [
          { mac: '02:00:00:00:00:0a', hostIp: '192.0.2.2' },
          { mac: '02:00:00:00:00:0b', hostIp: '192.0.2.2' },
        ],
      },
      macs: { add: [], remove: ['02:00:00:00:00:0a'] },
      flood: { add: ['192.0.2.3'], remove: ['192.0.2.2'] },
    },
  );
});
