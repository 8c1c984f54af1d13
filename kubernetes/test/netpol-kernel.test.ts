// NetworkPolicy in the real kernel, through real agents on e2e harness hosts (network namespaces on an underlay
// bridge, one real ZooKeeper), with the Kubernetes API played by e2e/kube's ApiServer — a test DOUBLE of
// kube-apiserver, not Kubernetes. The controller (in this process) writes the policy into the store; the agents
// run with --k8s-kubeconfig, so at CNI ADD they read the pod and put its port in its policy groups before the
// attach returns. Pods are workloads attached with the CNI shim's k8s labels. Checked: a subset of the upstream
// matrix cells, for pods created after the policy, probed right after their attach returned.
import test from 'ava';
import type { Workload } from '../../testbed/cluster.js';
import { eventually } from '../../testbed/cluster.js';
import { kubeCluster } from './kernel-fixture.js';

test('NetworkPolicy in the kernel: new pods are isolated as their attach returns; allowed peers and ports get through', async (t) => {
  t.timeout(300_000);
  const k = await kubeCluster(t, ['x', 'y']);
  const { c, ctl, topology, net } = k;
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
  await eventually(
    async () => (await topology.list('Chain')).some((x) => x.name === 'k8s+np+x+a-from-b-on-80+ingress'),
    30_000,
    'the policy chain',
  );

  const pod = (ns: string, name: string, on: number): Promise<Workload> => k.pod(ns, name, { pod: name }, on);
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
  const reach = (from: Workload, to: Workload, p: number): Promise<boolean> => k.reach(from.netns, to.ip4!, p);
  await k.listen(xa);
  await k.listen(xb);
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
