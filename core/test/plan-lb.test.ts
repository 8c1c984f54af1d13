// Planning of the load balancer (core/agent/plan-lb.ts): which VIPs a host serves, for which of its bridges, with
// which members, neighbours, hairpin ports, health targets and published ports. The topology is written through
// the real topology service on the real file store and read back through the agent's real cache.
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TopologyCache } from '../agent/cache.js';
import { planHost } from '../agent/plan.js';
import { planLb } from '../agent/plan-lb.js';
import { Reconciler } from '../agent/reconciler.js';
import { LB_ROUTE_TABLE_BASE, type LbHostSpec } from '../datapath/nft/lb.js';
import type { Datapath, Inventory, PlugSpec } from '../datapath/types.js';
import { bridgeName } from '../datapath/names.js';
import type { Bridge, Host, Port, Router } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

interface World {
  topo: Topology;
  cache: TopologyCache;
  a: Host;
  b: Host;
  blue: Bridge;
  red: Bridge;
  r: Router;
  r2: Router;
  ports: Record<string, Port>;
}

/**
 * Hosts a and b. Tenant one: bridge blue (10.1.0.0/24) on router r, ports a1 (10.1.0.10, on a) and b1 (10.1.0.20,
 * on b). Tenant two: bridge red with the same subnet on router r2, port b2 (10.1.0.10, on b only).
 */
async function world(t: ExecutionContext): Promise<World> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-plan-lb-'));
  const store = await openStore(`file:${dir}`);
  const topo = new Topology(store);
  const a = await topo.create('Host', { name: 'a', addresses: ['192.0.2.1'] });
  const b = await topo.create('Host', { name: 'b', addresses: ['192.0.2.2'] });
  const blue = await topo.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.1.0.0/24' }] });
  const red = await topo.create('Bridge', { name: 'red', tenant: 'two', subnets: [{ cidr: '10.1.0.0/24' }] });
  const r = await topo.create('Router', { name: 'r' });
  const r2 = await topo.create('Router', { name: 'r', tenant: 'two' });
  await topo.attachRouter(r.id, blue.id);
  await topo.attachRouter(r2.id, red.id);
  const ports: Record<string, Port> = {};
  const port = async (name: string, bridge: Bridge, h: Host, ip: string) => {
    ports[name] = await topo.create('Port', { bridgeId: bridge.id, hostId: h.id, interfaceName: `bv-${name}`, ips: [ip] });
  };
  await port('a1', blue, a, '10.1.0.10');
  await port('b1', blue, b, '10.1.0.20');
  await port('b2', red, b, '10.1.0.10');
  const cache = new TopologyCache(store);
  await cache.start();
  t.teardown(async () => {
    cache.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { topo, cache, a, b, blue, red, r, r2, ports };
}

const planOn = (w: World, h: Host) => planLb(w.cache, h.id, planHost(w.cache, { hostId: h.id, underlayMtu: 1500 }));

async function settle(w: World, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (w.cache.list('Vip').length + w.cache.list('PoolMember').length + w.cache.list('LoadBalancer').length !== n) {
    if (Date.now() > deadline) throw new Error('cache did not catch up');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A load balancer on `router` with one pool of `members` and one VIP. */
async function lb(w: World, router: Router, members: string[], vip: Record<string, unknown> = {}, pool: Record<string, unknown> = {}) {
  const l = await w.topo.create('LoadBalancer', { routerId: router.id });
  const p = await w.topo.create('Pool', { loadBalancerId: l.id, ...pool });
  const ms = [];
  for (const m of members) ms.push(await w.topo.create('PoolMember', { poolId: p.id, address: m, port: 8080, weight: 2 }));
  const v = await w.topo.create('Vip', { poolId: p.id, address: '10.96.0.1', port: 80, ...vip });
  return { l, p, ms, v };
}

test("a VIP serves the router's bridges with local ports: routing, neighbours, hairpin, members", async (t) => {
  const w = await world(t);
  const { v, ms } = await lb(w, w.r, ['10.1.0.10', '10.1.0.20'], {}, { memberRemoval: 'cut' });
  await settle(w, 4);
  const a = planOn(w, w.a);
  const blue = bridgeName(w.blue.tunnelKey);
  const gw = w.cache.list('Port').find((p) => p.type === 'router' && p.routerId === w.r.id)!;
  t.deepEqual(a.spec.bridges, [
    {
      ifname: blue,
      gateway: '10.1.0.1',
      gatewayMac: gw.mac.toLowerCase(),
      table: LB_ROUTE_TABLE_BASE + w.blue.tunnelKey,
      subnets: ['10.1.0.0/24'],
      neighbours: [
        { address: '10.1.0.10', mac: w.ports.a1!.mac.toLowerCase() },
        { address: '10.1.0.20', mac: w.ports.b1!.mac.toLowerCase() },
      ],
    },
  ]);
  t.deepEqual(
    a.spec.vips.map((x) => ({ id: x.id, bridges: x.bridges, members: x.members.map((m) => m.address).sort(), removal: x.memberRemoval })),
    [{ id: v.id, bridges: [blue], members: ['10.1.0.10', '10.1.0.20'], removal: 'cut' }],
  );
  t.deepEqual(a.spec.hairpinPorts, ['bv-a1'], 'the member bound here may reach its own VIP');
  t.deepEqual(a.health, [], 'no monitor, no checks');
  t.deepEqual(planOn(w, w.b).spec.hairpinPorts, ['bv-b1']);
  t.is(ms.length, 2);
});

test('tenants with the same addresses stay apart: a VIP is planned only for its own router’s bridges', async (t) => {
  const w = await world(t);
  const one = await lb(w, w.r, ['10.1.0.20']);
  const two = await lb(w, w.r2, ['10.1.0.10']);
  await settle(w, 6);
  const red = bridgeName(w.red.tunnelKey);
  const blue = bridgeName(w.blue.tunnelKey);
  // a has no port on red: tenant two's VIP is not there.
  t.deepEqual(
    planOn(w, w.a).spec.vips.map((x) => [x.id, x.bridges]),
    [[one.v.id, [blue]]],
  );
  const b = planOn(w, w.b);
  t.deepEqual(
    b.spec.vips.map((x) => [x.id, x.bridges, x.members.map((m) => m.address)]).sort(),
    [
      [one.v.id, [blue], ['10.1.0.20']],
      [two.v.id, [red], ['10.1.0.10']],
    ].sort(),
  );
  // Tenant two's member 10.1.0.10 is b2 (on red), not a1 (same address on blue).
  const redSpec = b.spec.bridges.find((x) => x.ifname === red)!;
  t.deepEqual(redSpec.neighbours, [{ address: '10.1.0.10', mac: w.ports.b2!.mac.toLowerCase() }]);
  t.deepEqual(b.spec.hairpinPorts, ['bv-b1', 'bv-b2']);
});

test('health targets are the members bound on this host; internal local policy keeps local members only', async (t) => {
  const w = await world(t);
  const hm = await w.topo.create('HealthMonitor', { type: 'http', delay: 1, timeout: 1, maxRetries: 2, urlPath: '/healthz' });
  const { ms } = await lb(w, w.r, ['10.1.0.10', '10.1.0.20'], { internalTrafficPolicy: 'local' }, { healthMonitorId: hm.id });
  await settle(w, 4);
  const a = planOn(w, w.a);
  t.deepEqual(
    a.health.map((h) => [h.memberId, h.address, h.routerId, h.monitor.urlPath]),
    [[ms[0]!.id, '10.1.0.10', w.r.id, '/healthz']],
  );
  t.deepEqual(
    planOn(w, w.b).health.map((h) => h.memberId),
    [ms[1]!.id],
    'one writer per member: its own host',
  );
  t.deepEqual(
    a.spec.vips[0]!.members.map((m) => m.address),
    ['10.1.0.10'],
  );
  // A monitor turned off checks nothing.
  await w.topo.update('HealthMonitor', hm.id, { adminStateUp: false });
  const deadline = Date.now() + 5000;
  while (w.cache.get('HealthMonitor', hm.id)?.adminStateUp !== false && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(planOn(w, w.a).health, []);
});

test('a published port lists local members, the other hosts by weight, and the peers', async (t) => {
  const w = await world(t);
  const { ms } = await lb(w, w.r, ['10.1.0.10', '10.1.0.20'], { nodePort: 30080 });
  await settle(w, 4);
  const np = planOn(w, w.a).spec.vips[0]!.nodePort;
  t.deepEqual(np, {
    port: 30080,
    local: false,
    localMembers: [ms[0]!.id],
    remotes: [{ address: '192.0.2.2', weight: 2 }],
    peers: ['192.0.2.2'],
  });
  // A host with no client bridge of the router still publishes the port.
  const c = await w.topo.create('Host', { name: 'c', addresses: ['192.0.2.3'] });
  const deadline = Date.now() + 5000;
  while (!w.cache.get('Host', c.id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const onC = planOn(w, c);
  t.deepEqual(onC.spec.bridges, []);
  t.deepEqual(onC.spec.vips[0]!.bridges, []);
  t.deepEqual(onC.spec.vips[0]!.nodePort?.remotes, [
    { address: '192.0.2.1', weight: 2 },
    { address: '192.0.2.2', weight: 2 },
  ]);
});

test('nothing is planned once the load balancer is gone', async (t) => {
  const w = await world(t);
  const { l } = await lb(w, w.r, ['10.1.0.10']);
  await settle(w, 3);
  t.is(planOn(w, w.a).spec.vips.length, 1);
  await w.topo.delete('LoadBalancer', l.id);
  await settle(w, 0);
  t.deepEqual(planOn(w, w.a).spec, { bridges: [], vips: [], hairpinPorts: [] });
});

test('dual stack: each VIP is served by its family’s members, an IPv6 VIP through the IPv6 gateway', async (t) => {
  const w = await world(t);
  const green = await w.topo.create('Bridge', { name: 'green', subnets: [{ cidr: '10.2.0.0/24' }, { cidr: 'fd00:2::/64' }] });
  await w.topo.attachRouter(w.r.id, green.id);
  const g1 = await w.topo.create('Port', {
    bridgeId: green.id,
    hostId: w.a.id,
    interfaceName: 'bv-g1',
    ips: ['10.2.0.10', 'fd00:2::10'],
  });
  const l = await w.topo.create('LoadBalancer', { routerId: w.r.id });
  const p = await w.topo.create('Pool', { loadBalancerId: l.id });
  for (const address of ['10.2.0.10', 'fd00:2::10']) await w.topo.create('PoolMember', { poolId: p.id, address, port: 8080 });
  await w.topo.create('Vip', { poolId: p.id, address: '10.96.0.1', port: 80 });
  await w.topo.create('Vip', { poolId: p.id, address: 'fd00:96::1', port: 80, sessionPersistence: 'source_ip' });
  await settle(w, 5);
  const a = planOn(w, w.a);
  const gb = a.spec.bridges.find((b) => b.ifname === bridgeName(green.tunnelKey))!;
  t.is(gb.gateway, '10.2.0.1');
  t.is(gb.gateway6, 'fd00:2::1');
  t.deepEqual(gb.subnets, ['10.2.0.0/24', 'fd00:2::/64']);
  t.deepEqual(
    gb.neighbours.map((n) => n.address),
    ['10.2.0.10', 'fd00:2::10'],
    'both addresses of the local member are host-namespace neighbours',
  );
  const v6 = a.spec.vips.find((v) => v.address === 'fd00:96::1')!;
  const v4 = a.spec.vips.find((v) => v.address === '10.96.0.1')!;
  t.deepEqual(
    v6.members.map((m) => m.address),
    ['fd00:2::10'],
  );
  t.deepEqual(
    v4.members.map((m) => m.address),
    ['10.2.0.10'],
  );
  t.true(v6.bridges.includes(gb.ifname));
  t.deepEqual(a.spec.hairpinPorts, [g1.interfaceName]);
  const blue = bridgeName(w.blue.tunnelKey);
  t.true(v4.bridges.includes(blue), 'the IPv4 VIP serves blue (IPv4 only) too');
  t.false(v6.bridges.includes(blue), 'the IPv6 VIP does not: blue has no IPv6 gateway');
  t.regex(a.skipped.join(), /IPv6, not served on the bridges of router .* without an IPv6 gateway/);
});

/** A datapath that records only load balancer applies (the rest succeeds and is covered by plan.test.ts). */
class LbRecorder implements Datapath {
  readonly applies: { spec: LbHostSpec; full: boolean }[] = [];
  ensureBridge = async () => undefined;
  removeBridge = async () => undefined;
  plug = async (p: PlugSpec) => ({ hostIfname: p.hostIfname ?? 'bv-x', mac: p.mac ?? '02:00:00:00:00:01' });
  unplug = async () => undefined;
  checkPlug = async () => [];
  ensureRouter = async () => undefined;
  removeRouter = async () => undefined;
  inventory = async (): Promise<Inventory> => ({ bridges: [], plugs: [], routers: [] });
  sweep = async () => undefined;
  async applyLoadBalancers(spec: LbHostSpec, opts: { full: boolean }): Promise<void> {
    this.applies.push({ spec: structuredClone(spec), full: opts.full });
  }
}

test('the reconciler applies the load balancer in full first, then only when the plan changes, in full again on resync', async (t) => {
  const w = await world(t);
  const dp = new LbRecorder();
  const rec = new Reconciler(w.a.id, w.cache, dp, 1500);
  t.teardown(() => rec.stop());
  const seen: number[] = [];
  rec.onLbPlan = (lb) => seen.push(lb.spec.vips.length);
  await rec.runOnce();
  t.deepEqual(
    dp.applies.map((a) => [a.full, a.spec.vips.length]),
    [[true, 0]],
    'the first pass re-reads the kernel: an earlier run may have left something',
  );
  const { ms } = await lb(w, w.r, ['10.1.0.10', '10.1.0.20']);
  await settle(w, 4);
  await rec.runOnce();
  await rec.runOnce();
  t.deepEqual(
    dp.applies.slice(1).map((a) => [a.full, a.spec.vips.length]),
    [[false, 1]],
    'one incremental apply for the new VIP, none for an unchanged plan',
  );
  await w.topo.update('PoolMember', ms[1]!.id, { weight: 5 });
  const deadline = Date.now() + 5000;
  while (w.cache.get('PoolMember', ms[1]!.id)?.weight !== 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  await rec.runOnce();
  t.is(dp.applies.length, 3);
  t.false(dp.applies[2]!.full);
  t.deepEqual(dp.applies[2]!.spec.vips[0]!.members.map((m) => m.weight).sort(), [2, 5]);
  rec.trigger(0, true);
  await new Promise((r) => setTimeout(r, 50));
  await rec.runOnce();
  t.true(dp.applies.at(-1)!.full, 'the periodic resync applies in full');
  t.true(seen.length >= 4, 'every pass tells the health monitors its targets');
});
