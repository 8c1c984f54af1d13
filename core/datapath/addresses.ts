// Address words the datapath needs, over core/net (the project's one parser of addresses, CIDRs and MACs): the
// datapath's error wording ("invalid <what> ..."), and the IPv6 addresses a workload legitimately sends from
// besides its own (EUI-64 link-local) or solicits (solicited-node multicast).
import { AddressError, formatIp, ipFamily, isUnicastMac, normalizeMac as normalize, parseCidr as parse, parseIp } from '../net/ip.js';

/** An interface address: the address as given (canonical text) and its prefix length. */
export interface Cidr {
  ip: string;
  prefix: number;
  family: 4 | 6;
}

export function parseCidr(cidr: string, what = 'address'): Cidr {
  try {
    const c = parse(cidr);
    return { ip: formatIp({ family: c.family, value: c.address }), prefix: c.prefix, family: c.family };
  } catch (e) {
    if (e instanceof AddressError) throw new Error(`invalid ${what}: ${e.message}`);
    throw e;
  }
}

export function familyOf(ip: string, what = 'IP address'): 4 | 6 {
  const f = ipFamily(ip);
  if (f === 0) throw new Error(`invalid ${what} "${ip}"`);
  return f;
}

/** Accepts a route destination: CIDR, bare IP, or "default". */
export function checkDestination(dst: string): void {
  if (dst === 'default') return;
  if (dst.includes('/')) parseCidr(dst, 'route destination');
  else familyOf(dst, 'route destination');
}

/** The lower-case colon form of a unicast MAC; a port's address cannot be multicast. */
export function normalizeMac(mac: string): string {
  let m: string;
  try {
    m = normalize(typeof mac === 'string' ? mac.trim() : mac);
  } catch {
    throw new Error(`invalid MAC address "${mac}"`);
  }
  if (!isUnicastMac(m)) throw new Error(`invalid MAC address "${mac}": multicast bit set`);
  return m;
}

/** A random locally-administered unicast MAC. */
export function randomMac(): string {
  const b = Array.from({ length: 6 }, () => Math.floor(Math.random() * 256));
  b[0] = (b[0]! & 0xfe) | 0x02;
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** The 8 groups of an IPv6 address as numbers. */
export function ipv6Groups(ip: string): number[] {
  const v = parseIp(ip).value;
  return Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
}

export function formatIpv6(groups: number[]): string {
  return formatIp({ family: 6, value: groups.reduce((v, g) => (v << 16n) | BigInt(g), 0n) });
}

/** The link-local address the kernel derives from a MAC (addr_gen_mode eui64, the default). */
export function eui64LinkLocal(mac: string): string {
  const b = normalizeMac(mac)
    .split(':')
    .map((x) => parseInt(x, 16));
  b[0]! ^= 0x02;
  const g = [0xfe80, 0, 0, 0, (b[0]! << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return formatIpv6(g);
}

/** ff02::1:ffXX:XXXX, where a neighbour solicitation for `ip` is sent. */
export function solicitedNode(ip: string): string {
  const g = ipv6Groups(ip);
  return formatIpv6([0xff02, 0, 0, 0, 0, 1, 0xff00 | (g[6]! & 0xff), g[7]!]);
}
