// The hook through which an orchestrator's policy places a new workload port in port groups before its attach
// returns, so the port's first packet already meets that policy (Kubernetes: "newly created pods affected by a
// NetworkPolicy are isolated before they are started"). core knows no orchestrator: an adapter implements the
// resolver (kubernetes/node/pod-groups.ts reads the Pod, its Namespace and the NetworkPolicies) and the
// composition root hands it to the agent (AgentOptions.portGroups). Without one, a new port joins no group.

/** What the resolver is told about the port being made. */
export interface PortGroupRequest {
  tenantId: string;
  bridgeId: string;
  orchestrator: string;
  workloadId: string;
  /** The attach request's labels (the CNI shim's `k8s.pod.namespace`, `k8s.pod.name`, ...). */
  labels: Readonly<Record<string, string>>;
}

/**
 * Port group ids the new port belongs to. Ids that do not exist (yet) are dropped by the agent; a throw fails the
 * attach (fail closed: the runtime retries), so a pod never starts outside the policy meant for it.
 */
export type PortGroupResolver = (req: PortGroupRequest) => Promise<string[]>;
