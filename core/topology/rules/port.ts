// Ports: a bridge port carries a workload (or one end of a router link) and holds plain addresses inside its
// bridge's subnets; a router port holds the router's addresses in CIDR form. On a bridge, no two ports (nor a
// linked router) share a MAC or an address.
import { macFor, randomId, workloadPortId } from '../../model/ids.js';
import type { Bridge, Port } from '../../model/types.js';
import { contains, formatInterfaceCidr, formatIp, isUnicastMac, normalizeMac, parseCidr, parseIp } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import type { Tx } from '../tx.js';
import type { KindRule } from './rule.js';
import { checkBridgeFilter } from './chain.js';

export const portRule: KindRule<'Port'> = {
  fill(d) {
    const type = d.type ?? (d.routerId !== undefined && d.bridgeId === undefined ? 'router' : 'bridge');
    const owner = d.owner;
    const id = d.id ?? (owner && typeof d.bridgeId === 'string' ? workloadPortId(d.bridgeId, owner.workloadId, owner.ifname) : randomId());
    return {
      ...d,
      type,
      id,
      mac: d.mac ?? macFor(id),
      ips: d.ips ?? [],
      adminStateUp: d.adminStateUp ?? true,
      status: d.status ?? 'unknown',
      portSecurity: d.portSecurity ?? type === 'bridge',
      portGroupIds: d.portGroupIds ?? [],
      options: d.options ?? {},
      // Empty until validate gives it the parent bridge's or router's tenant.
      tenantId: d.tenantId ?? '',
    };
  },
  validate: validatePort,
};

async function validatePort(p: Port, tx: Tx, prev: Port | undefined): Promise<void> {
  if (p.type === 'bridge') {
    for (const f of ['inboundFilterId', 'outboundFilterId'] as const) {
      if (p[f] !== undefined && p[f] !== prev?.[f]) await checkBridgeFilter(tx, p[f], f);
    }
  }
  if (p.type === 'bridge') {
    if (p.bridgeId === undefined) throw new TopologyError('invalid', 'a bridge port needs bridgeId', 'bridgeId');
    if (p.routerId !== undefined) throw new TopologyError('invalid', 'a bridge port has no routerId', 'routerId');
  } else {
    if (p.routerId === undefined) throw new TopologyError('invalid', 'a router port needs routerId', 'routerId');
    if (p.bridgeId !== undefined) throw new TopologyError('invalid', 'a router port has no bridgeId', 'bridgeId');
  }
  const bridge = p.bridgeId !== undefined ? await tx.need('Bridge', p.bridgeId, 'bridgeId') : undefined;
  const parent = bridge ?? (await tx.need('Router', p.routerId!, 'routerId'));
  if (p.tenantId !== '' && p.tenantId !== parent.tenantId) {
    throw new TopologyError('invalid', `tenantId must be the tenant of the ${p.type}`, 'tenantId');
  }
  p.tenantId = parent.tenantId;
  p.mac = normalizeMac(p.mac, 'mac');
  if (!isUnicastMac(p.mac)) throw new TopologyError('invalid', `mac ${p.mac} is a multicast address`, 'mac');
  const seen = new Set<string>();
  p.ips = p.ips.map((ip, i) => {
    const field = `ips[${i}]`;
    const text = bridge ? bridgeAddress(bridge, ip, field) : formatInterfaceCidr(parseCidr(ip, field));
    if (seen.has(text)) throw new TopologyError('invalid', `${field}: ${text} is listed twice`, field);
    seen.add(text);
    return text;
  });
  if (p.type === 'bridge') {
    const taken = await bridgeAddresses(tx, p.bridgeId!, new Set([p.id]));
    const macHolder = taken.macs.get(p.mac);
    if (macHolder) throw new TopologyError('conflict', `mac ${p.mac} is already used on this bridge by port ${macHolder}`, 'mac');
    for (const [i, ip] of p.ips.entries()) {
      const holder = taken.ips.get(ip);
      if (holder) throw new TopologyError('conflict', `address ${ip} is already used on this bridge by port ${holder}`, `ips[${i}]`);
    }
  }
  if (p.interfaceName !== undefined && p.hostId === undefined) {
    throw new TopologyError('invalid', 'interfaceName binds a port to a host: give hostId too', 'hostId');
  }
}

/** A bridge port's address: plain, canonical, inside one of the bridge's subnets (when it has any). */
function bridgeAddress(bridge: Bridge, ip: string, field: string): string {
  const addr = parseIp(ip, field);
  const text = formatIp(addr);
  if (bridge.subnets.length && !bridge.subnets.some((s) => contains(s.cidr, addr))) {
    throw new TopologyError(
      'invalid',
      `${field}: ${text} is not inside any subnet of bridge ${bridge.name} (${bridge.subnets.map((s) => s.cidr).join(', ')})`,
      field,
    );
  }
  return text;
}

/** Addresses and MACs already used on a bridge: its ports', and the router addresses linked to it. */
export async function bridgeAddresses(
  tx: Tx,
  bridgeId: string,
  except: Set<string>,
): Promise<{ ips: Map<string, string>; macs: Map<string, string> }> {
  const ips = new Map<string, string>();
  const macs = new Map<string, string>();
  const ports = (await tx.list('Port')).map((p) => p.value);
  const byId = new Map(ports.map((p) => [p.id, p]));
  for (const p of ports) {
    if (p.bridgeId !== bridgeId || except.has(p.id)) continue;
    macs.set(p.mac, p.id);
    for (const ip of p.ips) ips.set(ip, p.id);
    const peer = p.peerId ? byId.get(p.peerId) : undefined;
    if (peer && !except.has(peer.id)) {
      macs.set(peer.mac, peer.id);
      for (const ip of peer.ips) ips.set(ip.split('/')[0]!, peer.id);
    }
  }
  return { ips, macs };
}
