// The little address arithmetic libnetwork's words need: CIDR checks, overlap, "first usable", next block.
import ipaddr from 'ipaddr.js';

export type Cidr = { addr: ipaddr.IPv4 | ipaddr.IPv6; prefix: number; family: 4 | 6 };

/** Parse "10.1.0.0/24"; undefined if it is not a CIDR. */
export function parseCidr(s: string): Cidr | undefined {
  try {
    const [addr, prefix] = ipaddr.parseCIDR(s);
    return { addr, prefix, family: addr.kind() === 'ipv4' ? 4 : 6 };
  } catch {
    return undefined;
  }
}

export function isIp(s: string): boolean {
  return ipaddr.isValid(s) && !s.includes('/');
}

export function familyOf(ip: string): 4 | 6 {
  return ipaddr.parse(ip).kind() === 'ipv4' ? 4 : 6;
}

function toBig(a: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return a.toByteArray().reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
}

function fromBig(n: bigint, family: 4 | 6): string {
  const len = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = 0; i < len; i++) {
    bytes.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return ipaddr.fromByteArray(bytes).toString();
}

function bits(c: Cidr): number {
  return c.family === 4 ? 32 : 128;
}

/** The canonical network form: "10.1.0.7/24" -> "10.1.0.0/24". */
export function networkOf(c: Cidr): string {
  const size = BigInt(bits(c) - c.prefix);
  const base = (toBig(c.addr) >> size) << size;
  return `${fromBig(base, c.family)}/${c.prefix}`;
}

export function contains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  if (!c || !ipaddr.isValid(ip)) return false;
  const a = ipaddr.parse(ip);
  return a.kind() === c.addr.kind() && a.match([c.addr, c.prefix] as [ipaddr.IPv4 | ipaddr.IPv6, number]);
}

export function overlaps(a: string, b: string): boolean {
  const ca = parseCidr(a);
  const cb = parseCidr(b);
  if (!ca || !cb || ca.family !== cb.family) return false;
  // Two aligned blocks overlap exactly when one holds the other's first address.
  return contains(a, stripPrefix(networkOf(cb))) || contains(b, stripPrefix(networkOf(ca)));
}

/** The first host address of a subnet (the conventional gateway), e.g. 10.1.0.1 for 10.1.0.0/24. */
export function firstUsable(cidr: string): string {
  const c = parseCidr(cidr);
  if (!c) throw new Error(`not a CIDR: ${cidr}`);
  const size = BigInt(bits(c) - c.prefix);
  const base = (toBig(c.addr) >> size) << size;
  return fromBig(size === 0n ? base : base + 1n, c.family);
}

/** The `index`-th block of length `prefix` inside `within`, or undefined past the end. */
export function nthBlock(within: string, prefix: number, index: number): string | undefined {
  const c = parseCidr(within);
  if (!c || prefix < c.prefix || prefix > bits(c)) return undefined;
  if (BigInt(index) >= 1n << BigInt(prefix - c.prefix)) return undefined;
  const size = BigInt(bits(c) - prefix);
  const base = (toBig(c.addr) >> BigInt(bits(c) - c.prefix)) << BigInt(bits(c) - c.prefix);
  return `${fromBig(base + (BigInt(index) << size), c.family)}/${prefix}`;
}

/** "10.1.0.5/24" -> "10.1.0.5"; a plain IP is returned as it is. */
export function stripPrefix(s: string): string {
  const i = s.indexOf('/');
  return i < 0 ? s : s.slice(0, i);
}
