// Namespace tenancy (kubernetes/controller/tenancy.ts) against e2e/kube's ApiServer — a test DOUBLE of
// kube-apiserver, not Kubernetes — with the real client-node and a real file store: each Namespace gets a tenant
// and network from the pod CIDR pool (or the tenant/network its annotations name), policy and Services are
// compiled per tenant, a restart rewrites nothing; and the agent's resolver places a pod on its namespace's network.
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { contains, overlaps } from '../../core/net/ip.js';
import { loadBalancerIdOf } from '../controller/services.js';
import { namespaceNetworkResolver, NETWORK_ANNOTATION, TENANT_ANNOTATION } from '../controller/tenancy.js';
import { eventually, reaches, setupController, snapshot } from './controller-fixture.js';

const POOL = '10.200.0.0/16';

test.serial(
  'namespace tenancy: a tenant and network per Namespace from the pool, or as annotated; policy and Services per tenant',
  async (t) => {
    const shared = { [TENANT_ANNOTATION]: 'shared', [NETWORK_ANNOTATION]: 'blue' };
    const s = await setupController(
      t,
      [
        'default',
        'x',
        'y',
        { name: 'z', annotations: shared },
        { name: 'w', annotations: shared },
        { name: 'bad', annotations: { [TENANT_ANNOTATION]: 'no/slash' } },
      ],
      { tenancy: 'namespace', podCidrs: [POOL], namespaceSubnetPrefix: 24 },
    );
    const c = s.controller();
    await c.start();
    await eventually('leads and passed', () => c.isLeader && c.passes > 0);
    await c.settled();
    const bridges = await s.topology.list('Bridge');
    const tenants = new Map((await s.topology.list('Tenant')).map((x) => [x.id, x.name]));
    const named = bridges.map((b) => `${tenants.get(b.tenantId)}/${b.name}`).sort();
    t.deepEqual(
      named,
      ['default/pods', 'kube-system/pods', 'shared/blue', 'x/pods', 'y/pods'],
      'one network per namespace; z and w share theirs',
    );
    const cidrs = bridges.map((b) => b.subnets[0]!.cidr);
    for (const cidr of cidrs) t.true(contains(POOL, cidr) && cidr.endsWith('/24'), `${cidr} is a /24 of the pool`);
    for (let i = 0; i < cidrs.length; i++)
      for (let j = i + 1; j < cidrs.length; j++) t.false(overlaps(cidrs[i]!, cidrs[j]!), `${cidrs[i]} and ${cidrs[j]} do not overlap`);
    const events = await s.core.listNamespacedEvent({ namespace: 'default' });
    t.true(
      events.items.some(
        (e) => e.reason === 'NetworkNotMapped' && e.involvedObject.name === 'bad' && /not a valid name/.test(e.message ?? ''),
      ),
      'an invalid annotation is an Event on the Namespace',
    );

    // Policy in x compiles in tenant x, over x's pods.
    for (const [ns, name] of [
      ['x', 'a'],
      ['x', 'b'],
      ['x', 'c'],
    ])
      await s.pod(ns!, name!, { pod: name! });
    const xBridge = (await s.topology.findBridge('x', 'pods'))!;
    const ip = (n: number) => xBridge.subnets[0]!.cidr.replace(/0\/24$/, String(n));
    const pa = await s.podPort('x', 'pods', 'x', 'a', ip(10));
    const pb = await s.podPort('x', 'pods', 'x', 'b', ip(11));
    const pc = await s.podPort('x', 'pods', 'x', 'c', ip(12));
    await s.kc.makeApiClient(k8s.NetworkingV1Api).createNamespacedNetworkPolicy({
      namespace: 'x',
      body: {
        metadata: { name: 'a-from-b' },
        spec: { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ _from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] },
      },
    });
    const fresh = (id: string) => s.topology.get('Port', id);
    await eventually(
      'x/a isolated, x/b in the peer group',
      async () => (await fresh(pa.id)).portGroupIds.length >= 2 && (await fresh(pb.id)).portGroupIds.length >= 1,
    );
    t.true(await reaches(s.topology, await fresh(pb.id), await fresh(pa.id), 80), 'x/b -> x/a allowed');
    t.false(await reaches(s.topology, await fresh(pc.id), await fresh(pa.id), 80), 'x/c -> x/a denied');
    const xTenant = [...tenants].find(([, n]) => n === 'x')![0];
    const groupTenants = new Set((await s.topology.list('PortGroup')).filter((g) => g.name.startsWith('k8s+np+')).map((g) => g.tenantId));
    t.deepEqual([...groupTenants], [xTenant], "the policy's objects are in x's tenant only");
    t.truthy(xBridge.id && (await s.topology.get('Bridge', xBridge.id)).outboundFilterId, "x's bridge has the policy filters");

    // A Service in y goes to y's router's load balancer only.
    await s.core.createNamespacedService({
      namespace: 'y',
      body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }] } },
    });
    const yRouter = await eventually("y's router", () => s.topology.findRouter('y', 'default'));
    const pools = await eventually('the pool of y/web', async () => {
      const p = await s.topology.list('Pool');
      return p.length ? p : undefined;
    });
    t.deepEqual(
      pools.map((p) => p.loadBalancerId),
      [loadBalancerIdOf(yRouter.id)],
    );

    // A restarted controller (nothing in memory) rewrites nothing.
    await c.settled();
    const before = await snapshot(s.topology);
    await c.stop();
    const c2 = s.controller();
    await c2.start();
    await eventually('c2 leads and passed', () => c2.isLeader && c2.passes > 0);
    await c2.settled();
    t.deepEqual(await snapshot(s.topology), before, 'a restart rewrites nothing');
    t.deepEqual(c2.lastStats, { created: 0, updated: 0, deleted: 0, ports: 0 });

    // The agent's half: a pod's CNI ADD is placed on its namespace's network.
    const resolve = namespaceNetworkResolver(s.kc, 'namespace');
    const req = (ns: string) => ({
      orchestrator: 'cni',
      workloadId: 'sandbox',
      labels: { 'k8s.pod.namespace': ns, 'k8s.pod.name': 'p' },
      tenant: 'default',
      network: 'pods',
    });
    t.deepEqual(await resolve(req('x')), { tenant: 'x', network: 'pods' });
    t.deepEqual(await resolve(req('w')), { tenant: 'shared', network: 'blue' });
    t.is(await resolve({ ...req('x'), labels: {} }), undefined, 'not a pod: left where it was asked for');
    t.is(await namespaceNetworkResolver(s.kc, 'flat')(req('x')), undefined, 'flat: no change');
  },
);

test.serial('flat tenancy (the default): every namespace on the one network', async (t) => {
  const s = await setupController(t, ['default', 'x', 'y', { name: 'z', annotations: { [TENANT_ANNOTATION]: 'other' } }]);
  const c = s.controller();
  await c.start();
  await eventually('leads and passed', () => c.isLeader && c.passes > 0);
  await c.settled();
  const tenants = new Map((await s.topology.list('Tenant')).map((x) => [x.id, x.name]));
  t.deepEqual(
    (await s.topology.list('Bridge')).map((b) => `${tenants.get(b.tenantId)}/${b.name}/${b.subnets[0]!.cidr}`),
    ['kubernetes/pods/10.128.0.0/16'],
  );
});
