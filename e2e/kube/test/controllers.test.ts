// The scheduler and EndpointSlice controller doubles, through the real client-node against the test API server.
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { ApiServer } from '../apiserver.js';
import { EndpointSliceController, MANAGED_BY } from '../endpointslices.js';
import { kinds } from '../kinds.js';
import { RoundRobinScheduler } from '../scheduler.js';

async function setup(t: { teardown(fn: () => Promise<void>): void }) {
  const server = new ApiServer();
  await server.start();
  server.create(
    kinds.find((k) => k.kind === 'Namespace')!,
    undefined,
    { metadata: { name: 'default' } },
  );
  t.teardown(() => server.stop());
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return { server, kc, core: kc.makeApiClient(k8s.CoreV1Api), discovery: kc.makeApiClient(k8s.DiscoveryV1Api) };
}

async function eventually<T>(what: string, check: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 30));
  }
}

const pod = (name: string, labels: Record<string, string>, extra: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod => ({
  metadata: { name, labels },
  spec: { containers: [{ name: 'c', image: 'bb', ports: [{ name: 'http', containerPort: 8080 }] }], ...extra },
});

test('the round-robin scheduler binds unscheduled pods to schedulable nodes in turn, honouring nodeSelector', async (t) => {
  const { kc, core } = await setup(t);
  for (const n of ['n1', 'n2']) await core.createNode({ body: { metadata: { name: n, labels: { zone: n === 'n1' ? 'a' : 'b' } } } });
  await core.createNode({ body: { metadata: { name: 'n0' }, spec: { unschedulable: true } } });
  const sched = new RoundRobinScheduler(kc);
  await sched.start();
  t.teardown(() => sched.stop());
  for (const p of ['p1', 'p2', 'p3']) await core.createNamespacedPod({ namespace: 'default', body: pod(p, {}) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('pinned', {}, { nodeSelector: { zone: 'b' } }) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('nowhere', {}, { nodeSelector: { zone: 'c' } }) });
  await eventually('four bindings', () => sched.bound.length === 4);
  const where = async (n: string) => (await core.readNamespacedPod({ namespace: 'default', name: n })).spec!.nodeName;
  t.deepEqual([await where('p1'), await where('p2'), await where('p3')].sort(), ['n1', 'n1', 'n2'], 'round robin over n1, n2; never n0');
  t.is(await where('pinned'), 'n2');
  t.is(await where('nowhere'), undefined);
  // A node that satisfies the selector appears: the pending pod gets bound.
  await core.createNode({ body: { metadata: { name: 'n3', labels: { zone: 'c' } } } });
  await eventually('the pending pod bound', async () => (await where('nowhere')) === 'n3');
  const again = await t.throwsAsync(
    core.createNamespacedPodBinding({
      namespace: 'default',
      name: 'p1',
      body: { metadata: { name: 'p1' }, target: { kind: 'Node', name: 'n2' } },
    }),
  );
  t.is((again as { code?: number }).code, 409, 'a bound pod cannot be bound again');
  t.deepEqual(sched.errors, []);
});

test('the EndpointSlice controller follows pods: ready, serving, terminating, named ports, service deletion', async (t) => {
  const { kc, core, discovery } = await setup(t);
  const ctl = new EndpointSliceController(kc);
  await ctl.start();
  t.teardown(() => ctl.stop());
  await core.createNamespacedService({
    namespace: 'default',
    body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] } },
  });
  await core.createNamespacedService({ namespace: 'default', body: { metadata: { name: 'manual' }, spec: { ports: [{ port: 80 }] } } });
  await core.createNamespacedPod({ namespace: 'default', body: pod('w1', { app: 'web' }, { nodeName: 'n1' }) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('w2', { app: 'web' }) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('other', { app: 'db' }) });
  const sm = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
  const setStatus = (name: string, ip: string, ready: boolean) =>
    core.patchNamespacedPodStatus(
      {
        namespace: 'default',
        name,
        body: { status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] } },
      },
      sm,
    );
  await setStatus('w1', '10.1.0.1', true);
  await setStatus('w2', '10.1.0.2', false);
  await setStatus('other', '10.1.0.3', true);

  const slices = async () =>
    (await discovery.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=web' })).items;
  const summary = async () => {
    const s = await slices();
    return s.flatMap((x) =>
      (x.endpoints ?? []).map(
        (e) => `${e.targetRef!.name} ${e.addresses[0]} r=${e.conditions!.ready} s=${e.conditions!.serving} t=${e.conditions!.terminating}`,
      ),
    );
  };
  const expect = async (want: string[]) => {
    let got: string[] = [];
    try {
      await eventually(want.join(', '), async () => {
        got = await summary();
        return JSON.stringify(got) === JSON.stringify(want) || undefined;
      });
    } catch {
      t.deepEqual(got, want);
    }
  };
  await expect(['w1 10.1.0.1 r=true s=true t=false', 'w2 10.1.0.2 r=false s=false t=false']);
  const [slice] = await slices();
  if (!slice) throw new Error('no EndpointSlice for Service web');
  t.is(slice.metadata!.labels!['endpointslice.kubernetes.io/managed-by'], MANAGED_BY);
  t.is(slice.addressType, 'IPv4');
  t.deepEqual(
    slice.ports!.map((p) => `${p.name} ${p.port} ${p.protocol}`),
    ['http 8080 TCP'],
    'named targetPort resolved from the pod',
  );
  t.is(slice.endpoints?.[0]?.nodeName, 'n1');
  t.is(slice.metadata!.ownerReferences?.[0]?.name, 'web');

  await setStatus('w2', '10.1.0.2', true);
  await expect(['w1 10.1.0.1 r=true s=true t=false', 'w2 10.1.0.2 r=true s=true t=false']);

  // A finalizer keeps w1 around while it terminates: still serving, no longer ready.
  await core.patchNamespacedPod({ namespace: 'default', name: 'w1', body: { metadata: { finalizers: ['bees.test/hold'] } } }, sm);
  await core.deleteNamespacedPod({ namespace: 'default', name: 'w1' });
  await expect(['w1 10.1.0.1 r=false s=true t=true', 'w2 10.1.0.2 r=true s=true t=false']);
  await core.patchNamespacedPod(
    { namespace: 'default', name: 'w1', body: { metadata: { finalizers: null } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await expect(['w2 10.1.0.2 r=true s=true t=false']);

  t.deepEqual(
    (await discovery.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: 'kubernetes.io/service-name=manual' })).items,
    [],
    'a Service without a selector gets no managed slice',
  );
  await core.deleteNamespacedService({ namespace: 'default', name: 'web' });
  await eventually('the slices to go', async () => (await slices()).length === 0);
  t.deepEqual(ctl.errors, []);
});

test('the EndpointSlice controller makes one slice per address family: IPv4, IPv6, dual stack, headless', async (t) => {
  const { kc, core, discovery } = await setup(t);
  const ctl = new EndpointSliceController(kc);
  await ctl.start();
  t.teardown(() => ctl.stop());
  const svc = (name: string, spec: k8s.V1ServiceSpec) =>
    core.createNamespacedService({
      namespace: 'default',
      body: { metadata: { name }, spec: { selector: { app: 'web' }, ports: [{ port: 80 }], ...spec } },
    });
  await svc('v4', {});
  await svc('v6', { ipFamilies: ['IPv6'], ipFamilyPolicy: 'SingleStack', clusterIP: 'fd00:10:96::a' });
  await svc('dual', { ipFamilyPolicy: 'PreferDualStack' });
  await svc('headless', { clusterIP: 'None' });
  // A JSON merge patch replaces podIPs whole (a strategic one would merge the list by `ip`, as the real server does).
  const mp = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
  const running = (name: string, ips: string[]) =>
    core.patchNamespacedPodStatus(
      {
        namespace: 'default',
        name,
        body: {
          status: { phase: 'Running', podIP: ips[0], podIPs: ips.map((ip) => ({ ip })), conditions: [{ type: 'Ready', status: 'True' }] },
        },
      },
      mp,
    );
  await core.createNamespacedPod({ namespace: 'default', body: pod('both', { app: 'web' }) });
  await core.createNamespacedPod({ namespace: 'default', body: pod('only4', { app: 'web' }) });
  await running('both', ['10.1.0.1', 'fd00:1::1']);
  await running('only4', ['10.1.0.2']);

  // Service → "addressType: addresses of its endpoints" per slice, sorted.
  const view = async (name: string) =>
    (await discovery.listNamespacedEndpointSlice({ namespace: 'default', labelSelector: `kubernetes.io/service-name=${name}` })).items
      .map((s) => `${s.addressType}: ${(s.endpoints ?? []).map((e) => e.addresses.join('+')).join(',')}`)
      .sort();
  const want: Record<string, string[]> = {
    v4: ['IPv4: 10.1.0.1,10.1.0.2'],
    v6: ['IPv6: fd00:1::1'],
    dual: ['IPv4: 10.1.0.1,10.1.0.2', 'IPv6: fd00:1::1'],
    headless: ['IPv4: 10.1.0.1,10.1.0.2', 'IPv6: fd00:1::1'],
  };
  for (const [name, slices] of Object.entries(want)) {
    let got: string[] = [];
    await eventually(`slices of ${name}`, async () => {
      got = await view(name);
      return JSON.stringify(got) === JSON.stringify(slices) || undefined;
    }).catch(() => t.deepEqual(got, slices, name));
  }
  // The dual-stack Service's families as the API server defaulted them, and each slice names its own.
  t.deepEqual((await core.readNamespacedService({ namespace: 'default', name: 'dual' })).spec!.ipFamilies, ['IPv4', 'IPv6']);
  // The IPv6 pod address goes: the IPv6 slice empties, the IPv4 one stays.
  await running('both', ['10.1.0.1']);
  await eventually(
    'the IPv6 slice of dual empties',
    async () => JSON.stringify(await view('dual')) === JSON.stringify(['IPv4: 10.1.0.1,10.1.0.2', 'IPv6: ']) || undefined,
  );
  t.deepEqual(ctl.errors, []);
});
