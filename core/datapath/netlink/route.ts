// Routes of the main table (RTM_*ROUTE, linux/rtnetlink.h): replace one, list them.
import { canonicalIp } from '../../net/ip.js';
import { familyOf, parseCidr } from '../addresses.js';
import { addressFamily, attr, ipBytes, ipText, parseAttrs, u32Attr } from './attributes.js';
import { NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

const RTM_NEWROUTE = 24;
const RTM_GETROUTE = 26;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_TABLE = 15;
const RT_TABLE_MAIN = 254;
/** What `ip route` marks routes it adds with: "installed by an administrator". */
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RTN_UNICAST = 1;

export interface Route {
  family: 4 | 6;
  /** Always CIDR, canonical: "0.0.0.0/0" for a default route, "10.1.0.7/32" for a host route. */
  dst: string;
  gateway?: string | undefined;
  /** Output interface index. */
  oif?: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
}

/** A destination as users write it ("default", a bare IP, a CIDR) in the canonical CIDR form of Route.dst. */
export function canonicalDestination(dst: string, family: 4 | 6 = 4): string {
  if (dst === 'default') return family === 4 ? '0.0.0.0/0' : '::/0';
  if (!dst.includes('/')) return `${canonicalIp(dst)}/${familyOf(dst) === 4 ? 32 : 128}`;
  const c = parseCidr(dst, 'route destination');
  return `${canonicalIp(c.ip)}/${c.prefix}`;
}

/** struct rtmsg. */
function rtmsg(family: number, dstLen: number, scope: number): Buffer {
  const b = Buffer.alloc(12);
  b[0] = family;
  b[1] = dstLen;
  b[4] = RT_TABLE_MAIN;
  b[5] = RTPROT_BOOT;
  b[6] = scope;
  b[7] = RTN_UNICAST;
  return b;
}

export interface RouteSpec {
  /** "default", a bare IP or a CIDR. */
  dst: string;
  gateway?: string | undefined;
  /** Output interface index; without a gateway the route is on-link through it. */
  oif: number;
  /** Needed only for "default" without a gateway. */
  family?: 4 | 6;
}

/** Install a route in the main table, replacing one to the same destination. */
export async function replaceRoute(s: NetlinkSocket, r: RouteSpec): Promise<void> {
  const family = r.gateway
    ? familyOf(r.gateway, 'gateway')
    : r.dst === 'default'
      ? (r.family ?? 4)
      : familyOf(r.dst.split('/')[0]!, 'route destination');
  const dst = parseCidr(canonicalDestination(r.dst, family));
  if (dst.family !== family) throw new Error(`route ${r.dst} via ${r.gateway}: address families differ`);
  // Like `ip route`: an IPv4 route without a gateway is on-link (link scope); IPv6 routes are always universe.
  const scope = family === 4 && !r.gateway ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  const body = Buffer.concat([
    rtmsg(addressFamily(family), dst.prefix, scope),
    ...(dst.prefix > 0 ? [attr(RTA_DST, ipBytes(dst.ip))] : []),
    ...(r.gateway ? [attr(RTA_GATEWAY, ipBytes(r.gateway))] : []),
    u32Attr(RTA_OIF, r.oif),
  ]);
  await s.ack(
    RTM_NEWROUTE,
    NLM_F_CREATE | NLM_F_REPLACE,
    body,
    `replace route ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} dev #${r.oif}`,
  );
}

/** Routes of the main table; both families unless one is asked for. */
export async function listRoutes(s: NetlinkSocket, family?: 4 | 6): Promise<Route[]> {
  const out: Route[] = [];
  for (const fam of family ? [family] : ([4, 6] as const)) {
    for (const r of await s.dump(RTM_GETROUTE, rtmsg(addressFamily(fam), 0, 0), `list IPv${fam} routes`)) {
      if (r.type !== RTM_NEWROUTE) continue;
      const a = parseAttrs(r.body, 12);
      const table = a.get(RTA_TABLE)?.readUInt32LE(0) ?? r.body[4]!;
      if (table !== RT_TABLE_MAIN) continue;
      const dstLen = r.body[1]!;
      const dst = a.get(RTA_DST);
      const gw = a.get(RTA_GATEWAY);
      const oif = a.get(RTA_OIF);
      out.push({
        family: fam,
        dst: `${dst ? ipText(dst) : fam === 4 ? '0.0.0.0' : '::'}/${dstLen}`,
        ...(gw ? { gateway: ipText(gw) } : {}),
        ...(oif ? { oif: oif.readUInt32LE(0) } : {}),
        table,
        protocol: r.body[5]!,
        scope: r.body[6]!,
        type: r.body[7]!,
      });
    }
  }
  return out;
}
