// Load balancing (MidoNet's L4LB): a router's load balancer, its pools, their members and VIPs, health monitors.
import { randomId } from '../../model/ids.js';
import { formatIp, parseIp, type Family } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import type { Tx } from '../tx.js';
import { given, type KindRule } from './rule.js';

const familyName = (f: Family): string => `IPv${f}`;

/**
 * Dual stack: a VIP is served only by the members of its own family (a pool may hold both families, each with a
 * VIP, as a Kubernetes dual-stack Service does). A VIP over members of the other family only could never be
 * answered: refused. Checked on the VIP only, so a pool can grow into dual stack one object at a time (a member of
 * the new family first, then its VIP: the order the Kubernetes controller writes in); a member of a family no VIP
 * has yet is simply not served until one comes.
 */
async function membersOfFamily(tx: Tx, v: { id: string; poolId: string }, family: Family): Promise<void> {
  const members = (await tx.list('PoolMember')).map((o) => o.value).filter((o) => o.poolId === v.poolId);
  if (members.length === 0 || members.some((o) => parseIp(o.address).family === family)) return;
  const theirs = familyName(family === 4 ? 6 : 4);
  throw new TopologyError(
    'invalid',
    `address: an ${familyName(family)} VIP would have no member to go to: every member of pool ${v.poolId} is ${theirs}`,
    'address',
  );
}

/**
 * A VIP serves the clients of its load balancer's router's networks, through their gateway of the VIP's family: a
 * VIP of a family none of those networks has a subnet of is outside them and reaches no client. (A router without
 * any subnet yet is let be: its networks may come later.)
 */
async function routerHasFamily(tx: Tx, poolId: string, family: Family): Promise<void> {
  const pool = (await tx.read('Pool', poolId))?.value;
  const lb = pool && (await tx.read('LoadBalancer', pool.loadBalancerId))?.value;
  if (!lb) return;
  const ports = (await tx.list('Port')).map((p) => p.value);
  const byId = new Map(ports.map((p) => [p.id, p]));
  const families = new Set<Family>();
  for (const rp of ports) {
    if (rp.type !== 'router' || rp.routerId !== lb.routerId || !rp.peerId) continue;
    const bridgeId = byId.get(rp.peerId)?.bridgeId;
    const bridge = bridgeId ? (await tx.read('Bridge', bridgeId))?.value : undefined;
    for (const s of bridge?.subnets ?? []) families.add(s.cidr.includes(':') ? 6 : 4);
  }
  if (families.size === 0 || families.has(family)) return;
  throw new TopologyError(
    'invalid',
    `address: an ${familyName(family)} VIP is outside the subnets of every network of router ${lb.routerId} (${[...families]
      .map(familyName)
      .join(', ')} only)`,
    'address',
  );
}

export const loadBalancerRule: KindRule<'LoadBalancer'> = {
  fill: (d) => ({ ...d, id: d.id ?? randomId(), routerId: given(d, 'routerId'), adminStateUp: d.adminStateUp ?? true }),
};

export const poolRule: KindRule<'Pool'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    loadBalancerId: given(d, 'loadBalancerId'),
    protocol: d.protocol ?? 'tcp',
    lbMethod: d.lbMethod ?? 'round_robin',
    adminStateUp: d.adminStateUp ?? true,
  }),
};

export const poolMemberRule: KindRule<'PoolMember'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    poolId: given(d, 'poolId'),
    address: given(d, 'address'),
    port: given(d, 'port'),
    weight: d.weight ?? 1,
    adminStateUp: d.adminStateUp ?? true,
    status: d.status ?? 'unknown',
  }),
  validate(m) {
    m.address = formatIp(parseIp(m.address, 'address'));
  },
};

export const vipRule: KindRule<'Vip'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    poolId: given(d, 'poolId'),
    address: given(d, 'address'),
    port: given(d, 'port'),
    protocol: d.protocol ?? 'tcp',
  }),
  async validate(v, tx, prev) {
    const ip = parseIp(v.address, 'address');
    v.address = formatIp(ip);
    // Checked when the address is set, not on every later write (a status or weight change elsewhere must not
    // turn an existing object invalid).
    if (prev?.address !== v.address) {
      await membersOfFamily(tx, v, ip.family);
      await routerHasFamily(tx, v.poolId, ip.family);
    }
  },
};

export const healthMonitorRule: KindRule<'HealthMonitor'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    type: d.type ?? 'tcp',
    delay: d.delay ?? 5,
    timeout: d.timeout ?? 3,
    maxRetries: d.maxRetries ?? 3,
    adminStateUp: d.adminStateUp ?? true,
  }),
};
