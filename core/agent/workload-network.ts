// The hook through which an orchestrator places a new workload on a network other than the one its runtime named:
// Kubernetes' namespace tenancy puts each Namespace's pods on their own tenant and network, while every pod's CNI
// config names the same one. core knows no orchestrator: an adapter implements the resolver
// (kubernetes/controller/tenancy.ts reads the pod's Namespace) and the composition root hands it to the agent
// (AgentOptions.networkOf). With one, detach, check and gc find ports by their owner on every network, since the
// network named in those requests is not where the port was made.

/** What the resolver is told about the workload being attached. */
export interface WorkloadNetworkRequest {
  orchestrator: string;
  workloadId: string;
  /** The attach request's labels (the CNI shim's `k8s.pod.namespace`, `k8s.pod.name`, ...). */
  labels: Readonly<Record<string, string>>;
  /** The tenant and network the runtime named. */
  tenant: string | undefined;
  network: string;
}

/**
 * The tenant and network the workload joins instead, or undefined to keep the named one. The network must exist
 * (the orchestrator's controller makes it): the attach fails with not_found otherwise, and the runtime retries.
 * A throw fails the attach.
 */
export type WorkloadNetworkResolver = (req: WorkloadNetworkRequest) => Promise<{ tenant: string; network: string } | undefined>;
