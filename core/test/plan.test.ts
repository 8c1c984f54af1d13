// The reconciler's planning (core/agent/plan.ts) and its execution through the Datapath interface. The topology is
// written through the real topology service on the real file store and read back through the agent's real cache;
// only the datapath is a recorder, standing for our own interface (the kernel side is tested in datapath-*.test.ts
// and e2e/).
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TopologyCache } from '../agent/cache.js';
import { keysOf, neighbourDelta, planHost, planPolicy, policyDelta, zoneOf, type HostPlan } from '../agent/plan.js';
import { ADMIN_DOWN } from '../policy/simulate.js';
import { legName } from '../datapath/names.js';
import { Reconciler } from '../agent/reconciler.js';
import type { Datapath, DesiredBridge, DesiredRouter, Inventory, PlugSpec, PolicyChange, RouterNeighbour } from '../datapath/types.js';
import type { Bridge, Host, Port, Router } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

const MTU = 1500;

/** A datapath that records what it is asked to do, in order. */
class Recorder implements Datapath {
  readonly calls: { op: string; arg: unknown }[] = [];
  private record(op: string, arg: unknown): Promise<void> {
    this.calls.push({ op, arg: structuredClone(arg) });
    return Promise.resolve();
  }
  ensureBridge(b: DesiredBridge) {
    return this.record('ensureBridge', b);
  }
  removeBridge(vni: number) {
    return this.record('removeBridge', vni);
  }
  async plug(p: PlugSpec) {
    await this.record('plug', p);
    return { hostIfname: p.hostIfname ?? 'bp-x', mac: p.mac };
  }
  unplug(hostIfname: string) {
    return this.record('unplug', hostIfname);
  }
  async checkPlug(p: PlugSpec) {
    await this.record('checkPlug', p);
    return [];
  }
  ensureRouter(r: DesiredRouter) {
    return this.record('ensureRouter', r);
  }
  setRouterNeighbours(id: string, add: RouterNeighbour[], remove: RouterNeighbour[]) {
    return this.record('setRouterNeighbours', { id, add, remove });
  }
  setRouterFilters(id: string, prev: DesiredRouter['filters'], next: DesiredRouter['filters']) {
    return this.record('setRouterFilters', { id, prev, next });
  }
  removeRouter(id: string) {
    return this.record('removeRouter', id);
  }
  applyPolicy(c: PolicyChange) {
    return this.record('applyPolicy', c);
  }
  async inventory(): Promise<Inventory> {
    return { bridges: [], plugs: [], routers: [] };
  }
  sweep(desired: Partial<Inventory>) {
    return this.record('sweep', desired);
  }
  take(op: string): unknown[] {
    const out = this.calls.filter((c) => c.op === op).map((c) => c.arg);
    this.calls.length = 0;
    return out;
  }
}

interface World {
  topo: Topology;
  cache: TopologyCache;
  hosts: Record<'a' | 'b' | 'c' | 'd', Host>;
  blue: Bridge;
  green: Bridge;
  red: Bridge;
  r: Router;
  ports: Record<string, Port>;
}

/**
 * Hosts a, b, c, d (d has no ports). Bridge blue: ports on a and b; bridge green: a port on c; bridge red: a port on
 * c; router r links blue and green (red stays unrouted).
 */
async function world(t: ExecutionContext): Promise<World> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-plan-'));
  const store = await openStore(`file:${dir}`);
  const topo = new Topology(store);
  const host = (name: string, ip: string) => topo.create('Host', { name, addresses: [ip] });
  const hosts = {
    a: await host('a', '192.0.2.1'),
    b: await host('b', '192.0.2.2'),
    c: await host('c', '192.0.2.3'),
    d: await host('d', '192.0.2.4'),
  };
  const blue = await topo.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.1.0.0/24' }] });
  const green = await topo.create('Bridge', { name: 'green', subnets: [{ cidr: '10.2.0.0/24' }] });
  const red = await topo.create('Bridge', { name: 'red', subnets: [{ cidr: '10.3.0.0/24' }] });
  const r = await topo.create('Router', { name: 'r' });
  await topo.attachRouter(r.id, blue.id);
  await topo.attachRouter(r.id, green.id);
  const ports: Record<string, Port> = {};
  const port = async (name: string, bridge: Bridge, h: Host, ip: string) => {
    ports[name] = await topo.create('Port', { bridgeId: bridge.id, hostId: h.id, interfaceName: `bp-${name}`, ips: [ip] });
  };
  await port('a1', blue, hosts.a, '10.1.0.10');
  await port('b1', blue, hosts.b, '10.1.0.20');
  await port('c1', green, hosts.c, '10.2.0.30');
  await port('c2', red, hosts.c, '10.3.0.30');
  const cache = new TopologyCache(store);
  await cache.start();
  t.teardown(async () => {
    cache.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { topo, cache, hosts, blue, green, red, r, ports };
}

function planFor(w: World, h: Host): HostPlan {
  return planHost(w.cache, { hostId: h.id, underlayMtu: MTU });
}

const vnis = (p: HostPlan): number[] => [...p.bridges.values()].map((b) => b.vni).sort((x, y) => x - y);

/** Resolves once the cache satisfies `ok` (it follows the store's change stream asynchronously). */
async function cacheUntil(cache: TopologyCache, ok: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('cache did not catch up');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('bridges are planned only on hosts with local ports or router legs', async (t) => {
  const w = await world(t);
  // a: blue for its port, green because router r serves its port and has a leg there; never the unrouted red.
  t.deepEqual(vnis(planFor(w, w.hosts.a)), [w.blue.tunnelKey, w.green.tunnelKey]);
  // c: red and green for its ports, blue through the router.
  t.deepEqual(vnis(planFor(w, w.hosts.c)), [w.blue.tunnelKey, w.green.tunnelKey, w.red.tunnelKey]);
  // d has no ports: nothing at all.
  const d = planFor(w, w.hosts.d);
  t.is(d.bridges.size, 0);
  t.is(d.routers.size, 0);
  t.is(d.plugs.size, 0);
  t.deepEqual([...planFor(w, w.hosts.a).plugs], ['bp-a1']);
  // A bridge that is administratively down is not realized.
  await w.topo.update('Bridge', w.red.id, { adminStateUp: false });
  await cacheUntil(w.cache, () => w.cache.get('Bridge', w.red.id)?.adminStateUp === false);
  t.deepEqual(vnis(planFor(w, w.hosts.c)), [w.blue.tunnelKey, w.green.tunnelKey]);
});

test('a bridge holds an FDB entry per remote port, none for local ones, and the router gateway', async (t) => {
  const w = await world(t);
  const blueOnA = planFor(w, w.hosts.a).bridges.get(w.blue.id)!;
  t.deepEqual(blueOnA.remotes, [{ mac: w.ports.b1!.mac, ips: ['10.1.0.20'], hostIp: '192.0.2.2' }]);
  t.deepEqual(
    blueOnA.gateways?.map((g) => g.ip),
    ['10.1.0.1'],
  );
  t.is(blueOnA.mtu, MTU - 50);
  const blueOnB = planFor(w, w.hosts.b).bridges.get(w.blue.id)!;
  t.deepEqual(blueOnB.remotes, [{ mac: w.ports.a1!.mac, ips: ['10.1.0.10'], hostIp: '192.0.2.1' }]);
  // green on a (through the router): c's port is remote.
  const greenOnA = planFor(w, w.hosts.a).bridges.get(w.green.id)!;
  t.deepEqual(
    greenOnA.remotes.map((r) => r.hostIp),
    ['192.0.2.3'],
  );
  // A port not bound to an interface is not reachable anywhere: no entry.
  await w.topo.create('Port', { bridgeId: w.blue.id, hostId: w.hosts.c.id, ips: ['10.1.0.40'] });
  await cacheUntil(w.cache, () => w.cache.list('Port').some((p) => p.ips.includes('10.1.0.40')));
  t.is(planFor(w, w.hosts.a).bridges.get(w.blue.id)!.remotes.length, 1);
});

test('the flooding list names every other host with ports on the bridge, once, in order', async (t) => {
  const w = await world(t);
  await w.topo.create('Port', { bridgeId: w.blue.id, hostId: w.hosts.c.id, interfaceName: 'bp-c3', ips: ['10.1.0.30'] });
  await w.topo.create('Port', { bridgeId: w.blue.id, hostId: w.hosts.b.id, interfaceName: 'bp-b2', ips: ['10.1.0.21'] });
  await cacheUntil(w.cache, () => w.cache.list('Port').some((p) => p.interfaceName === 'bp-b2'));
  t.deepEqual(planFor(w, w.hosts.a).bridges.get(w.blue.id)!.floodHosts, ['192.0.2.2', '192.0.2.3']);
  t.deepEqual(planFor(w, w.hosts.b).bridges.get(w.blue.id)!.floodHosts, ['192.0.2.1', '192.0.2.3']);
  t.is(planFor(w, w.hosts.a).bridges.get(w.blue.id)!.remotes.length, 3);
  // green's only port is on c: c floods nowhere, a floods to c.
  t.deepEqual(planFor(w, w.hosts.c).bridges.get(w.green.id)!.floodHosts, []);
  t.deepEqual(planFor(w, w.hosts.a).bridges.get(w.green.id)!.floodHosts, ['192.0.2.3']);
});

test('a router is planned where it serves local ports, with a leg per bridge and every port as neighbour', async (t) => {
  const w = await world(t);
  const onA = planFor(w, w.hosts.a).routers.get(w.r.id)!;
  t.truthy(onA);
  const legs = onA.legs.map((l) => [l.vni, l.addresses]).sort();
  t.deepEqual(legs, [
    [w.blue.tunnelKey, ['10.1.0.1/24']],
    [w.green.tunnelKey, ['10.2.0.1/24']],
  ]);
  t.deepEqual(onA.neighbours?.map((n) => n.ip).sort(), ['10.1.0.10', '10.1.0.20', '10.2.0.30']);
  // Connected routes are the kernel's own: the link routes to the legs' subnets are not repeated.
  t.deepEqual(onA.routes, []);
  t.deepEqual(onA.hostReachable?.sort(), ['10.1.0.0/24', '10.2.0.0/24']);
  t.true(onA.snat);
  // Not on d (no ports), nor for a host whose only bridge is unrouted.
  t.is(planFor(w, w.hosts.d).routers.size, 0);
  const lone = await w.topo.create('Host', { name: 'e', addresses: ['192.0.2.5'] });
  await w.topo.create('Port', { bridgeId: w.red.id, hostId: lone.id, interfaceName: 'bp-e1', ips: ['10.3.0.50'] });
  await w.topo.create('Route', { routerId: w.r.id, dst: '0.0.0.0/0', nextHop: 'blackhole' });
  await cacheUntil(w.cache, () => w.cache.list('Route').some((r) => r.nextHop === 'blackhole'));
  await cacheUntil(w.cache, () => w.cache.list('Port').some((p) => p.hostId === lone.id));
  const onE = planHost(w.cache, { hostId: lone.id, underlayMtu: MTU });
  t.deepEqual([...onE.bridges.keys()], [w.red.id]);
  t.is(onE.routers.size, 0);
  t.deepEqual(planFor(w, w.hosts.a).routers.get(w.r.id)!.routes, [{ dst: '0.0.0.0/0', type: 'blackhole' }]);
  // A router that is administratively down is not realized, and then neither is the bridge it alone brought.
  await w.topo.update('Router', w.r.id, { adminStateUp: false });
  await cacheUntil(w.cache, () => w.cache.get('Router', w.r.id)?.adminStateUp === false);
  t.is(planFor(w, w.hosts.a).routers.size, 0);
  t.deepEqual(vnis(planFor(w, w.hosts.a)), [w.blue.tunnelKey]);
});

test("tenants are isolated: another tenant's ports, bridges and routers never enter the plan", async (t) => {
  const w = await world(t);
  // Same subnet, same host b: allowed across tenants, and must not mix with blue.
  const other = await w.topo.create('Bridge', { name: 'blue', tenant: 'acme', subnets: [{ cidr: '10.1.0.0/24' }] });
  const ro = await w.topo.create('Router', { name: 'r', tenant: 'acme' });
  await w.topo.attachRouter(ro.id, other.id);
  await w.topo.create('Port', { bridgeId: other.id, hostId: w.hosts.b.id, interfaceName: 'bp-x1', ips: ['10.1.0.20'] });
  await cacheUntil(w.cache, () => w.cache.list('Port').some((p) => p.interfaceName === 'bp-x1'));
  const a = planFor(w, w.hosts.a);
  t.false(a.bridges.has(other.id));
  t.false(a.routers.has(ro.id));
  t.deepEqual(
    a.bridges.get(w.blue.id)!.remotes.map((r) => r.mac),
    [w.ports.b1!.mac],
  );
  t.deepEqual(
    a.routers
      .get(w.r.id)!
      .neighbours?.filter((n) => n.ip === '10.1.0.20')
      .map((n) => n.mac),
    [w.ports.b1!.mac],
  );
  // b holds both tenants' bridges, each with its own VNI, router and remotes.
  const b = planFor(w, w.hosts.b);
  t.not(b.bridges.get(other.id)!.vni, b.bridges.get(w.blue.id)!.vni);
  t.deepEqual(b.bridges.get(other.id)!.remotes, []);
  t.deepEqual(
    b.routers.get(ro.id)!.legs.map((l) => l.vni),
    [other.tunnelKey],
  );
  const x1 = (await w.topo.list('Port', { bridgeId: other.id })).find((p) => p.interfaceName === 'bp-x1')!;
  t.deepEqual(
    b.routers.get(ro.id)!.neighbours?.map((n) => n.mac),
    [x1.mac],
  );
});

test('a plug under way (pinned) brings its bridge before the cache shows its port', (t) => {
  const view = { get: () => undefined, list: () => [] };
  t.is(planHost(view, { hostId: 'h', underlayMtu: MTU }).bridges.size, 0);
  const pinned = planHost(view, { hostId: 'h', underlayMtu: MTU, pins: [{ bridgeId: 'nope', hostIfname: 'bp-p' }] });
  t.deepEqual([...pinned.plugs], ['bp-p']);
});

test('neighbourDelta: only neighbours changed gives the entries to add and remove, anything else a full apply', (t) => {
  const base: DesiredRouter = {
    id: 'r',
    legs: [{ vni: 1, mac: '02:00:00:00:00:01', addresses: ['10.1.0.1/24'] }],
    routes: [],
    neighbours: [
      { ip: '10.1.0.10', mac: '02:00:00:00:00:0a', vni: 1 },
      { ip: '10.1.0.20', mac: '02:00:00:00:00:14', vni: 1 },
    ],
  };
  const next: DesiredRouter = {
    ...base,
    neighbours: [
      { ip: '10.1.0.10', mac: '02:00:00:00:00:0b', vni: 1 },
      { ip: '10.1.0.30', mac: '02:00:00:00:00:1e', vni: 1 },
    ],
  };
  t.deepEqual(neighbourDelta(base, next), {
    add: [
      { ip: '10.1.0.10', mac: '02:00:00:00:00:0b', vni: 1 },
      { ip: '10.1.0.30', mac: '02:00:00:00:00:1e', vni: 1 },
    ],
    remove: [{ ip: '10.1.0.20', mac: '02:00:00:00:00:14', vni: 1 }],
  });
  t.is(neighbourDelta(undefined, next), undefined);
  t.is(neighbourDelta(base, { ...next, snat: true }), undefined);
  t.is(neighbourDelta(base, { ...base, legs: [] }), undefined);
});

test('the reconciler carries the plan out, and removes a bridge once its last local port has gone a while', async (t) => {
  const w = await world(t);
  const dp = new Recorder();
  const rec = new Reconciler(w.hosts.a.id, w.cache, dp, MTU);
  t.teardown(() => rec.stop());
  await rec.runOnce();
  const ensured = dp.calls
    .filter((c) => c.op === 'ensureBridge')
    .map((c) => (c.arg as DesiredBridge).vni)
    .sort();
  t.deepEqual(ensured, [w.blue.tunnelKey, w.green.tunnelKey]);
  t.deepEqual(
    dp.calls.filter((c) => c.op === 'ensureRouter').map((c) => (c.arg as DesiredRouter).id),
    [w.r.id],
  );
  const sweep = dp.take('sweep') as Partial<Inventory>[];
  t.is(sweep.length, 1);
  t.deepEqual(sweep[0]!.bridges?.sort(), [w.blue.tunnelKey, w.green.tunnelKey]);
  t.deepEqual(sweep[0]!.plugs, ['bp-a1']);

  // Converged state is not applied again.
  await rec.runOnce();
  t.deepEqual(
    dp.calls.filter((c) => c.op.startsWith('ensure')),
    [],
  );

  // A new port elsewhere on blue: the bridge gains its FDB entry; the router learns only the neighbour.
  await w.topo.create('Port', { bridgeId: w.blue.id, hostId: w.hosts.c.id, interfaceName: 'bp-c3', ips: ['10.1.0.30'] });
  await cacheUntil(w.cache, () => w.cache.list('Port').some((p) => p.interfaceName === 'bp-c3'));
  dp.calls.length = 0;
  await rec.runOnce();
  const blue = dp.calls.filter((c) => c.op === 'ensureBridge').map((c) => c.arg as DesiredBridge);
  t.deepEqual(
    blue.map((b) => [b.vni, b.floodHosts]),
    [[w.blue.tunnelKey, ['192.0.2.2', '192.0.2.3']]],
  );
  t.deepEqual(
    dp.calls.filter((c) => c.op === 'ensureRouter'),
    [],
  );
  t.like(dp.take('setRouterNeighbours')[0], { id: w.r.id, add: [{ ip: '10.1.0.30', vni: w.blue.tunnelKey }], remove: [] });

  // The last local port goes: blue, green and the router leave this host's plan but linger while their networks
  // exist (the next workload finds them ready): no sweep, and a forced resync's sweep keeps them.
  await w.topo.delete('Port', w.ports.a1!.id);
  await cacheUntil(w.cache, () => !w.cache.get('Port', w.ports.a1!.id));
  t.deepEqual(keysOf(rec.plan()), new Set());
  await rec.runOnce();
  t.deepEqual(dp.take('sweep'), []);
  rec.trigger(0, true);
  await rec.runOnce();
  const kept = dp.take('sweep') as Partial<Inventory>[];
  t.deepEqual(kept[0]?.bridges?.sort(), [w.blue.tunnelKey, w.green.tunnelKey]);
  t.deepEqual(kept[0]?.routers, [w.r.id]);
  // Once the linger is over, the sweep removes them.
  rec.lingerMs = 0;
  await rec.runOnce();
  t.deepEqual(dp.take('sweep'), [{ bridges: [], routers: [], plugs: [] }]);
});

test('a failed pass is retried on its own, without waiting for a change or the resync', async (t) => {
  const w = await world(t);
  let failures = 1;
  const dp = new (class extends Recorder {
    override sweep(desired: Partial<Inventory>) {
      if (failures-- > 0) return Promise.reject(new Error('namespace busy'));
      return super.sweep(desired);
    }
  })();
  const rec = new Reconciler(w.hosts.a.id, w.cache, dp, MTU);
  t.teardown(() => rec.stop());
  await rec.runOnce();
  t.regex(rec.lastError ?? '', /sweep: namespace busy/);
  t.deepEqual(dp.take('sweep'), []);
  // No trigger, no resync: the retry alone runs the sweep again.
  const deadline = Date.now() + 3_000;
  while (rec.lastError !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(rec.lastError, undefined, 'the retry pass succeeded');
  t.is(dp.take('sweep').length, 1);
});

// Policy planning (plan.ts planPolicy): what chains, sets and zones a host's ports need.

test("policy: a host binds its local ports' and their bridge's filters, and compiles the jump closure only", async (t) => {
  const w = await world(t);
  const inbound = await w.topo.create('Chain', { name: 'in' });
  const jumped = await w.topo.create('Chain', { name: 'jumped' });
  const unrelated = await w.topo.create('Chain', { name: 'unrelated' });
  const bridgeOut = await w.topo.create('Chain', { name: 'bout' });
  const ag = await w.topo.create('IpAddrGroup', {
    tenantId: w.blue.tenantId,
    name: 'web',
    addresses: ['10.9.0.1', '10.9.1.0/24', 'fd00::1'],
  });
  const pg = await w.topo.create('PortGroup', { tenantId: w.blue.tenantId, name: 'g', stateful: false });
  await w.topo.create('Rule', { chainId: inbound.id, position: 1, action: 'jump', jumpChainId: jumped.id, condition: {} });
  await w.topo.create('Rule', { chainId: jumped.id, position: 1, action: 'accept', condition: { ipAddrGroupDst: ag.id } });
  await w.topo.create('Rule', { chainId: jumped.id, position: 2, action: 'drop', condition: { portGroupSrc: pg.id } });
  await w.topo.create('Rule', { chainId: unrelated.id, position: 1, action: 'drop', condition: {} });
  await w.topo.update('Port', w.ports.a1!.id, { inboundFilterId: inbound.id });
  await w.topo.update('Port', w.ports.b1!.id, { portGroupIds: [pg.id] });
  await w.topo.update('Bridge', w.blue.id, { outboundFilterId: bridgeOut.id });
  await cacheUntil(
    w.cache,
    () =>
      w.cache.list('Rule').length === 4 &&
      w.cache.get('Bridge', w.blue.id)?.outboundFilterId === bridgeOut.id &&
      w.cache.get('Port', w.ports.b1!.id)?.portGroupIds.length === 1 &&
      w.cache.get('Port', w.ports.a1!.id)?.inboundFilterId === inbound.id,
  );

  const facts = { hostId: w.hosts.a.id, underlayMtu: MTU };
  const a = planPolicy(w.cache, facts, planHost(w.cache, facts).bridges.values());
  t.deepEqual(Object.fromEntries(a.bindings), { 'bp-a1': { 'port-inbound': inbound.id, 'bridge-outbound': bridgeOut.id } });
  t.deepEqual([...a.chains.keys()].sort(), [inbound.id, jumped.id, bridgeOut.id].sort());
  t.deepEqual(a.chains.get(inbound.id)!.jumps, [jumped.id]);
  t.deepEqual(a.sets.get(`iag-${ag.id}-v4`)!.elements, ['10.9.0.1', '10.9.1.0/24']);
  t.deepEqual(a.sets.get(`iag-${ag.id}-v6`)!.elements, ['fd00::1']);
  // The port group's set holds its members' MACs wherever they are bound (b1 is on host b).
  t.deepEqual(a.sets.get(`pg-${pg.id}`)!.elements, [w.ports.b1!.mac.toLowerCase()]);
  // One zone per bridge realized here, derived from the VNI (the same on every host).
  t.deepEqual([...a.zones.keys()].sort(), [w.blue.tunnelKey, w.green.tunnelKey].sort());
  t.is(a.zones.get(w.blue.tunnelKey), zoneOf(w.blue.tunnelKey));
  t.deepEqual(a.errors, []);

  // Host b: the bridge's filter only (its port has none); host d: nothing.
  const bf = { hostId: w.hosts.b.id, underlayMtu: MTU };
  const b = planPolicy(w.cache, bf, planHost(w.cache, bf).bridges.values());
  t.deepEqual(Object.fromEntries(b.bindings), { 'bp-b1': { 'bridge-outbound': bridgeOut.id } });
  t.deepEqual([...b.chains.keys()], [bridgeOut.id]);
  const d = planPolicy(w.cache, { hostId: w.hosts.d.id, underlayMtu: MTU });
  t.is(d.chains.size + d.bindings.size + d.sets.size + d.zones.size, 0);
});

test("policy: a plug under way gets its bridge's filters before the cache shows its port; a broken chain fails closed", async (t) => {
  const w = await world(t);
  const c = await w.topo.create('Chain', { name: 'bin' });
  // A port range without a protocol is MidoNet's, but the compiler refuses it.
  await w.topo.create('Rule', { chainId: c.id, position: 1, action: 'accept', condition: { tpDst: { start: 80, end: 80 } } });
  await w.topo.update('Bridge', w.red.id, { inboundFilterId: c.id });
  await cacheUntil(w.cache, () => w.cache.get('Bridge', w.red.id)?.inboundFilterId === c.id && w.cache.list('Rule').length === 1);
  const p = planPolicy(w.cache, {
    hostId: w.hosts.d.id,
    underlayMtu: MTU,
    pins: [{ bridgeId: w.red.id, hostIfname: 'bv-new', portId: 'x' }],
  });
  t.deepEqual(Object.fromEntries(p.bindings), { 'bv-new': { 'bridge-inbound': c.id } });
  t.is(p.errors.length, 1);
  t.deepEqual(p.chains.get(c.id)!.rules, ['counter drop comment "r=broken"']);
});

test('policy: an administratively down port, or either end of a router link, binds its own stages to the drop chain; up again unbinds it', async (t) => {
  const w = await world(t);
  const pin = await w.topo.create('Chain', { name: 'pin' });
  await w.topo.update('Port', w.ports.a1!.id, { inboundFilterId: pin.id, adminStateUp: false });
  const links = (await w.topo.list('Port')).filter((p) => p.peerId);
  const greenRouterPort = links.find((p) => p.type === 'router' && links.some((b) => b.bridgeId === w.green.id && b.peerId === p.id))!;
  await w.topo.update('Port', greenRouterPort.id, { adminStateUp: false });
  await cacheUntil(
    w.cache,
    () => w.cache.get('Port', w.ports.a1!.id)?.adminStateUp === false && w.cache.get('Port', greenRouterPort.id)?.adminStateUp === false,
  );
  const plan = () => {
    const hp = planFor(w, w.hosts.a);
    return planPolicy(w.cache, { hostId: w.hosts.a.id, underlayMtu: MTU }, hp.bridges.values(), hp.routers.values());
  };
  const down = plan();
  const both = { 'port-inbound': ADMIN_DOWN, 'port-outbound': ADMIN_DOWN };
  t.deepEqual(down.bindings.get('bp-a1'), both, "the port's filter gives way to the drop");
  t.deepEqual(down.bindings.get(legName(w.r.id, w.green.tunnelKey)), both, 'the leg of the down router port');
  t.is(down.bindings.get(legName(w.r.id, w.blue.tunnelKey)), undefined, 'the other leg is untouched');
  t.deepEqual(down.chains.get(ADMIN_DOWN)!.rules.at(-1), `counter drop comment "r=${ADMIN_DOWN}"`);
  t.false(down.chains.has(pin.id), 'the filter of a down port is not needed');

  // Up again: only that port's bindings change, and the drop chain goes with its last binding.
  await w.topo.update('Port', w.ports.a1!.id, { adminStateUp: true });
  await cacheUntil(w.cache, () => w.cache.get('Port', w.ports.a1!.id)?.adminStateUp === true);
  const upA1 = plan();
  const d1 = policyDelta(down, upA1);
  t.deepEqual(d1.bindings, [
    { ifname: 'bp-a1', stage: 'port-inbound', chainId: pin.id },
    { ifname: 'bp-a1', stage: 'port-outbound', chainId: null },
  ]);
  t.deepEqual(
    d1.chains.map((c) => c.chainId),
    [pin.id],
  );
  t.deepEqual(d1.removeChains, []);
  await w.topo.update('Port', greenRouterPort.id, { adminStateUp: true });
  await cacheUntil(w.cache, () => w.cache.get('Port', greenRouterPort.id)?.adminStateUp === true);
  const d2 = policyDelta(upA1, plan());
  t.deepEqual(d2.bindings.map((b) => `${b.ifname} ${b.stage} ${b.chainId}`).sort(), [
    `${legName(w.r.id, w.green.tunnelKey)} port-inbound null`,
    `${legName(w.r.id, w.green.tunnelKey)} port-outbound null`,
  ]);
  t.deepEqual(d2.removeChains, [ADMIN_DOWN]);
});

test('policy: zones are 1–65535 and distinct for VNIs less than 65535 apart', (t) => {
  t.is(zoneOf(1), 1);
  t.is(zoneOf(65535), 65535);
  t.is(zoneOf(65536), 1);
  t.not(zoneOf(100), zoneOf(101));
});

test("policy: the reconciler binds a plug's filters in the plug's own transaction, then changes only what changed", async (t) => {
  const w = await world(t);
  const c1 = await w.topo.create('Chain', { name: 'bin' });
  const c2 = await w.topo.create('Chain', { name: 'other' });
  const pg = await w.topo.create('PortGroup', { tenantId: w.blue.tenantId, name: 'g', stateful: false });
  const r1 = await w.topo.create('Rule', { chainId: c1.id, position: 1, action: 'drop', condition: { portGroupSrc: pg.id } });
  await w.topo.create('Rule', { chainId: c2.id, position: 1, action: 'drop', condition: {} });
  await w.topo.update('Bridge', w.red.id, { inboundFilterId: c1.id });
  await cacheUntil(w.cache, () => w.cache.get('Bridge', w.red.id)?.inboundFilterId === c1.id && w.cache.list('Rule').length === 2);
  const dp = new Recorder();
  // Host d has no ports: the plug is the first thing of this host.
  const rec = new Reconciler(w.hosts.d.id, w.cache, dp, MTU);
  t.teardown(() => rec.stop());
  await rec.plugPort('new', w.red, {
    vni: w.red.tunnelKey,
    netns: '/x',
    ifname: 'eth0',
    hostIfname: 'bv-new',
    mac: '02:00:00:00:00:09',
    ips: [],
  });
  // No policy transaction of its own: the change rides on the plug (committed before the port joins its bridge).
  t.false(
    dp.calls.some((c) => c.op === 'applyPolicy'),
    dp.calls.map((c) => c.op).join(),
  );
  const first = (dp.calls.find((c) => c.op === 'plug')!.arg as PlugSpec).policy!;
  t.deepEqual(first.bindings, [{ ifname: 'bv-new', stage: 'bridge-inbound', chainId: c1.id }]);
  t.deepEqual(
    first.chains.map((c) => c.chainId),
    [c1.id],
  );
  t.deepEqual(first.zones, [{ vni: w.red.tunnelKey, zone: zoneOf(w.red.tunnelKey) }]);
  dp.calls.length = 0;
  await rec.runOnce();
  t.deepEqual(dp.take('applyPolicy'), []);

  // A group member joins: one element added, no chain rewritten.
  await w.topo.update('Port', w.ports.c2!.id, { portGroupIds: [pg.id] });
  await cacheUntil(w.cache, () => w.cache.get('Port', w.ports.c2!.id)?.portGroupIds.length === 1);
  await rec.runOnce();
  const joined = dp.take('applyPolicy') as PolicyChange[];
  t.is(joined.length, 1);
  t.deepEqual(joined[0]!.sets, [{ decl: { name: `pg-${pg.id}`, type: 'ether_addr' }, add: [w.ports.c2!.mac.toLowerCase()], remove: [] }]);
  t.deepEqual(joined[0]!.chains, []);

  // A rule change rewrites that chain only; rebinding the bridge to another chain removes the old one and its set.
  await w.topo.update('Rule', r1.id, { action: 'accept' });
  await cacheUntil(w.cache, () => w.cache.get('Rule', r1.id)?.action === 'accept');
  await rec.runOnce();
  const changed = dp.take('applyPolicy') as PolicyChange[];
  t.deepEqual(
    changed.map((c) => [c.chains.map((x) => x.chainId), c.bindings.length, c.sets.length]),
    [[[c1.id], 0, 0]],
  );
  await w.topo.update('Bridge', w.red.id, { inboundFilterId: c2.id });
  await cacheUntil(w.cache, () => w.cache.get('Bridge', w.red.id)?.inboundFilterId === c2.id);
  await rec.runOnce();
  const moved = (dp.take('applyPolicy') as PolicyChange[])[0]!;
  t.deepEqual(moved.bindings, [{ ifname: 'bv-new', stage: 'bridge-inbound', chainId: c2.id }]);
  t.deepEqual(moved.removeChains, [c1.id]);
  t.deepEqual(moved.removeSets, [`pg-${pg.id}`]);
});

// Router chains (plan.ts desiredRouter, compile-router.ts): planned with the router, changed alone.

test("router chains: compiled into the router's plan, its floating IP routed from the host, a rule change applied alone, bridge filters on the legs", async (t) => {
  const w = await world(t);
  const pre = await w.topo.create('Chain', { name: 'pre' });
  const fip = await w.topo.create('Rule', {
    chainId: pre.id,
    position: 1,
    action: 'dnat',
    flowAction: 'accept',
    condition: { nwDst: '198.51.100.7/32' },
    natTargets: [{ addressFrom: '10.1.0.10', addressTo: '10.1.0.10', portFrom: 0, portTo: 0 }],
  });
  await w.topo.update('Router', w.r.id, { inboundFilterId: pre.id });
  const bin = await w.topo.create('Chain', { name: 'blue-in' });
  await w.topo.create('Rule', { chainId: bin.id, position: 1, action: 'drop', condition: { nwProto: 17 } });
  await w.topo.update('Bridge', w.blue.id, { inboundFilterId: bin.id });
  await cacheUntil(
    w.cache,
    () => w.cache.get('Router', w.r.id)?.inboundFilterId === pre.id && w.cache.get('Bridge', w.blue.id)?.inboundFilterId === bin.id,
  );

  const plan = planFor(w, w.hosts.a);
  const r = plan.routers.get(w.r.id)!;
  t.deepEqual(r.filters?.inbound, pre.id);
  t.true(r.filters!.chains[`ni-${pre.id}`]!.some((x) => x.includes('dnat ip to 10.1.0.10')));
  t.true(r.hostReachable!.includes('198.51.100.7/32'), 'the floating IP is routed from the host into the router');
  const policy = planPolicy(w.cache, { hostId: w.hosts.a.id, underlayMtu: MTU }, plan.bridges.values(), plan.routers.values());
  t.deepEqual(policy.bindings.get(legName(w.r.id, w.blue.tunnelKey)), { 'bridge-inbound': bin.id }, "blue's filter on the router leg");
  t.is(policy.bindings.get(legName(w.r.id, w.green.tunnelKey)), undefined, 'green has no filter');

  const dp = new Recorder();
  const rec = new Reconciler(w.hosts.a.id, w.cache, dp, MTU);
  t.teardown(() => rec.stop());
  await rec.runOnce();
  t.like(dp.calls.find((c) => c.op === 'ensureRouter')?.arg, { id: w.r.id, filters: { inbound: pre.id } });
  dp.calls.length = 0;
  // The DNAT target changes: the chains alone, from what was applied to what is wanted.
  await w.topo.update('Rule', fip.id, { natTargets: [{ addressFrom: '10.1.0.11', addressTo: '10.1.0.11', portFrom: 0, portTo: 0 }] });
  await cacheUntil(w.cache, () => w.cache.get('Rule', fip.id)?.natTargets?.[0]?.addressFrom === '10.1.0.11');
  await rec.runOnce();
  t.deepEqual(
    dp.calls.filter((c) => c.op === 'ensureRouter'),
    [],
  );
  const set = dp.take('setRouterFilters') as { id: string; prev: DesiredRouter['filters']; next: DesiredRouter['filters'] }[];
  t.is(set.length, 1);
  t.true(set[0]!.prev!.chains[`ni-${pre.id}`]!.some((x) => x.includes('10.1.0.10')));
  t.true(set[0]!.next!.chains[`ni-${pre.id}`]!.some((x) => x.includes('10.1.0.11')));
  // A floating IP moving is a route change on the host: the whole router.
  await w.topo.update('Rule', fip.id, { condition: { nwDst: '198.51.100.8/32' } });
  await cacheUntil(w.cache, () => w.cache.get('Rule', fip.id)?.condition.nwDst === '198.51.100.8/32');
  await rec.runOnce();
  t.like(dp.take('ensureRouter')[0], { id: w.r.id, hostReachable: ['10.1.0.0/24', '10.2.0.0/24', '198.51.100.8/32'] });
});
