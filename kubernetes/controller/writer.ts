// Writes what the controller computed into the topology, changing only the difference, level-triggered: the
// desired objects are the whole truth for the objects the controller owns (port groups and chains of the tenant
// named `k8s/…` and their rules; the pools of its load balancer with their members and VIPs), so a restarted or
// newly elected controller converges the store to the same state whatever it missed.
//
// Order, so that no write ever names what does not exist and nothing is left dangling:
// 1. one transaction: the groups, chains and rules wanted (created or updated), the bridge's filters, and the
//    removal of owned objects no longer wanted, with those groups also taken out of every port holding them;
// 2. each pod's port: its owned groups set to what the pod's labels say (other groups kept), one update each
//    (agents write ports too; each update is retried on conflict by the topology service). A port whose pod the
//    controller does not know (being deleted, or not seen yet) is left as it is: isolation stays until the port
//    is detached (CVE-2024-7598).
import type { Kind, Models, Port } from '../../core/model/types.js';
import type { Topology } from '../../core/topology/service.js';
import type { Tx } from '../../core/topology/tx.js';
import { createIn, updateIn } from '../../core/topology/write.js';
import type { CompiledPolicy } from './netpol.js';
import { OWNED_PREFIX } from './netpol.js';
import type { CompiledServices } from './services.js';

export const POD_NAMESPACE_OPTION = 'k8s.pod.namespace';
export const POD_NAME_OPTION = 'k8s.pod.name';

export interface WriteStats {
  created: number;
  updated: number;
  deleted: number;
  ports: number;
}

const owned = (o: { tenantId?: string | undefined; name: string }, tenantId: string): boolean =>
  o.tenantId === tenantId && o.name.startsWith(OWNED_PREFIX);

async function upsert<K extends Kind>(tx: Tx, kind: K, want: Models[K], stats: WriteStats): Promise<void> {
  const cur = await tx.read(kind, want.id);
  if (!cur) {
    await createIn(tx, kind, structuredClone(want));
    stats.created++;
  } else {
    const before = JSON.stringify(cur.value);
    const after = await updateIn(tx, kind, structuredClone(want), cur);
    if (JSON.stringify(after) !== before) stats.updated++;
  }
}

/** Step 1: the policy objects and the bridges' filters. Returns the ids of every group the controller owns now. */
export async function writePolicy(
  topology: Topology,
  tenantId: string,
  bridgeIds: readonly string[],
  c: CompiledPolicy,
  stats: WriteStats,
): Promise<Set<string>> {
  return topology.transact(async (tx) => {
    const wantGroups = new Set(c.portGroups.map((g) => g.id));
    const wantChains = new Set(c.chains.map((x) => x.id));
    const wantRules = new Set(c.rules.map((r) => r.id));
    const haveGroups = (await tx.list('PortGroup')).filter((g) => owned(g.value, tenantId));
    const haveChains = (await tx.list('Chain')).filter((x) => owned(x.value, tenantId));
    const ownedChains = new Set([...haveChains.map((x) => x.value.id), ...wantChains]);
    for (const g of c.portGroups) await upsert(tx, 'PortGroup', g, stats);
    for (const x of c.chains) await upsert(tx, 'Chain', x, stats);
    // Rules no longer wanted go first: a position or a jump of theirs must not stand in the way of the new ones.
    for (const r of await tx.list('Rule')) {
      if (ownedChains.has(r.value.chainId) && !wantRules.has(r.value.id)) {
        tx.remove('Rule', r.value.id, r.version);
        stats.deleted++;
      }
    }
    for (const r of c.rules) await upsert(tx, 'Rule', r, stats);
    for (const bridgeId of bridgeIds) {
      const bridge = await tx.read('Bridge', bridgeId);
      if (!bridge) continue;
      const b = bridge.value;
      for (const [field, chainId] of [
        ['inboundFilterId', c.bridgeInboundFilterId],
        ['outboundFilterId', c.bridgeOutboundFilterId],
      ] as const) {
        const cur = b[field];
        if (cur !== undefined && cur !== chainId && !ownedChains.has(cur)) {
          throw new Error(`bridge ${b.name} has ${field} ${cur} of its own: NetworkPolicy needs that filter (clear it first)`);
        }
      }
      if (b.inboundFilterId !== c.bridgeInboundFilterId || b.outboundFilterId !== c.bridgeOutboundFilterId) {
        await updateIn(
          tx,
          'Bridge',
          { ...b, inboundFilterId: c.bridgeInboundFilterId, outboundFilterId: c.bridgeOutboundFilterId },
          bridge,
        );
        stats.updated++;
      }
    }
    for (const x of haveChains) {
      if (!wantChains.has(x.value.id)) {
        tx.remove('Chain', x.value.id, x.version);
        stats.deleted++;
      }
    }
    const goneGroups = new Set(haveGroups.filter((g) => !wantGroups.has(g.value.id)).map((g) => g.value.id));
    if (goneGroups.size) {
      for (const p of await tx.list('Port')) {
        if (!p.value.portGroupIds.some((g) => goneGroups.has(g))) continue;
        await updateIn(tx, 'Port', { ...p.value, portGroupIds: p.value.portGroupIds.filter((g) => !goneGroups.has(g)) }, p);
      }
      for (const g of haveGroups)
        if (goneGroups.has(g.value.id)) {
          tx.remove('PortGroup', g.value.id, g.version);
          stats.deleted++;
        }
    }
    return new Set([...haveGroups.map((g) => g.value.id), ...wantGroups]);
  }, 'Chain');
}

/** The pod a port was made for (the CNI shim labels it with kubelet's K8S_POD_NAMESPACE/NAME). */
export function podKeyOfPort(p: Port): string | undefined {
  const ns = p.options?.[POD_NAMESPACE_OPTION];
  const name = p.options?.[POD_NAME_OPTION];
  return ns && name ? `${ns}/${name}` : undefined;
}

/** Step 2: every known pod's port in exactly its groups among `ownedGroups` (other groups untouched). */
export async function writeMemberships(
  topology: Topology,
  tenantId: string,
  ports: readonly Port[],
  memberships: ReadonlyMap<string, string[]>,
  ownedGroups: ReadonlySet<string>,
  stats: WriteStats,
): Promise<void> {
  for (const p of ports) {
    if (p.tenantId !== tenantId || p.type !== 'bridge') continue;
    const key = podKeyOfPort(p);
    const want = key === undefined ? undefined : memberships.get(key);
    if (want === undefined) continue;
    const next = [...p.portGroupIds.filter((g) => !ownedGroups.has(g)), ...want];
    if (next.length === p.portGroupIds.length && next.every((g) => p.portGroupIds.includes(g))) continue;
    try {
      await topology.update('Port', p.id, { portGroupIds: next });
      stats.ports++;
    } catch (e) {
      // Detached meanwhile: nothing to do.
      if ((e as { code?: string }).code !== 'not_found') throw e;
    }
  }
}

/** The Services' pools, members and VIPs on load balancer `lbId` (everything under it is the controller's). */
export async function writeServices(topology: Topology, lbId: string, c: CompiledServices, stats: WriteStats): Promise<void> {
  await topology.transact(async (tx) => {
    const pools = (await tx.list('Pool')).filter((p) => p.value.loadBalancerId === lbId);
    const ours = new Set([...pools.map((p) => p.value.id), ...c.pools.map((p) => p.id)]);
    const wantPools = new Set(c.pools.map((p) => p.id));
    const want = new Set([...c.members.map((m) => m.id), ...c.vips.map((v) => v.id)]);
    for (const kind of ['PoolMember', 'Vip'] as const) {
      for (const o of await tx.list(kind)) {
        if (ours.has(o.value.poolId) && !want.has(o.value.id)) {
          tx.remove(kind, o.value.id, o.version);
          stats.deleted++;
        }
      }
    }
    for (const p of pools)
      if (!wantPools.has(p.value.id)) {
        tx.remove('Pool', p.value.id, p.version);
        stats.deleted++;
      }
    for (const p of c.pools) await upsert(tx, 'Pool', p, stats);
    for (const m of c.members) await upsert(tx, 'PoolMember', m, stats);
    for (const v of c.vips) await upsert(tx, 'Vip', v, stats);
  }, 'Pool');
}
