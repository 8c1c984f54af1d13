// Set element changes straight over nfnetlink (NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM in one batch), for a group
// member joining or leaving. Through libnftables (1.0.6 here) any `add element` or `delete element` first dumps
// every element of every interval set of the ruleset into its cache (for its own overlap check), so one address
// added to a 10,000-address group cost 200–400 ms, and the same for any other set while such a group is installed
// (measured in bench/policy.ts). The kernel checks overlaps itself (an overlapping interval is EEXIST), so here a
// change costs what the kernel does with the elements named, whatever the size of the set.
//
// Elements are those compile.ts declares: IPv4/IPv6 addresses or prefixes in an interval set (a start key and an
// end key one past the last address, flagged INTERVAL_END, as nft writes them), MACs in a plain hash set.
import type { SetDecl } from '../../policy/compile.js';
import { bitsOf, parseCidr, parseIp } from '../../net/ip.js';
import { attr, macBytes, strAttr } from '../netlink/attributes.js';
import { KernelError, lastErrno, libc } from '../netlink/libc.js';
import { inNamespace } from '../netlink/netns.js';
import { HOST_BRIDGE, type Family } from './tables.js';

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_NETFILTER = 12;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLMSG_HDRLEN = 16;
const NLA_F_NESTED = 0x8000;

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 16;
const NFNL_MSG_BATCH_END = 17;
const NFT_MSG_NEWSETELEM = 12;
const NFT_MSG_DELSETELEM = 14;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_FLAGS = 3;
const NFTA_DATA_VALUE = 1;
const NFT_SET_ELEM_INTERVAL_END = 1;

const NFPROTO: Readonly<Record<Family, number>> = { inet: 1, ip: 2, bridge: 7, ip6: 10 };

const nest = (type: number, children: Buffer[]): Buffer => attr(type | NLA_F_NESTED, Buffer.concat(children));
const be32 = (type: number, v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return attr(type, b);
};

interface Key {
  key: Buffer;
  flags: number;
}

/** A big-endian byte string of `n` bytes for `v`; undefined when `v` does not fit (one past the top address). */
function bytesOf(v: bigint, n: number): Buffer | undefined {
  if (v >> BigInt(8 * n) !== 0n) return undefined;
  const b = Buffer.alloc(n);
  for (let i = n - 1; i >= 0; i--, v >>= 8n) b[i] = Number(v & 0xffn);
  return b;
}

/**
 * The kernel keys of one element: an address or prefix as an interval [first, last + 1) (the end omitted when the
 * prefix reaches the top of the address space, as nft omits it), a MAC as itself.
 */
export function elementKeys(decl: SetDecl, element: string): Key[] {
  if (decl.type === 'ether_addr') return [{ key: macBytes(element), flags: 0 }];
  const ip = parseIp(element.split('/')[0], 'set element');
  const c = element.includes('/') ? parseCidr(element, 'set element') : { family: ip.family, network: ip.value, prefix: bitsOf(ip.family) };
  if ((c.family === 4) !== (decl.type === 'ipv4_addr')) throw new Error(`set ${decl.name}: ${element} is not of type ${decl.type}`);
  const bits = bitsOf(c.family);
  const n = bits / 8;
  const first = c.network;
  const keys: Key[] = [{ key: bytesOf(first, n)!, flags: 0 }];
  if (!decl.interval) return keys;
  const end = bytesOf(first + (1n << BigInt(bits - c.prefix)), n);
  if (end) keys.push({ key: end, flags: NFT_SET_ELEM_INTERVAL_END });
  return keys;
}

function message(type: number, flags: number, seq: number, family: number, resId: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat(attrs);
  const m = Buffer.alloc(NLMSG_HDRLEN + 4 + body.length);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(type, 4);
  m.writeUInt16LE(flags | NLM_F_REQUEST, 6);
  m.writeUInt32LE(seq, 8);
  m[NLMSG_HDRLEN] = family;
  m[NLMSG_HDRLEN + 1] = 0; // NFNETLINK_V0
  m.writeUInt16BE(resId, NLMSG_HDRLEN + 2);
  body.copy(m, NLMSG_HDRLEN + 4);
  return m;
}

export interface ElementChange {
  decl: SetDecl;
  add?: readonly string[];
  remove?: readonly string[];
}

/** Keys per message: a netlink message is at most 64 KiB-ish in practice; stay well under with 16-byte keys. */
const KEYS_PER_MESSAGE = 1000;

let seqCounter = Math.floor(Math.random() * 0x3fffffff);

/**
 * Add and remove elements of sets of `table bridge bees`, one nfnetlink batch (one kernel transaction: all or
 * nothing). Removing an absent element is no error: it is added first in the same batch (a no-op when present).
 * Adding a present one is no error either (no NLM_F_EXCL).
 */
export async function changeSetElements(netns: string | undefined, changes: readonly ElementChange[], context: string): Promise<void> {
  const msgs: Buffer[] = [];
  let seq = (seqCounter = (seqCounter + 1000) & 0x3fffffff);
  const family = NFPROTO[HOST_BRIDGE.family];
  const push = (type: number, decl: SetDecl, keys: Key[]): void => {
    for (let i = 0; i < keys.length; i += KEYS_PER_MESSAGE) {
      const elems = keys
        .slice(i, i + KEYS_PER_MESSAGE)
        .map((k) =>
          nest(NFTA_LIST_ELEM, [
            nest(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, k.key)]),
            ...(k.flags ? [be32(NFTA_SET_ELEM_FLAGS, k.flags)] : []),
          ]),
        );
      const flags = NLM_F_ACK | (type === NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0);
      msgs.push(
        message((NFNL_SUBSYS_NFTABLES << 8) | type, flags, ++seq, family, 0, [
          strAttr(NFTA_SET_ELEM_LIST_TABLE, HOST_BRIDGE.name),
          strAttr(NFTA_SET_ELEM_LIST_SET, decl.name),
          nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems),
        ]),
      );
    }
  };
  for (const c of changes) {
    const add = [...(c.add ?? []), ...(c.remove ?? [])].flatMap((e) => elementKeys(c.decl, e));
    const del = (c.remove ?? []).flatMap((e) => elementKeys(c.decl, e));
    if (add.length) push(NFT_MSG_NEWSETELEM, c.decl, add);
    if (del.length) push(NFT_MSG_DELSETELEM, c.decl, del);
  }
  if (msgs.length === 0) return;
  const first = seqCounter;
  const batch = Buffer.concat([
    message(NFNL_MSG_BATCH_BEGIN, 0, first, 0, NFNL_SUBSYS_NFTABLES, []),
    ...msgs,
    message(NFNL_MSG_BATCH_END, 0, seq + 1, 0, NFNL_SUBSYS_NFTABLES, []),
  ]);
  await exchange(netns, batch, msgs.length, context);
}

/** Send a batch and read one acknowledgement per message; the first error rejects (the kernel applied nothing). */
async function exchange(netns: string | undefined, batch: Buffer, acks: number, context: string): Promise<void> {
  const c = libc();
  const fd = inNamespace(netns, () => c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
  if (fd < 0) throw new KernelError(`${context}: nfnetlink socket`, lastErrno());
  try {
    const one = Buffer.alloc(4);
    one.writeInt32LE(1);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    const tv = Buffer.alloc(16);
    tv.writeBigInt64LE(5n, 0);
    c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    // The commit runs inside sendto: on a pool thread, so the event loop goes on meanwhile.
    const sent = await c.sendtoAsync(fd, batch, batch.length, 0, addr, 12);
    if (sent < 0) throw new KernelError(`${context}: nfnetlink send`, lastErrno());
    const buf = Buffer.alloc(64 * 1024);
    let got = 0;
    let failure: KernelError | undefined;
    while (got < acks) {
      const n = c.recv(fd, buf, buf.length, 0);
      if (n < 0) throw new KernelError(`${context}: nfnetlink receive`, lastErrno());
      for (let off = 0; off + NLMSG_HDRLEN <= n; ) {
        const len = buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN) break;
        if (buf.readUInt16LE(off + 4) === NLMSG_ERROR) {
          got++;
          const errno = -buf.readInt32LE(off + NLMSG_HDRLEN);
          if (errno !== 0 && !failure) failure = new KernelError(context, errno);
        }
        off += (len + 3) & ~3;
      }
      // After an error the kernel aborts the batch: the acks of the other messages may not all come.
      if (failure) break;
    }
    if (failure) throw failure;
  } finally {
    c.close(fd);
  }
}
