// Neighbour entries (RTM_*NEIGH, linux/neighbour.h): the permanent IP → MAC entries a router instance holds for
// every port of its bridges, so it never resolves addresses on the overlay.
import { familyOf } from '../addresses.js';
import { addressFamily, attr, ipBytes, macBytes } from './attributes.js';
import { KernelError, NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

const RTM_NEWNEIGH = 28;
const RTM_DELNEIGH = 29;
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NUD_PERMANENT = 0x80;
const ENOENT = 2;

/** struct ndmsg: family, ifindex, state, flags, type. */
function ndmsg(family: number, index: number, state = 0): Buffer {
  const b = Buffer.alloc(12);
  b[0] = family;
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  return b;
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
