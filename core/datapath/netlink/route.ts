// Routes of the main table (RTM_*ROUTE, linux/rtnetlink.h): replace one (a next hop, on-link, or typed: blackhole,
// unreachable, prohibit), delete one, list them.
import { canonicalIp } from '../../net/ip.js';
import { familyOf, parseCidr } from '../addresses.js';
import { addressFamily, attr, ipBytes, ipText, parseAttrs, u32Attr } from './attributes.js';
import { KernelError } from './libc.js';
import { NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
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
/** In a delete: "any scope" (what `ip route del` sends). */
const RT_SCOPE_NOWHERE = 255;

/** Route types (RTN_*, linux/rtnetlink.h), as Route.type reads them. */
export const RTN = { unicast: 1, local: 2, multicast: 5, blackhole: 6, unreachable: 7, prohibit: 8 } as const;
/** The types a route we write can have; `ip route ... reject` is prohibit. */
export type RouteType = 'unicast' | 'blackhole' | 'unreachable' | 'prohibit';

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
function rtmsg(family: number, dstLen: number, scope: number, type: number = RTN.unicast, protocol = RTPROT_BOOT): Buffer {
  const b = Buffer.alloc(12);
  b[0] = family;
  b[1] = dstLen;
  b[4] = RT_TABLE_MAIN;
  b[5] = protocol;
  b[6] = scope;
  b[7] = type;
  return b;
}

export interface RouteSpec {
  /** "default", a bare IP or a CIDR. */
  dst: string;
  /** Default unicast. A typed route (blackhole, unreachable, prohibit) has no next hop and no device. */
  type?: RouteType;
  gateway?: string | undefined;
  /** Output interface index; without a gateway the route is on-link through it. Optional with a gateway. */
  oif?: number | undefined;
  /** Needed only for "default" without a gateway. */
  family?: 4 | 6;
}

const describe = (r: RouteSpec): string =>
  `${r.type && r.type !== 'unicast' ? `${r.type} ` : ''}${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.oif !== undefined ? ` dev #${r.oif}` : ''}`;

/**
 * The request for route `r`: its family, destination and the attributes naming it. A change (`del` false) is marked
 * as `ip route` marks it (protocol boot; link scope for an IPv4 route without a gateway); a delete matches any
 * protocol and scope, like `ip route del`.
 */
function routeRequest(r: RouteSpec, del: boolean): Buffer {
  const type = r.type ?? 'unicast';
  const family = r.gateway
    ? familyOf(r.gateway, 'gateway')
    : r.dst === 'default'
      ? (r.family ?? 4)
      : familyOf(r.dst.split('/')[0]!, 'route destination');
  const dst = parseCidr(canonicalDestination(r.dst, family));
  if (dst.family !== family) throw new Error(`route ${describe(r)}: address families differ`);
  // A typed IPv6 route reads back through `lo`: a delete may name that device.
  if (type !== 'unicast' && (r.gateway !== undefined || (!del && r.oif !== undefined)))
    throw new Error(`route ${describe(r)}: a ${type} route has no next hop or device`);
  if (!del && type === 'unicast' && r.gateway === undefined && r.oif === undefined)
    throw new Error(`route ${describe(r)}: needs a next hop or a device`);
  // Like `ip route`: an IPv4 route without a gateway is on-link (link scope); IPv6 routes are always universe.
  const scope = del ? RT_SCOPE_NOWHERE : family === 4 && type === 'unicast' && !r.gateway ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  return Buffer.concat([
    rtmsg(addressFamily(family), dst.prefix, scope, RTN[type], del ? 0 : RTPROT_BOOT),
    ...(dst.prefix > 0 ? [attr(RTA_DST, ipBytes(dst.ip))] : []),
    ...(r.gateway ? [attr(RTA_GATEWAY, ipBytes(r.gateway))] : []),
    ...(r.oif !== undefined ? [u32Attr(RTA_OIF, r.oif)] : []),
  ]);
}

/** Install a route in the main table, replacing one to the same destination (of any type). */
export async function replaceRoute(s: NetlinkSocket, r: RouteSpec): Promise<void> {
  await s.ack(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, routeRequest(r, false), `replace route ${describe(r)}`);
}

/**
 * Delete a route of the main table: the first to `dst` of this type (unicast by default), through `oif` and via
 * `gateway` when given. "gone" when there is none.
 */
export async function deleteRoute(s: NetlinkSocket, r: RouteSpec): Promise<'deleted' | 'gone'> {
  try {
    await s.ack(RTM_DELROUTE, 0, routeRequest(r, true), `delete route ${describe(r)}`);
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && e.code === 'ESRCH') return 'gone';
    throw e;
  }
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
