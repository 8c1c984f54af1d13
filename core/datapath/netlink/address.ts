// Interface addresses (RTM_*ADDR, linux/if_addr.h): list, add or update, delete.
import { parseCidr } from '../addresses.js';
import { AF_INET, addressFamily, ipBytes, ipText, parseAttrs, u32Attr, attr } from './attributes.js';
import { KernelError } from './libc.js';
import { NLM_F_CREATE, NLM_F_REPLACE, type NetlinkSocket } from './socket.js';

const RTM_NEWADDR = 20;
const RTM_DELADDR = 21;
const RTM_GETADDR = 22;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;
export const IFA_F_NODAD = 0x02;

export interface Address {
  family: 4 | 6;
  ip: string;
  prefix: number;
  index: number;
  /** IFA_F_* flags. */
  flags: number;
  scope: number;
}

/** struct ifaddrmsg. */
function ifaddrmsg(family: number, prefix: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = family;
  b[1] = prefix;
  b.writeUInt32LE(index, 4);
  return b;
}

/** Addresses of link `index` (of every link when undefined), both families. */
export async function listAddresses(s: NetlinkSocket, index?: number): Promise<Address[]> {
  const out: Address[] = [];
  const what = index === undefined ? 'list addresses' : `list addresses of link #${index}`;
  for (const r of await s.dump(RTM_GETADDR, ifaddrmsg(0, 0, index ?? 0), what)) {
    if (r.type !== RTM_NEWADDR || (index !== undefined && r.body.readUInt32LE(4) !== index)) continue;
    const a = parseAttrs(r.body, 8);
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    const ip = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
    if (!ip) continue;
    out.push({
      family: r.body[0] === AF_INET ? 4 : 6,
      ip: ipText(ip),
      prefix: r.body[1]!,
      index: r.body.readUInt32LE(4),
      flags: a.get(IFA_FLAGS)?.readUInt32LE(0) ?? r.body[2]!,
      scope: r.body[3]!,
    });
  }
  return out;
}

/** The request naming `cidr` on link `index`: the address as both local and peer, as `ip addr` sends it. */
function addressRequest(index: number, cidr: string, flags = 0): Buffer {
  const c = parseCidr(cidr);
  const ip = ipBytes(c.ip);
  const body = Buffer.concat([
    ifaddrmsg(addressFamily(c.family), c.prefix, index),
    attr(IFA_LOCAL, ip),
    attr(IFA_ADDRESS, ip),
    ...(flags ? [u32Attr(IFA_FLAGS, flags)] : []),
  ]);
  body[2] = flags & 0xff;
  return body;
}

/** Add `cidr` (address/prefix) to link `index`, or update it if present. */
export async function replaceAddress(s: NetlinkSocket, index: number, cidr: string, opts: { nodad?: boolean } = {}): Promise<void> {
  const body = addressRequest(index, cidr, opts.nodad ? IFA_F_NODAD : 0);
  await s.ack(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, body, `replace address ${cidr} on link #${index}`);
}

/** Remove `cidr` (address/prefix) from link `index`; "gone" when the link does not hold it (or is gone itself). */
export async function deleteAddress(s: NetlinkSocket, index: number, cidr: string): Promise<'deleted' | 'gone'> {
  try {
    await s.ack(RTM_DELADDR, 0, addressRequest(index, cidr), `delete address ${cidr} from link #${index}`);
    return 'deleted';
  } catch (e) {
    if (e instanceof KernelError && (e.code === 'EADDRNOTAVAIL' || e.code === 'ENODEV')) return 'gone';
    throw e;
  }
}
