// Neighbour entries (RTM_*NEIGH, linux/neighbour.h): the permanent IP → MAC entries a router instance holds for
// every port of its bridges, so it never resolves addresses on the overlay, and those a VXLAN device answers ARP/ND
// with (bridge.ts).
import { familyOf } from '../addresses.js';
import { addressFamily, attr, ipBytes, ipText, macBytes, macText, parseAttrs } from './attributes.js';
import { KernelError, NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

// Shared with the bridge's forwarding database (fdb.ts): the same messages in family AF_BRIDGE.
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;
export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NUD_PERMANENT = 0x80;
export const ENOENT = 2;

/** struct ndmsg: family, ifindex, state, flags, type. */
export function ndmsg(family: number, index: number, state = 0, flags = 0): Buffer {
  const b = Buffer.alloc(12);
  b[0] = family;
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b[10] = flags;
  return b;
}

export interface Neighbour {
  /** Link index. */
  index: number;
  ip: string;
  /** Absent for an entry still resolving (INCOMPLETE, FAILED). */
  mac?: string;
  /** NUD_* state bits. */
  state: number;
  permanent: boolean;
}

/**
 * IPv4 and IPv6 neighbour entries of the socket's namespace, of link `index` only when given (filtered here: the
 * kernel's own filter needs strict checking, which the socket's other dumps do not use).
 */
export async function listNeighbours(s: NetlinkSocket, index?: number): Promise<Neighbour[]> {
  const out: Neighbour[] = [];
  for (const r of await s.dump(RTM_GETNEIGH, ndmsg(0, 0), 'list neighbours')) {
    if (r.type !== RTM_NEWNEIGH) continue;
    const family = r.body[0];
    if (family !== addressFamily(4) && family !== addressFamily(6)) continue;
    const ifindex = r.body.readInt32LE(4);
    if (index !== undefined && ifindex !== index) continue;
    const a = parseAttrs(r.body, 12);
    const dst = a.get(NDA_DST);
    if (!dst) continue;
    const ll = a.get(NDA_LLADDR);
    const state = r.body.readUInt16LE(8);
    out.push({
      index: ifindex,
      ip: ipText(dst),
      ...(ll && ll.length === 6 ? { mac: macText(ll) } : {}),
      state,
      permanent: (state & NUD_PERMANENT) !== 0,
    });
  }
  return out;
}

const afOf = (ip: string): number => addressFamily(familyOf(ip, 'neighbour address'));

/** Add or update the permanent entry `ip` → `mac` on link `index`. */
export async function replaceNeighbour(s: NetlinkSocket, index: number, ip: string, mac: string): Promise<void> {
  const body = Buffer.concat([ndmsg(afOf(ip), index, NUD_PERMANENT), attr(NDA_DST, ipBytes(ip)), attr(NDA_LLADDR, macBytes(mac))]);
  await s.ack(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, body, `replace neighbour ${ip} lladdr ${mac} on link #${index}`);
}

/** Remove the entry for `ip` on link `index`; 'gone' when there was none. */
export async function deleteNeighbour(s: NetlinkSocket, index: number, ip: string): Promise<'deleted' | 'gone'> {
  try {
    await s.ack(
      RTM_DELNEIGH,
      0,
      Buffer.concat([ndmsg(afOf(ip), index), attr(NDA_DST, ipBytes(ip))]),
      `delete neighbour ${ip} on link #${index}`,
    );
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && e.errno === ENOENT) return 'gone';
    throw e;
  }
}
