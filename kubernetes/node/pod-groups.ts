// The node agent's half of "a new pod is isolated from its first packet" (kubernetes.md §2.2): at CNI ADD, before
// the port exists, the pod's policy groups are computed from the Pod (its labels and named ports: CNI never
// carries them), its Namespace's labels and the NetworkPolicies, by the same function the controller uses
// (controller/netpol.ts `groupsOfPod`), so agent and controller agree on every membership. The agent (core)
// calls it through core/agent/port-groups.ts; `bees k8s agent` wires it in.
import * as k8s from '@kubernetes/client-node';
import type { PortGroupRequest, PortGroupResolver } from '../../core/agent/port-groups.js';
import { groupsOfPod, policyPod } from '../controller/netpol.js';
import { wire, type Namespace, type NetworkPolicy, type Pod } from '../controller/objects.js';
import { POD_NAME_OPTION, POD_NAMESPACE_OPTION } from '../controller/writer.js';

const notFound = (e: unknown): boolean => (e as { code?: number }).code === 404;

/** Reads what a pod's policy needs from the API server (three GETs) and answers its group ids. */
export function podGroupsResolver(kc: k8s.KubeConfig): PortGroupResolver {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const net = kc.makeApiClient(k8s.NetworkingV1Api);
  return async (req: PortGroupRequest): Promise<string[]> => {
    const namespace = req.labels[POD_NAMESPACE_OPTION];
    const name = req.labels[POD_NAME_OPTION];
    if (!namespace || !name) return []; // not a pod (a workload attached by hand)
    let pod: Pod;
    try {
      pod = wire(await core.readNamespacedPod({ namespace, name })) as unknown as Pod;
    } catch (e) {
      if (notFound(e)) return []; // gone already: nothing will run in it
      throw e;
    }
    const [ns, policies] = await Promise.all([
      core.readNamespace({ name: namespace }).then((n) => wire(n) as unknown as Namespace),
      net.listNetworkPolicyForAllNamespaces().then((l) => l.items.map((p) => wire(p) as unknown as NetworkPolicy)),
    ]);
    if (pod.spec?.hostNetwork) return [];
    const labels = ns.metadata.labels ?? {};
    return groupsOfPod(req.tenantId, policyPod(pod), (n) => (n === namespace ? labels : undefined), policies);
  };
}
