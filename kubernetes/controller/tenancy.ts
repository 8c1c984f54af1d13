// Which bees tenant and network a pod joins (kubernetes.md §2.3). Two mappings:
// - `flat` (the default): every pod joins one network of one tenant; namespaces are isolated only by
//   NetworkPolicy. This is the flat pod network conformance assumes.
// - `namespace`: each Namespace is a tenant of its own name with one network (the configured network name), its
//   subnet the first free block of the pod CIDR pool; or, when the Namespace is annotated
//   `bees.midonet.org/tenant` and/or `bees.midonet.org/network`, that tenant and network (namespaces may share
//   one). Pods of different tenants are on no common pod network (they meet only as the outside does, through
//   the host, SNATed): this leaves conformance, by choice.
// The controller makes the networks (the only writer); the node agent places a new pod on its namespace's network
// at CNI ADD (`namespaceNetworkResolver`, given to the agent as AgentOptions.networkOf), reading the Namespace.
import * as k8s from '@kubernetes/client-node';
import type { WorkloadNetworkRequest, WorkloadNetworkResolver } from '../../core/agent/workload-network.js';
import { cidrFamily, formatCidr, overlaps, parseCidr, prefixLength, splitCidr } from '../../core/net/ip.js';
import { wire, type Namespace } from './objects.js';
import { POD_NAMESPACE_OPTION } from './writer.js';

export type TenancyMode = 'flat' | 'namespace';
export const TENANCY_MODES: readonly TenancyMode[] = ['flat', 'namespace'];
export const TENANT_ANNOTATION = 'bees.midonet.org/tenant';
export const NETWORK_ANNOTATION = 'bees.midonet.org/network';
/** Marks a network the controller made from the pool (namespace mode). */
export const NAMESPACE_NETWORK_OPTION = 'k8s.namespace-network';

export interface Tenancy {
  mode: TenancyMode;
  /** flat: the tenant; namespace: unused (each namespace is its own tenant unless annotated). */
  tenant: string;
  /** The network's name: flat, the one network; namespace, the network each namespace's tenant gets. */
  network: string;
}

export interface NetworkRef {
  tenant: string;
  network: string;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The tenant and network of a namespace's pods (`annotations` of its Namespace, if known). */
export function networkOfNamespace(t: Tenancy, namespace: string, annotations: Readonly<Record<string, string>> | undefined): NetworkRef {
  if (t.mode === 'flat') return { tenant: t.tenant, network: t.network };
  const tenant = annotations?.[TENANT_ANNOTATION] || namespace;
  const network = annotations?.[NETWORK_ANNOTATION] || t.network;
  for (const [what, v] of [
    [TENANT_ANNOTATION, tenant],
    [NETWORK_ANNOTATION, network],
  ] as const) {
    if (!NAME.test(v)) throw new Error(`namespace ${namespace}: ${what} "${v}" is not a valid name (letters, digits, _ . -, at most 63)`);
  }
  return { tenant, network };
}

export const refKey = (r: NetworkRef): string => `${r.tenant}\0${r.network}`;

/**
 * Subnets for a new namespace network: per CIDR of the pool, its first block of `/prefix` (IPv4; IPv6 blocks are
 * /64) that overlaps no subnet in `used`. Throws when a pool is exhausted.
 */
export function allocateSubnets(pool: readonly string[], used: readonly string[], prefix4 = 24): string[] {
  const out: string[] = [];
  for (const cidr of pool) {
    const c = parseCidr(cidr);
    const prefix = Math.max(prefixLength(c), cidrFamily(c) === 4 ? prefix4 : 64);
    const block = splitCidr(c, prefix).find((b) => !used.some((u) => overlaps(u, b)) && !out.some((o) => overlaps(o, b)));
    if (!block) throw new Error(`the pod CIDR pool ${cidr} has no free /${prefix} left for another namespace network`);
    out.push(formatCidr(block));
  }
  return out;
}

/** The agent's half: at CNI ADD, the pod's Namespace (one GET) decides its network. Flat: no change. */
export function namespaceNetworkResolver(kc: k8s.KubeConfig, mode: TenancyMode): WorkloadNetworkResolver {
  const core = kc.makeApiClient(k8s.CoreV1Api);
  return async (req: WorkloadNetworkRequest) => {
    if (mode === 'flat') return undefined;
    const namespace = req.labels[POD_NAMESPACE_OPTION];
    if (!namespace) return undefined; // not a pod
    const ns = wire(await core.readNamespace({ name: namespace })) as unknown as Namespace;
    return networkOfNamespace({ mode, tenant: req.tenant ?? 'default', network: req.network }, namespace, ns.metadata.annotations);
  };
}
