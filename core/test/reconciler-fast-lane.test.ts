// The reconciler's work proportional to the change (core/agent/reconciler.ts): load balancer and policy changes
// take the fast lane, planned and applied alone and beside a main pass that is still busy (a resync's slow kernel
// re-reads), and what they leave equals what a full pass plans; a workload arriving on another host changes only
// its bridge's remote entries. The topology is written through the real topology service on the real file store and
// read back through the agent's real cache, wired to the reconciler as the agent wires it; only the datapath is a
// recorder standing for our own interface (the kernel side: datapath-bridge-delta.test.ts, e2e/).
import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TopologyCache } from '../agent/cache.js';
import { planHost } from '../agent/plan.js';
import { planLb } from '../agent/plan-lb.js';
import { Reconciler } from '../agent/reconciler.js';
import type { LbHostSpec } from '../datapath/nft/lb.js';
import type {
  BridgeRemotesDelta,
  Datapath,
  DesiredBridge,
  DesiredRouter,
  Inventory,
  PlugSpec,
  PolicyChange,
  RouterNeighbour,
} from '../datapath/types.js';
import type { Bridge, Host, Port, Router } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

const MTU = 1500;

/** Records every call; ensureBridge can be held (a resync's full bridge ensure, slow on a loaded host). */
class Recorder implements Datapath {
  readonly calls: { op: string; arg: unknown }[] = [];
  hold: Promise<void> | undefined;
  private record(op: string, arg: unknown): Promise<void> {
    this.calls.push({ op, arg: structuredClone(arg) });
    return Promise.resolve();
  }
  async ensureBridge(b: DesiredBridge) {
    await this.record('ensureBridge', b);
    await this.hold;
  }
  setBridgeRemotes(vni: number, delta: BridgeRemotesDelta) {
    return this.record('setBridgeRemotes', { vni, delta });
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
  async checkPlug() {
    return [];
  }
  ensureRouter(r: DesiredRouter) {
    return this.record('ensureRouter', r);
  }
  setRouterNeighbours(id: string, add: RouterNeighbour[], remove: RouterNeighbour[]) {
    return this.record('setRouterNeighbours', { id, add, remove });
  }
  removeRouter(id: string) {
    return this.record('removeRouter', id);
  }
  applyPolicy(c: PolicyChange) {
    return this.record('applyPolicy', c);
  }
  applyLoadBalancers(spec: LbHostSpec, opts: { full: boolean }) {
    return this.record('applyLoadBalancers', { spec, full: opts.full });
  }
  async inventory(): Promise<Inventory> {
    return { bridges: [], plugs: [], routers: [] };
  }
  sweep(desired: Partial<Inventory>) {
    return this.record('sweep', desired);
  }
  ops(): string[] {
    return this.calls.map((c) => c.op);
  }
  last(op: string): unknown {
    return this.calls.filter((c) => c.op === op).at(-1)?.arg;
  }
}

interface World {
  topo: Topology;
  cache: TopologyCache;
  a: Host;
  b: Host;
  c: Host;
  blue: Bridge;
  r: Router;
  ports: Record<string, Port>;
  rec: Reconciler;
  dp: Recorder;
}

/** Hosts a, b, c; bridge blue on router r; ports a1 (on a, this reconciler's host) and b1 (on b). */
async function world(t: ExecutionContext): Promise<World> {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-fast-lane-'));
  const store = await openStore(`file:${dir}`);
  const topo = new Topology(store);
  const a = await topo.create('Host', { name: 'a', addresses: ['192.0.2.1'] });
  const b = await topo.create('Host', { name: 'b', addresses: ['192.0.2.2'] });
  const c = await topo.create('Host', { name: 'c', addresses: ['192.0.2.3'] });
  const blue = await topo.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.1.0.0/24' }] });
  const r = await topo.create('Router', { name: 'r' });
  await topo.attachRouter(r.id, blue.id);
  const ports: Record<string, Port> = {};
  ports.a1 = await topo.create('Port', { bridgeId: blue.id, hostId: a.id, interfaceName: 'bv-a1', ips: ['10.1.0.10'] });
  ports.b1 = await topo.create('Port', { bridgeId: blue.id, hostId: b.id, interfaceName: 'bv-b1', ips: ['10.1.0.20'] });
  const cache = new TopologyCache(store);
  await cache.start();
  const dp = new Recorder();
  const rec = new Reconciler(a.id, cache, dp, MTU);
  // As the agent wires them (core/agent/agent.ts).
  cache.on('changed', (ch: { kind?: string }) => rec.changed(ch.kind));
  t.teardown(async () => {
    rec.stop();
    cache.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  await rec.runOnce();
  return { topo, cache, a, b, c, blue, r, ports, rec, dp };
}

async function until(ok: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** What a full pass would plan for the load balancer of host `h` now. */
const fullLb = (w: World, h: Host): LbHostSpec => planLb(w.cache, h.id, planHost(w.cache, { hostId: h.id, underlayMtu: MTU })).spec;

test('a member change takes the fast lane: applied while a resync is held up, the load balancer alone, as a full pass plans it', async (t) => {
  const w = await world(t);
  const l = await w.topo.create('LoadBalancer', { routerId: w.r.id });
  const pool = await w.topo.create('Pool', { loadBalancerId: l.id });
  const m1 = await w.topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.10', port: 8080 });
  const m2 = await w.topo.create('PoolMember', { poolId: pool.id, address: '10.1.0.20', port: 8080 });
  await w.topo.create('Vip', { poolId: pool.id, address: '10.96.0.1', port: 80 });
  await until(
    () => (w.dp.last('applyLoadBalancers') as { spec: LbHostSpec } | undefined)?.spec.vips[0]?.members.length === 2,
    'the VIP applied',
  );

  // A resync begins and its full bridge ensure hangs (seconds of kernel re-reads on a loaded host).
  let release!: () => void;
  w.dp.hold = new Promise((r) => (release = r));
  w.rec.trigger(0, true);
  await until(() => w.dp.ops().at(-1) === 'ensureBridge', 'the resync in its bridge ensure');
  const passes = w.rec.passes;
  w.dp.calls.length = 0;

  await w.topo.delete('PoolMember', m2.id);
  await until(() => w.dp.ops().includes('applyLoadBalancers'), 'the member removal applied beside the held resync');
  // The held resync dropped the record of the applied policy (a resync re-applies it whole), and every bridge has a
  // policy now (its conntrack zone): the fast lane converges that too. Nothing of the main lane's: no bridge, router,
  // plug or sweep.
  t.deepEqual(
    w.dp.ops().filter((op) => op !== 'applyPolicy'),
    ['applyLoadBalancers'],
    'the load balancer (and the policy the resync reset) alone: no bridge, router or sweep',
  );
  t.is(w.rec.passes, passes, 'no main pass ran for it');
  const applied = w.dp.last('applyLoadBalancers') as { spec: LbHostSpec };
  t.deepEqual(
    applied.spec.vips[0]!.members.map((m) => m.id),
    [m1.id],
  );
  t.deepEqual(applied.spec, fullLb(w, w.a), 'what a full pass plans');

  // The resync then completes; it finds the load balancer already as planned (and applies it in full, as resyncs do).
  release();
  w.dp.hold = undefined;
  await w.rec.runOnce();
  w.dp.calls.length = 0;
  await w.rec.runOnce();
  t.deepEqual(w.dp.ops(), [], 'a main pass afterwards has nothing left to do');
});

// Policy: a rule change compiles and applies only its chain, through the fast lane.

test('a rule change takes the fast lane: only its chain is rewritten, and a full pass afterwards finds nothing to do', async (t) => {
  const w = await world(t);
  const tenantId = w.blue.tenantId;
  const chain = await w.topo.create('Chain', { tenantId, name: 'in' });
  const other = await w.topo.create('Chain', { tenantId, name: 'out' });
  await w.topo.create('Rule', { chainId: other.id, position: 1, action: 'accept', condition: {} });
  const rule = await w.topo.create('Rule', {
    chainId: chain.id,
    position: 1,
    action: 'drop',
    condition: { nwProto: 6, tpDst: { start: 1000, end: 1000 } },
  });
  await w.topo.update('Port', w.ports.a1!.id, { inboundFilterId: chain.id, outboundFilterId: other.id });
  await until(() => w.dp.calls.some((c) => c.op === 'applyPolicy' && (c.arg as PolicyChange).chains.length === 2), 'both chains applied');
  // Let the passes the setup's port change asked for (main and fast lane) run out before counting.
  for (let i = 0; i < 2; i++) {
    await new Promise((r) => setTimeout(r, 100));
    await w.rec.runOnce();
  }
  await new Promise((r) => setTimeout(r, 100));
  const passes = w.rec.passes;
  const fast = w.rec.fastPasses;
  w.dp.calls.length = 0;

  await w.topo.update('Rule', rule.id, { condition: { nwProto: 6, tpDst: { start: 1001, end: 1001 } } });
  await until(() => w.dp.ops().includes('applyPolicy'), 'the rule change applied');
  t.true(w.rec.fastPasses > fast);
  t.is(w.rec.passes, passes, 'no main pass ran for it');
  t.deepEqual(w.dp.ops(), ['applyPolicy'], 'the policy alone');
  const change = w.dp.last('applyPolicy') as PolicyChange;
  t.deepEqual(
    change.chains.map((c) => c.chainId),
    [chain.id],
    'only the changed chain',
  );
  t.true(change.chains[0]!.rules.some((r) => r.includes('dport 1001')));
  t.deepEqual([change.bindings, change.sets, change.zones, change.removeChains, change.removeSets], [[], [], [], [], []]);
  w.dp.calls.length = 0;
  await w.rec.runOnce();
  t.deepEqual(w.dp.ops(), [], 'a full pass afterwards plans the same policy');
});

test('a workload arriving on another host changes only its bridge’s remote entries; a resync re-applies the bridge whole', async (t) => {
  const w = await world(t);
  w.dp.calls.length = 0;
  await w.topo.create('Port', {
    bridgeId: w.blue.id,
    hostId: w.c.id,
    interfaceName: 'bv-c1',
    ips: ['10.1.0.30'],
    mac: '02:00:00:00:00:c1',
  });
  await until(() => w.dp.ops().includes('setBridgeRemotes'), 'the new remote port applied');
  await w.rec.runOnce();
  t.false(w.dp.ops().includes('ensureBridge'), 'no full bridge ensure');
  const { vni, delta } = w.dp.last('setBridgeRemotes') as { vni: number; delta: BridgeRemotesDelta };
  t.is(vni, w.blue.tunnelKey);
  t.deepEqual(delta, {
    neighbours: { add: [{ ip: '10.1.0.30', mac: '02:00:00:00:00:c1' }], remove: [] },
    tunnel: { add: [{ mac: '02:00:00:00:00:c1', hostIp: '192.0.2.3' }], remove: [] },
    macs: { add: ['02:00:00:00:00:c1'], remove: [] },
    flood: { add: ['192.0.2.3'], remove: [] },
  });
  // The forced resync does not trust the delta: the whole bridge again, which is what planHost plans now.
  w.dp.calls.length = 0;
  w.rec.trigger(0, true);
  await new Promise((r) => setTimeout(r, 50));
  await w.rec.runOnce();
  const whole = w.dp.last('ensureBridge') as DesiredBridge;
  t.deepEqual(whole, planHost(w.cache, { hostId: w.a.id, underlayMtu: MTU }).bridges.get(w.blue.id));
  t.true(whole.remotes.some((r) => r.ips.includes('10.1.0.30')));
});
