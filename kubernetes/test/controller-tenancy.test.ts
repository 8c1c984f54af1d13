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

test.serial(
  "namespace tenancy: a deleted Namespace's network goes once its pods' ports are gone; others untouched; also across a restart",
  async (t) => {
    const s = await setupController(t, ['default', 'x', 'y', 'v'], {
      tenancy: 'namespace',
      podCidrs: [POOL],
      cleanupRetryMs: 200,
    });
    const c = s.controller();
    await c.start();
    await eventually('leads and passed', () => c.isLeader && c.passes > 0);
    await c.settled();
    // x: a pod's port, an IPAM block, a policy (groups and chains in tenant x) and a Service (pool, member, VIP).
    await s.pod('x', 'a', { pod: 'a' });
    const xBridge = (await s.topology.findBridge('x', 'pods'))!;
    const xIp = (n: number) => xBridge.subnets[0]!.cidr.replace(/0\/24$/, String(n));
    const pa = await s.podPort('x', 'pods', 'x', 'a', xIp(10));
    await s.store.create('IpamBlock', {
      id: '6d1f1c1e-0000-4000-8000-000000000001',
      bridgeId: xBridge.id,
      subnet: xBridge.subnets[0]!.cidr,
      cidr: xBridge.subnets[0]!.cidr.replace(/0\/24$/, '0/26'),
      allocations: {},
    });
    await s.kc.makeApiClient(k8s.NetworkingV1Api).createNamespacedNetworkPolicy({
      namespace: 'x',
      body: { metadata: { name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
    });
    await s.core.createNamespacedService({
      namespace: 'x',
      body: { metadata: { name: 'web' }, spec: { selector: { pod: 'a' }, ports: [{ port: 80 }] } },
    });
    await s.kc.makeApiClient(k8s.DiscoveryV1Api).createNamespacedEndpointSlice({
      namespace: 'x',
      body: {
        metadata: { name: 'web-1', labels: { 'kubernetes.io/service-name': 'web' } },
        addressType: 'IPv4',
        ports: [{ port: 80, protocol: 'TCP' }],
        endpoints: [{ addresses: [xIp(10)] }],
      },
    });
    // y has the same kinds of objects, which must all stay as they are.
    await s.kc.makeApiClient(k8s.NetworkingV1Api).createNamespacedNetworkPolicy({
      namespace: 'y',
      body: { metadata: { name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
    });
    await s.core.createNamespacedService({
      namespace: 'y',
      body: { metadata: { name: 'web' }, spec: { selector: { pod: 'a' }, ports: [{ port: 80 }] } },
    });
    const tenantOf = async (name: string) => (await s.topology.list('Tenant')).find((x) => x.name === name);
    const xTenant = (await tenantOf('x'))!.id;
    const xRouter = await eventually("x's router", () => s.topology.findRouter('x', 'default'));
    await eventually('x: chains, groups, a VIP', async () => {
      const chains = (await s.topology.list('Chain')).filter((x) => x.tenantId === xTenant);
      const vips = await s.topology.list('Vip');
      return chains.length > 0 && vips.length === 2 && (await s.topology.get('Port', pa.id)).portGroupIds.length > 0;
    });
    await c.settled();
    const notOf = async (tenantIds: string[], bridgeIds: string[]) => {
      const snap = await snapshot(s.topology);
      const blocks = await s.topology.list('IpamBlock');
      const lbs = new Set(
        (await s.topology.list('Router')).filter((r) => tenantIds.includes(r.tenantId)).map((r) => loadBalancerIdOf(r.id)),
      );
      const pools = new Set(
        snap.Pool!.filter((p) => lbs.has((p as { loadBalancerId: string }).loadBalancerId)).map((p) => (p as { id: string }).id),
      );
      const keep = (kind: string, o: Record<string, unknown>): boolean =>
        !tenantIds.includes(o.tenantId as string) &&
        !(kind === 'Tenant' && tenantIds.includes(o.id as string)) &&
        !bridgeIds.includes(o.bridgeId as string) &&
        !(kind === 'LoadBalancer' && lbs.has(o.id as string)) &&
        !pools.has((o.poolId ?? (kind === 'Pool' ? o.id : '')) as string);
      const out: Record<string, unknown[]> = {};
      for (const [k, list] of Object.entries(snap)) out[k] = (list as Record<string, unknown>[]).filter((o) => keep(k, o));
      out.IpamBlock = blocks.filter((b) => !bridgeIds.includes(b.bridgeId));
      // Rules belong to chains: keep those of chains kept.
      const chains = new Set((out.Chain as { id: string }[]).map((x) => x.id));
      out.Rule = (snap.Rule as { chainId: string }[]).filter((r) => chains.has(r.chainId));
      return out;
    };
    const others = await notOf([xTenant], [xBridge.id]);
    t.is(others.Bridge!.length, 4, 'default, kube-system, y and v have their networks');
    t.is(others.Vip!.length, 1, 'y has its VIP');

    await s.core.deleteNamespace({ name: 'x' });
    await eventually('x gone from the API', async () => !(await s.core.listNamespace()).items.some((n) => n.metadata?.name === 'x'));
    await c.settled();
    await new Promise((r) => setTimeout(r, 600)); // two cleanup retries
    await c.settled();
    t.truthy(await s.topology.findBridge('x', 'pods'), "x's network stays while its pod's port is attached");
    t.true((await s.topology.get('Port', pa.id)).portGroupIds.length > 0, 'and the port keeps its isolation (CVE-2024-7598)');

    await s.topology.delete('Port', pa.id); // the pod's CNI DEL
    await eventually("x's network removed", async () => !(await s.topology.findBridge('x', 'pods')));
    await eventually('and its tenant', async () => !(await tenantOf('x')));
    await c.settled();
    t.deepEqual(
      {
        router: (await s.topology.list('Router')).filter((r) => r.id === xRouter.id),
        lb: (await s.topology.list('LoadBalancer')).filter((l) => l.routerId === xRouter.id),
        chains: (await s.topology.list('Chain')).filter((x) => x.tenantId === xTenant),
        groups: (await s.topology.list('PortGroup')).filter((x) => x.tenantId === xTenant),
        blocks: (await s.topology.list('IpamBlock')).filter((b) => b.bridgeId === xBridge.id),
        ports: (await s.topology.list('Port')).filter((p) => p.tenantId === xTenant),
      },
      { router: [], lb: [], chains: [], groups: [], blocks: [], ports: [] },
      "x's router, load balancer, policy objects, IPAM blocks and link ports are gone",
    );
    t.deepEqual(await notOf([xTenant], [xBridge.id]), others, 'nothing of the other namespaces changed');
    t.is((await s.topology.list('Vip')).length, 1);

    // A Namespace deleted while the controller is down is cleaned at its next start.
    await c.stop();
    const vTenant = (await tenantOf('v'))!.id;
    const vBridge = (await s.topology.findBridge('v', 'pods'))!;
    const beforeV = await notOf([vTenant], [vBridge.id]);
    await s.core.deleteNamespace({ name: 'v' });
    await eventually('v gone from the API', async () => !(await s.core.listNamespace()).items.some((n) => n.metadata?.name === 'v'));
    const c2 = s.controller();
    await c2.start();
    await eventually("v's network removed by the restarted controller", async () => !(await s.topology.findBridge('v', 'pods')));
    await eventually('and its tenant', async () => !(await tenantOf('v')));
    await c2.settled();
    t.deepEqual(await notOf([vTenant], [vBridge.id]), beforeV, 'nothing of the other namespaces changed');
    // Idempotent: another restart finds nothing to do.
    const before = await snapshot(s.topology);
    await c2.stop();
    const c3 = s.controller();
    await c3.start();
    await eventually('c3 leads and passed', () => c3.isLeader && c3.passes > 0);
    await c3.settled();
    t.deepEqual(await snapshot(s.topology), before, 'a restart rewrites nothing');
    t.deepEqual(c3.lastStats, { created: 0, updated: 0, deleted: 0, ports: 0 });
  },
);
