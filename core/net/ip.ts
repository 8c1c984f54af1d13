// IP addresses, CIDRs and MACs. Addresses are held as bigint (IPv6 needs 128 bits) with their family, so every
// calculation (containment, overlap, nth address, block splitting) is one code path for both families.
// Validation is Node's own strict parser (net.isIP: no leading zeros, no hex/octal IPv4 shorthands); bigint
// conversion and RFC 5952 formatting are done here because they are a few lines each.
import { isIP } from 'node:net';

export type Family = 4 | 6;

export interface Ip {
  family: Family;
  value: bigint;
}

/** A network: `address` as written (host bits possibly set), `network` with the host bits cleared. */
export interface Cidr {
  family: Family;
  address: bigint;
  network: bigint;
  prefix: number;
}

/** Bad input: says which value (and, when the caller named it, which field) is wrong and why. */
export class AddressError extends Error {
  constructor(
    message: string,
    /** The offending text. */
    readonly value: string,
    /** The caller's name for the field, e.g. "subnets[0].cidr". */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'AddressError';
  }
}

export type IpLike = string | Ip;
export type CidrLike = string | Cidr;

export function bitsOf(family: Family): 32 | 128 {
  return family === 4 ? 32 : 128;
}

function maxOf(family: Family): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

function quote(s: unknown): string {
  return typeof s === 'string' ? JSON.stringify(s) : String(s);
}

function fail(what: string | undefined, value: unknown, why: string): never {
  const prefix = what ? `${what}: ` : '';
  throw new AddressError(`${prefix}${why}`, typeof value === 'string' ? value : String(value), what);
}

// ---------------------------------------------------------------------------------------------- addresses

function v4ToBigint(s: string): bigint {
  let v = 0n;
  for (const part of s.split('.')) v = (v << 8n) | BigInt(Number(part));
  return v;
}

function v6ToBigint(s: string): bigint {
  // net.isIP has accepted the text, so only the shapes of RFC 4291 §2.2 remain: at most one "::", an optional
  // dotted IPv4 tail.
  const halves = s.split('::');
  const groups = (text: string): number[] => {
    if (text === '') return [];
    const out: number[] = [];
    for (const g of text.split(':')) {
      if (g.includes('.')) {
        const v4 = Number(v4ToBigint(g));
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length > 1 ? groups(halves[1]!) : [];
  const all = halves.length > 1 ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail] : head;
  let v = 0n;
  for (const g of all) v = (v << 16n) | BigInt(g);
  return v;
}

/** Parses an IPv4 or IPv6 address; throws AddressError naming the value (and `what`, the field) if it is not one. */
export function parseIp(text: unknown, what?: string): Ip {
  if (typeof text !== 'string') fail(what, text, `expected an IP address as a string, got ${quote(text)}`);
  if (text.includes('%')) fail(what, text, `${quote(text)} has a zone index; zoned (link-local scoped) addresses are not supported`);
  if (text.includes('/')) fail(what, text, `${quote(text)} is a CIDR, expected a bare IP address`);
  switch (isIP(text)) {
    case 4:
      return { family: 4, value: v4ToBigint(text) };
    case 6:
      return { family: 6, value: v6ToBigint(text) };
    default:
      fail(what, text, `${quote(text)} is not a valid IPv4 or IPv6 address`);
  }
}

function toIp(ip: IpLike, what?: string): Ip {
  return typeof ip === 'string' ? parseIp(ip, what) : ip;
}

export function isIp(text: unknown): text is string {
  return typeof text === 'string' && !text.includes('%') && isIP(text) !== 0;
}

/** 4, 6, or 0 when `text` is not an address. */
export function ipFamily(text: unknown): 0 | Family {
  return isIp(text) ? (isIP(text) as Family) : 0;
}

/** The canonical text of an address: dotted quad, or RFC 5952 (lower case, longest zero run as "::"). */
export function formatIp(ip: Ip): string {
  if (ip.value < 0n || ip.value > maxOf(ip.family)) {
    throw new AddressError(`address value ${ip.value} is out of range for IPv${ip.family}`, String(ip.value));
  }
  if (ip.family === 4) {
    const v = ip.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // IPv4-mapped addresses keep their dotted tail (RFC 5952 §5).
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${formatIp({ family: 4, value: ip.value & 0xffffffffn })}`;
  }
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never shortened (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function canonicalIp(text: string, what?: string): string {
  return formatIp(parseIp(text, what));
}

export function compareIp(a: IpLike, b: IpLike): number {
  const x = toIp(a);
  const y = toIp(b);
  if (x.family !== y.family) return x.family - y.family;
  return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
}

export function ipEquals(a: IpLike, b: IpLike): boolean {
  return compareIp(a, b) === 0;
}

/** `ip` plus `n` (negative to subtract); throws when the result leaves the address space. */
export function addToIp(ip: IpLike, n: bigint | number): Ip {
  const x = toIp(ip);
  const v = x.value + BigInt(n);
  if (v < 0n || v > maxOf(x.family)) {
    throw new AddressError(
      `${formatIp(x)} ${n >= 0 ? '+' : '-'} ${n >= 0 ? n : -BigInt(n)} leaves the IPv${x.family} address space`,
      formatIp(x),
    );
  }
  return { family: x.family, value: v };
}

/** Number of addresses from `a` to `b` (b - a). */
export function ipDistance(a: IpLike, b: IpLike): bigint {
  const x = toIp(a);
  const y = toIp(b);
  if (x.family !== y.family) throw new AddressError(`cannot subtract an IPv${x.family} from an IPv${y.family} address`, formatIp(y));
  return y.value - x.value;
}

// -------------------------------------------------------------------------------------------------- CIDRs

function mask(family: Family, prefix: number): bigint {
  const bits = bitsOf(family);
  return maxOf(family) ^ ((1n << BigInt(bits - prefix)) - 1n);
}

/**
 * Parses "address/prefix". Host bits may be set (interface notation, "10.0.0.5/24"); `network` has them cleared.
 * Use `parseNetwork` where only a network is meaningful.
 */
export function parseCidr(text: unknown, what?: string): Cidr {
  if (typeof text !== 'string') fail(what, text, `expected a CIDR as a string, got ${quote(text)}`);
  const slash = text.indexOf('/');
  if (slash < 0) fail(what, text, `${quote(text)} is not a CIDR: missing "/prefix-length"`);
  const addrText = text.slice(0, slash);
  const prefixText = text.slice(slash + 1);
  if (!isIp(addrText)) fail(what, text, `${quote(text)} is not a valid CIDR: ${quote(addrText)} is not an IPv4 or IPv6 address`);
  const ip = parseIp(addrText, what);
  const bits = bitsOf(ip.family);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(prefixText) || Number(prefixText) > bits) {
    fail(what, text, `${quote(text)} is not a valid CIDR: prefix length ${quote(prefixText)} is not a number from 0 to ${bits}`);
  }
  const prefix = Number(prefixText);
  return { family: ip.family, address: ip.value, network: ip.value & mask(ip.family, prefix), prefix };
}

/** Parses a network CIDR and refuses host bits, naming the network that was probably meant. */
export function parseNetwork(text: unknown, what?: string): Cidr {
  const c = parseCidr(text, what);
  if (c.address !== c.network) {
    fail(what, text, `${quote(text)} has host bits set; did you mean ${formatCidr(c)}?`);
  }
  return c;
}

function toCidr(c: CidrLike, what?: string): Cidr {
  return typeof c === 'string' ? parseCidr(c, what) : c;
}

export function isCidr(text: unknown): text is string {
  try {
    parseCidr(text);
    return true;
  } catch {
    return false;
  }
}

/** A network CIDR without host bits set. */
export function isNetwork(text: unknown): text is string {
  try {
    parseNetwork(text);
    return true;
  } catch {
    return false;
  }
}

/** The canonical network text: host bits cleared, address in canonical form ("10.0.0.0/24", "fd00::/64"). */
export function formatCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.network })}/${c.prefix}`;
}

export function canonicalCidr(text: string, what?: string): string {
  return formatCidr(parseCidr(text, what));
}

/** The address as written with its prefix, canonicalised ("10.0.0.5/24"). */
export function formatInterfaceCidr(c: Cidr): string {
  return `${formatIp({ family: c.family, value: c.address })}/${c.prefix}`;
}

export function cidrFamily(c: CidrLike): Family {
  return toCidr(c).family;
}

export function prefixLength(c: CidrLike): number {
  return toCidr(c).prefix;
}

/** Number of addresses in the network (2^(bits-prefix)). */
export function cidrSize(c: CidrLike): bigint {
  const x = toCidr(c);
  return 1n << BigInt(bitsOf(x.family) - x.prefix);
}

export function networkAddress(c: CidrLike): Ip {
  const x = toCidr(c);
  return { family: x.family, value: x.network };
}

/** The last address of the network (the broadcast address for IPv4). */
export function lastAddress(c: CidrLike): Ip {
  const x = toCidr(c);
  return { family: x.family, value: x.network + cidrSize(x) - 1n };
}

/** IPv4 broadcast address; IPv6 has none (undefined). /31 and /32 have none either (RFC 3021). */
export function broadcastAddress(c: CidrLike): Ip | undefined {
  const x = toCidr(c);
  if (x.family === 6 || x.prefix >= 31) return undefined;
  return lastAddress(x);
}

/**
 * First address a host may use: the network address is skipped (IPv4 network, IPv6 subnet-router anycast)
 * except on /31, /32, /127 and /128, where every address is a host.
 */
export function firstUsable(c: CidrLike): Ip {
  const x = toCidr(c);
  const pointToPoint = bitsOf(x.family) - x.prefix <= 1;
  return { family: x.family, value: pointToPoint ? x.network : x.network + 1n };
}

/** Last address a host may use: the IPv4 broadcast address is skipped (except /31, /32). */
export function lastUsable(c: CidrLike): Ip {
  const x = toCidr(c);
  const last = lastAddress(x);
  return broadcastAddress(x) ? { family: x.family, value: last.value - 1n } : last;
}

/** How many addresses lie from firstUsable to lastUsable. */
export function usableCount(c: CidrLike): bigint {
  return lastUsable(c).value - firstUsable(c).value + 1n;
}

/** The default gateway of a subnet: its first usable address, canonical text. */
export function defaultGateway(c: CidrLike): string {
  return formatIp(firstUsable(c));
}

/** The n-th address of the network (0 = network address); negative n counts from the end (-1 = last address). */
export function nthAddress(c: CidrLike, n: bigint | number): Ip {
  const x = toCidr(c);
  const size = cidrSize(x);
  const i = BigInt(n) < 0n ? size + BigInt(n) : BigInt(n);
  if (i < 0n || i >= size) {
    throw new AddressError(`${formatCidr(x)} has ${size} addresses; index ${n} is outside it`, formatCidr(x));
  }
  return { family: x.family, value: x.network + i };
}

/** Offset of `ip` inside the network (0 = network address). Throws if it is not inside. */
export function indexOf(c: CidrLike, ip: IpLike): bigint {
  const x = toCidr(c);
  const y = toIp(ip);
  if (!contains(x, y)) throw new AddressError(`${formatIp(y)} is not inside ${formatCidr(x)}`, formatIp(y));
  return y.value - x.network;
}

/** Whether `inner` (an address or a network) lies inside `outer`. Different families never contain each other. */
export function contains(outer: CidrLike, inner: IpLike | CidrLike): boolean {
  const o = toCidr(outer);
  let first: bigint;
  let last: bigint;
  let family: Family;
  if (typeof inner === 'string' ? inner.includes('/') : 'prefix' in inner) {
    const i = toCidr(inner as CidrLike);
    if (i.prefix < o.prefix) return false;
    family = i.family;
    first = i.network;
    last = i.network + cidrSize(i) - 1n;
  } else {
    const i = toIp(inner as IpLike);
    family = i.family;
    first = last = i.value;
  }
  if (family !== o.family) return false;
  return first >= o.network && last <= o.network + cidrSize(o) - 1n;
}

/** Whether two networks share any address. */
export function overlaps(a: CidrLike, b: CidrLike): boolean {
  const x = toCidr(a);
  const y = toCidr(b);
  if (x.family !== y.family) return false;
  const shorter = x.prefix <= y.prefix ? x : y;
  const longer = shorter === x ? y : x;
  return (longer.network & mask(shorter.family, shorter.prefix)) === shorter.network;
}

/** Most blocks `splitCidr` will return, so a typo ("/64" into /128s) fails fast instead of exhausting memory. */
export const MAX_SPLIT = 1 << 20;

/** The network split into consecutive blocks of `prefix` (which must not be shorter than the network's). */
export function splitCidr(c: CidrLike, prefix: number, limit = MAX_SPLIT): Cidr[] {
  const x = toCidr(c);
  const bits = bitsOf(x.family);
  if (!Number.isInteger(prefix) || prefix < x.prefix || prefix > bits) {
    throw new AddressError(
      `cannot split ${formatCidr(x)} into /${prefix} blocks: the block prefix must be from ${x.prefix} to ${bits}`,
      formatCidr(x),
    );
  }
  const count = 1n << BigInt(prefix - x.prefix);
  if (count > BigInt(limit)) {
    throw new AddressError(
      `splitting ${formatCidr(x)} into /${prefix} blocks would make ${count} blocks (more than ${limit})`,
      formatCidr(x),
    );
  }
  const step = 1n << BigInt(bits - prefix);
  const out: Cidr[] = [];
  for (let i = 0n; i < count; i++) {
    const network = x.network + i * step;
    out.push({ family: x.family, address: network, network, prefix });
  }
  return out;
}

/** The block of `prefix` that holds `ip`. */
export function enclosingCidr(ip: IpLike, prefix: number): Cidr {
  const x = toIp(ip);
  const bits = bitsOf(x.family);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw new AddressError(`prefix length ${prefix} is not from 0 to ${bits}`, String(prefix));
  }
  const network = x.value & mask(x.family, prefix);
  return { family: x.family, address: network, network, prefix };
}

// --------------------------------------------------------------------------------------------------- MACs

const MAC_FORMS = [
  /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/i,
  /^([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})$/i, // Cisco dotted
  /^([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i, // bare hex
];

/** Accepts "aa:bb:cc:dd:ee:ff", "AA-BB-…", "aabb.ccdd.eeff" or 12 hex digits; returns lower-case colon form. */
export function normalizeMac(text: unknown, what?: string): string {
  if (typeof text !== 'string') fail(what, text, `expected a MAC address as a string, got ${quote(text)}`);
  for (const re of MAC_FORMS) {
    const m = re.exec(text);
    if (!m) continue;
    if (re === MAC_FORMS[0] && new Set(text.replace(/[0-9a-f]/gi, '')).size !== 1) break; // mixed ':' and '-'
    return m.slice(1).join(':').toLowerCase();
  }
  fail(what, text, `${quote(text)} is not a valid MAC address (expected six hex octets, e.g. 02:be:00:00:00:01)`);
}

export function isMac(text: unknown): text is string {
  try {
    normalizeMac(text);
    return true;
  } catch {
    return false;
  }
}

/** A MAC whose first octet has the group bit set (multicast/broadcast) cannot be a port's address. */
export function isUnicastMac(text: string): boolean {
  return (parseInt(normalizeMac(text).slice(0, 2), 16) & 1) === 0;
}
