// Is kube-proxy running? Bees replaces it by default (its load balancers serve every Service); two proxies
// programming the same Services fight (kubernetes.md §2.6: kube-proxy's host-netns rules see pod traffic only
// after our router has SNATed it), so the controller refuses to start beside one unless told to, and then serves
// only the Services labelled service.kubernetes.io/service-proxy-name=midonet-bees, which kube-proxy skips.
// Looked for: the kube-proxy DaemonSet (kubeadm, kind, most installers) and, on this host, kube-proxy's own nft
// table (`ip kube-proxy`) or iptables chain (KUBE-SERVICES in nat).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { systemTool } from '../../core/datapath/exec.js';

const run = promisify(execFile);

export interface KubeProxyFinding {
  where: string;
}

async function hostChains(netns?: string): Promise<KubeProxyFinding[]> {
  const found: KubeProxyFinding[] = [];
  const probe = async (cmd: string, args: string[], where: string): Promise<void> => {
    try {
      // The system's tools, never a same-named one earlier in PATH (npm's node_modules/.bin has an `nft`).
      if (netns) await run(systemTool('ip'), ['netns', 'exec', netns, systemTool(cmd), ...args], { timeout: 5000 });
      else await run(systemTool(cmd), args, { timeout: 5000 });
      found.push({ where });
    } catch {
      // absent (or the tool is missing): nothing found there
    }
  };
  await probe('nft', ['list', 'table', 'ip', 'kube-proxy'], 'nftables table "ip kube-proxy" on this host');
  await probe('iptables', ['-w', '5', '-t', 'nat', '-n', '-L', 'KUBE-SERVICES'], 'iptables chain nat/KUBE-SERVICES on this host');
  return found;
}

/**
 * Where kube-proxy shows itself: its DaemonSet in kube-system (or `namespace`), and with `host`, its rules here (in
 * the named network namespace `netns`, for tests).
 */
export async function findKubeProxy(
  kc: k8s.KubeConfig,
  opts: { host?: boolean; namespace?: string; netns?: string } = {},
): Promise<KubeProxyFinding[]> {
  const found: KubeProxyFinding[] = [];
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const ns = opts.namespace ?? 'kube-system';
  try {
    const ds = await apps.readNamespacedDaemonSet({ namespace: ns, name: 'kube-proxy' });
    if (!ds.metadata?.deletionTimestamp) found.push({ where: `DaemonSet ${ns}/kube-proxy` });
  } catch (e) {
    if ((e as { code?: number }).code !== 404) throw e;
  }
  if (opts.host) found.push(...(await hostChains(opts.netns)));
  return found;
}

export function kubeProxyRefusal(found: readonly KubeProxyFinding[]): string {
  return (
    `kube-proxy is running (${found.map((f) => f.where).join('; ')}). MidoNet Bees replaces kube-proxy: remove it ` +
    `(kubectl -n kube-system delete daemonset kube-proxy, then on each node: nft delete table ip kube-proxy, or ` +
    `kube-proxy --cleanup), or run the controller with --beside-kube-proxy to serve only Services labelled ` +
    `service.kubernetes.io/service-proxy-name=midonet-bees and leave the others to kube-proxy.`
  );
}
