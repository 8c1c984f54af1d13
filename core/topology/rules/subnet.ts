// A bridge subnet in canonical form with its defaults filled (gateway, IPAM block size), checked for sense.
import type { Subnet } from '../../model/types.js';
import {
  bitsOf,
  contains,
  firstUsable,
  formatCidr,
  formatIp,
  lastUsable,
  overlaps,
  parseCidr,
  parseIp,
  parseNetwork,
  type Cidr,
} from '../../net/ip.js';
import { TopologyError } from '../errors.js';

/** Canonical subnet with its defaults filled; checks gateway, reserved, range, blockPrefix and self-overlap. */
export function normalizeSubnet(s: Subnet, i: number, nets: Cidr[]): Subnet {
  const at = `subnets[${i}]`;
  const net = parseNetwork(s.cidr, `${at}.cidr`);
  const bits = bitsOf(net.family);
  if (bits - net.prefix < 2)
    throw new TopologyError('invalid', `${at}.cidr: ${s.cidr} is too small for a network (at most /${bits - 2})`, `${at}.cidr`);
  const earlier = nets.findIndex((n) => overlaps(n, net));
  if (earlier >= 0) throw new TopologyError('invalid', `${at}.cidr: ${formatCidr(net)} overlaps subnets[${earlier}]`, `${at}.cidr`);
  nets.push(net);
  const out: Subnet = { cidr: formatCidr(net) };
  const first = firstUsable(net);
  const last = lastUsable(net);
  const inside = (text: string, field: string): string => {
    const ip = parseIp(text, field);
    if (!contains(net, ip)) throw new TopologyError('invalid', `${field}: ${text} is not inside ${out.cidr}`, field);
    return formatIp(ip);
  };
  if (s.gateway === '') {
    out.gateway = '';
  } else if (s.gateway === undefined) {
    out.gateway = formatIp(first);
  } else {
    const gw = parseIp(s.gateway, `${at}.gateway`);
    if (!contains(net, gw) || gw.value < first.value || gw.value > last.value) {
      throw new TopologyError(
        'invalid',
        `${at}.gateway: ${s.gateway} is not a usable address of ${out.cidr} (${formatIp(first)} to ${formatIp(last)})`,
        `${at}.gateway`,
      );
    }
    out.gateway = formatIp(gw);
  }
  if (s.reserved !== undefined) out.reserved = s.reserved.map((r, j) => inside(r, `${at}.reserved[${j}]`));
  if (s.range !== undefined) {
    const range = parseCidr(s.range, `${at}.range`);
    if (!contains(net, range)) throw new TopologyError('invalid', `${at}.range: ${s.range} is not inside ${out.cidr}`, `${at}.range`);
    out.range = formatCidr(range);
  }
  const defaultBlock = Math.max(net.prefix, net.family === 4 ? 26 : 122);
  const blockPrefix = s.blockPrefix ?? defaultBlock;
  if (blockPrefix < net.prefix || blockPrefix > bits) {
    throw new TopologyError('invalid', `${at}.blockPrefix: /${blockPrefix} must be from /${net.prefix} to /${bits}`, `${at}.blockPrefix`);
  }
  out.blockPrefix = blockPrefix;
  return out;
}
