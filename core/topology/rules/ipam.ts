// IPAM blocks: a block lies inside one subnet of its bridge; both in canonical form.
import { stableId } from '../../model/ids.js';
import type { IpamBlock } from '../../model/types.js';
import { contains, formatCidr, parseNetwork } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import type { Tx } from '../tx.js';
import { given, type KindRule } from './rule.js';

export const ipamBlockRule: KindRule<'IpamBlock'> = {
  fill(d) {
    const bridgeId = given(d, 'bridgeId');
    const cidr = given(d, 'cidr');
    const id = d.id ?? stableId('IpamBlock', bridgeId, cidr);
    return { ...d, id, bridgeId, subnet: given(d, 'subnet'), cidr, allocations: d.allocations ?? {} };
  },
  validate: validateIpamBlock,
};

async function validateIpamBlock(b: IpamBlock, tx: Tx): Promise<void> {
  const bridge = await tx.need('Bridge', b.bridgeId, 'bridgeId');
  const subnet = parseNetwork(b.subnet, 'subnet');
  b.subnet = formatCidr(subnet);
  if (!bridge.subnets.some((s) => s.cidr === b.subnet)) {
    throw new TopologyError('invalid', `subnet ${b.subnet} is not a subnet of bridge ${bridge.name}`, 'subnet');
  }
  const cidr = parseNetwork(b.cidr, 'cidr');
  b.cidr = formatCidr(cidr);
  if (!contains(subnet, cidr)) throw new TopologyError('invalid', `cidr ${b.cidr} is not inside ${b.subnet}`, 'cidr');
}
