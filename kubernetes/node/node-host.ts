// Node → Host: the agent of a Kubernetes node is the topology Host of that Node. Its host id is the Node name
// (as a UUIDv5, so a reinstalled node is the same Host and its ports stay bound), its underlay the Node's first
// InternalIP (the address kubelet reports and the other nodes route to). Once ready, the agent says so on the
// Node: `bees.midonet.org/host-id` and `…/tunnel-ip` annotations, and NetworkUnavailable=false (the condition
// cloud route controllers and CNIs set; kubelet-managed conditions stay kubelet's).
import * as k8s from '@kubernetes/client-node';
import { stableId } from '../../core/model/ids.js';

export const HOST_ID_ANNOTATION = 'bees.midonet.org/host-id';
export const TUNNEL_IP_ANNOTATION = 'bees.midonet.org/tunnel-ip';

export interface NodeHost {
  nodeName: string;
  hostName: string;
  hostId: string;
  /** The Node's first InternalIP; undefined when the Node reports none (the agent then detects its underlay). */
  underlayIp: string | undefined;
}

/** The Host id of a Node: stable across reinstalls, derived from the name alone. */
export function hostIdOfNode(nodeName: string): string {
  return stableId('Host', 'kubernetes', nodeName);
}

/** The Host a Node maps to, from the Node object. */
export function hostOfNode(node: k8s.V1Node): NodeHost {
  const name = node.metadata?.name;
  if (!name) throw new Error('the Node has no name');
  const internal = node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address;
  return { nodeName: name, hostName: name, hostId: hostIdOfNode(name), underlayIp: internal };
}

/** Read the Node, retrying while the API server is not reachable yet (a node agent starts with the node). */
export async function readNode(kc: k8s.KubeConfig, nodeName: string, withinMs = 60_000): Promise<k8s.V1Node> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await core.readNode({ name: nodeName });
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`could not read Node "${nodeName}" from the API server: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** The annotations and the NetworkUnavailable=false condition of a Node whose agent is ready. */
export async function reportNodeNetwork(kc: k8s.KubeConfig, host: NodeHost, tunnelIp: string): Promise<void> {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  await core.patchNode(
    { name: host.nodeName, body: { metadata: { annotations: { [HOST_ID_ANNOTATION]: host.hostId, [TUNNEL_IP_ANNOTATION]: tunnelIp } } } },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
  );
  const now = new Date();
  // Strategic merge: conditions merge by `type`, so the kubelet's own conditions stay as they are.
  await core.patchNodeStatus(
    {
      name: host.nodeName,
      body: {
        status: {
          conditions: [
            {
              type: 'NetworkUnavailable',
              status: 'False',
              reason: 'BeesAgentReady',
              message: `MidoNet Bees agent of host ${host.hostId} is ready`,
              lastTransitionTime: now,
              lastHeartbeatTime: now,
            },
          ],
        },
      },
    },
    k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
  );
}

/**
 * Whether the agent's DaemonSet is going away (deleted, or being deleted) rather than being updated: an uninstall
 * removes the node's conflist, an upgrade must not (pods created during the restart would find no network). When
 * the API server cannot answer, the answer is "no": keeping the conflist is the safe mistake.
 */
export async function daemonSetGone(kc: k8s.KubeConfig, namespace: string, name: string): Promise<boolean> {
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  try {
    const ds = await apps.readNamespacedDaemonSet({ namespace, name });
    return ds.metadata?.deletionTimestamp !== undefined;
  } catch (err) {
    return (err as { code?: number }).code === 404;
  }
}
