// The controller against e2e/kube's ApiServer — a test DOUBLE of kube-apiserver (list/watch, 410, strict
// validation), not Kubernetes — driven through the real @kubernetes/client-node and, where natural, the real
// kubectl; the store is a real file store behind the real topology service. Store-level: what the controller
// writes, with the policy simulator reading the written chains.
import test, { type ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { tenantId as stableTenantId } from '../../core/model/ids.js';
import type { Port } from '../../core/model/types.js';
import { systemTool } from '../../core/datapath/exec.js';
import { eventually, reaches, setupController, snapshot } from './controller-fixture.js';
import { loadBalancerIdOf } from '../controller/services.js';

const run = promisify(execFile);
const TENANT = 'kubernetes';
const NETWORK = 'pods';

async function setup(t: ExecutionContext, namespaces = ['default', 'kube-system', 'x', 'y']) {
  const s = await setupController(t, namespaces);
  const kubeconfig = join(s.dir, 'kubeconfig');
  await s.server.writeKubeconfig(kubeconfig);
  const kubectlApply = async (yaml: string): Promise<void> => {
    const f = join(s.dir, `m-${Math.random().toString(36).slice(2)}.yaml`);
    await writeFile(f, yaml);
    await run('kubectl', ['apply', '-f', f], { env: { ...process.env, KUBECONFIG: kubeconfig } });
  };
  /** What the node agent does at CNI ADD, as far as the store goes: a port labelled with the pod's identity. */
  const podPort = (ns: string, name: string, ip: string): Promise<Port> => s.podPort(TENANT, NETWORK, ns, name, ip);
  const pod = async (ns: string, name: string, labels: Record<string, string>, ports: k8s.V1ContainerPort[] = []): Promise<void> => {
    await s.core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name, labels }, spec: { containers: [{ name: 'c', image: 'agnhost', ports }] } },
    });
  };
  return { ...s, kubectlApply, podPort, pod, tenantId: stableTenantId(TENANT), kubeconfig };
}

const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: a-from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{port: http}]
`;

test.serial('NetworkPolicy (kubectl apply) and pod labels become groups and chains; relabel, delete and restart converge', async (t) => {
  const s = await setup(t);
  const c1 = s.controller();
  await c1.start();
  await eventually('leadership', () => c1.isLeader);
  const http = [{ name: 'http', containerPort: 8080 }];
  await s.pod('x', 'a', { pod: 'a' }, http);
  await s.pod('x', 'b', { pod: 'b' }, http);
  await s.pod('y', 'a', { pod: 'a' }, http);
  const xa = await s.podPort('x', 'a', '10.128.0.10');
  const xb = await s.podPort('x', 'b', '10.128.0.11');
  const ya = await s.podPort('y', 'a', '10.128.0.12');
  await s.kubectlApply(POLICY);
  const fresh = async (p: Port) => s.topology.get('Port', p.id);
  await eventually(
    'x/a isolated and x/b in the peer group',
    async () => (await fresh(xa)).portGroupIds.length >= 2 && (await fresh(xb)).portGroupIds.length >= 1,
  );
  const bridge = await s.topology.findBridge(TENANT, NETWORK);
  t.truthy(bridge?.inboundFilterId && bridge.outboundFilterId, 'the bridge filters are the controller chains');
  t.true(await reaches(s.topology, await fresh(xb), await fresh(xa), 8080), 'x/b -> x/a:http allowed');
  t.false(await reaches(s.topology, await fresh(xb), await fresh(xa), 80), 'x/b -> x/a:80 (not the named port) denied');
  t.false(await reaches(s.topology, await fresh(ya), await fresh(xa), 8080), 'y/a -> x/a denied');
  t.true(await reaches(s.topology, await fresh(xa), await fresh(ya), 80), 'x/a -> y/a: y/a is not isolated');

  // A label change is re-evaluated: x/b no longer matches the peer selector.
  await s.core.patchNamespacedPod(
    { namespace: 'x', name: 'b', body: { metadata: { labels: { pod: 'c' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await eventually('x/b denied after relabelling', async () => !(await reaches(s.topology, await fresh(xb), await fresh(xa), 8080)));
  await s.core.patchNamespacedPod(
    { namespace: 'x', name: 'b', body: { metadata: { labels: { pod: 'b' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await eventually('x/b allowed again', async () => reaches(s.topology, await fresh(xb), await fresh(xa), 8080));
  await c1.settled();

  // Restart: a new controller (nothing in memory) converges to exactly the same store.
  const before = await snapshot(s.topology);
  await c1.stop();
  const c2 = s.controller();
  await c2.start();
  await eventually('c2 leads and passed', () => c2.isLeader && c2.passes > 0);
  await c2.settled();
  t.deepEqual(await snapshot(s.topology), before, 'a restart rewrites nothing');
  t.deepEqual(c2.lastStats, { created: 0, updated: 0, deleted: 0, ports: 0 });

  // Deleting the policy stops enforcing it: its groups and chains go, the ports leave them.
  await run('kubectl', ['-n', 'x', 'delete', 'networkpolicy', 'a-from-b'], { env: { ...process.env, KUBECONFIG: s.kubeconfig } });
  await eventually('x/a open again', async () => reaches(s.topology, await fresh(ya), await fresh(xa), 8080));
  t.deepEqual((await fresh(xa)).portGroupIds, []);
  t.is((await s.topology.list('PortGroup')).filter((g) => g.name.startsWith('k8s+np+')).length, 0);
});

test.serial('a policy deleted with its namespace keeps applying to the pods still attached (CVE-2024-7598)', async (t) => {
  const s = await setup(t, ['default', 'kube-system', 'x', 'y', 'z']);
  const c = s.controller();
  await c.start();
  for (const ns of ['x', 'y', 'z']) await s.pod(ns, 'a', { pod: 'a' });
  const xa = await s.podPort('x', 'a', '10.128.0.20');
  const ya = await s.podPort('y', 'a', '10.128.0.21');
  const za = await s.podPort('z', 'a', '10.128.0.22');
  await s.kubectlApply(`apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-y, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: "y"}}}]}]
`);
  const fresh = async (p: Port) => s.topology.get('Port', p.id);
  await eventually(
    'x/a isolated but for y',
    async () =>
      !(await reaches(s.topology, await fresh(za), await fresh(xa), 80)) && reaches(s.topology, await fresh(ya), await fresh(xa), 80),
  );
  // The namespace goes: the API server deletes its policy and pods, while the pod's port (CNI DEL not yet run)
  // is still attached.
  await s.core.deleteNamespace({ name: 'x' });
  await eventually("the policy gone from the controller's cache", () => c.cachedPolicies().length === 0);
  await c.settled();
  c.kick();
  await c.settled();
  t.false(await reaches(s.topology, await fresh(za), await fresh(xa), 80), 'still isolated while its port exists');
  t.true(await reaches(s.topology, await fresh(ya), await fresh(xa), 80), 'and still allowing what it allowed');
  await s.topology.delete('Port', xa.id); // CNI DEL
  c.kick();
  await c.settled();
  t.is((await s.topology.list('PortGroup')).filter((g) => g.name.startsWith('k8s+np+')).length, 0, 'then the policy objects go');
});

test.serial('leader election: of two controllers exactly one writes; the standby takes over when the leader stops renewing', async (t) => {
  const s = await setup(t);
  const a = s.controller({ identity: 'ctl-a' });
  const b = s.controller({ identity: 'ctl-b' });
  await a.start();
  await eventually('a leads', () => a.isLeader);
  await b.start();
  await s.kubectlApply(POLICY);
  await eventually('a wrote the policy', async () => (await s.topology.list('Chain')).some((c) => c.name === 'k8s+np+x+a-from-b+ingress'));
  await new Promise((r) => setTimeout(r, 1000));
  t.true(a.isLeader);
  t.false(b.isLeader);
  t.is(b.passes, 0, 'the standby never wrote');
  const lease = await s.kc
    .makeApiClient(k8s.CoordinationV1Api)
    .readNamespacedLease({ namespace: 'kube-system', name: 'midonet-bees-controller' });
  t.is(lease.spec?.holderIdentity, 'ctl-a');
  // a dies without releasing the lease: b waits out the lease duration, then leads and writes.
  await a.stop({ release: false });
  const t0 = Date.now();
  await eventually('b leads', () => b.isLeader);
  t.true(Date.now() - t0 >= 1500, 'not before the lease expired');
  await s.kubectlApply(POLICY.replace('a-from-b', 'second'));
  await eventually('b wrote the second policy', async () =>
    (await s.topology.list('Chain')).some((c) => c.name === 'k8s+np+x+second+ingress'),
  );
  t.true(b.passes > 0);
  const after = await s.kc
    .makeApiClient(k8s.CoordinationV1Api)
    .readNamespacedLease({ namespace: 'kube-system', name: 'midonet-bees-controller' });
  t.is(after.spec?.holderIdentity, 'ctl-b');
  t.is(after.spec?.leaseTransitions, 1);
});

test.serial('a watch cut with 410 Gone: the informer relists and the controller converges', async (t) => {
  const s = await setup(t);
  const c = s.controller();
  await c.start();
  await eventually('leads', () => c.isLeader);
  const lists = () => s.server.requests.filter((r) => r === 'GET /apis/networking.k8s.io/v1/networkpolicies').length;
  const listed = lists();
  s.server.stallWatches(); // a half-dead connection: nothing arrives
  await s.kubectlApply(POLICY);
  s.server.compact(); // the history is gone: a re-watch from the last RV gets 410
  s.server.closeWatches();
  await eventually('the policy written after the relist', async () =>
    (await s.topology.list('Chain')).some((x) => x.name === 'k8s+np+x+a-from-b+ingress'),
  );
  t.true(lists() > listed, 'it came through a new list, after the 410');
  t.true(s.server.requests.some((r) => r.startsWith('GET /apis/networking.k8s.io/v1/networkpolicies?watch=true')));
});

const SLICE_LABELS = (svc: string) => ({ 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'test' });

test.serial('Services and EndpointSlices become pools, members and VIPs, and follow changes', async (t) => {
  const s = await setup(t);
  const c = s.controller();
  await c.start();
  await eventually('leads', () => c.isLeader);
  const disc = s.kc.makeApiClient(k8s.DiscoveryV1Api);
  await s.core.createNamespacedService({
    namespace: 'default',
    body: {
      metadata: { name: 'web' },
      spec: {
        type: 'NodePort',
        selector: { app: 'web' },
        ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080 }],
        sessionAffinity: 'ClientIP',
        sessionAffinityConfig: { clientIP: { timeoutSeconds: 60 } },
        externalTrafficPolicy: 'Local',
        internalTrafficPolicy: 'Local',
      },
    },
  });
  await s.core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'dns' }, spec: { selector: { app: 'dns' }, ports: [{ name: 'dns', port: 53, protocol: 'UDP' }] } },
  });
  await s.core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'headless' }, spec: { clusterIP: 'None', selector: { app: 'web' }, ports: [{ port: 80 }] } },
  });
  await disc.createNamespacedEndpointSlice({
    namespace: 'default',
    body: {
      metadata: { name: 'web-1', labels: SLICE_LABELS('web') },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
      endpoints: [
        { addresses: ['10.128.1.1'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'n1' },
        { addresses: ['10.128.1.2'], conditions: { ready: false, serving: true, terminating: true }, nodeName: 'n2' },
        { addresses: ['10.128.1.3'], conditions: { ready: false, serving: false, terminating: false }, nodeName: 'n2' },
        { addresses: ['10.128.1.4'], nodeName: 'n1' }, // conditions absent: ready (nil means true)
      ],
    },
  });
  const web = await s.core.readNamespacedService({ namespace: 'default', name: 'web' });
  const lbId = await eventually('the load balancer', async () => {
    const r = await s.topology.findRouter(TENANT, 'default');
    return r?.loadBalancerId;
  });
  t.is(lbId, loadBalancerIdOf((await s.topology.findRouter(TENANT, 'default'))!.id));
  const vipOf = async (addr: string, port: number) => (await s.topology.list('Vip')).find((v) => v.address === addr && v.port === port);
  const vip = await eventually('the web VIP', () => vipOf(web.spec!.clusterIP!, 80));
  t.like(vip, {
    protocol: 'tcp',
    nodePort: 30080,
    sessionPersistence: 'source_ip',
    affinityTimeoutS: 60,
    externalTrafficPolicy: 'local',
    internalTrafficPolicy: 'local',
  });
  const members = async () =>
    (await s.topology.list('PoolMember', { poolId: vip.poolId })).sort((a, b) => a.address.localeCompare(b.address));
  await eventually('four members', async () => (await members()).length === 4);
  t.deepEqual(
    (await members()).map((m) => [m.address, m.port, m.adminStateUp, m.backup ?? false]),
    [
      ['10.128.1.1', 8080, true, false],
      ['10.128.1.2', 8080, true, true],
      ['10.128.1.3', 8080, false, false],
      ['10.128.1.4', 8080, true, false],
    ],
  );
  const dns = await s.core.readNamespacedService({ namespace: 'default', name: 'dns' });
  const dnsVip = await eventually('the dns VIP', () => vipOf(dns.spec!.clusterIP!, 53));
  t.is(dnsVip.protocol, 'udp');
  t.is(dnsVip.nodePort, undefined);
  t.like(await s.topology.get('Pool', dnsVip.poolId), { protocol: 'udp', memberRemoval: 'cut' });
  t.is((await s.topology.list('Vip')).length, 2, 'the headless Service has no VIP');

  // Endpoint churn: .1 goes not-ready, .3 becomes ready, .4 leaves.
  await disc.replaceNamespacedEndpointSlice({
    namespace: 'default',
    name: 'web-1',
    body: {
      ...(await disc.readNamespacedEndpointSlice({ namespace: 'default', name: 'web-1' })),
      endpoints: [
        { addresses: ['10.128.1.1'], conditions: { ready: false, serving: false, terminating: false } },
        { addresses: ['10.128.1.3'], conditions: { ready: true } },
      ],
    },
  });
  await eventually(
    'members follow the slice',
    async () => (await members()).map((m) => `${m.address}:${m.adminStateUp}`).join() === '10.128.1.1:false,10.128.1.3:true',
  );
  // The Service goes: its pool, members and VIP go with it.
  await s.core.deleteNamespacedService({ namespace: 'default', name: 'web' });
  await eventually(
    'the web objects gone',
    async () => !(await vipOf(web.spec!.clusterIP!, 80)) && (await s.topology.list('PoolMember', { poolId: vip.poolId })).length === 0,
  );
  t.is((await s.topology.list('Pool')).length, 1);
});

test.serial('errors are reported as Events on the object (an SCTP Service port)', async (t) => {
  const s = await setup(t);
  const c = s.controller();
  await c.start();
  await s.core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'sctp' }, spec: { ports: [{ name: 's', port: 9999, protocol: 'SCTP' }] } },
  });
  const ev = await eventually('the event', async () => {
    const list = await s.core.listNamespacedEvent({ namespace: 'default', fieldSelector: 'involvedObject.name=sctp' });
    return list.items[0];
  });
  t.is(ev.reason, 'ServiceNotProxied');
  t.is(ev.type, 'Warning');
  t.regex(ev.message ?? '', /SCTP is not supported/);
  t.is(ev.involvedObject.kind, 'Service');
});

test.serial('beside kube-proxy: refused with a clear message unless told; told, only labelled Services are served', async (t) => {
  const s = await setup(t);
  const apps = s.kc.makeApiClient(k8s.AppsV1Api);
  await apps.createNamespacedDaemonSet({
    namespace: 'kube-system',
    body: {
      metadata: { name: 'kube-proxy' },
      spec: {
        selector: { matchLabels: { k8s: 'kube-proxy' } },
        template: {
          metadata: { labels: { k8s: 'kube-proxy' } },
          spec: { containers: [{ name: 'kube-proxy', image: 'registry.k8s.io/kube-proxy' }] },
        },
      },
    },
  });
  const refused = await t.throwsAsync(s.controller().start());
  t.regex(refused.message, /kube-proxy is running \(DaemonSet kube-system\/kube-proxy\).*--beside-kube-proxy/s);
  const c = s.controller({ besideKubeProxy: true });
  await c.start();
  await eventually('leads', () => c.isLeader);
  await s.core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'theirs' }, spec: { ports: [{ port: 80 }] } } });
  await s.core.createNamespacedService({
    namespace: 'default',
    body: {
      metadata: { name: 'ours', labels: { 'service.kubernetes.io/service-proxy-name': 'midonet-bees' } },
      spec: { ports: [{ port: 80 }] },
    },
  });
  const ours = await s.core.readNamespacedService({ namespace: 'default', name: 'ours' });
  await eventually('our VIP', async () => (await s.topology.list('Vip')).some((v) => v.address === ours.spec!.clusterIP));
  await c.settled();
  t.is((await s.topology.list('Vip')).length, 1, "kube-proxy's Service is left to it");
});

test.serial('bees k8s controller: the command runs the controller, and refuses beside kube-proxy with the message', async (t) => {
  const s = await setup(t);
  const dir = await mkdtemp(join(tmpdir(), 'bees-k8sctl-cmd-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const bees = [process.execPath, '--import', 'tsx', new URL('./bees.ts', import.meta.url).pathname];
  const env = { ...process.env, NODE_OPTIONS: '' };
  const store = `file:${join(dir, 'store')}`;
  // client-node refuses plain HTTP unless told to skip TLS verification (kubectl's kubeconfig does not say so).
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, s.kc.exportConfig());
  // This machine's own netfilter state is shared with other tests: the host check has its own test below.
  const args = [
    'k8s',
    'controller',
    '--skip-host-check',
    '--store',
    store,
    '--kubeconfig',
    kubeconfig,
    '--tenant',
    TENANT,
    '--network',
    NETWORK,
    '--pod-cidr',
    '10.129.0.0/16',
  ];
  // It runs: the pod network appears in its store.
  const { spawn } = await import('node:child_process');
  const proc = spawn(bees[0]!, [...bees.slice(1), ...args, '--identity', 'cmd'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  t.teardown(() => t.log(stderr));
  t.teardown(() => void proc.kill('SIGKILL'));
  const lease = () =>
    s.kc.makeApiClient(k8s.CoordinationV1Api).readNamespacedLease({ namespace: 'kube-system', name: 'midonet-bees-controller' });
  await eventually('the command holds the lease', async () => (await lease()).spec?.holderIdentity === 'cmd', 90_000); // the process alone takes ~25 s to start on a loaded 2-core machine
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  await exited;
  t.is((await lease()).spec?.holderIdentity, '', 'it released the lease on SIGTERM');
  // Beside kube-proxy: exit 1 and the refusal.
  await s.kc.makeApiClient(k8s.AppsV1Api).createNamespacedDaemonSet({
    namespace: 'kube-system',
    body: {
      metadata: { name: 'kube-proxy' },
      spec: {
        selector: { matchLabels: { k8s: 'kube-proxy' } },
        template: {
          metadata: { labels: { k8s: 'kube-proxy' } },
          spec: { containers: [{ name: 'kube-proxy', image: 'registry.k8s.io/kube-proxy' }] },
        },
      },
    },
  });
  const err = await t.throwsAsync(run(bees[0]!, [...bees.slice(1), ...args], { env }));
  t.regex((err as Error & { stderr: string }).stderr, /kube-proxy is running \(DaemonSet kube-system\/kube-proxy\)/);
  t.is((err as Error & { code: number }).code, 1);
});

test.serial("kube-proxy's nft table on the host is found (in a fresh network namespace)", async (t) => {
  const s = await setup(t);
  const ns = `bees-kp-${Math.random().toString(36).slice(2, 8)}`;
  await run('ip', ['netns', 'add', ns]);
  t.teardown(() => run('ip', ['netns', 'del', ns]).then(() => undefined));
  const { findKubeProxy } = await import('../controller/kube-proxy.js');
  t.deepEqual(await findKubeProxy(s.kc, { host: true, netns: ns }), []);
  await run('ip', ['netns', 'exec', ns, systemTool('nft'), 'add', 'table', 'ip', 'kube-proxy']); // not npm's .bin/nft
  t.deepEqual(await findKubeProxy(s.kc, { host: true, netns: ns }), [{ where: 'nftables table "ip kube-proxy" on this host' }]);
});
