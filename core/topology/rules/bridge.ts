// Virtual bridges: subnets that never overlap within a tenant, a name unique within it, and a tunnel key (VNI)
// unique in the whole cluster, allocated here under the cluster lock.
import { stableId } from '../../model/ids.js';
import { TUNNEL_KEY_MAX } from '../../model/schema.js';
import type { Bridge } from '../../model/types.js';
import { contains, formatCidr, overlaps, type Cidr } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import { CLUSTER_LOCK_ID, type Tx } from '../tx.js';
import { existsError, given, type KindRule } from './rule.js';
import { normalizeSubnet } from './subnet.js';
import { checkBridgeFilter } from './chain.js';

export const bridgeRule: KindRule<'Bridge'> = {
  async fill(d, tx) {
    const tenant = await tx.need('Tenant', String(d.tenantId), 'tenantId');
    const name = given(d, 'name');
    const id = d.id ?? stableId('Bridge', tenant.id, name);
    return {
      ...d,
      id,
      tenantId: tenant.id,
      name,
      tunnelKey: d.tunnelKey ?? (await freeTunnelKey(tx, id)),
      subnets: d.subnets ?? [],
      adminStateUp: d.adminStateUp ?? true,
      options: d.options ?? {},
      labels: d.labels ?? {},
    };
  },
  validate: validateBridge,
};

/**
 * The lowest tunnel key no other bridge holds. Every bridge of the cluster counts; the cluster lock taken in
 * validate makes two creates that picked the same key conflict.
 */
async function freeTunnelKey(tx: Tx, id: string): Promise<number> {
  const used = new Set((await tx.list('Bridge')).filter((o) => o.value.id !== id).map((o) => o.value.tunnelKey));
  let key = 1;
  while (used.has(key)) key++;
  if (key > TUNNEL_KEY_MAX) throw new TopologyError('exhausted', 'no free tunnel key left', 'tunnelKey');
  return key;
}

async function validateBridge(b: Bridge, tx: Tx, prev: Bridge | undefined): Promise<void> {
  for (const f of ['inboundFilterId', 'outboundFilterId'] as const) {
    if (b[f] !== undefined && b[f] !== prev?.[f]) await checkBridgeFilter(tx, b[f], f);
  }
  const nets: Cidr[] = [];
  b.subnets = b.subnets.map((s, i) => normalizeSubnet(s, i, nets));
  if (b.mtu !== undefined && b.mtu < 1280 && nets.some((n) => n.family === 6)) {
    throw new TopologyError('invalid', `mtu ${b.mtu} is below 1280, the IPv6 minimum`, 'mtu');
  }
  const tenantBridges = (await tx.list('Bridge')).map((x) => x.value).filter((o) => o.id !== b.id);
  for (const o of tenantBridges) {
    if (o.tenantId !== b.tenantId) continue;
    if (o.name === b.name) throw existsError('Bridge', o);
    for (const [i, n] of nets.entries()) {
      const clash = o.subnets.find((s) => overlaps(s.cidr, n));
      if (clash) {
        throw new TopologyError(
          'conflict',
          `subnet ${formatCidr(n)} overlaps ${clash.cidr} of bridge "${o.name}" (${o.id})`,
          `subnets[${i}].cidr`,
        );
      }
    }
  }
  // Tunnel keys are cluster-wide: every bridge counts, not only the tenant's.
  if (new Set(tenantBridges.map((o) => o.tunnelKey)).has(b.tunnelKey)) {
    const holder = tenantBridges.find((o) => o.tunnelKey === b.tunnelKey)!;
    throw new TopologyError('conflict', `tunnel key ${b.tunnelKey} is used by bridge "${holder.name}" (${holder.id})`, 'tunnelKey');
  }
  if (prev) {
    // Narrowing the subnets must not strand addresses already handed out.
    for (const p of (await tx.list('Port')).map((x) => x.value)) {
      if (p.bridgeId !== b.id) continue;
      for (const ip of p.ips) {
        if (!b.subnets.some((s) => contains(s.cidr, ip))) {
          throw new TopologyError('conflict', `port ${p.id} holds ${ip}, which would be outside every subnet`, 'subnets');
        }
      }
    }
    for (const blk of (await tx.list('IpamBlock')).map((x) => x.value)) {
      if (blk.bridgeId === b.id && !b.subnets.some((s) => s.cidr === blk.subnet)) {
        throw new TopologyError(
          'conflict',
          `subnet ${blk.subnet} still has IPAM block ${blk.cidr}; release its addresses first`,
          'subnets',
        );
      }
    }
  }
  await tx.bump(b.tenantId);
  if (!prev || prev.tunnelKey !== b.tunnelKey) {
    await tx.ensureClusterLock();
    await tx.bump(CLUSTER_LOCK_ID);
  }
}
