// Namespace tenancy: removing the network of a deleted Namespace once nothing is attached to it any more.
// Level-triggered like the rest of the controller: the candidates are read from the store, not remembered, so a
// Namespace deleted while the controller was down is cleaned at its next pass. A candidate is a bridge the
// controller made from the pool (`NAMESPACE_NETWORK_OPTION`) whose tenant and name no live Namespace maps to
// (a Terminating one still counts as live: its pods are being deleted). It goes only once no workload port is on
// it (a pod's port stays until its CNI DEL: CVE-2024-7598's retention holds until then), and with it:
// - the bridge, with its router links and IPAM blocks (the store cascades them);
// - the tenant's router (with its load balancer, pools, members and VIPs: cascaded) once no other bridge of the
//   tenant uses it;
// - the tenant's controller-owned port groups and chains (`k8s+…`) once the tenant has no bridge left;
// - the tenant itself when nothing else is in it (a tenant holding anything else is left, with that).
// Nothing outside that tenant is read for removal, so other Namespaces' networks are untouched.
import type { Bridge, Port } from '../../core/model/types.js';
import type { Topology } from '../../core/topology/service.js';
import { TopologyError } from '../../core/topology/errors.js';
import { OWNED_PREFIX } from './netpol.js';
import { NAMESPACE_NETWORK_OPTION, refKey, type NetworkRef } from './tenancy.js';
import type { WriteStats } from './writer.js';

export interface Cleanup {
  /** Networks removed in this pass. */
  removed: NetworkRef[];
  /** Networks of deleted Namespaces still holding workload ports (to look at again soon). */
  waiting: NetworkRef[];
}

const isConflictOrGone = (e: unknown): boolean => e instanceof TopologyError && (e.code === 'conflict' || e.code === 'not_found');

/** A port of a workload (not one end of a router link). */
const isWorkloadPort = (p: Port, bridgeId: string): boolean => p.bridgeId === bridgeId && !p.peerId;

/**
 * Removes the namespace networks no live Namespace maps to (`live`: refKeys) and that hold no workload port.
 * `stats.deleted` counts the objects asked for deletion (cascades not counted).
 */
export async function removeStaleNetworks(topology: Topology, live: ReadonlySet<string>, stats: WriteStats): Promise<Cleanup> {
  const out: Cleanup = { removed: [], waiting: [] };
  const tenantNames = new Map((await topology.list('Tenant')).map((t) => [t.id, t.name]));
  const bridges = await topology.list('Bridge');
  const stale: { ref: NetworkRef; bridge: Bridge }[] = [];
  for (const b of bridges) {
    if (b.options?.[NAMESPACE_NETWORK_OPTION] !== 'true') continue;
    const tenant = tenantNames.get(b.tenantId);
    if (tenant === undefined) continue;
    const ref = { tenant, network: b.name };
    if (!live.has(refKey(ref))) stale.push({ ref, bridge: b });
  }
  if (!stale.length) return out;
  const ports = await topology.list('Port');
  for (const { ref, bridge } of stale) {
    if (ports.some((p) => isWorkloadPort(p, bridge.id))) {
      out.waiting.push(ref);
      continue;
    }
    try {
      // Refused (409) if a workload port was attached meanwhile: left for a later pass.
      await topology.delete('Bridge', bridge.id);
      stats.deleted++;
    } catch (e) {
      if (!isConflictOrGone(e)) throw e;
      if (e instanceof TopologyError && e.code === 'conflict') {
        out.waiting.push(ref);
        continue;
      }
    }
    out.removed.push(ref);
    await removeTenantLeftovers(topology, bridge, stats);
  }
  return out;
}

/** After a bridge went: its router if no other bridge of the tenant uses it; the tenant's policy if no bridge is left. */
async function removeTenantLeftovers(topology: Topology, gone: Bridge, stats: WriteStats): Promise<void> {
  const tenantId = gone.tenantId;
  const left = (await topology.list('Bridge')).filter((b) => b.tenantId === tenantId);
  const routerName = gone.options?.router ?? 'default';
  if (routerName !== 'none' && !left.some((b) => (b.options?.router ?? 'default') === routerName)) {
    const router = (await topology.list('Router')).find((r) => r.tenantId === tenantId && r.name === routerName);
    if (router) {
      try {
        await topology.delete('Router', router.id);
        stats.deleted++;
      } catch (e) {
        if (!isConflictOrGone(e)) throw e;
      }
    }
  }
  if (left.length) return;
  // The tenant's policy objects: chains (their rules cascade) and port groups, in one transaction. Rules of one
  // owned chain may jump to another: all go together, so no reference is left dangling.
  await topology.transact(async (tx) => {
    const mine = <T extends { tenantId?: string | undefined; name: string }>(o: T): boolean =>
      o.tenantId === tenantId && o.name.startsWith(OWNED_PREFIX);
    const chains = (await tx.list('Chain')).filter((c) => mine(c.value));
    const chainIds = new Set(chains.map((c) => c.value.id));
    for (const r of await tx.list('Rule')) if (chainIds.has(r.value.chainId)) tx.remove('Rule', r.value.id, r.version);
    for (const c of chains) {
      tx.remove('Chain', c.value.id, c.version);
      stats.deleted++;
    }
    for (const g of (await tx.list('PortGroup')).filter((x) => mine(x.value))) {
      tx.remove('PortGroup', g.value.id, g.version);
      stats.deleted++;
    }
  }, 'Chain');
  try {
    await topology.delete('Tenant', tenantId);
    stats.deleted++;
  } catch (e) {
    // Something else lives in that tenant: it stays.
    if (!isConflictOrGone(e)) throw e;
  }
}
