// Forwarding database entries (RTM_*NEIGH in family AF_BRIDGE, linux/neighbour.h), what `bridge fdb` reads and
// writes: a VXLAN device's own entries (NTF_SELF: MAC → remote tunnel endpoint; the all-zero MAC replicates
// broadcast and unknown traffic to each endpoint listed) and the bridge's static entries on a port (NTF_MASTER).
import { familyOf } from '../addresses.js';
import { attr, ipBytes, ipText, macBytes, macText, parseAttrs } from './attributes.js';
import {
  ENOENT,
  NDA_DST,
  NDA_LLADDR,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
  ndmsg as neighbourMsg,
} from './neighbour.js';
import { KernelError, NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

const AF_BRIDGE = 7;
const NDA_MASTER = 9;
const NTF_SELF = 0x02;
const NTF_MASTER = 0x04;
const NUD_NOARP = 0x40;
const NLM_F_APPEND = 0x800;

export interface FdbEntry {
  /** The port (bridge port or VXLAN device) the entry is on. */
  index: number;
  mac: string;
  /** A VXLAN entry's remote endpoint. */
  dst?: string;
  /** The device's own entry (NTF_SELF), as opposed to the bridge's entry for that port. */
  self: boolean;
  /** Index of the bridge holding the entry (NDA_MASTER). */
  masterIndex?: number;
  /** NUD_PERMANENT: `permanent`; NUD_NOARP: `static`; otherwise learned. */
  permanent: boolean;
  static: boolean;
}

/** struct ndmsg in family AF_BRIDGE. */
const ndmsg = (index: number, state: number, flags: number): Buffer => neighbourMsg(AF_BRIDGE, index, state, flags);

/**
 * Every FDB entry of the namespace, of port `index` only when given (filtered here: with a bare ndmsg the kernel
 * dumps all, and its own port filter needs strict checking, which the socket's other dumps do not use).
 */
export async function listFdb(s: NetlinkSocket, index?: number): Promise<FdbEntry[]> {
  const out: FdbEntry[] = [];
  for (const r of await s.dump(RTM_GETNEIGH, ndmsg(0, 0, 0), 'list FDB entries')) {
    if (r.type !== RTM_NEWNEIGH || r.body[0] !== AF_BRIDGE) continue;
    const port = r.body.readInt32LE(4);
    if (index !== undefined && port !== index) continue;
    const a = parseAttrs(r.body, 12);
    const ll = a.get(NDA_LLADDR);
    if (!ll || ll.length !== 6) continue;
    const dst = a.get(NDA_DST);
    const master = a.get(NDA_MASTER);
    const state = r.body.readUInt16LE(8);
    out.push({
      index: port,
      mac: macText(ll),
      ...(dst ? { dst: ipText(dst) } : {}),
      self: (r.body[10]! & NTF_SELF) !== 0,
      ...(master ? { masterIndex: master.readUInt32LE(0) } : {}),
      permanent: (state & NUD_PERMANENT) !== 0,
      static: (state & NUD_NOARP) !== 0,
    });
  }
  return out;
}

const dstAttr = (dst: string): Buffer => (familyOf(dst, 'tunnel endpoint'), attr(NDA_DST, ipBytes(dst)));

/**
 * A VXLAN device's permanent entry MAC → `dst`. `append` adds one more endpoint for the MAC (the all-zero MAC's
 * replication list: `bridge fdb append`); otherwise the MAC's entry is replaced (`bridge fdb replace … self`).
 */
export async function setTunnelFdb(s: NetlinkSocket, index: number, mac: string, dst: string, append = false): Promise<void> {
  const body = Buffer.concat([ndmsg(index, NUD_PERMANENT, NTF_SELF), attr(NDA_LLADDR, macBytes(mac)), dstAttr(dst)]);
  await s.ack(
    RTM_NEWNEIGH,
    NLM_F_CREATE | (append ? NLM_F_APPEND : NLM_F_REPLACE),
    body,
    `${append ? 'append' : 'replace'} FDB ${mac} dst ${dst} on link #${index}`,
  );
}

/** The bridge's static entry for `mac` on port `index` (`bridge fdb replace … master static`): no flooding for it. */
export async function setBridgeFdb(s: NetlinkSocket, index: number, mac: string): Promise<void> {
  const body = Buffer.concat([ndmsg(index, NUD_NOARP, NTF_MASTER), attr(NDA_LLADDR, macBytes(mac))]);
  await s.ack(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, `replace FDB ${mac} master on link #${index}`);
}

/** Remove an entry: the VXLAN device's for `mac` → `dst`, or (without dst) the bridge's; 'gone' when there was none. */
export async function deleteFdb(s: NetlinkSocket, index: number, mac: string, dst?: string): Promise<'deleted' | 'gone'> {
  const body = Buffer.concat([
    ndmsg(index, 0, dst === undefined ? NTF_MASTER : NTF_SELF),
    attr(NDA_LLADDR, macBytes(mac)),
    ...(dst === undefined ? [] : [dstAttr(dst)]),
  ]);
  try {
    await s.ack(RTM_DELNEIGH, 0, body, `delete FDB ${mac}${dst ? ` dst ${dst}` : ''} on link #${index}`);
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENOENT) return 'gone';
    throw e;
  }
}
