// The test API server (a double of kube-apiserver) driven by the real kubectl and the real
// @kubernetes/client-node 1.4.0: apply with validation, unknown fields refused, informers across a forced 410,
// bookmarks, selector transitions, optimistic concurrency.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { ApiServer, type ApiServerOptions } from '../apiserver.js';
import { kinds } from '../kinds.js';
import { makeTestPki } from '../pki.js';

const run = promisify(execFile);

/** The fields these tests read from `kubectl get -o json` output, watch lines and Status bodies. */
interface DaemonSetJson {
  metadata: { generation: number };
  spec: { template: { spec: { containers: { env: { name: string; value: string }[] }[] } } };
}
interface NamespaceJson {
  metadata: { labels: Record<string, string> };
}
interface WatchLine {
  type: string;
  object: { kind: string; metadata: { resourceVersion: string } };
}
interface StatusJson {
  reason: string;
  message: string;
}
const ns = kinds.find((k) => k.kind === 'Namespace')!;

interface Env {
  server: ApiServer;
  dir: string;
  kubeconfig: string;
  kc: k8s.KubeConfig;
  core: k8s.CoreV1Api;
  kubectl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

async function env(t: { teardown(fn: () => Promise<void>): void }, opts: ApiServerOptions = {}): Promise<Env> {
  const server = new ApiServer(opts);
  await server.start();
  server.create(ns, undefined, { metadata: { name: 'default' } });
  const dir = await mkdtemp(join(tmpdir(), 'bees-kubeapi-'));
  const kubeconfig = join(dir, 'kubeconfig');
  await server.writeKubeconfig(kubeconfig);
  t.teardown(async () => {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const kc = new k8s.KubeConfig();
  // client-node refuses http:// unless skipTLSVerify is set (src/config.ts).
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'bees-test-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const kubectl = async (...args: string[]) => {
    try {
      const r = await run('kubectl', args, { env: { ...process.env, KUBECONFIG: kubeconfig, HOME: dir } });
      return { code: 0, stdout: r.stdout, stderr: r.stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };
  return { server, dir, kubeconfig, kc, core: kc.makeApiClient(k8s.CoreV1Api), kubectl };
}

async function eventually(what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const manifest = (env: string, extra = ''): string => `
apiVersion: v1
kind: Namespace
metadata:
  name: bees-system
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bees, namespace: bees-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bees}
rules:
- apiGroups: [""]
  resources: [pods, nodes, services]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bees}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bees}
subjects:
- {kind: ServiceAccount, name: bees, namespace: bees-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: bees-config, namespace: bees-system}
data: {zk: "zk:2181"}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: bees-agent
  namespace: bees-system
  labels: {app: bees-agent}
spec:
  selector:
    matchLabels: {app: bees-agent}
  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 1}}
  template:
    metadata:
      labels: {app: bees-agent}
    spec:
      hostNetwork: true
      serviceAccountName: bees
      tolerations: [{operator: Exists}]${extra}
      containers:
      - name: agent
        image: bees:dev
        args: [agent]
        env: [{name: BEES_LOG, value: "${env}"}, {name: OTHER, value: "x"}]
        resources: {limits: {cpu: 1, memory: 100Mi}}
        securityContext: {privileged: true}
        volumeMounts: [{name: run, mountPath: /run/bees, mountPropagation: Bidirectional}]
      volumes: [{name: run, hostPath: {path: /run/bees, type: DirectoryOrCreate}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: bees-controller, namespace: bees-system}
spec:
  replicas: 1
  selector:
    matchLabels: {app: bees-controller}
  template:
    metadata:
      labels: {app: bees-controller}
    spec:
      containers:
      - name: controller
        image: bees:dev
        ports: [{containerPort: 9090, name: metrics}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: zk, namespace: bees-system}
spec:
  serviceName: zk
  replicas: 1
  selector:
    matchLabels: {app: zk}
  template:
    metadata:
      labels: {app: zk}
    spec:
      containers:
      - name: zk
        image: zookeeper:3.8
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: zk, namespace: bees-system}
spec:
  selector: {app: zk}
  ports: [{name: client, port: 2181}]
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: bees-node-critical}
value: 1000000
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: zk, namespace: bees-system}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {app: zk}
---
apiVersion: batch/v1
kind: Job
metadata: {name: bees-cleanup, namespace: bees-system}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: cleanup
        image: bees:dev
        args: [k8s, uninstall]
`;

test('kubectl applies a multi-document manifest with validation on, re-applies a change, gets and describes', async (t) => {
  const e = await env(t);
  const file = join(e.dir, 'bees.yaml');
  await writeFile(file, manifest('info'));
  const r = await e.kubectl('apply', '-f', file);
  t.is(r.code, 0, r.stderr);
  for (const what of [
    'namespace/bees-system',
    'serviceaccount/bees',
    'clusterrole.rbac.authorization.k8s.io/bees',
    'clusterrolebinding.rbac.authorization.k8s.io/bees',
    'configmap/bees-config',
    'daemonset.apps/bees-agent',
    'deployment.apps/bees-controller',
    'statefulset.apps/zk',
    'service/zk',
    'priorityclass.scheduling.k8s.io/bees-node-critical',
    'poddisruptionbudget.policy/zk',
    'job.batch/bees-cleanup',
  ]) {
    t.true(r.stdout.includes(`${what} created`), `${what} created: ${r.stdout}`);
  }
  // kubectl found fieldValidation in the OpenAPI v3 paths, so it left validation to the server, with Strict.
  const creates = e.server.requests.filter((q) => q.startsWith('POST '));
  t.is(creates.length, 12);
  t.true(
    creates.every((q) => q.includes('fieldValidation=Strict')),
    creates.join('\n'),
  );

  // A change: client-side apply sends a strategic merge patch; the env list merges by name.
  await writeFile(file, manifest('debug'));
  const r2 = await e.kubectl('apply', '-f', file);
  t.is(r2.code, 0, r2.stderr);
  t.regex(r2.stdout, /daemonset\.apps\/bees-agent configured/);
  t.regex(r2.stdout, /configmap\/bees-config unchanged/);
  const ds = JSON.parse((await e.kubectl('get', '-n', 'bees-system', 'ds', 'bees-agent', '-o', 'json')).stdout) as DaemonSetJson;
  t.deepEqual(ds.spec.template.spec.containers[0]?.env, [
    { name: 'BEES_LOG', value: 'debug' },
    { name: 'OTHER', value: 'x' },
  ]);
  t.is(ds.metadata.generation, 2);

  const get = await e.kubectl('get', 'ns');
  t.regex(get.stdout, /bees-system/);
  const nsObj = JSON.parse((await e.kubectl('get', 'ns', 'bees-system', '-o', 'json')).stdout) as NamespaceJson;
  t.is(nsObj.metadata.labels['kubernetes.io/metadata.name'], 'bees-system');
  const svc = await e.kubectl('describe', '-n', 'bees-system', 'service', 'zk');
  t.is(svc.code, 0, svc.stderr);
  t.regex(svc.stdout, /Selector:\s+app=zk/);
  t.regex(svc.stdout, /IP:\s+10\.96\.\d+\.\d+/);
  const dep = await e.kubectl('describe', '-n', 'bees-system', 'deployment', 'bees-controller');
  t.is(dep.code, 0, dep.stderr);
  t.regex(dep.stdout, /Image:\s+bees:dev/);

  // Server-side apply of the same file works, and is idempotent.
  const ssa = await e.kubectl('apply', '--server-side', '-f', file);
  t.is(ssa.code, 0, ssa.stderr);
  t.regex(ssa.stdout, /daemonset\.apps\/bees-agent serverside-applied/);
  t.true(e.server.requests.some((q) => q.startsWith('PATCH ') && q.includes('fieldManager=kubectl&') && q.includes('force=false')));

  const del = await e.kubectl('delete', '-f', file);
  t.is(del.code, 0, del.stderr);
  t.is((await e.kubectl('get', 'clusterrole', 'bees')).code, 1);
  await eventually('the namespace to go', () => e.server.list(ns).every((n) => n.metadata.name !== 'bees-system'));
});

test('kubectl refuses an unknown field, on create, client-side patch and server-side apply', async (t) => {
  const e = await env(t);
  const file = join(e.dir, 'bad.yaml');
  await writeFile(file, manifest('info', '\n      bogusField: 1'));
  const r = await e.kubectl('apply', '-f', file);
  t.not(r.code, 0);
  t.regex(
    r.stderr,
    /DaemonSet in version "v1" cannot be handled as a DaemonSet: strict decoding error: unknown field "spec\.template\.spec\.bogusField"/,
  );
  t.is((await e.kubectl('get', '-n', 'bees-system', 'ds', 'bees-agent')).code, 1, 'not created');
  t.is((await e.kubectl('get', '-n', 'bees-system', 'cm', 'bees-config')).code, 0, 'the valid documents were');

  const ssa = await e.kubectl('apply', '--server-side', '-f', file);
  t.not(ssa.code, 0);
  t.regex(ssa.stderr, /\.spec\.template\.spec\.bogusField: field not declared in schema/);

  // With the good file in place, a patch adding the unknown field is refused too.
  const good = join(e.dir, 'good.yaml');
  await writeFile(good, manifest('info'));
  t.is((await e.kubectl('apply', '-f', good)).code, 0);
  const r2 = await e.kubectl('apply', '-f', file);
  t.not(r2.code, 0);
  t.regex(r2.stderr, /unknown field "spec\.template\.spec\.bogusField"/);

  // Missing required fields are 422 Invalid, as from the real apiserver.
  const noSel = join(e.dir, 'nosel.yaml');
  await writeFile(
    noSel,
    'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: i}]\n',
  );
  const r3 = await e.kubectl('apply', '-f', noSel);
  t.not(r3.code, 0);
  t.regex(r3.stderr, /is invalid: spec\.selector: Required value/);
});

test('client-node informer lists, watches add/update/delete, and relists after a forced 410', async (t) => {
  const e = await env(t);
  const name = (o: k8s.V1ConfigMap): string => o.metadata!.name!;
  await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'before' }, data: { v: '0' } } });
  const informer = k8s.makeInformer(e.kc, '/api/v1/namespaces/default/configmaps', () =>
    e.core.listNamespacedConfigMap({ namespace: 'default' }),
  );
  const seen: string[] = [];
  informer.on('add', (o) => seen.push(`add ${name(o)}`));
  informer.on('update', (o) => seen.push(`update ${name(o)} ${o.data?.v}`));
  informer.on('delete', (o) => seen.push(`delete ${name(o)}`));
  const errors: unknown[] = [];
  informer.on('error', (err) => errors.push(err));
  await informer.start();
  t.teardown(() => void informer.stop());
  t.deepEqual(seen, ['add before']);

  await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'a' }, data: { v: '1' } } });
  await e.core.patchNamespacedConfigMap(
    { namespace: 'default', name: 'a', body: { data: { v: '2' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await e.core.deleteNamespacedConfigMap({ namespace: 'default', name: 'before' });
  await eventually('three watch events', () => seen.length === 4);
  t.deepEqual(seen, ['add before', 'add a', 'update a 2', 'delete before']);

  // Force 410: stall the watch (half-dead connection), make a change the informer cannot see, drop the history,
  // and end the watch. It re-watches from its last RV, gets ERROR 410 Expired, relists, and so learns the change.
  const lists = (): number => e.server.requests.filter((q) => q === 'GET /api/v1/namespaces/default/configmaps').length;
  t.is(lists(), 1);
  e.server.stallWatches();
  e.server.setHistoryLimit(0);
  await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'during-gap' } } });
  e.server.closeWatches();
  await eventually('a relist after 410', () => lists() === 2);
  await eventually('the gap object', () => seen.includes('add during-gap'));
  e.server.setHistoryLimit(1000);
  await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'after' } } });
  await eventually('the watch resumes after the relist', () => seen.includes('add after'));
  t.deepEqual(informer.list('default').map(name).sort(), ['a', 'after', 'during-gap']);
  t.deepEqual(errors, []);
});

test('watch from an RV streams ADDED/MODIFIED/DELETED; too old an RV is ERROR 410 Expired; bookmarks', async (t) => {
  const e = await env(t, { historyLimit: 3, bookmarkIntervalMs: 100 });
  const cm = await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'w' } } });
  const rv0 = cm.metadata!.resourceVersion!;
  await e.core.patchNamespacedConfigMap(
    { namespace: 'default', name: 'w', body: { data: { k: 'v' } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
  );
  await e.core.deleteNamespacedConfigMap({ namespace: 'default', name: 'w' });

  // Raw wire format, from just before the create.
  const res = await fetch(
    `${e.server.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${Number(rv0) - 1}&timeoutSeconds=1`,
  );
  t.is(res.status, 200);
  const lines = (await res.text())
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as WatchLine);
  t.deepEqual(
    lines.map((l) => l.type),
    ['ADDED', 'MODIFIED', 'DELETED'],
  );
  t.is(lines[0]?.object.kind, 'ConfigMap');
  t.is(lines[0]?.object.metadata.resourceVersion, rv0);
  const rvs = lines.map((l) => Number(l.object.metadata.resourceVersion));
  // Three lines, as asserted above.
  t.true(rvs[0]! < rvs[1]! && rvs[1]! < rvs[2]!, 'RVs increase');
  const list = await e.core.listNamespacedConfigMap({ namespace: 'default' });
  t.is(list.metadata!.resourceVersion, String(rvs[2]), 'the list carries the collection RV');

  // Three more writes push the create out of the 3-event window.
  for (const n of ['x', 'y', 'z']) await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: n } } });
  const old = await fetch(`${e.server.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${rv0}`);
  const err = JSON.parse((await old.text()).trim()) as WatchLine;
  t.is(err.type, 'ERROR');
  t.like(err.object, { kind: 'Status', status: 'Failure', reason: 'Expired', code: 410 });

  // Bookmarks through client-node's Watch, only when asked for.
  const types: string[] = [];
  const watch = new k8s.Watch(e.kc);
  const req = await watch.watch(
    '/api/v1/namespaces/default/configmaps',
    { allowWatchBookmarks: true, resourceVersion: list.metadata!.resourceVersion },
    (type, obj: k8s.KubernetesObject) => types.push(`${type} ${obj.metadata?.name ?? ''}`),
    () => undefined,
  );
  await eventually('a bookmark', () => types.some((x) => x.startsWith('BOOKMARK')));
  req.abort();
  t.deepEqual(
    types.filter((x) => !x.startsWith('BOOKMARK')),
    ['ADDED x', 'ADDED y', 'ADDED z'],
  );
  const plain = await fetch(
    `${e.server.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=${e.server.resourceVersion}&timeoutSeconds=1`,
  );
  t.is((await plain.text()).trim(), '', 'no bookmarks unless allowWatchBookmarks=true');
});

test('watch with selectors: objects entering and leaving the selection are ADDED and DELETED', async (t) => {
  const e = await env(t);
  await e.core.createNode({ body: { metadata: { name: 'n1' } } });
  const rv = e.server.resourceVersion;
  const pod = (n: string, labels: Record<string, string>): k8s.V1Pod => ({
    metadata: { name: n, labels },
    spec: { containers: [{ name: 'c', image: 'i' }] },
  });
  await e.core.createNamespacedPod({ namespace: 'default', body: pod('p1', { app: 'a' }) });
  await e.core.createNamespacedPod({ namespace: 'default', body: pod('p2', { app: 'b' }) });
  await e.core.patchNamespacedPod(
    { namespace: 'default', name: 'p2', body: { metadata: { labels: { app: 'a' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  await e.core.patchNamespacedPod(
    { namespace: 'default', name: 'p1', body: { metadata: { labels: { app: 'c' } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  const watch = async (q: string) =>
    (await (await fetch(`${e.server.url}/api/v1/pods?watch=true&resourceVersion=${rv}&timeoutSeconds=1&${q}`)).text())
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { type: string; object: k8s.V1Pod })
      .map((ev) => `${ev.type} ${ev.object.metadata!.name} ${ev.object.metadata!.labels?.app}`);
  t.deepEqual(await watch('labelSelector=app%3Da'), ['ADDED p1 a', 'ADDED p2 a', 'DELETED p1 a']);
  t.deepEqual(await watch('labelSelector=app+in+(b,c)'), ['ADDED p2 b', 'DELETED p2 b', 'ADDED p1 c']);

  // Binding through spec.nodeName: the field selector the kubelet uses.
  const body = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: 'default' }, spec: { nodeName: 'n1' } };
  const cur = await e.core.readNamespacedPod({ namespace: 'default', name: 'p1' });
  await e.core.replaceNamespacedPod({
    namespace: 'default',
    name: 'p1',
    body: { ...cur, spec: { ...cur.spec!, nodeName: body.spec.nodeName } },
  });
  const onNode = await e.core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=n1' });
  t.deepEqual(
    onNode.items.map((p) => p.metadata!.name),
    ['p1'],
  );
  const unscheduled = await e.core.listPodForAllNamespaces({ fieldSelector: 'spec.nodeName=,metadata.namespace=default' });
  t.deepEqual(
    unscheduled.items.map((p) => p.metadata!.name),
    ['p2'],
  );
});

test('optimistic concurrency: a replace with a stale resourceVersion is 409 Conflict; status is a subresource', async (t) => {
  const e = await env(t);
  const created = await e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'c' }, data: { v: '1' } } });
  const updated = await e.core.replaceNamespacedConfigMap({ namespace: 'default', name: 'c', body: { ...created, data: { v: '2' } } });
  t.not(updated.metadata!.resourceVersion, created.metadata!.resourceVersion);
  const stale = await t.throwsAsync(
    e.core.replaceNamespacedConfigMap({ namespace: 'default', name: 'c', body: { ...created, data: { v: '3' } } }),
  );
  t.is((stale as k8s.ApiException<string>).code, 409);
  const status = JSON.parse((stale as k8s.ApiException<string>).body) as StatusJson;
  t.is(status.reason, 'Conflict');
  t.regex(status.message, /the object has been modified/);
  t.is((await e.core.readNamespacedConfigMap({ namespace: 'default', name: 'c' })).data!.v, '2');

  const dup = await t.throwsAsync(e.core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'c' } } }));
  t.is((dup as k8s.ApiException<string>).code, 409);
  t.is((JSON.parse((dup as k8s.ApiException<string>).body) as StatusJson).reason, 'AlreadyExists');

  // Node status goes through /status only; conditions merge by type under strategic merge.
  await e.core.createNode({ body: { metadata: { name: 'n1' }, status: { conditions: [{ type: 'Ready', status: 'False' }] } } });
  const dep = await e.kc.makeApiClient(k8s.AppsV1Api).createNamespacedDeployment({
    namespace: 'default',
    body: {
      metadata: { name: 'd' },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i' }] } },
      },
      status: { replicas: 5 },
    },
  });
  t.is(dep.status, undefined, 'create drops the status of a kind with a status subresource');
  const sm = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);
  await e.core.patchNodeStatus(
    {
      name: 'n1',
      body: {
        status: {
          conditions: [
            { type: 'Ready', status: 'True' },
            { type: 'NetworkUnavailable', status: 'False' },
          ],
        },
      },
    },
    sm,
  );
  await e.core.patchNodeStatus({ name: 'n1', body: { status: { conditions: [{ type: 'Ready', status: 'False' }] } } }, sm);
  const node = await e.core.readNode({ name: 'n1' });
  t.deepEqual(
    node.status!.conditions!.map((c) => `${c.type}=${c.status}`),
    ['Ready=False', 'NetworkUnavailable=False'],
  );
  await e.core.patchNode({ name: 'n1', body: { status: { conditions: [] }, metadata: { labels: { a: 'b' } } } }, sm);
  t.is((await e.core.readNode({ name: 'n1' })).status!.conditions!.length, 2, 'the main resource does not write status');
});

test('over HTTPS with a required token: kubectl verifies the CA, client-node loadFromCluster works, no token is 401', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-kubeapi-tls-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const server = new ApiServer({ tls: await makeTestPki(dir), token: 'sekret' });
  await server.start();
  t.teardown(() => server.stop());
  t.regex(server.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  server.create(ns, undefined, { metadata: { name: 'default' } });

  const kubeconfig = join(dir, 'kubeconfig');
  await server.writeKubeconfig(kubeconfig);
  const r = await run('kubectl', ['get', 'ns', 'default', '-o', 'name'], { env: { ...process.env, KUBECONFIG: kubeconfig, HOME: dir } });
  t.is(r.stdout.trim(), 'namespace/default');

  // The in-cluster path: service account files plus KUBERNETES_SERVICE_HOST/PORT, as the kubelet provides.
  Object.assign(process.env, await server.writeServiceAccount(join(dir, 'pod'), 'default'));
  const kc = new k8s.KubeConfig();
  kc.loadFromCluster(join(dir, 'pod'));
  const core = kc.makeApiClient(k8s.CoreV1Api);
  t.deepEqual(
    (await core.listNamespace()).items.map((n) => n.metadata!.name),
    ['default'],
  );
  const informer = k8s.makeInformer(kc, '/api/v1/namespaces/default/configmaps', () =>
    core.listNamespacedConfigMap({ namespace: 'default' }),
  );
  const added: string[] = [];
  informer.on('add', (o) => added.push(o.metadata!.name!));
  await informer.start();
  t.teardown(() => void informer.stop());
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'over-tls' } } });
  await eventually('the watch event over TLS', () => added.includes('over-tls'));

  const anon = new k8s.KubeConfig();
  anon.loadFromOptions({
    clusters: [{ name: 'c', server: server.url, skipTLSVerify: true }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  const denied = await t.throwsAsync(anon.makeApiClient(k8s.CoreV1Api).listNamespace());
  t.is((denied as k8s.ApiException<string>).code, 401);
});
