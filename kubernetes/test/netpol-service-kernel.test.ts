// NetworkPolicy meets Services and the node, in the real kernel: real agents on e2e harness hosts (network
// namespaces on an underlay bridge, one real ZooKeeper), the Kubernetes API played by e2e/kube's ApiServer — a
// test DOUBLE of kube-apiserver, not Kubernetes — and the controller in this process writing policy and load
// balancers into the store. Checked, as upstream requires:
// - egress to a Service: a pod whose egress allows only the backend pods (by selector) reaches them through the
//   ClusterIP (policy is evaluated after the Service's DNAT), and does not reach a Service whose backends it may
//   not talk to;
// - node-local ingress: the pod's own node (kubelet's probes) reaches a pod isolated by a default-deny ingress
//   policy, while other pods do not.
import test from 'ava';
import * as k8s from '@kubernetes/client-node';
import { eventually, type Workload } from '../../testbed/cluster.js';
import { kubeCluster } from './kernel-fixture.js';

const check = async (cells: [string, () => Promise<boolean>, boolean][]): Promise<string[]> => {
  const wrong: string[] = [];
  for (const [what, probe, want] of cells) {
    const got = await probe();
    if (got !== want) wrong.push(`${what}: expected ${want ? 'allowed' : 'denied'}, got ${got ? 'allowed' : 'denied'}`);
  }
  return wrong;
};

test.serial('egress allowed only to the backends by selector reaches them through the ClusterIP (policy after DNAT)', async (t) => {
  t.timeout(300_000);
  const k = await kubeCluster(t, ['x']);
  const srv1 = await k.pod('x', 'srv1', { app: 'srv' }, 0);
  const srv2 = await k.pod('x', 'srv2', { app: 'srv' }, 1);
  const other = await k.pod('x', 'other', { app: 'other' }, 1);
  const cl = await k.pod('x', 'cl', { app: 'cl' }, 0);
  for (const w of [srv1, srv2, other]) await k.listen(w);
  const disc = k.kc.makeApiClient(k8s.DiscoveryV1Api);
  const service = async (name: string, backends: Workload[]): Promise<string> => {
    const svc = await k.core.createNamespacedService({
      namespace: 'x',
      body: {
        metadata: { name, labels: { 'service.kubernetes.io/service-proxy-name': 'midonet-bees' } },
        spec: { selector: { app: name }, ports: [{ name: 'http', port: 8080, targetPort: 80 }] },
      },
    });
    await disc.createNamespacedEndpointSlice({
      namespace: 'x',
      body: {
        metadata: { name: `${name}-1`, labels: { 'kubernetes.io/service-name': name, 'endpointslice.kubernetes.io/managed-by': 'test' } },
        addressType: 'IPv4',
        ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
        endpoints: backends.map((b) => ({ addresses: [b.ip4!], conditions: { ready: true } })),
      },
    });
    return svc.spec!.clusterIP!;
  };
  const srvIp = await service('srv', [srv1, srv2]);
  const otherIp = await service('other', [other]);
  // Without policy: the ClusterIPs answer (from this host and the other).
  await eventually(
    async () => (await k.reach(cl.netns, srvIp, 8080)) && (await k.reach(cl.netns, otherIp, 8080)),
    30_000,
    'the ClusterIPs',
  );
  await k.net.createNamespacedNetworkPolicy({
    namespace: 'x',
    body: {
      metadata: { name: 'cl-to-srv' },
      spec: {
        podSelector: { matchLabels: { app: 'cl' } },
        policyTypes: ['Egress'],
        egress: [{ to: [{ podSelector: { matchLabels: { app: 'srv' } } }] }],
      },
    },
  });
  await eventually(async () => !(await k.reach(cl.netns, other.ip4!, 80)), 30_000, 'the egress policy in force');
  // The Service picks a member at random: several connections, every one must pass (both members are allowed).
  const viaClusterIp = async (): Promise<boolean> => {
    for (let i = 0; i < 6; i++) if (!(await k.reach(cl.netns, srvIp, 8080))) return false;
    return true;
  };
  const wrong = await check([
    ['cl -> srv1 pod', () => k.reach(cl.netns, srv1.ip4!, 80), true],
    ['cl -> srv2 pod (other host)', () => k.reach(cl.netns, srv2.ip4!, 80), true],
    ['cl -> other pod', () => k.reach(cl.netns, other.ip4!, 80), false],
    ['cl -> srv ClusterIP (6 connections)', viaClusterIp, true],
    ['cl -> other ClusterIP (its backend is not allowed)', () => k.reach(cl.netns, otherIp, 8080), false],
    ['other -> srv ClusterIP (other is not isolated)', () => k.reach(other.netns, srvIp, 8080), true],
  ]);
  t.deepEqual(wrong, [], wrong.join('\n'));
});

test.serial("the pod's own node (kubelet's probes) reaches a pod isolated by default-deny ingress; other pods do not", async (t) => {
  t.timeout(300_000);
  const k = await kubeCluster(t, ['x']);
  const a = await k.pod('x', 'a', { pod: 'a' }, 0);
  const b = await k.pod('x', 'b', { pod: 'b' }, 0);
  const remote = await k.pod('x', 'c', { pod: 'c' }, 1);
  await k.listen(a);
  const node = k.c.host(0).host.netns;
  await eventually(async () => k.reach(node, a.ip4!, 80), 30_000, 'the node reaches the pod before any policy');
  await k.net.createNamespacedNetworkPolicy({
    namespace: 'x',
    body: { metadata: { name: 'default-deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
  });
  await eventually(async () => !(await k.reach(b.netns, a.ip4!, 80)), 30_000, 'the default deny in force');
  const wrong = await check([
    ['node (h1) -> x/a:80, a TCP probe', () => k.reach(node, a.ip4!, 80), true],
    ['node (h1) -> x/a, ping', () => k.c.ping(node, a.ip4!, { timeoutSec: 2 }), true],
    ['x/b (same node) -> x/a:80', () => k.reach(b.netns, a.ip4!, 80), false],
    ['x/c (other node) -> x/a:80', () => k.reach(remote.netns, a.ip4!, 80), false],
  ]);
  t.deepEqual(wrong, [], wrong.join('\n'));
});
