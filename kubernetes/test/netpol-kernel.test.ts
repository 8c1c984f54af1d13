// NetworkPolicy in the real kernel, through real agents on e2e harness hosts (network namespaces on an underlay
// bridge, one real ZooKeeper), with the Kubernetes API played by e2e/kube's ApiServer — a test DOUBLE of
// kube-apiserver, not Kubernetes. The controller (in this process) writes the policy into the store; the agents
// run with --k8s-kubeconfig, so at CNI ADD they read the pod and put its port in its policy groups before the
// attach returns. Pods are workloads attached with the CNI shim's k8s labels. Checked: a subset of the upstream
// matrix cells, for pods created after the policy, probed right after their attach returned.
import test from 'ava';
import { createServer, connect, type Server } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { openStore } from '../../core/store/open.js';
import { Topology } from '../../core/topology/service.js';
import { ApiServer } from '../../e2e/kube/apiserver.js';
import { kinds } from '../../e2e/kube/kinds.js';
import { startCluster, eventually, type Workload } from '../../testbed/cluster.js';
import { Controller } from '../controller/controller.js';

const LISTEN = `
import socket, threading
def tcp(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in (80, 81):
    threading.Thread(target=tcp, args=(p,), daemon=True).start()
threading.Event().wait()
`;
const CONNECT = `
import socket, sys
s = socket.socket(); s.settimeout(1.5)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError:
    sys.exit(1)
`;

/** The API server double listens on 127.0.0.1; harness hosts reach the root namespace at harness.rootIp. */
async function forward(listenIp: string, to: URL): Promise<Server> {
  const srv = createServer((c) => {
    const up = connect(Number(to.port), to.hostname);
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => srv.listen(0, listenIp, r));
  return srv;
}

test('NetworkPolicy in the kernel: new pods are isolated as their attach returns; allowed peers and ports get through', async (t) => {
  t.timeout(300_000);
  const dir = await mkdtemp(join(tmpdir(), 'bees-netpol-kernel-'));
  const api = new ApiServer();
  await api.start();
  for (const n of ['default', 'kube-system', 'x', 'y'])
    api.create(
      kinds.find((k) => k.kind === 'Namespace')!,
      undefined,
      { metadata: { name: n } },
    );
  const kc = new k8s.KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: api.url, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  t.teardown(async () => {
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  });
  // Agents need the kubeconfig before they start, and the forwarder needs the harness's root address: start the
  // cluster on a kubeconfig path filled in just after.
  const agentKc = join(dir, 'agent-kubeconfig');
  await writeFile(agentKc, kc.exportConfig());
  const c = await startCluster({ hosts: 2, agentArgs: ['--k8s-kubeconfig', agentKc] });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const proxy = await forward(c.harness.rootIp, new URL(api.url));
  t.teardown(() => void proxy.close());
  const port = (proxy.address() as { port: number }).port;
  const forAgents = new k8s.KubeConfig();
  forAgents.loadFromOptions({
    clusters: [{ name: 'c', server: `http://${c.harness.rootIp}:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 't' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  await writeFile(agentKc, forAgents.exportConfig()); // read at the first ADD

  const store = await openStore(c.storeUrl);
  t.teardown(() => store.close());
  const ctl = new Controller({
    kc,
    topology: new Topology(store),
    tenant: 'default',
    network: 'pods',
    podCidrs: ['10.46.0.0/24'],
    resyncMs: 0,
    relistMs: 0,
    leaseDurationS: 2,
    retryPeriodMs: 200,
    log: (l) => t.log(l),
  });
  t.teardown(() => ctl.stop());
  await ctl.start();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const net = kc.makeApiClient(k8s.NetworkingV1Api);
  await net.createNamespacedNetworkPolicy({
    namespace: 'x',
    body: {
      metadata: { name: 'a-from-b-on-80' },
      spec: {
        podSelector: { matchLabels: { pod: 'a' } },
        ingress: [{ _from: [{ podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ port: 80 }] }],
      },
    },
  });
  const topology = new Topology(store);
  await eventually(
    async () => (await topology.findBridge('default', 'pods'))?.outboundFilterId,
    30_000,
    'the pod network with its filters',
  );
  await eventually(
    async () => (await topology.list('Chain')).some((x) => x.name === 'k8s+np+x+a-from-b-on-80+ingress'),
    30_000,
    'the policy chain',
  );

  const pod = async (ns: string, name: string, on: number): Promise<Workload> => {
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name, labels: { pod: name } }, spec: { containers: [{ name: 'c', image: 'agnhost' }] } },
    });
    return c.attach(c.host(on), `${ns}-${name}`, {
      orchestrator: 'cni',
      network: 'pods',
      labels: { 'k8s.pod.namespace': ns, 'k8s.pod.name': name },
    });
  };
  const ya = await pod('y', 'a', 0);
  const xb = await pod('x', 'b', 1);
  const xc = await pod('x', 'c', 1);
  await ctl.settled();
  // The server pod is made last, after the policy: isolated from the moment its attach returns. No Kubernetes
  // event follows its port's creation (the pod existed before), so what is in force now is the agent's doing.
  const xa = await pod('x', 'a', 0);
  const xaPort = await eventually(
    async () => (await topology.list('Port')).find((p) => p.options['k8s.pod.name'] === 'a' && p.options['k8s.pod.namespace'] === 'x'),
    5000,
    "x/a's port in the store",
  );
  const groups = new Map((await topology.list('PortGroup')).map((g) => [g.id, g.name]));
  t.deepEqual(xaPort.portGroupIds.map((g) => groups.get(g)).sort(), ['k8s+isolated+ingress', 'k8s+np+x+a-from-b-on-80+target']);
  t.false(await c.ping(ya.netns, xa.ip4!, { timeoutSec: 1 }), 'y/a cannot ping the new x/a');
  t.false(await c.ping(xb.netns, xa.ip4!, { timeoutSec: 1 }), 'x/b cannot ping it either (80/TCP only)');
  t.true(await c.ping(ya.netns, xb.ip4!, { timeoutSec: 2 }), 'x/b is not isolated');
  const reach = async (from: Workload, to: Workload, p: number): Promise<boolean> =>
    (await c.harness.exec(from.netns, ['python3', '-c', CONNECT, to.ip4!, String(p)])).code === 0;
  await c.helper(xa.netns, ['python3', '-c', LISTEN], async () => reach(xa, { ...xa, ip4: '127.0.0.1' }, 80));
  await c.helper(xb.netns, ['python3', '-c', LISTEN], async () => reach(xb, { ...xb, ip4: '127.0.0.1' }, 80));
  // Upstream "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
  // with a port: the cells of x/a's column, and a few of the unisolated rest.
  const cells: [Workload, Workload, number, boolean][] = [
    [xc, xa, 80, false],
    [ya, xa, 80, false],
    [xb, xa, 81, false],
    [xb, xa, 80, true],
    [xa, xb, 80, true],
    [xc, xb, 81, true],
    [ya, xb, 80, true],
  ];
  const wrong: string[] = [];
  for (const [from, to, p, want] of cells) {
    const got = await reach(from, to, p);
    if (got !== want)
      wrong.push(`${from.name} -> ${to.name}:${p}: expected ${want ? 'allowed' : 'denied'}, got ${got ? 'allowed' : 'denied'}`);
  }
  t.deepEqual(wrong, [], wrong.join('\n'));
});
