// Shared setup of the kernel tests of the Kubernetes integration: two e2e harness hosts (network namespaces on an
// underlay bridge, one real ZooKeeper) with real agents that read pods from e2e/kube's ApiServer — a test DOUBLE
// of kube-apiserver, not Kubernetes — and the controller in this process writing into the cluster's store.
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { openStore } from '../../core/store/open.js';
import { Topology } from '../../core/topology/service.js';
import { ApiServer } from '../../e2e/kube/apiserver.js';
import { kinds } from '../../e2e/kube/kinds.js';
import { startCluster, eventually, type Workload } from '../../testbed/cluster.js';
import { Controller, type ControllerOptions } from '../controller/controller.js';
import { forward, kubeConfigFor } from '../../e2e/kube/reach.js';
import { Relay } from './controller-fixture.js';

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

/** Two harness hosts with agents that read pods from the double, and the controller on the cluster's store. */
export async function kubeCluster(
  t: ExecutionContext,
  namespaces: string[],
  o: { agentArgs?: string[]; controller?: Partial<ControllerOptions>; waitForNetwork?: boolean; viaRelay?: boolean } = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'bees-netpol-svc-'));
  const api = new ApiServer();
  await api.start();
  for (const n of ['default', 'kube-system', ...namespaces])
    api.create(
      kinds.find((k) => k.kind === 'Namespace')!,
      undefined,
      { metadata: { name: n } },
    );
  const kc = kubeConfigFor(api.url);
  t.teardown(async () => {
    await api.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const agentKc = join(dir, 'agent-kubeconfig');
  await writeFile(agentKc, kc.exportConfig());
  const c = await startCluster({ hosts: 2, agentArgs: ['--k8s-kubeconfig', agentKc, ...(o.agentArgs ?? [])] });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const proxy = await forward(c.harness.rootIp, new URL(api.url));
  t.teardown(() => void proxy.close());
  const port = (proxy.address() as { port: number }).port;
  await writeFile(agentKc, kubeConfigFor(`http://${c.harness.rootIp}:${port}`).exportConfig()); // read at the first ADD
  const store = await openStore(c.storeUrl);
  t.teardown(() => store.close());
  const topology = new Topology(store);
  // With viaRelay the controllers reach the API double through a relay the test can take down (an API server
  // outage), while the agents and the test's own client go direct.
  let controllerKc = kc;
  const relay = new Relay(new URL(api.url));
  if (o.viaRelay) {
    await relay.up();
    t.teardown(() => relay.down());
    controllerKc = kubeConfigFor(`http://127.0.0.1:${relay.port}`);
  }
  const newController = (identity?: string): Controller => {
    const next = new Controller({
      kc: controllerKc,
      topology,
      tenant: 'default',
      network: 'pods',
      podCidrs: ['10.47.0.0/24'],
      resyncMs: 0,
      relistMs: 0,
      leaseDurationS: 2,
      retryPeriodMs: 200,
      besideKubeProxy: true, // nothing of kube-proxy here; serve every Service labelled for us
      log: (l) => t.log(l),
      ...o.controller,
      ...(identity ? { identity } : {}),
    });
    t.teardown(() => next.stop());
    return next;
  };
  const ctl = newController();
  await ctl.start();
  await eventually(
    async () => (await topology.findBridge('default', 'pods'))?.outboundFilterId,
    30_000,
    'the pod network with its filters',
  );
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const pod = async (ns: string, name: string, labels: Record<string, string>, on: number): Promise<Workload> => {
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name, labels }, spec: { containers: [{ name: 'c', image: 'agnhost' }] } },
    });
    return c.attach(c.host(on), `${ns}-${name}`, {
      orchestrator: 'cni',
      network: 'pods',
      labels: { 'k8s.pod.namespace': ns, 'k8s.pod.name': name },
    });
  };
  const reach = async (from: string, ip: string, p: number): Promise<boolean> =>
    (await c.harness.exec(from, ['python3', '-c', CONNECT, ip, String(p)])).code === 0;
  const listen = async (w: Workload): Promise<void> => {
    await c.helper(w.netns, ['python3', '-c', LISTEN], async () => reach(w.netns, '127.0.0.1', 80));
  };
  return { c, kc, api, relay, core, ctl, newController, topology, pod, reach, listen, net: kc.makeApiClient(k8s.NetworkingV1Api) };
}
