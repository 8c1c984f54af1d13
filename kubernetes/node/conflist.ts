// The conflist a Kubernetes node gets, and writing it. The agent writes it only once it is ready (Cilium's
// write-cni-conf-when-ready): until the file exists kubelet reports "cni config uninitialized" and keeps the node's
// not-ready taint, so no pod is sent to a node whose agent cannot serve it. cniVersion 1.1.0 makes containerd run
// the shim's STATUS verb, which fails while the agent is down, so a node whose agent dies goes NotReady again
// while the file stays in place.
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export const K8S_CONFLIST_NAME = '10-midonet.conflist';
export const K8S_CNI_VERSION = '1.1.0';

export interface NodeNetwork {
  network: string;
  tenant: string;
  /** Pod subnets (IPv4 and/or IPv6): the network is created with them on first use. */
  subnets: string[];
  mtu?: number;
  agentSocket?: string;
  /** Default K8S_CNI_VERSION; 1.0.0 for runtimes whose libcni predates 1.1.0 (containerd 1.6 refuses its results). */
  cniVersion?: string;
}

/** One plugin, no portmap: the agent publishes hostPorts itself (portMappings), and Debian's portmap speaks ≤1.0.0. */
export function k8sConflist(n: NodeNetwork): Record<string, unknown> {
  const midonet: Record<string, unknown> = {
    type: 'midonet',
    tenant: n.tenant,
    network: n.network,
    capabilities: { ips: true, mac: true, bandwidth: true, portMappings: true, 'io.kubernetes.cri.pod-annotations': true },
  };
  if (n.subnets.length) midonet.subnets = n.subnets.map((cidr) => ({ cidr }));
  if (n.mtu !== undefined) midonet.mtu = n.mtu;
  if (n.agentSocket) midonet.agentSocket = n.agentSocket;
  return { cniVersion: n.cniVersion ?? K8S_CNI_VERSION, name: n.network, plugins: [midonet] };
}

/** Temp file in the same directory (rename is atomic only within a filesystem), fsync, rename. The temp name
 *  ends in none of .conf/.conflist/.json, so libcni never loads a half-written file. */
export async function writeConflistAtomically(path: string, conf: Record<string, unknown>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(JSON.stringify(conf, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
