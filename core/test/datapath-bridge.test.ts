// A virtual bridge across three hosts: L2 connectivity (IPv4 and IPv6) through VXLAN with programmed FDB and
// ARP/ND suppression, measured attach cost, convergence of FDB/neighbour sets, and nothing left afterwards.
import test from 'ava';
import { spawnCounter } from '../datapath/index.js';
import { cluster, desiredBridge, ipOf, mac, randomVni, spec, type TestPort } from './datapath-helpers.js';

test.serial('workloads on three hosts on one virtual bridge reach each other over IPv4 and IPv6, and leave nothing', async (t) => {
  const c = await cluster(t);
  const vni = randomVni();
  const ports: TestPort[] = c.h.hosts.map((host, i) => ({
    host,
    vni,
    mac: mac(),
    ips: [`10.50.0.${i + 2}/24`, `fd00:50::${i + 2}/64`],
    portSecurity: true,
  }));
  for (const host of c.h.hosts) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, vni, ports));

  // Attach cost: spawns and latency per plug.
  const costs: { spawns: number; ms: number }[] = [];
  for (const p of ports) {
    p.netns = await c.h.addWorkload(p.host, `w${p.host.name}`);
    const before = spawnCounter.count;
    const start = process.hrtime.bigint();
    const r = await c.dp.get(p.host.name)!.plug(spec(p));
    costs.push({ spawns: spawnCounter.count - before, ms: Number(process.hrtime.bigint() - start) / 1e6 });
    p.hostIfname = r.hostIfname;
    t.regex(r.hostIfname, /^bv[0-9a-f]{10}$/);
  }
  t.log('plug cost', JSON.stringify(costs));
  // netlink and libnftables in-process: attaching a workload starts no process at all.
  for (const x of costs) t.is(x.spawns, 0, `a plug took ${x.spawns} spawns`);

  const beforeCheck = spawnCounter.count;
  for (const p of ports) t.deepEqual(await c.dp.get(p.host.name)!.checkPlug(spec(p)), []);
  t.is(spawnCounter.count - beforeCheck, 0, 'checkPlug spawned');
  for (const a of ports) {
    for (const b of ports) {
      if (a === b) continue;
      t.true(await c.h.pingEventually(a.netns!, ipOf(b, 4)), `${a.host.name} -> ${b.host.name} IPv4`);
      t.true(await c.h.pingEventually(a.netns!, ipOf(b, 6)), `${a.host.name} -> ${b.host.name} IPv6`);
    }
  }
  // ARP was answered by the local VXLAN device from the programmed entries: the neighbour resolved is right.
  const neigh = await c.h.exec(ports[0]!.netns!, ['ip', '-j', 'neigh', 'show', ipOf(ports[1]!)]);
  t.is((JSON.parse(neigh.stdout) as { lladdr: string }[])[0]?.lladdr, ports[1]!.mac);

  // Re-plugging is idempotent, and ensureBridge converges: dropping h3's port removes exactly its entries.
  await c.dp.get('h1')!.plug(spec(ports[0]!));
  t.deepEqual(await c.dp.get('h1')!.checkPlug(spec(ports[0]!)), []);
  const h1 = c.h.host('h1');
  await c.dp.get('h1')!.ensureBridge(desiredBridge(h1, vni, ports.slice(0, 2)));
  await c.dp.get('h1')!.ensureBridge(desiredBridge(h1, vni, ports.slice(0, 2)));
  const fdb = await c.h.exec(h1, ['bridge', 'fdb', 'show', 'dev', `bx-${vni.toString(16)}`]);
  t.false(fdb.stdout.includes(ports[2]!.mac), 'FDB entry of the removed remote port is gone');
  t.false(fdb.stdout.includes(c.h.host('h3').underlayIp), 'flooding to h3 stopped');
  t.false(await c.h.ping(ports[0]!.netns!, ipOf(ports[2]!)), 'h1 no longer reaches the port it was told is gone');
  t.true(await c.h.ping(ports[0]!.netns!, ipOf(ports[1]!)));

  // Unplug works even when the workload namespace is already gone.
  await c.h.removeWorkload(ports[0]!.netns!);
  const beforeUnplug = spawnCounter.count;
  for (const p of ports) await c.dp.get(p.host.name)!.unplug(p.hostIfname!);
  await c.dp.get('h1')!.unplug(ports[0]!.hostIfname!); // twice: nothing to do, no error
  t.is(spawnCounter.count - beforeUnplug, 0, 'unplug spawned');
  const inv = await c.dp.get('h2')!.inventory();
  t.deepEqual(inv, { bridges: [vni], plugs: [], routers: [] });
  for (const host of c.h.hosts) {
    await c.dp.get(host.name)!.removeBridge(vni);
    await c.dp.get(host.name)!.sweep({});
  }
  t.deepEqual(await c.h.allLeaks(), {});
});

test.serial('plug rejects bad input with a clear error and leaves nothing behind on failure', async (t) => {
  const c = await cluster(t, 1);
  const host = c.h.host('h1');
  const dp = c.dp.get('h1')!;
  const vni = randomVni();
  await dp.ensureBridge({ vni, remotes: [], floodHosts: [] });
  const netns = await c.h.addWorkload(host, 'bad');
  await t.throwsAsync(dp.plug({ vni, netns, ifname: 'eth0', mac: 'zz', ips: [] }), { message: /invalid MAC address "zz"/ });
  await t.throwsAsync(dp.plug({ vni, netns, ifname: 'eth0', mac: mac(), ips: ['10.1.0.300/24'] }), { message: /invalid address/ });
  await t.throwsAsync(dp.plug({ vni, netns: '/run/netns/does-not-exist', ifname: 'eth0', mac: mac(), ips: [] }), {
    message: /could not create bv[0-9a-f]+ .*does-not-exist/,
  });
  await t.throwsAsync(dp.plug({ vni: vni + 1, netns, ifname: 'eth0', mac: mac(), ips: [] }), { message: /bb-/ });
  await t.throwsAsync(dp.ensureBridge({ vni: 0, remotes: [], floodHosts: [] }), { message: /invalid VNI 0/ });
  t.deepEqual((await dp.inventory()).plugs, []);
  await dp.removeBridge(vni);
  await dp.sweep({});
  t.deepEqual(await c.h.allLeaks(), {});
});

test.serial('a reused address is announced on plug: neighbours switch to the new MAC without a lost packet', async (t) => {
  const c = await cluster(t, 2);
  const vni = randomVni();
  const ips = ['10.52.0.7/24', 'fd00:52::7/64'];
  // One observer on the workload's host, one across the tunnel.
  const near: TestPort = { host: c.h.host('h1'), vni, mac: mac(), ips: ['10.52.0.2/24', 'fd00:52::2/64'], portSecurity: true };
  const far: TestPort = { host: c.h.host('h2'), vni, mac: mac(), ips: ['10.52.0.3/24', 'fd00:52::3/64'], portSecurity: true };
  const old: TestPort = { host: c.h.host('h1'), vni, mac: mac(), ips, portSecurity: true };
  const successor: TestPort = { ...old, mac: mac(), netns: undefined, hostIfname: undefined };
  const dp = (p: TestPort) => c.dp.get(p.host.name)!;
  const plug = async (p: TestPort) => {
    p.netns = await c.h.addWorkload(p.host, `w${randomVni().toString(16)}`);
    p.hostIfname = (await dp(p).plug(spec(p))).hostIfname;
  };
  for (const host of c.h.hosts) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, vni, [near, far, old]));
  for (const p of [near, far, old]) await plug(p);
  const seen = async (o: TestPort, family: 4 | 6): Promise<string | undefined> => {
    const r = await c.h.exec(o.netns!, ['ip', `-${family}`, '-j', 'neigh', 'show', ipOf(old, family), 'dev', 'eth0']);
    return (JSON.parse(r.stdout || '[]') as { lladdr?: string }[])[0]?.lladdr;
  };
  for (const o of [near, far]) {
    for (const f of [4, 6] as const) {
      t.true(await c.h.pingEventually(o.netns!, ipOf(old, f)));
      t.is(await seen(o, f), old.mac);
    }
  }

  // The workload is replaced: same addresses, new MAC, and the observers send nothing meanwhile.
  await dp(old).unplug(old.hostIfname!);
  for (const host of c.h.hosts) await c.dp.get(host.name)!.ensureBridge(desiredBridge(host, vni, [near, far, successor]));
  await plug(successor);
  // The workload announces itself once its interface is up (the kernel's link watcher may take up to a second):
  // that reaches the local observer, and the remote one over IPv6. IPv4 across hosts comes from the remote
  // host's bridge, announcing the address that moved (the VXLAN device's ARP proxy consumes every ARP frame).
  const expected: [TestPort, 4 | 6][] = [
    [near, 4],
    [near, 6],
    [far, 4],
    [far, 6],
  ];
  const deadline = Date.now() + 3000;
  const updated = async () => (await Promise.all(expected.map(([o, f]) => seen(o, f)))).every((m) => m === successor.mac);
  while (Date.now() < deadline && !(await updated())) await new Promise((r) => setTimeout(r, 50));
  for (const [o, f] of expected) t.is(await seen(o, f), successor.mac, `IPv${f} entry of the ${o === near ? 'local' : 'remote'} observer`);
  for (const [o, f] of expected) {
    t.true(await c.h.ping(o.netns!, ipOf(successor, f), { count: 1, timeoutSec: 1 }), `the first IPv${f} packet arrives`);
  }

  for (const p of [near, far, successor]) await dp(p).unplug(p.hostIfname!);
  for (const host of c.h.hosts) {
    await c.dp.get(host.name)!.removeBridge(vni);
    await c.dp.get(host.name)!.sweep({});
  }
  t.deepEqual(await c.h.allLeaks(), {});
});
