// Address arithmetic the datapath needs: CIDR parsing with clear errors, MAC checks, and the IPv6 addresses a
// workload legitimately sends from besides its own (EUI-64 link-local) or solicits (solicited-node multicast).
import { isIP } from 'node:net';

export interface Cidr { ip: string; prefix: number; family: 4 | 6 }

export function parseCidr(cidr: string, what = 'address'): Cidr {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const fam = m ? isIP(m[1]!) : 0;
  if (!m || fam === 0) throw new Error(`invalid ${what} "${cidr}": expected CIDR like 10.1.0.5/24 or fd00::5/64`);
  const prefix = Number(m[2]);
  if (prefix > (fam === 4 ? 32 : 128)) throw new Error(`invalid ${what} "${cidr}": prefix /${prefix} too long`);
  return { ip: m[1]!, prefix, family: fam as 4 | 6 };
}

export function familyOf(ip: string, what = 'IP address'): 4 | 6 {
  const f = isIP(ip);
  if (f === 0) throw new Error(`invalid ${what} "${ip}"`);
  return f as 4 | 6;
}

/** Accepts a route destination: CIDR, bare IP, or "default". */
export function checkDestination(dst: string): void {
  if (dst === 'default') return;
  if (dst.includes('/')) parseCidr(dst, 'route destination');
  else familyOf(dst, 'route destination');
}

export function normalizeMac(mac: string): string {
  const m = mac.trim().toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m)) throw new Error(`invalid MAC address "${mac}"`);
  if (parseInt(m.slice(0, 2), 16) & 1) throw new Error(`invalid MAC address "${mac}": multicast bit set`);
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
  let s = ip.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    s = s.slice(0, -v4[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') as [string, string] : [s, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - h.length - t.length).fill('0');
  return [...h, ...fill, ...t].map((g) => parseInt(g, 16));
}

export function formatIpv6(groups: number[]): string {
  return groups.map((g) => g.toString(16)).join(':').replace(/(^|:)0(:0)+(:|$)/, '::').replace(/:::+/, '::');
}

/** The link-local address the kernel derives from a MAC (addr_gen_mode eui64, the default). */
export function eui64LinkLocal(mac: string): string {
  const b = normalizeMac(mac).split(':').map((x) => parseInt(x, 16));
  b[0]! ^= 0x02;
  const g = [0xfe80, 0, 0, 0, (b[0]! << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return formatIpv6(g);
}

/** ff02::1:ffXX:XXXX, where a neighbour solicitation for `ip` is sent. */
export function solicitedNode(ip: string): string {
  const g = ipv6Groups(ip);
  return formatIpv6([0xff02, 0, 0, 0, 0, 1, 0xff00 | (g[6]! & 0xff), g[7]!]);
}
