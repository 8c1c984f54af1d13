// Namespace tenancy in the real kernel: real agents (`--k8s-tenancy namespace`) on two e2e harness hosts, the
// Kubernetes API played by e2e/kube's ApiServer — a test DOUBLE of kube-apiserver, not Kubernetes — and the
// controller making a network per Namespace. Every pod's CNI request names the same network ("pods", as the
// conflist does); the agent places it on its namespace's network, and finds it there again at DEL.
import test from 'ava';
import { contains } from '../../core/net/ip.js';
import { eventually } from '../../testbed/cluster.js';
import { kubeCluster } from './kernel-fixture.js';

test('namespace tenancy: pods land on their namespace network, reach their namespace across hosts, not another; DEL finds them', async (t) => {
  t.timeout(300_000);
  const k = await kubeCluster(t, ['x', 'y'], {
    agentArgs: ['--k8s-tenancy', 'namespace'],
    controller: { tenancy: 'namespace', podCidrs: ['10.48.0.0/16'], namespaceSubnetPrefix: 24 },
    waitForNetwork: false,
  });
  const xNet = await eventually(() => k.topology.findBridge('x', 'pods'), 30_000, "x's network");
  const yNet = await eventually(() => k.topology.findBridge('y', 'pods'), 30_000, "y's network");
  const xa = await k.pod('x', 'a', { pod: 'a' }, 0);
  const xb = await k.pod('x', 'b', { pod: 'b' }, 1);
  const ya = await k.pod('y', 'a', { pod: 'a' }, 0);
  const portOf = async (ns: string, name: string) =>
    (await k.topology.list('Port')).find((p) => p.options['k8s.pod.namespace'] === ns && p.options['k8s.pod.name'] === name);
  t.is((await portOf('x', 'a'))?.bridgeId, xNet.id, "x/a is on x's network");
  t.is((await portOf('x', 'b'))?.bridgeId, xNet.id, "x/b is on x's network");
  t.is((await portOf('y', 'a'))?.bridgeId, yNet.id, "y/a is on y's network");
  t.true(contains(xNet.subnets[0]!.cidr, xa.ip4!) && contains(yNet.subnets[0]!.cidr, ya.ip4!), 'addresses from their networks');
  t.true(await k.c.pingEventually(xa.netns, xb.ip4!, 15_000), 'x/a -> x/b across hosts');
  // Another tenant is reached only as the outside is, through the host (SNATed to the router's uplink address):
  // so a default deny in y shuts x out, and the node-local allowance does not let a router's SNAT address in.
  await k.net.createNamespacedNetworkPolicy({
    namespace: 'y',
    body: { metadata: { name: 'default-deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
  });
  await eventually(async () => !(await k.c.ping(xa.netns, ya.ip4!, { timeoutSec: 1 })), 30_000, 'x/a -> y/a denied by the default deny');
  t.true(await k.c.ping(k.c.host(0).host.netns, ya.ip4!, { timeoutSec: 2 }), "y/a's own node still reaches it");
  t.true(await k.c.ping(xa.netns, xb.ip4!, { timeoutSec: 2 }), 'x/a -> x/b still');
  // CNI DEL names the conflist's network, not the pod's: the port is found and removed all the same.
  await xa.on.workloads.detach({ orchestrator: 'cni', workloadId: xa.workloadId, ifname: 'eth0', network: 'pods' });
  t.is(await portOf('x', 'a'), undefined, "x/a's port is gone after DEL");
});
