// libnetwork's address words (pools, sub-pools, "first usable", next free block) over the project's IP module,
// in the forgiving form the driver wants: a malformed value is `undefined`/`false`, never a throw.
import * as ip from '../../core/net/ip.js';

export type Cidr = { address: string; prefix: number; family: 4 | 6 };

/** Parse "10.1.0.0/24"; undefined if it is not a CIDR. */
export function parseCidr(s: string): Cidr | undefined {
  if (!ip.isCidr(s)) return undefined;
  const c = ip.parseCidr(s);
  return { address: ip.formatIp({ family: c.family, value: c.address }), prefix: c.prefix, family: c.family };
}

export function isIp(s: string): boolean {
  return ip.isIp(s);
}

export function familyOf(addr: string): 4 | 6 {
  return ip.parseIp(addr).family;
}

/** The canonical network form: "10.1.0.7/24" -> "10.1.0.0/24". */
export function networkOf(c: Cidr): string {
  return ip.canonicalCidr(`${c.address}/${c.prefix}`);
}

export function contains(cidr: string, addr: string): boolean {
  return ip.isCidr(cidr) && ip.isIp(addr) && ip.contains(cidr, addr);
}

export function overlaps(a: string, b: string): boolean {
  return ip.isCidr(a) && ip.isCidr(b) && ip.overlaps(a, b);
}

/** The first host address of a subnet (the conventional gateway), e.g. 10.1.0.1 for 10.1.0.0/24. */
export function firstUsable(cidr: string): string {
  return ip.formatIp(ip.firstUsable(cidr));
}

/** The `index`-th block of length `prefix` inside `within`, or undefined past the end. */
export function nthBlock(within: string, prefix: number, index: number): string | undefined {
  if (!ip.isCidr(within)) return undefined;
  const c = ip.parseCidr(within);
  const bits = ip.bitsOf(c.family);
  if (prefix < c.prefix || prefix > bits || BigInt(index) >= 1n << BigInt(prefix - c.prefix)) return undefined;
  const value = c.network + (BigInt(index) << BigInt(bits - prefix));
  return `${ip.formatIp({ family: c.family, value })}/${prefix}`;
}

/** "10.1.0.5/24" -> "10.1.0.5"; a plain IP is returned as it is. */
export function stripPrefix(s: string): string {
  const i = s.indexOf('/');
  return i < 0 ? s : s.slice(0, i);
}
