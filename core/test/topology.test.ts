// The topology service's validation rules, against the real file store.
import test, { type ExecutionContext } from 'ava';
import { bridgeId, tenantId } from '../model/ids.js';
import { TopologyError, type TopologyErrorCode } from '../topology/errors.js';
import { CLUSTER_LOCK_ID } from '../topology/service.js';
import { freshTopology, rejects as rejectsWith } from './topology-fixture.js';

const fresh = (t: ExecutionContext) => freshTopology(t, 'bees-topo-');

/** Asserts the promise rejects with a TopologyError of that code (and field, when given). */
async function rejects(t: ExecutionContext, p: Promise<unknown>, code: TopologyErrorCode, field?: string): Promise<TopologyError> {
  const err = await rejectsWith(t, p, code, field);
  t.true(err.message.length > 0);
  return err;
}

test('bridge create fills defaults, stable id, tenant, gateway, tunnel key', async (t) => {
  const topo = await fresh(t);
  const b = await topo.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.1.0.0/24' }, { cidr: 'fd00:1::/64' }] });
  t.is(b.id, bridgeId('default', 'blue'));
  t.is(b.tenantId, tenantId('default'));
  t.is(b.tunnelKey, 1);
  t.deepEqual(
    b.subnets.map((s) => s.gateway),
    ['10.1.0.1', 'fd00:1::1'],
  );
  t.deepEqual(
    b.subnets.map((s) => s.blockPrefix),
    [26, 122],
  );
  t.true(b.adminStateUp);
  t.deepEqual(await topo.get('Bridge', b.id), b);
  const b2 = await topo.create('Bridge', { name: 'red', tenant: 'acme', subnets: [{ cidr: '10.1.0.0/24' }] });
  t.is(b2.tunnelKey, 2, 'tunnel keys are cluster-wide, lowest free');
  t.is(b2.id, bridgeId('acme', 'red'));
  // The cluster lock document stays hidden.
  const tenants = await topo.list('Tenant');
  t.deepEqual(
    tenants.map((x) => x.name),
    ['acme', 'default'],
  );
  await rejects(t, topo.get('Tenant', CLUSTER_LOCK_ID), 'not_found');
  // Lowest free key is reused after a delete.
  await topo.delete('Bridge', b.id);
  const b3 = await topo.create('Bridge', { name: 'green', subnets: [] });
  t.is(b3.tunnelKey, 1);
});

test('bridge rules: unique name (409 with the existing id), overlap, gateway, tunnel key, unknown fields', async (t) => {
  const topo = await fresh(t);
  const b = await topo.create('Bridge', { name: 'n1', subnets: [{ cidr: '10.2.0.0/16' }], tunnelKey: 5000 });
  const dup = await rejects(t, topo.create('Bridge', { name: 'n1', subnets: [] }), 'conflict', 'name');
  t.regex(dup.message, new RegExp(b.id));
  await rejects(t, topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.2.3.0/24' }] }), 'conflict', 'subnets[0].cidr');
  await rejects(
    t,
    topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.3.0.0/24' }, { cidr: '10.3.0.128/25' }] }),
    'invalid',
    'subnets[1].cidr',
  );
  await rejects(
    t,
    topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.3.0.0/24', gateway: '10.4.0.1' }] }),
    'invalid',
    'subnets[0].gateway',
  );
  await rejects(
    t,
    topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.3.0.0/24', gateway: '10.3.0.255' }] }),
    'invalid',
    'subnets[0].gateway',
  );
  await rejects(t, topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.3.0.5/24' }] }), 'invalid', 'subnets[0].cidr');
  await rejects(t, topo.create('Bridge', { name: 'n2', subnets: [{ cidr: '10.3.0.0/33' }] }), 'invalid', 'subnets[0].cidr');
  await rejects(
    t,
    topo.create('Bridge', { name: 'n2', subnets: [{ cidr: 'fd00::/64', gateway: '10.0.0.1' }] }),
    'invalid',
    'subnets[0].gateway',
  );
  await rejects(t, topo.create('Bridge', { name: 'n2', tunnelKey: 5000 }), 'conflict', 'tunnelKey');
  await rejects(t, topo.create('Bridge', { name: 'n2', tunnelKey: 16777216 }), 'invalid', 'tunnelKey');
  await rejects(t, topo.create('Bridge', { name: 'n2', colour: 'blue' }), 'invalid', 'colour');
  await rejects(t, topo.create('Bridge', { name: 'n2', subnets: [{ cidr: 42 }] }), 'invalid', 'subnets[0].cidr');
  await rejects(t, topo.create('Bridge', { name: 'bad name' }), 'invalid', 'name');
  await rejects(t, topo.create('Bridge', { name: 'n2', tenantId: 'nope' }), 'invalid', 'tenantId');
  await rejects(t, topo.create('Bridge', { name: 'n2', mtu: 1000, subnets: [{ cidr: 'fd00:9::/64' }] }), 'invalid', 'mtu');
  // Same subnet in another tenant is fine.
  await topo.create('Bridge', { name: 'n1', tenant: 'other', subnets: [{ cidr: '10.2.0.0/16' }] });
  // Nothing half-written by the failures.
  t.is((await topo.list('Bridge')).length, 2);
});

test('bridge update: patch, null clears, overlap checked, immutable fields refused', async (t) => {
  const topo = await fresh(t);
  const a = await topo.create('Bridge', { name: 'a', subnets: [{ cidr: '10.10.0.0/24' }], mtu: 1400 });
  await topo.create('Bridge', { name: 'b', subnets: [{ cidr: '10.11.0.0/24' }] });
  const u = await topo.update('Bridge', a.id, { mtu: null, labels: { x: 'y' } });
  t.is(u.mtu, undefined);
  t.deepEqual(u.labels, { x: 'y' });
  await rejects(t, topo.update('Bridge', a.id, { subnets: [{ cidr: '10.11.0.0/25' }] }), 'conflict', 'subnets[0].cidr');
  await rejects(t, topo.update('Bridge', a.id, { tenantId: 'x' }), 'invalid', 'tenantId');
  await rejects(t, topo.update('Bridge', a.id, { name: 'b' }), 'conflict', 'name');
  await rejects(t, topo.update('Bridge', 'missing', { mtu: 1300 }), 'not_found');
  const tenant = await topo.get('Tenant', a.tenantId);
  t.true(tenant.generation >= 3, 'every bridge write bumps the tenant generation');
});

test('ports: references, MAC/IP uniqueness per bridge, addresses inside subnets', async (t) => {
  const topo = await fresh(t);
  const b = await topo.create('Bridge', { name: 'p', subnets: [{ cidr: '10.20.0.0/24' }] });
  await rejects(t, topo.create('Port', { bridgeId: 'missing' }), 'invalid', 'bridgeId');
  await rejects(t, topo.create('Port', { routerId: 'missing' }), 'invalid', 'routerId');
  const p1 = await topo.create('Port', {
    bridgeId: b.id,
    ips: ['10.20.0.10'],
    owner: { orchestrator: 'cli', workloadId: 'w1', ifname: 'eth0' },
  });
  t.is(p1.type, 'bridge');
  t.is(p1.tenantId, b.tenantId);
  t.regex(p1.mac, /^02:be(:[0-9a-f]{2}){4}$/);
  await rejects(t, topo.create('Port', { bridgeId: b.id, ips: ['10.20.0.10'] }), 'conflict', 'ips[0]');
  await rejects(t, topo.create('Port', { bridgeId: b.id, mac: p1.mac.toUpperCase() }), 'conflict', 'mac');
  await rejects(t, topo.create('Port', { bridgeId: b.id, ips: ['10.21.0.1'] }), 'invalid', 'ips[0]');
  await rejects(t, topo.create('Port', { bridgeId: b.id, ips: ['10.20.0.300'] }), 'invalid', 'ips[0]');
  await rejects(t, topo.create('Port', { bridgeId: b.id, mac: '01:00:5e:00:00:01' }), 'invalid', 'mac');
  await rejects(t, topo.create('Port', { bridgeId: b.id, hostId: 'nohost' }), 'invalid', 'hostId');
  // Re-creating the same workload's port is a 409 (stable id).
  await rejects(t, topo.create('Port', { bridgeId: b.id, owner: { orchestrator: 'cli', workloadId: 'w1', ifname: 'eth0' } }), 'conflict');
  // Updating a port's own address to itself is fine; to a taken one is not.
  const p2 = await topo.create('Port', { bridgeId: b.id, ips: ['10.20.0.11'] });
  await topo.update('Port', p2.id, { ips: ['10.20.0.11', '10.20.0.12'] });
  await rejects(t, topo.update('Port', p2.id, { ips: ['10.20.0.10'] }), 'conflict', 'ips[0]');
  // The bridge cannot go while workload ports are on it: 409 naming them.
  const err = await rejects(t, topo.delete('Bridge', b.id), 'conflict');
  t.regex(err.message, new RegExp(p1.id));
  // Nor can the subnet shrink away from their addresses.
  await rejects(t, topo.update('Bridge', b.id, { subnets: [{ cidr: '10.99.0.0/24' }] }), 'conflict', 'subnets');
  const host = await topo.create('Host', { name: 'h1', addresses: ['192.0.2.1'] });
  await topo.update('Port', p1.id, { hostId: host.id, interfaceName: 'veth1' });
  t.deepEqual(
    (await topo.list('Port', { hostId: host.id })).map((p) => p.id),
    [p1.id],
  );
  await rejects(t, topo.delete('Host', host.id), 'conflict');
  await topo.delete('Port', p1.id);
  await topo.delete('Port', p2.id);
  await topo.delete('Bridge', b.id);
  await rejects(t, topo.get('Bridge', b.id), 'not_found');
});

test('router attach/detach: link ports, routes, cascade on bridge delete', async (t) => {
  const topo = await fresh(t);
  const b = await topo.create('Bridge', { name: 'l', subnets: [{ cidr: '10.30.0.0/24' }, { cidr: 'fd00:30::/64' }] });
  const r = await topo.create('Router', { name: 'r1' });
  t.true(r.snat);
  const { routerPort, bridgePort } = await topo.attachRouter(r.id, b.id);
  t.deepEqual(routerPort.ips, ['10.30.0.1/24', 'fd00:30::1/64']);
  t.is(routerPort.peerId, bridgePort.id);
  t.is(bridgePort.peerId, routerPort.id);
  const routes = await topo.list('Route', { routerId: r.id });
  t.deepEqual(routes.map((x) => x.dst).sort(), ['10.30.0.0/24', 'fd00:30::/64']);
  // Idempotent re-attach; conflicting address refused.
  t.is((await topo.attachRouter(r.id, b.id)).routerPort.id, routerPort.id);
  await rejects(t, topo.attachRouter(r.id, b.id, { address: '10.30.0.254/24' }), 'conflict', 'address');
  // The gateway is now taken for workloads.
  await rejects(t, topo.create('Port', { bridgeId: b.id, ips: ['10.30.0.1'] }), 'conflict', 'ips[0]');
  await topo.detachRouter(r.id, b.id);
  t.is((await topo.list('Port')).length, 0);
  t.is((await topo.list('Route')).length, 0);
  await rejects(t, topo.detachRouter(r.id, b.id), 'not_found');
  const again = await topo.attachRouter(r.id, b.id, { address: '10.30.0.254/24' });
  t.deepEqual(again.routerPort.ips, ['10.30.0.254/24', 'fd00:30::1/64']);
  await rejects(t, topo.attachRouter(r.id, b.id, { address: '10.31.0.1/24' }), 'invalid', 'address');
  await rejects(t, topo.attachRouter('nope', b.id), 'not_found', 'routerId');
  // Deleting the bridge takes its link ports and the routes via them; the router stays.
  await topo.create('IpamBlock', { bridgeId: b.id, subnet: '10.30.0.0/24', cidr: '10.30.0.0/26' });
  await topo.delete('Bridge', b.id);
  t.is((await topo.list('Port')).length, 0);
  t.is((await topo.list('Route')).length, 0);
  t.is((await topo.list('IpamBlock')).length, 0);
  t.truthy(await topo.get('Router', r.id));
  // A router with a load balancer goes with it (cascade), a health monitor in use does not.
  const lb = await topo.create('LoadBalancer', { routerId: r.id });
  const hm = await topo.create('HealthMonitor', {});
  const pool = await topo.create('Pool', { loadBalancerId: lb.id, healthMonitorId: hm.id });
  await topo.create('PoolMember', { poolId: pool.id, address: '10.30.0.5', port: 80 });
  await rejects(t, topo.delete('HealthMonitor', hm.id), 'conflict');
  await topo.delete('Router', r.id);
  t.is((await topo.list('Pool')).length, 0);
  t.is((await topo.list('PoolMember')).length, 0);
  await topo.delete('HealthMonitor', hm.id);
});

test('chains, rules and routes: references and semantics', async (t) => {
  const topo = await fresh(t);
  const c1 = await topo.create('Chain', { name: 'in' });
  const c2 = await topo.create('Chain', { name: 'sub' });
  await rejects(t, topo.create('Rule', { chainId: 'missing', action: 'accept' }), 'invalid', 'chainId');
  await rejects(t, topo.create('Rule', { chainId: c1.id, action: 'jump' }), 'invalid', 'jumpChainId');
  await rejects(t, topo.create('Rule', { chainId: c1.id, action: 'snat' }), 'invalid', 'natTargets');
  await rejects(
    t,
    topo.create('Rule', { chainId: c1.id, action: 'drop', condition: { nwSrc: '10.0.0.0/40' } }),
    'invalid',
    'condition.nwSrc',
  );
  await rejects(
    t,
    topo.create('Rule', { chainId: c1.id, action: 'drop', condition: { inPortIds: ['ghost'] } }),
    'invalid',
    'condition.inPortIds',
  );
  const r1 = await topo.create('Rule', { chainId: c1.id, action: 'jump', jumpChainId: c2.id });
  const r2 = await topo.create('Rule', { chainId: c1.id, action: 'drop', condition: { nwSrc: '10.0.0.7/8' } });
  t.is(r1.position, 1);
  t.is(r2.position, 2);
  t.is(r2.condition.nwSrc, '10.0.0.0/8');
  await rejects(t, topo.delete('Chain', c2.id), 'conflict');
  const b = await topo.create('Bridge', { name: 'f', inboundFilterId: c1.id });
  await rejects(t, topo.delete('Chain', c1.id), 'conflict');
  await topo.update('Bridge', b.id, { inboundFilterId: null });
  await topo.delete('Chain', c1.id); // takes its rules
  t.is((await topo.list('Rule')).length, 0);

  const r = await topo.create('Router', { name: 'rt' });
  await rejects(t, topo.create('Route', { routerId: r.id, dst: '0.0.0.0/0' }), 'invalid', 'nextHop');
  await rejects(t, topo.create('Route', { routerId: r.id, dst: '0.0.0.0/0', nextHopPortId: 'ghost' }), 'invalid', 'nextHopPortId');
  await rejects(t, topo.create('Route', { routerId: 'ghost', dst: '0.0.0.0/0', nextHop: 'blackhole' }), 'invalid', 'routerId');
  await rejects(
    t,
    topo.create('Route', { routerId: r.id, dst: '0.0.0.0/0', nextHop: 'blackhole', nextHopGateway: 'fd00::1' }),
    'invalid',
    'nextHopGateway',
  );
  const rt = await topo.create('Route', { routerId: r.id, dst: '192.168.0.0/16', nextHop: 'blackhole' });
  t.is(rt.weight, 100);
  await topo.delete('Router', r.id);
  t.is((await topo.list('Route')).length, 0, 'routes go with their router');
});

test('concurrent creates: overlapping subnets and tunnel keys stay unique (race-free)', async (t) => {
  const topo = await fresh(t);
  await topo.ensureTenant('default');
  // Ten bridges at once, all wanting the same /16: exactly one wins.
  const same = await Promise.allSettled(
    Array.from({ length: 10 }, (_, i) => topo.create('Bridge', { name: `same${i}`, subnets: [{ cidr: '10.40.0.0/16' }] })),
  );
  t.is(same.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of same) if (r.status === 'rejected') t.is((r.reason as TopologyError).code, 'conflict');
  // Twenty disjoint bridges in two tenants at once: all win, all tunnel keys distinct.
  const many = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      topo.create('Bridge', { name: `m${i}`, tenant: i % 2 ? 'odd' : 'even', subnets: [{ cidr: `10.50.${i}.0/24` }] }),
    ),
  );
  const keys = new Set(many.map((b) => b.tunnelKey));
  t.is(keys.size, 20);
  t.is((await topo.list('Bridge')).length, 21);
});

test('findBridge by name or id; list filters', async (t) => {
  const topo = await fresh(t);
  const b = await topo.create('Bridge', { name: 'net1', tenant: 't1' });
  const custom = await topo.create('Bridge', { id: 'docker-abc', name: 'net2', tenant: 't1' });
  t.is((await topo.findBridge('t1', 'net1'))?.id, b.id);
  t.is((await topo.findBridge('t1', b.id))?.id, b.id);
  t.is((await topo.findBridge('t1', 'net2'))?.id, custom.id);
  t.is(await topo.findBridge('t2', 'net1'), undefined);
  t.deepEqual(
    (await topo.list('Bridge', { tenantId: tenantId('t1') })).map((x) => x.name),
    ['net1', 'net2'],
  );
  t.deepEqual(
    (await topo.list('Bridge', { name: 'net2' })).map((x) => x.id),
    ['docker-abc'],
  );
  await rejects(t, topo.create('Tenant', { name: 't1' }), 'conflict');
  await rejects(t, topo.delete('Tenant', tenantId('t1')), 'conflict');
});
