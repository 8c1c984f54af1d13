// Dual-stack Services through the controller, against e2e/kube's ApiServer — a test DOUBLE of kube-apiserver (it
// allocates a Service's IPv6 ClusterIP from its ipFamilyPolicy, as a dual-stack cluster does), not Kubernetes —
// with the real client-node and a real file store. The store refuses a VIP whose pool has members of the other
// family only (core/topology/rules/lb.ts), so the order things arrive in matters: IPv4 endpoints before the IPv6
// ones, or the IPv6 ClusterIP added to a Service that already has IPv4 endpoints.
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { eventually, setupController } from './controller-fixture.js';
import { EndpointSliceController } from '../../e2e/kube/endpointslices.js';

const SLICE_LABELS = (svc: string) => ({ 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'test' });

const slice = (svc: string, family: 'IPv4' | 'IPv6', addresses: string[]): k8s.V1EndpointSlice => ({
  metadata: { name: `${svc}-${family.toLowerCase()}`, labels: SLICE_LABELS(svc) },
  addressType: family,
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true } })),
});

test.serial('dual-stack Service: the IPv6 VIP is programmed when its IPv6 endpoints or its IPv6 ClusterIP come late', async (t) => {
  const s = await setupController(t, ['default'], { podCidrs: ['10.128.0.0/16', 'fd00:128::/64'] });
  const disc = s.kc.makeApiClient(k8s.DiscoveryV1Api);
  const vips = async () => (await s.topology.list('Vip')).map((v) => `${v.address}:${v.port}`).sort();
  const members = async () => (await s.topology.list('PoolMember')).map((m) => `${m.address}:${m.port}`).sort();

  // 1. Dual-stack from the start; the IPv4 endpoints are there when the controller first sees the Service (it
  //    starts after both), the IPv6 ones come later.
  await s.core.createNamespacedService({
    namespace: 'default',
    body: {
      metadata: { name: 'web' },
      spec: { ipFamilyPolicy: 'PreferDualStack', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
  });
  const web = await s.core.readNamespacedService({ namespace: 'default', name: 'web' });
  const [v4, v6] = web.spec!.clusterIPs!;
  t.deepEqual(web.spec!.ipFamilies, ['IPv4', 'IPv6'], 'the double allocated both families');
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('web', 'IPv4', ['10.128.0.10', '10.128.0.11']) });
  const c = s.controller();
  await c.start();
  await eventually('leads and passed', () => c.isLeader && c.passes > 0);
  await eventually('the IPv4 VIP and members', async () => (await vips()).includes(`${v4}:80`) && (await members()).length === 2);
  await c.settled();
  t.is(c.lastError, undefined, 'no pass failed');
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('web', 'IPv6', ['fd00:128::10']) });
  await eventually(
    'the IPv6 VIP once its endpoints are there',
    async () => (await vips()).includes(`${v6}:80`) && (await members()).includes('fd00:128::10:8080'),
  );
  t.deepEqual(await members(), ['10.128.0.10:8080', '10.128.0.11:8080', 'fd00:128::10:8080']);
  const pools = new Set((await s.topology.list('Vip')).map((v) => v.poolId));
  t.is(pools.size, 1, 'one pool for the port, a VIP of each family');

  // 2. A single-stack Service with IPv4 endpoints, turned dual-stack later (the API server adds the IPv6
  //    ClusterIP), then its IPv6 endpoints.
  await s.core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ name: 'http', port: 81, targetPort: 8080 }] } },
  });
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('api', 'IPv4', ['10.128.0.20']) });
  const api = await s.core.readNamespacedService({ namespace: 'default', name: 'api' });
  t.deepEqual(api.spec!.ipFamilies, ['IPv4']);
  await eventually('the api IPv4 VIP', async () => (await vips()).includes(`${api.spec!.clusterIP}:81`));
  const dual = await s.core.replaceNamespacedService({
    namespace: 'default',
    name: 'api',
    body: { ...api, spec: { ...api.spec, ipFamilyPolicy: 'RequireDualStack' } },
  });
  const apiV6 = dual.spec!.clusterIPs![1]!;
  t.true(apiV6.includes(':'), 'the IPv6 ClusterIP was added');
  // Its IPv6 endpoints are not there yet: the VIP waits for them, and nothing else is held up meanwhile.
  await disc.replaceNamespacedEndpointSlice({
    namespace: 'default',
    name: 'web-ipv4',
    body: {
      ...(await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'web-ipv4' })),
      endpoints: slice('web', 'IPv4', ['10.128.0.12']).endpoints,
    },
  });
  await eventually('web follows its slice meanwhile', async () => (await members()).includes('10.128.0.12:8080'));
  await c.settled();
  t.is(c.lastError, undefined, 'no pass failed');
  t.false((await vips()).includes(`${apiV6}:81`), 'no IPv6 VIP without an IPv6 member to serve it');
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('api', 'IPv6', ['fd00:128::20']) });
  await eventually('the api IPv6 VIP', async () => (await vips()).includes(`${apiV6}:81`));
  await c.settled();
  t.is(c.lastError, undefined);
  t.deepEqual(await vips(), [`${api.spec!.clusterIP}:81`, `${v4}:80`, `${apiV6}:81`, `${v6}:80`].sort());
});

test.serial('dual-stack Service on an IPv4-only pod network: the IPv6 ClusterIP is an Event, the IPv4 one is served', async (t) => {
  const s = await setupController(t, ['default'], { podCidrs: ['10.128.0.0/16'] });
  const c = s.controller();
  await c.start();
  await eventually('leads and passed', () => c.isLeader && c.passes > 0);
  const disc = s.kc.makeApiClient(k8s.DiscoveryV1Api);
  await s.core.createNamespacedService({
    namespace: 'default',
    body: {
      metadata: { name: 'web' },
      spec: { ipFamilyPolicy: 'PreferDualStack', selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
  });
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('web', 'IPv4', ['10.128.0.10']) });
  await disc.createNamespacedEndpointSlice({ namespace: 'default', body: slice('web', 'IPv6', ['fd00:128::10']) });
  const web = await s.core.readNamespacedService({ namespace: 'default', name: 'web' });
  await eventually('the IPv4 VIP', async () => (await s.topology.list('Vip')).some((v) => v.address === web.spec!.clusterIP));
  const ev = await eventually('the event', async () => {
    const list = await s.core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=web' });
    return list.items.find((e) => e.reason === 'ServiceNotProxied');
  });
  t.regex(ev.message ?? '', /IPv6.*no IPv6 subnet/);
  await c.settled();
  t.is(c.lastError, undefined, 'no pass failed');
  t.is((await s.topology.list('Vip')).length, 1);
});

test.serial('IPv6 and dual-stack Services from slices the EndpointSlice controller double makes of pods: a VIP per family', async (t) => {
  const s = await setupController(t, ['default'], { podCidrs: ['10.128.0.0/16', 'fd00:128::/64'] });
  // Slices as kube-controller-manager makes them: one per address family of the Service, from the pods' podIPs.
  const slices = new EndpointSliceController(s.kc);
  await slices.start();
  t.teardown(() => slices.stop());
  const mp = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
  for (const [name, ips] of [
    ['p1', ['10.128.0.30', 'fd00:128::30']],
    ['p2', ['10.128.0.31', 'fd00:128::31']],
  ] as const) {
    await s.pod('default', name, { app: 'db' });
    await s.core.patchNamespacedPodStatus(
      {
        namespace: 'default',
        name,
        body: {
          status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), conditions: [{ type: 'Ready', status: 'True' }] },
        },
      },
      mp,
    );
  }
  const service = (name: string, spec: k8s.V1ServiceSpec) =>
    s.core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name }, spec: { selector: { app: 'db' }, ports: [{ name: 'sql', port: 5432, targetPort: 5432 }], ...spec } },
    });
  const dual = await service('db', { ipFamilyPolicy: 'RequireDualStack' });
  const only6 = await service('db6', { ipFamilies: ['IPv6'], ipFamilyPolicy: 'SingleStack', clusterIP: 'fd00:10:96::64' });
  const disc = s.kc.makeApiClient(k8s.DiscoveryV1Api);
  await eventually('the slices of both families', async () => {
    const items = (await disc.listNamespacedEndpointSlice({ namespace: 'default' })).items;
    return items.filter((x) => x.addressType === 'IPv6' && (x.endpoints ?? []).length === 2).length === 2 || undefined;
  });

  const c = s.controller();
  await c.start();
  await eventually('leads and passed', () => c.isLeader && c.passes > 0);
  const vipsOf = async () => {
    const pools = await s.topology.list('PoolMember');
    return (await s.topology.list('Vip')).map((v) => ({
      vip: `${v.address}:${v.port}`,
      members: pools
        .filter((m) => m.poolId === v.poolId)
        .map((m) => `${m.address}:${m.port}`)
        .sort(),
    }));
  };
  const [d4, d6] = dual.spec!.clusterIPs!;
  const want = [
    { vip: `${d4}:5432`, members: ['10.128.0.30:5432', '10.128.0.31:5432', 'fd00:128::30:5432', 'fd00:128::31:5432'] },
    { vip: `${d6}:5432`, members: ['10.128.0.30:5432', '10.128.0.31:5432', 'fd00:128::30:5432', 'fd00:128::31:5432'] },
    { vip: `${only6.spec!.clusterIP}:5432`, members: ['fd00:128::30:5432', 'fd00:128::31:5432'] },
  ];
  let got: unknown;
  await eventually('a VIP per family, members of both', async () => {
    got = await vipsOf();
    return (
      JSON.stringify([...(got as typeof want)].sort((a, b) => a.vip.localeCompare(b.vip))) ===
        JSON.stringify([...want].sort((a, b) => a.vip.localeCompare(b.vip))) || undefined
    );
  }).catch(() => t.deepEqual(got, want));
  await c.settled();
  t.is(c.lastError, undefined, 'no pass failed');
  t.deepEqual(slices.errors, []);
});
