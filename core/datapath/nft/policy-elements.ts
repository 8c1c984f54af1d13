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
import { NFPROTO, NLA_F_NESTED, NLM_F_CREATE, nftBatch, type BatchMessage } from './nfnetlink.js';
import { HOST_BRIDGE } from './tables.js';

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
  const keys: Key[] = [{ key: bytesOf(c.network, n)!, flags: 0 }];
  if (!decl.interval) return keys;
  const end = bytesOf(c.network + (1n << BigInt(bits - c.prefix)), n);
  if (end) keys.push({ key: end, flags: NFT_SET_ELEM_INTERVAL_END });
  return keys;
}

export interface ElementChange {
  decl: SetDecl;
  add?: readonly string[];
  remove?: readonly string[];
}

/** Keys per message, so that no message nears netlink's 64 KiB attribute limit (16-byte keys, ~40 bytes each). */
const KEYS_PER_MESSAGE = 1000;

/**
 * Add and remove elements of sets of `table bridge bees`, one nfnetlink batch (one kernel transaction: all or
 * nothing). Removing an absent element is no error: it is added first in the same batch (a no-op when present);
 * adding a present one is no error either (no NLM_F_EXCL). An element overlapping another is the kernel's EEXIST.
 */
export async function changeSetElements(netns: string | undefined, changes: readonly ElementChange[], context: string): Promise<void> {
  const msgs: BatchMessage[] = [];
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
      msgs.push({
        type,
        flags: type === NFT_MSG_NEWSETELEM ? NLM_F_CREATE : 0,
        family: NFPROTO[HOST_BRIDGE.family],
        attrs: [
          strAttr(NFTA_SET_ELEM_LIST_TABLE, HOST_BRIDGE.name),
          strAttr(NFTA_SET_ELEM_LIST_SET, decl.name),
          nest(NFTA_SET_ELEM_LIST_ELEMENTS, elems),
        ],
      });
    }
  };
  for (const c of changes) {
    const add = [...(c.add ?? []), ...(c.remove ?? [])].flatMap((e) => elementKeys(c.decl, e));
    const del = (c.remove ?? []).flatMap((e) => elementKeys(c.decl, e));
    if (add.length) push(NFT_MSG_NEWSETELEM, c.decl, add);
    if (del.length) push(NFT_MSG_DELSETELEM, c.decl, del);
  }
  await nftBatch(netns, msgs, context);
}
