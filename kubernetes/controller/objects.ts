// The Kubernetes objects the controller reads, as their JSON wire form. @kubernetes/client-node hands informer
// callbacks two shapes (kubernetes.md §3.5: list items pass its ObjectSerializer, so `from` becomes `_from` and
// timestamps Dates; watch objects are raw JSON): `wire` turns either into the raw form, so one code path sees one
// shape. Only the fields the controller reads are typed.
import type { LabelSelector } from './selector.js';

export interface Meta {
  name: string;
  namespace?: string;
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  resourceVersion?: string;
  deletionTimestamp?: string;
  generation?: number;
}

export interface K8sObject {
  apiVersion?: string;
  kind?: string;
  metadata: Meta;
}

export interface Namespace extends K8sObject {
  status?: { phase?: string };
}

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}

export interface Pod extends K8sObject {
  spec?: { nodeName?: string; hostNetwork?: boolean; containers?: { name: string; ports?: ContainerPort[] }[] };
  status?: { podIP?: string; podIPs?: { ip: string }[]; phase?: string };
}

export interface IPBlock {
  cidr: string;
  except?: string[];
}

export interface NetworkPolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: IPBlock;
}

export interface NetworkPolicyPort {
  protocol?: string;
  port?: number | string;
  endPort?: number;
}

export interface NetworkPolicySpec {
  podSelector: LabelSelector;
  policyTypes?: string[];
  ingress?: { from?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
  egress?: { to?: NetworkPolicyPeer[]; ports?: NetworkPolicyPort[] }[];
}

export interface NetworkPolicy extends K8sObject {
  spec: NetworkPolicySpec;
}

export interface ServicePort {
  name?: string;
  protocol?: string;
  port: number;
  targetPort?: number | string;
  nodePort?: number;
}

export interface Service extends K8sObject {
  spec?: {
    type?: string;
    clusterIP?: string;
    clusterIPs?: string[];
    externalIPs?: string[];
    ports?: ServicePort[];
    selector?: Record<string, string>;
    sessionAffinity?: string;
    sessionAffinityConfig?: { clientIP?: { timeoutSeconds?: number } };
    externalTrafficPolicy?: string;
    internalTrafficPolicy?: string;
  };
  status?: { loadBalancer?: { ingress?: { ip?: string; ipMode?: string }[] } };
}

export interface Endpoint {
  addresses: string[];
  conditions?: { ready?: boolean | null; serving?: boolean | null; terminating?: boolean | null };
  nodeName?: string;
  targetRef?: { kind?: string; name?: string; namespace?: string };
}

export interface EndpointSlice extends K8sObject {
  addressType?: string;
  endpoints?: Endpoint[] | null;
  ports?: { name?: string; port?: number; protocol?: string }[] | null;
}

/** `namespace/name` (or `name` for cluster-scoped objects): the informer cache key. */
export function keyOf(o: K8sObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** Deep copy in the JSON wire form: Dates as RFC 3339 strings, client-node's `_from` back to `from`. */
export function wire<T>(o: T): T {
  return JSON.parse(JSON.stringify(o), (_k, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v) && '_from' in v) {
      const { _from, ...rest } = v as Record<string, unknown>;
      return { from: _from, ...rest };
    }
    return v;
  }) as T;
}
