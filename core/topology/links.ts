// Router-bridge links (MidoNet's interior ports): a router port holding the router's address on each bridge subnet,
// a bridge port peered with it, and a route per subnet via that port. Only this code makes them: the per-kind
// rules skip the `peerId` reference, so a client cannot peer ports by hand.
import { macFor, stableId } from '../model/ids.js';
import type { Port, Route } from '../model/types.js';
import { contains, defaultGateway, formatInterfaceCidr, parseCidr, parseNetwork } from '../net/ip.js';
import { TopologyError } from './errors.js';
import { bridgeAddresses } from './rules/port.js';
import type { Tx } from './tx.js';

export interface RouterLink {
  routerPort: Port;
  bridgePort: Port;
}

/**
 * One attempt of linking router `routerId` to bridge `bridgeId`, on the gateway addresses of the bridge's subnets
 * unless `address` names one. Linking again with the same (or no) address returns the existing link.
 */
export async function linkRouter(tx: Tx, routerId: string, bridgeId: string, address: string | undefined): Promise<RouterLink> {
  const router = await tx.read('Router', routerId);
  if (!router) throw new TopologyError('not_found', `router ${JSON.stringify(routerId)} not found`, 'routerId');
  const bridge = await tx.read('Bridge', bridgeId);
  if (!bridge) throw new TopologyError('not_found', `bridge ${JSON.stringify(bridgeId)} not found`, 'bridgeId');
  if (router.value.tenantId !== bridge.value.tenantId) {
    throw new TopologyError(
      'invalid',
      `router ${router.value.name} and bridge ${bridge.value.name} belong to different tenants`,
      'bridgeId',
    );
  }
  const rpId = stableId('Port', routerId, bridgeId, 'router');
  const bpId = stableId('Port', routerId, bridgeId, 'bridge');
  const want = address === undefined ? undefined : parseCidr(address, 'address');
  const ips: string[] = [];
  const subnetsUsed: string[] = [];
  for (const s of bridge.value.subnets) {
    const net = parseNetwork(s.cidr);
    if (want && want.family === net.family) {
      if (!contains(net, { family: want.family, value: want.address })) continue;
      if (want.prefix !== net.prefix)
        throw new TopologyError('invalid', `address ${address} must have the prefix length of ${s.cidr} (/${net.prefix})`, 'address');
      ips.push(formatInterfaceCidr(want));
      subnetsUsed.push(s.cidr);
    } else if (s.gateway !== '' && (!want || want.family !== net.family)) {
      ips.push(`${s.gateway ?? defaultGateway(net)}/${net.prefix}`);
      subnetsUsed.push(s.cidr);
    }
  }
  if (want && !ips.includes(formatInterfaceCidr(want))) {
    throw new TopologyError('invalid', `address ${address} is not inside any subnet of bridge ${bridge.value.name}`, 'address');
  }
  if (ips.length === 0)
    throw new TopologyError('invalid', `bridge ${bridge.value.name} has no subnet with a gateway; give an address`, 'address');

  const existing = await tx.read('Port', rpId);
  if (existing) {
    const bp = await tx.read('Port', bpId);
    if (want && !existing.value.ips.includes(formatInterfaceCidr(want))) {
      throw new TopologyError(
        'conflict',
        `router ${router.value.name} is already attached to bridge ${bridge.value.name} with ${existing.value.ips.join(', ')}`,
        'address',
      );
    }
    if (bp) return { routerPort: existing.value, bridgePort: bp.value };
  }
  // The router's addresses join the bridge's address space: no workload may hold them.
  const taken = await bridgeAddresses(tx, bridgeId, new Set([rpId, bpId]));
  for (const ip of ips) {
    const bare = ip.slice(0, ip.indexOf('/'));
    const holder = taken.ips.get(bare);
    if (holder)
      throw new TopologyError('conflict', `address ${bare} is already used on bridge ${bridge.value.name} by port ${holder}`, 'address');
  }
  const base = {
    tenantId: router.value.tenantId,
    adminStateUp: true,
    status: 'unknown' as const,
    portSecurity: false,
    portGroupIds: [],
    options: {},
  };
  const routerPort: Port = { ...base, id: rpId, type: 'router', routerId, mac: macFor(rpId), ips, peerId: bpId };
  const bridgePort: Port = { ...base, id: bpId, type: 'bridge', bridgeId, mac: macFor(bpId), ips: [], peerId: rpId };
  tx.writes.push({ op: 'create', kind: 'Port', value: routerPort }, { op: 'create', kind: 'Port', value: bridgePort });
  for (const cidr of subnetsUsed) {
    const route: Route = { id: stableId('Route', rpId, cidr), routerId, dst: cidr, nextHop: 'port', nextHopPortId: rpId, weight: 100 };
    tx.writes.push({ op: 'create', kind: 'Route', value: route });
  }
  await tx.need('Router', routerId, 'routerId');
  await tx.need('Bridge', bridgeId, 'bridgeId');
  return { routerPort, bridgePort };
}
