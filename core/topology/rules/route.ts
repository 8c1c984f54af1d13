// Routes of a router: canonical prefixes, and a next hop that agrees with their kind (a port route leaves by a
// port of the same router).
import { randomId } from '../../model/ids.js';
import type { Route } from '../../model/types.js';
import { formatCidr, formatIp, parseIp, parseNetwork } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import type { Tx } from '../tx.js';
import { given, type KindRule } from './rule.js';

export const routeRule: KindRule<'Route'> = {
  fill(d) {
    const nextHop = d.nextHop ?? (d.nextHopPortId !== undefined ? 'port' : undefined);
    if (nextHop === undefined) throw new TopologyError('invalid', 'Route: give nextHop, or nextHopPortId for a port route', 'nextHop');
    return { ...d, id: d.id ?? randomId(), routerId: given(d, 'routerId'), dst: given(d, 'dst'), nextHop, weight: d.weight ?? 100 };
  },
  validate: validateRoute,
};

async function validateRoute(r: Route, tx: Tx): Promise<void> {
  const dst = parseNetwork(r.dst, 'dst');
  r.dst = formatCidr(dst);
  if (r.src !== undefined) {
    const src = parseNetwork(r.src, 'src');
    if (src.family !== dst.family) throw new TopologyError('invalid', 'src and dst must be of the same IP family', 'src');
    r.src = formatCidr(src);
  }
  if (r.nextHop === 'port') {
    if (r.nextHopPortId === undefined) throw new TopologyError('invalid', 'a port route needs nextHopPortId', 'nextHopPortId');
    const port = await tx.need('Port', r.nextHopPortId, 'nextHopPortId');
    if (port.routerId !== r.routerId) {
      throw new TopologyError('invalid', `nextHopPortId ${r.nextHopPortId} is not a port of router ${r.routerId}`, 'nextHopPortId');
    }
  } else if (r.nextHopPortId !== undefined) {
    throw new TopologyError('invalid', `a ${r.nextHop} route has no nextHopPortId`, 'nextHopPortId');
  }
  if (r.nextHopGateway !== undefined) {
    const gw = parseIp(r.nextHopGateway, 'nextHopGateway');
    if (gw.family !== dst.family) throw new TopologyError('invalid', 'nextHopGateway must be of the family of dst', 'nextHopGateway');
    r.nextHopGateway = formatIp(gw);
  }
}
