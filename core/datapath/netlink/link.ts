// Network interfaces (RTM_*LINK, linux/if_link.h, linux/veth.h): read one, create a veth pair, change flags,
// master, MAC and IPv6 address generation, delete. A link is named either by index or by name: the kernel looks a name
// up itself (IFLA_IFNAME with index 0), which saves a round trip per change.
import { AF_INET6, attr, ipText, macBytes, macText, nested, parseAttrs, readString, strAttr, u32Attr, u8Attr } from './attributes.js';
import { closeSync } from 'node:fs';
import { KernelError } from './libc.js';
import { openNamespace } from './netns.js';
import { NLM_F_CREATE, NLM_F_EXCL, type NetlinkSocket } from './socket.js';

const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_OPERSTATE = 16;
const IFLA_LINKINFO = 18;
const IFLA_AF_SPEC = 26;
const IFLA_NET_NS_FD = 28;
const IFLA_EXT_MASK = 29;
const IFLA_GROUP = 27;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;
// linux/if_link.h: the parts of a VXLAN device, a bridge and a bridge port that bridge.ts checks.
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PROXY = 11;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_BR_NF_CALL_IPTABLES = 36;
const IFLA_BR_NF_CALL_IP6TABLES = 37;
const IFLA_BRPORT_LEARNING = 8;
const VETH_INFO_PEER = 1;
const IFLA_INET6_ADDR_GEN_MODE = 8;
const IN6_ADDR_GEN_MODE_NONE = 1;
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const ENODEV = 19;

export const IFF_UP = 0x1;

const OPERSTATES = ['UNKNOWN', 'NOTPRESENT', 'DOWN', 'LOWERLAYERDOWN', 'TESTING', 'DORMANT', 'UP'];

export interface Link {
  index: number;
  name: string;
  /** IFF_* flags; `up` is IFF_UP. */
  flags: number;
  up: boolean;
  mtu: number;
  mac: string;
  /** Index of the bridge (or other master) this link is enslaved to. */
  masterIndex?: number;
  operstate: string;
  kind?: string;
  /** Its group (IFLA_GROUP); 0 is the default. */
  group: number;
  /** A VXLAN device's settings (IFLA_INFO_DATA). */
  vxlan?: { id: number; local?: string; port: number; learning: boolean; proxy: boolean };
  /** A bridge's netfilter switches (IFLA_INFO_DATA). */
  bridge?: { nfCallIptables: boolean; nfCallIp6tables: boolean };
  /** A bridge port's learning switch (IFLA_INFO_SLAVE_DATA). */
  bridgePort?: { learning: boolean };
}

/** A link by name or by index. */
export type LinkRef = string | number;

/** struct ifinfomsg: family, type, index, flags and which flags to change. */
function ifinfomsg(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** The header naming `ref` plus, for a name, the attribute carrying it. */
function target(ref: LinkRef, flags = 0, change = 0): Buffer[] {
  return typeof ref === 'number' ? [ifinfomsg(ref, flags, change)] : [ifinfomsg(0, flags, change), strAttr(IFLA_IFNAME, ref)];
}

const label = (ref: LinkRef): string => (typeof ref === 'number' ? `link #${ref}` : ref);

/** What `ip -d link` shows of the kinds bridge.ts converges: VXLAN, bridge, bridge port. */
function linkDetails(info: Map<number, Buffer>, kind: string | undefined): Pick<Link, 'vxlan' | 'bridge' | 'bridgePort'> {
  const out: Pick<Link, 'vxlan' | 'bridge' | 'bridgePort'> = {};
  const data = info.get(IFLA_INFO_DATA);
  const flag = (m: Map<number, Buffer>, t: number): boolean => (m.get(t)?.[0] ?? 0) !== 0;
  if (data && kind === 'vxlan') {
    const d = parseAttrs(data);
    const local = d.get(IFLA_VXLAN_LOCAL) ?? d.get(IFLA_VXLAN_LOCAL6);
    out.vxlan = {
      id: d.get(IFLA_VXLAN_ID)?.readUInt32LE(0) ?? 0,
      ...(local ? { local: ipText(local) } : {}),
      port: d.get(IFLA_VXLAN_PORT)?.readUInt16BE(0) ?? 0,
      learning: flag(d, IFLA_VXLAN_LEARNING),
      proxy: flag(d, IFLA_VXLAN_PROXY),
    };
  } else if (data && kind === 'bridge') {
    const d = parseAttrs(data);
    out.bridge = { nfCallIptables: flag(d, IFLA_BR_NF_CALL_IPTABLES), nfCallIp6tables: flag(d, IFLA_BR_NF_CALL_IP6TABLES) };
  }
  const slaveKind = info.get(IFLA_INFO_SLAVE_KIND);
  const slave = info.get(IFLA_INFO_SLAVE_DATA);
  if (slave && slaveKind && readString(slaveKind) === 'bridge')
    out.bridgePort = { learning: flag(parseAttrs(slave), IFLA_BRPORT_LEARNING) };
  return out;
}

function decodeLink(body: Buffer): Link {
  const a = parseAttrs(body, 16);
  const flags = body.readUInt32LE(8);
  const linkinfo = a.get(IFLA_LINKINFO);
  const info = linkinfo ? parseAttrs(linkinfo) : undefined;
  const kindBytes = info?.get(IFLA_INFO_KIND);
  const kind = kindBytes ? readString(kindBytes) : undefined;
  const master = a.get(IFLA_MASTER);
  const oper = a.get(IFLA_OPERSTATE);
  const mac = a.get(IFLA_ADDRESS);
  return {
    index: body.readInt32LE(4),
    name: readString(a.get(IFLA_IFNAME) ?? Buffer.alloc(0)),
    flags,
    up: (flags & IFF_UP) !== 0,
    mtu: a.get(IFLA_MTU)?.readUInt32LE(0) ?? 0,
    mac: mac ? macText(mac) : '',
    ...(master ? { masterIndex: master.readUInt32LE(0) } : {}),
    operstate: OPERSTATES[oper?.[0] ?? 0] ?? 'UNKNOWN',
    ...(kind ? { kind } : {}),
    group: a.get(IFLA_GROUP)?.readUInt32LE(0) ?? 0,
    ...(info ? linkDetails(info, kind) : {}),
  };
}

/** Every link of the socket's namespace. */
export async function listLinks(s: NetlinkSocket): Promise<Link[]> {
  const replies = await s.dump(RTM_GETLINK, Buffer.concat([ifinfomsg(), u32Attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)]), 'list links');
  return replies.filter((r) => r.type === RTM_NEWLINK).map((r) => decodeLink(r.body));
}

/** The link, or undefined when there is none by that name/index. */
export async function getLink(s: NetlinkSocket, ref: LinkRef): Promise<Link | undefined> {
  try {
    const r = await s.get(
      RTM_GETLINK,
      Buffer.concat([...target(ref), u32Attr(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)]),
      `get ${label(ref)}`,
    );
    return decodeLink(r.body);
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENODEV) return undefined;
    throw e;
  }
}

export interface VethSpec {
  name: string;
  mtu?: number;
  mac?: string;
  peer: {
    name: string;
    mtu?: number;
    mac?: string;
    /** Path of a network namespace (/run/netns/x): the peer is born there, under its final name. */
    netns?: string | undefined;
  };
}

/** Create a veth pair; fails with EEXIST ("File exists") when either name is taken. */
export async function createVeth(s: NetlinkSocket, v: VethSpec): Promise<void> {
  const own = (name: string, mtu?: number, mac?: string): Buffer[] => [
    strAttr(IFLA_IFNAME, name),
    ...(mtu !== undefined ? [u32Attr(IFLA_MTU, mtu)] : []),
    ...(mac !== undefined ? [attr(IFLA_ADDRESS, macBytes(mac))] : []),
  ];
  const nsFd = v.peer.netns !== undefined ? openNamespace(v.peer.netns) : undefined;
  try {
    const peer = Buffer.concat([
      ifinfomsg(),
      ...own(v.peer.name, v.peer.mtu, v.peer.mac),
      ...(nsFd !== undefined ? [u32Attr(IFLA_NET_NS_FD, nsFd)] : []),
    ]);
    const body = Buffer.concat([
      ifinfomsg(),
      ...own(v.name, v.mtu, v.mac),
      nested(IFLA_LINKINFO, [strAttr(IFLA_INFO_KIND, 'veth'), nested(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, peer)])]),
    ]);
    await s.ack(
      RTM_NEWLINK,
      NLM_F_CREATE | NLM_F_EXCL,
      body,
      `create veth ${v.name} (peer ${v.peer.name}${v.peer.netns ? ` in ${v.peer.netns}` : ''})`,
    );
  } finally {
    if (nsFd !== undefined) closeSync(nsFd);
  }
}

export interface LinkChange {
  up?: boolean;
  /** Enslave to this link index (0 releases). */
  master?: number;
  mtu?: number;
  /** No IPv6 link-local (or any autoconfigured) address on this link. */
  noIpv6AddrGen?: boolean;
  /** The link's group (0 is the default group). */
  group?: number;
  /** Its MAC address. Setting one (even the same) flushes the link's neighbours, permanent ones included. */
  mac?: string;
}

/** Apply changes to one link in one request. */
export async function setLink(s: NetlinkSocket, ref: LinkRef, c: LinkChange): Promise<void> {
  const attrs: Buffer[] = [];
  if (c.master !== undefined) attrs.push(u32Attr(IFLA_MASTER, c.master));
  if (c.mtu !== undefined) attrs.push(u32Attr(IFLA_MTU, c.mtu));
  if (c.group !== undefined) attrs.push(u32Attr(IFLA_GROUP, c.group));
  if (c.mac !== undefined) attrs.push(attr(IFLA_ADDRESS, macBytes(c.mac)));
  if (c.noIpv6AddrGen) {
    attrs.push(nested(IFLA_AF_SPEC, [nested(AF_INET6, [u8Attr(IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE)])]));
  }
  const flags = c.up === undefined ? [0, 0] : [c.up ? IFF_UP : 0, IFF_UP];
  const what = Object.entries(c)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  await s.ack(RTM_NEWLINK, 0, Buffer.concat([...target(ref, flags[0], flags[1]), ...attrs]), `set ${label(ref)} ${what}`);
}

/**
 * Delete every link of a group in one request: the kernel unregisters them together and waits for one RCU grace
 * period instead of one per link (20 veths: 18 ms instead of 326 ms here). "gone" when the group is empty.
 */
export async function deleteLinkGroup(s: NetlinkSocket, group: number): Promise<'deleted' | 'gone'> {
  try {
    await s.ack(RTM_DELLINK, 0, Buffer.concat([ifinfomsg(), u32Attr(IFLA_GROUP, group)]), `delete link group ${group}`);
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENODEV) return 'gone';
    throw e;
  }
}

/** Delete a link (a veth takes its peer along); "gone" when there was nothing to delete. */
export async function deleteLink(s: NetlinkSocket, ref: LinkRef): Promise<'deleted' | 'gone'> {
  try {
    await s.ack(RTM_DELLINK, 0, Buffer.concat(target(ref)), `delete ${label(ref)}`);
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENODEV) return 'gone';
    throw e;
  }
}
