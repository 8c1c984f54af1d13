// Compiled rules (core/policy/compile.ts's nft text, the one source of what a rule means) turned into nf_tables
// netlink expressions, so a port's new chain can go to the kernel as a raw nfnetlink batch: libnftables' parse and
// evaluation of 50 rules cost ~2.8 ms of CPU on the attach's critical path, this costs a few tens of microseconds.
//
// Only the grammar compile.ts emits for bridge stages is understood, and it is encoded the way nft 1.0.6 encodes it
// (its `--debug=netlink` output was the model), so `nft list` prints the same rule either way:
// - `ip`/`ip6` matches carry nft's implicit dependency `meta protocol == ip|ip6` (once per rule and family, not
//   after an explicit `ether type` of that family); a prefix on a byte boundary loads only its bytes, any other
//   prefix loads the address and masks it;
// - an equal port range is two compares (>=, <=), an unequal one a range expression;
// - `counter`, verdicts, `limit rate N/second` (burst 5, nft's default), `log prefix … group N`, and the comment as
//   libnftnl's rule userdata (TLV type 0, NUL-terminated).
// - `!= v-v`, a one-value range compile.ts writes where nft would merge two adjacent `!=` compares into one (true
//   when either field differs), is a range expression, as nft makes it;
// nft merges other adjacent compares of one header (`==`, or `!=` not written as a range) into one load; here each
// match stays its own compare (the same meaning, since compile.ts never leaves a merge that changes it).
// Anything else (anonymous sets `{ … }`, ICMP fields, conntrack, interface names) is refused with undefined, and
// the caller sends the text through libnftables as before. core/test/policy-netlink.test.ts installs a corpus both
// ways and compares nft's listings.
import { attr, ipBytes, strAttr } from '../netlink/attributes.js';
import { chainName, type CompiledChain } from '../../policy/compile.js';
import { NFPROTO, NLA_F_NESTED, NLM_F_CREATE, type BatchMessage } from './nfnetlink.js';
import { HOST_BRIDGE, OWNER_COMMENT } from './tables.js';

/** nf_tables message types (NFT_MSG_*) the batches here send. */
export const NFT_MSG = { NEWTABLE: 0, NEWCHAIN: 3, NEWRULE: 6, DELRULE: 8, NEWSET: 9, NEWSETELEM: 12 } as const;
const NLM_F_APPEND = 0x800;
const NFTA_TABLE_NAME = 1;
const NFTA_TABLE_USERDATA = 6;
const NFTNL_UDATA_TABLE_COMMENT = 0;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_HANDLE = 3;
const NFTA_RULE_POSITION = 6;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_RULE_USERDATA = 7;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
const NFT_REG_VERDICT = 0;
const NFT_REG_1 = 1;
const NFTNL_UDATA_RULE_COMMENT = 0;
/** nft's limit on a comment (NFT_USERDATA_MAXLEN is larger; nft refuses longer comments first). */
const COMMENT_MAX = 128;

const PAYLOAD = { LL: 0, NETWORK: 1, TRANSPORT: 2 } as const;
const META = { PROTOCOL: 1, MARK: 3, L4PROTO: 16 } as const;
const CMP = { EQ: 0, NEQ: 1, LTE: 3, GTE: 5 } as const;
/** Verdict codes (NF_DROP, NF_ACCEPT, NFT_RETURN, NFT_JUMP, NFT_GOTO). */
export const VERDICT: Readonly<Record<'drop' | 'accept' | 'return' | 'jump' | 'goto', number>> = {
  drop: 0,
  accept: 1,
  return: -5,
  jump: -3,
  goto: -4,
};
const ETHERTYPE = { ip: 0x0800, ip6: 0x86dd } as const;
const ETHERTYPE_NAMES: Readonly<Record<string, number>> = { ip: 0x0800, ip6: 0x86dd, arp: 0x0806, '8021q': 0x8100, '8021ad': 0x88a8 };
const L4PROTO_NAMES: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17, 'ipv6-icmp': 58 };
const ICMPV6_TYPES: Readonly<Record<string, number>> = {
  'echo-request': 128,
  'echo-reply': 129,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
};

const family = NFPROTO[HOST_BRIDGE.family];
const table = (type: number): Buffer => strAttr(type, HOST_BRIDGE.name);

/** A nested attribute of `children` (each already padded), written into one buffer. */
export function nest(type: number, children: readonly Buffer[]): Buffer {
  let len = 4;
  for (const c of children) len += c.length;
  const b = Buffer.allocUnsafe(len);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type | NLA_F_NESTED, 2);
  let o = 4;
  for (const c of children) o += c.copy(b, o);
  return b;
}
export const be32 = (type: number, v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return attr(type, b);
};
const be64 = (type: number, v: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return attr(type, b);
};
const be16 = (type: number, v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return attr(type, b);
};
const value = (type: number, bytes: Buffer): Buffer => nest(type, [attr(NFTA_DATA_VALUE, bytes)]);
const expr = (name: string, data: Buffer[]): Buffer =>
  nest(NFTA_LIST_ELEM, [strAttr(NFTA_EXPR_NAME, name), ...(data.length ? [nest(NFTA_EXPR_DATA, data)] : [])]);

/** Expressions that take no value from the rule are built once (an attach encodes tens of rules). */
const payloads = new Map<number, Buffer>();
const metas = new Map<number, Buffer>();
function payload(base: number, offset: number, len: number): Buffer {
  const key = (base << 16) | (offset << 8) | len;
  let b = payloads.get(key);
  if (!b) payloads.set(key, (b = expr('payload', [be32(1, NFT_REG_1), be32(2, base), be32(3, offset), be32(4, len)])));
  return b;
}
function meta(key: number): Buffer {
  let b = metas.get(key);
  if (!b) metas.set(key, (b = expr('meta', [be32(2, key), be32(1, NFT_REG_1)])));
  return b;
}
/** `range neq` (NFT_RANGE_NEQ): the register is outside [from, to]. */
function rangeNeq(from: Buffer, to: Buffer): Buffer {
  return expr('range', [be32(1, NFT_REG_1), be32(2, 1), value(3, from), value(4, to)]);
}

/**
 * `cmp`, the commonest expression with a value of the rule's own, written into one buffer: what expr() and its
 * helpers would build from nine (an attach encodes tens of them; the allocations were most of the encoder's time).
 */
function cmp(op: number, bytes: Buffer): Buffer {
  const [b, o] = cmpOf(op, bytes.length);
  b.fill(0, o + bytes.copy(b, o));
  return b;
}
/** cmp of a 16-bit big-endian value (a port), without a buffer for the value. */
function cmp16(op: number, v: number): Buffer {
  const [b, o] = cmpOf(op, 2);
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
  b[o + 2] = 0;
  b[o + 3] = 0;
  return b;
}
/** A cmp's buffer with everything written but its value's `len` bytes and their padding, which go at the offset. */
function cmpOf(op: number, len: number): [Buffer, number] {
  const padded = (len + 3) & ~3;
  const data = 4 + 4 + padded; // CMP_DATA { DATA_VALUE { bytes } }
  const inner = 8 + 8 + data; // SREG, OP, CMP_DATA
  // From the pool, unzeroed (every byte is written): a zeroed buffer is an allocation of its own each.
  const b = Buffer.allocUnsafe(4 + 8 + 4 + inner); // LIST_ELEM { NAME "cmp", EXPR_DATA { … } }
  let o = hdr(b, 0, b.length, NFTA_LIST_ELEM | NLA_F_NESTED);
  o = hdr(b, o, 8, NFTA_EXPR_NAME);
  // "cmp\0" by hand: Buffer.write of a 3-byte string cost more than the rest of the rule's encoding.
  b[o] = 0x63;
  b[o + 1] = 0x6d;
  b[o + 2] = 0x70;
  b[o + 3] = 0;
  o = hdr(b, o + 4, 4 + inner, NFTA_EXPR_DATA | NLA_F_NESTED);
  o = hdr(b, o, 8, 1);
  b.writeInt32BE(NFT_REG_1, o);
  o = hdr(b, o + 4, 8, 2);
  b.writeInt32BE(op, o);
  o = hdr(b, o + 4, data, 3 | NLA_F_NESTED);
  return [b, hdr(b, o, 4 + len, NFTA_DATA_VALUE)];
}
/**
 * A compare with a one-byte value, built once per operator and value (`meta l4proto 6`, in most rules): the
 * expression buffers are only ever copied into the rule's, never written after they are made.
 */
const cmp8s = new Map<number, Buffer>();
function cmp8(op: number, v: number): Buffer {
  const k = (op << 8) | v;
  let b = cmp8s.get(k);
  if (!b) cmp8s.set(k, (b = cmp(op, Buffer.of(v))));
  return b;
}
/** An attribute header (length, type) written at `o`; returns the offset after it. */
function hdr(b: Buffer, o: number, len: number, type: number): number {
  b[o] = len & 0xff;
  b[o + 1] = len >> 8;
  b[o + 2] = type & 0xff;
  b[o + 3] = type >> 8;
  return o + 4;
}
const bitwise = (mask: Buffer): Buffer =>
  expr('bitwise', [be32(1, NFT_REG_1), be32(2, NFT_REG_1), be32(3, mask.length), value(4, mask), value(5, Buffer.alloc(mask.length))]);
/** nft's datatypes (src/datatype.h), which `nft list` reads an anonymous set's elements by. */
const DATATYPE = { integer: 4, ipv4_addr: 7, ipv6_addr: 8, ether_addr: 9, ethertype: 10, icmpv6_type: 29 } as const;
const NFT_SET_ANONYMOUS = 0x1;
const NFT_SET_CONSTANT = 0x2;
const ANON_SET = '__set%d';
let setIds = Math.floor(Math.random() * 0x3fffffff);

/**
 * An anonymous constant set of `elements` and the lookup of it (by the id it has in the batch, the kernel naming
 * it): what nft makes of `{ a, b }`. A single element is a compare, as nft makes it.
 */
function inSet(type: number, len: number, elements: Buffer[], neq: boolean, sets: BatchMessage[]): Buffer {
  if (elements.length === 1) return cmp(neq ? CMP.NEQ : CMP.EQ, elements[0]!);
  const id = (setIds = (setIds + 1) & 0x3fffffff);
  // Key byte order big endian (NFTNL_UDATA_SET_KEYBYTEORDER, host-order u32), as nft records it for these types.
  const udata = Buffer.alloc(6);
  udata[0] = 0;
  udata[1] = 4;
  udata.writeUInt32LE(2, 2);
  sets.push(
    {
      type: NFT_MSG.NEWSET,
      flags: NLM_F_CREATE,
      family,
      attrs: [
        table(1),
        strAttr(2, ANON_SET),
        be32(3, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT),
        be32(4, type),
        be32(5, len),
        nest(9, [be32(1, elements.length)]),
        be32(10, id),
        attr(13, udata),
      ],
    },
    {
      type: NFT_MSG.NEWSETELEM,
      flags: NLM_F_CREATE,
      family,
      attrs: [
        table(1),
        strAttr(2, ANON_SET),
        be32(4, id),
        nest(
          3,
          elements.map((e) => nest(NFTA_LIST_ELEM, [nest(1, [attr(NFTA_DATA_VALUE, e)])])),
        ),
      ],
    },
  );
  return expr('lookup', [strAttr(1, ANON_SET), be32(2, NFT_REG_1), be32(4, id), ...(neq ? [be32(5, 1)] : [])]);
}

const lookup = (set: string, inv: boolean): Buffer => expr('lookup', [strAttr(1, set), be32(2, NFT_REG_1), ...(inv ? [be32(5, 1)] : [])]);
/** A verdict as data (NFTA_DATA_VERDICT): of an immediate expression, or of a verdict map's element. */
export const verdictData = (code: number, chain?: string): Buffer =>
  nest(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, code), ...(chain ? [strAttr(NFTA_VERDICT_CHAIN, chain)] : [])]);
/** The expression ending a rule with a verdict. */
export const verdict = (code: number, chain?: string): Buffer =>
  expr('immediate', [be32(1, NFT_REG_VERDICT), nest(2, [verdictData(code, chain)])]);

/** A rule in netlink form: its expressions and userdata (the comment), ready for NFT_MSG_NEWRULE. */
export interface RuleNetlink {
  expressions: Buffer;
  /** The comment as the rule's NFTA_RULE_USERDATA attribute (libnftnl's TLVs), ready to send. */
  userdata?: Buffer;
  /** Anonymous sets the rule looks up (`{ … }`): created with their elements before it, in the same batch. */
  sets?: BatchMessage[];
}

class Unsupported extends Error {}

const COUNTER = expr('counter', [be64(1, 0), be64(2, 0)]);
const VERDICT_EXPR = { accept: verdict(VERDICT.accept), drop: verdict(VERDICT.drop), return: verdict(VERDICT.return) };

const u16be = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n);
  return b;
};

function int(tok: string | undefined, max: number): number {
  if (tok === undefined) throw new Unsupported();
  // Decimal digits by hand (the common case, a port or a mark); hex and anything else by the pattern.
  let n = 0;
  for (let k = 0; k < tok.length; k++) {
    const d = tok.charCodeAt(k) - 48;
    if (d < 0 || d > 9 || k > 15) {
      n = -1;
      break;
    }
    n = n * 10 + d;
  }
  if (n < 0 || tok.length === 0) {
    if (!/^(0x[0-9a-f]+|\d+)$/i.test(tok)) throw new Unsupported();
    n = Number(tok);
  }
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw new Unsupported();
  return n;
}

/**
 * A rule's tokens: words, and quoted strings whole (what TOKEN matches). One pass over the characters for ASCII text
 * spaced by ' ' alone, which is what compile.ts writes (split and its checks cost ~0.5 us of a rule's ~1.5); the
 * pattern for anything else (other whitespace, non-ASCII, where `\S` has its own idea of a space).
 */
function tokens(text: string): string[] {
  const out: string[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    let c = text.charCodeAt(i);
    if (c === 32) {
      i++;
      continue;
    }
    const start = i;
    if (c === 34) {
      const close = text.indexOf('"', i + 1);
      if (close >= 0) {
        for (let k = i + 1; k < close; k++) {
          const q = text.charCodeAt(k);
          if (q < 32 || q > 126) return text.match(TOKEN) ?? [];
        }
        out.push(text.slice(start, close + 1));
        i = close + 1;
        continue;
      }
    }
    for (; i < n; c = text.charCodeAt(++i)) {
      if (c === 32) break;
      if (c < 32 || c > 126) return text.match(TOKEN) ?? [];
    }
    out.push(text.slice(start, i));
  }
  return out;
}

function macBytes(tok: string | undefined): Buffer {
  if (tok === undefined || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(tok)) throw new Unsupported();
  return Buffer.from(tok.replace(/:/g, ''), 'hex');
}

function addrBytes(text: string, family: 4 | 6): Buffer {
  let b: Buffer;
  try {
    b = ipBytes(text);
  } catch {
    throw new Unsupported();
  }
  if (b.length !== (family === 4 ? 4 : 16)) throw new Unsupported();
  return b;
}

/** `"…"` → its text; the grammar has no escapes inside (rule ids and prefixes are plain). */
function quoted(tok: string | undefined): string {
  if (tok === undefined || tok.length < 2 || !tok.startsWith('"') || !tok.endsWith('"')) throw new Unsupported();
  return tok.slice(1, -1);
}

/**
 * One compiled rule's text in netlink form, or undefined when it says something this encoder does not know (the
 * caller then uses libnftables for it).
 */
export function ruleNetlink(text: string): RuleNetlink | undefined {
  try {
    return encode(text);
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
}

/**
 * The encoder's place in a rule's tokens and what the rule established so far. A plain object handed to module-level
 * functions, not closures made per rule: a bulk load encodes 10,000 rules, and under tsx (keepNames) each closure
 * made per rule also cost an Object.defineProperty — most of the encoder's time.
 */
interface Cursor {
  toks: string[];
  i: number;
  out: Buffer[];
  /** The transport protocol established in this rule (`meta l4proto N`, or a dependency nft would add). */
  l4: number | undefined;
}

const TOKEN = /"[^"]*"|\S+/g;
const DECIMAL = /^\d+$/;
const ONE_VALUE_RANGE = /^([^-{}@]+)-([^-{}@]+)$/;
const next = (c: Cursor): string | undefined => c.toks[c.i++];
function peekNeq(c: Cursor): boolean {
  if (c.toks[c.i] !== '!=') return false;
  c.i++;
  return true;
}
/** One value, or the elements of `{ a, b, … }`. */
function values(c: Cursor, parse: (tok: string) => Buffer): Buffer[] {
  const tok = next(c);
  if (tok === undefined) throw new Unsupported();
  if (tok !== '{') return [parse(tok)];
  const items: Buffer[] = [];
  for (let v = next(c); v !== '}'; v = next(c)) {
    if (v === undefined) throw new Unsupported();
    for (const part of v.split(',')) if (part) items.push(parse(part));
  }
  if (items.length === 0) throw new Unsupported();
  return items;
}
const addr4 = (tok: string): Buffer => addrBytes(tok, 4);
const addr6 = (tok: string): Buffer => addrBytes(tok, 6);
const ethertypeValue = (n: string): Buffer => u16be(ETHERTYPE_NAMES[n] ?? int(n, 0xffff));
const icmpv6Type = (n: string): Buffer => Buffer.of(ICMPV6_TYPES[n] ?? int(n, 0xff));
/** `!= v-v` (see the header) as nft's range expression; undefined when the next token is not one. */
function oneValueRange(c: Cursor, neq: boolean, parse: (tok: string) => Buffer): Buffer | undefined {
  const m = ONE_VALUE_RANGE.exec(c.toks[c.i] ?? '');
  if (!m) return undefined;
  const [from, to] = [parse(m[1]!), parse(m[2]!)];
  if (!neq || !from.equals(to)) throw new Unsupported();
  c.i++;
  return rangeNeq(from, to);
}
function l4dependency(c: Cursor, proto: number): void {
  if (c.l4 === proto) return;
  if (c.l4 !== undefined) throw new Unsupported();
  c.out.push(meta(META.L4PROTO), cmp8(CMP.EQ, proto));
  c.l4 = proto;
}

function encode(text: string): RuleNetlink {
  const toks = tokens(text);
  const out: Buffer[] = [];
  const c: Cursor = { toks, i: 0, out, l4: undefined };
  let comment: string | undefined;
  let done = false;
  /** Network protocols established in this rule (explicit `ether type` or an earlier dependency). */
  const known = new Set<number>();
  const sets: BatchMessage[] = [];
  while (c.i < toks.length) {
    const t = next(c)!;
    if (done && t !== 'comment') throw new Unsupported();
    switch (t) {
      case 'meta': {
        const key = next(c);
        if (key === 'mark') {
          if (next(c) !== '&') throw new Unsupported();
          const mask = int(next(c), 0xffffffff);
          const op = next(c);
          if (op !== '==' && op !== '!=') throw new Unsupported();
          const v = int(next(c), 0xffffffff);
          // The mark is host byte order in the register (as nft sends it).
          const m = Buffer.alloc(4);
          m.writeUInt32LE(mask);
          const x = Buffer.alloc(4);
          x.writeUInt32LE(v);
          out.push(meta(META.MARK), bitwise(m), cmp(op === '==' ? CMP.EQ : CMP.NEQ, x));
        } else if (key === 'l4proto') {
          const neq = peekNeq(c);
          const tok = next(c) ?? '';
          const proto = L4PROTO_NAMES[tok] ?? int(tok, 0xff);
          out.push(meta(META.L4PROTO), cmp8(neq ? CMP.NEQ : CMP.EQ, proto));
          if (!neq) c.l4 = proto;
        } else throw new Unsupported();
        break;
      }
      case 'ether': {
        const field = next(c);
        if (field === 'type') {
          const neq = peekNeq(c);
          const r = oneValueRange(c, neq, ethertypeValue);
          if (r) {
            out.push(payload(PAYLOAD.LL, 12, 2), r);
            break;
          }
          const types = values(c, ethertypeValue);
          out.push(payload(PAYLOAD.LL, 12, 2), inSet(DATATYPE.ethertype, 2, types, neq, sets));
          if (!neq && types.length === 1) known.add(types[0]!.readUInt16BE());
        } else if (field === 'saddr' || field === 'daddr') {
          const offset = field === 'saddr' ? 6 : 0;
          if (toks[c.i] === '&') {
            c.i++;
            const mask = macBytes(next(c));
            const op = next(c);
            if (op !== '==' && op !== '!=') throw new Unsupported();
            out.push(payload(PAYLOAD.LL, offset, 6), bitwise(mask), cmp(op === '==' ? CMP.EQ : CMP.NEQ, macBytes(next(c))));
            break;
          }
          const neq = peekNeq(c);
          out.push(payload(PAYLOAD.LL, offset, 6));
          const r = oneValueRange(c, neq, macBytes);
          if (r) {
            out.push(r);
            break;
          }
          const v = toks[c.i];
          if (v?.startsWith('@')) {
            c.i++;
            out.push(lookup(v.slice(1), neq));
          } else out.push(inSet(DATATYPE.ether_addr, 6, values(c, macBytes), neq, sets));
        } else throw new Unsupported();
        break;
      }
      case 'ip':
      case 'ip6': {
        const family = t === 'ip' ? 4 : 6;
        const field = next(c);
        if (field !== 'saddr' && field !== 'daddr') throw new Unsupported();
        const type = ETHERTYPE[t];
        if (!known.has(type)) {
          out.push(meta(META.PROTOCOL), cmp(CMP.EQ, u16be(type)));
          known.add(type);
        }
        const size = family === 4 ? 4 : 16;
        const offset = family === 4 ? (field === 'saddr' ? 12 : 16) : field === 'saddr' ? 8 : 24;
        const neq = peekNeq(c);
        if (toks[c.i] === '{') {
          const type = family === 4 ? DATATYPE.ipv4_addr : DATATYPE.ipv6_addr;
          out.push(payload(PAYLOAD.NETWORK, offset, size), inSet(type, size, values(c, family === 4 ? addr4 : addr6), neq, sets));
          break;
        }
        const v = next(c);
        if (v === undefined) throw new Unsupported();
        if (v.startsWith('@')) {
          out.push(payload(PAYLOAD.NETWORK, offset, size), lookup(v.slice(1), neq));
          break;
        }
        const [addr, lenText] = v.split('/');
        const len = lenText === undefined ? size * 8 : int(lenText, size * 8);
        if (len === 0) throw new Unsupported();
        const bytes = addrBytes(addr!, family);
        const op = neq ? CMP.NEQ : CMP.EQ;
        if (len % 8 === 0) {
          out.push(payload(PAYLOAD.NETWORK, offset, len / 8), cmp(op, bytes.subarray(0, len / 8)));
        } else {
          const mask = Buffer.alloc(size);
          for (let b = 0; b < size; b++) mask[b] = b < len >> 3 ? 0xff : b === len >> 3 ? (0xff << (8 - (len & 7))) & 0xff : 0;
          const masked = Buffer.from(bytes.map((x, k) => x & mask[k]!));
          out.push(payload(PAYLOAD.NETWORK, offset, size), bitwise(mask), cmp(op, masked));
        }
        break;
      }
      case 'arp': {
        // `arp saddr ether|ip`: the sender's hardware and protocol addresses, after an explicit `ether type arp`.
        if (next(c) !== 'saddr' || !known.has(ETHERTYPE_NAMES.arp!)) throw new Unsupported();
        const kind = next(c);
        const neq = peekNeq(c);
        if (kind === 'ether') out.push(payload(PAYLOAD.NETWORK, 8, 6), inSet(DATATYPE.ether_addr, 6, values(c, macBytes), neq, sets));
        else if (kind === 'ip') out.push(payload(PAYLOAD.NETWORK, 14, 4), inSet(DATATYPE.ipv4_addr, 4, values(c, addr4), neq, sets));
        else throw new Unsupported();
        break;
      }
      case 'icmpv6': {
        // Only after an explicit `meta l4proto ipv6-icmp` (nft's own dependency would be more than that).
        if (next(c) !== 'type' || c.l4 !== L4PROTO_NAMES['ipv6-icmp']) throw new Unsupported();
        const neq = peekNeq(c);
        const types = values(c, icmpv6Type);
        out.push(payload(PAYLOAD.TRANSPORT, 0, 1), inSet(DATATYPE.icmpv6_type, 1, types, neq, sets));
        break;
      }
      case 'udp':
      case 'tcp': {
        const field = next(c);
        if (field !== 'sport' && field !== 'dport') throw new Unsupported();
        l4dependency(c, L4PROTO_NAMES[t]!);
        const neq = peekNeq(c);
        out.push(payload(PAYLOAD.TRANSPORT, field === 'sport' ? 0 : 2, 2), cmp16(neq ? CMP.NEQ : CMP.EQ, int(next(c), 0xffff)));
        break;
      }
      case 'th': {
        const field = next(c);
        if (field !== 'sport' && field !== 'dport') throw new Unsupported();
        const neq = peekNeq(c);
        const v = next(c) ?? '';
        // `N` or `N-M`, decimal (int() refuses anything else but hex, which the pattern here never allowed).
        const dash = v.indexOf('-');
        const ranged = dash >= 0;
        const [fromText, toText] = ranged ? [v.slice(0, dash), v.slice(dash + 1)] : [v, v];
        if (!DECIMAL.test(fromText) || (ranged && !DECIMAL.test(toText))) throw new Unsupported();
        const from = int(fromText, 0xffff);
        const to = ranged ? int(toText, 0xffff) : from;
        if (to < from) throw new Unsupported();
        out.push(payload(PAYLOAD.TRANSPORT, field === 'sport' ? 0 : 2, 2));
        // `!= 5-5` stays a range (see the header); `5-5` equal is one compare, as before.
        if (!ranged || (!neq && from === to)) out.push(cmp16(neq ? CMP.NEQ : CMP.EQ, from));
        else if (!neq) out.push(cmp16(CMP.GTE, from), cmp16(CMP.LTE, to));
        else out.push(rangeNeq(u16be(from), u16be(to)));
        break;
      }
      case 'counter':
        out.push(COUNTER);
        break;
      case 'accept':
      case 'drop':
      case 'return':
        out.push(VERDICT_EXPR[t]);
        done = true;
        break;
      case 'jump':
      case 'goto': {
        const target = next(c);
        if (!target || !/^[\w.-]+$/.test(target)) throw new Unsupported();
        out.push(verdict(VERDICT[t], target));
        done = true;
        break;
      }
      case 'limit': {
        if (next(c) !== 'rate') throw new Unsupported();
        const m = /^(\d+)\/second$/.exec(next(c) ?? '');
        if (!m) throw new Unsupported();
        // nft's defaults: burst 5 packets, no flags.
        out.push(expr('limit', [be64(1, int(m[1], 0xffffffff)), be64(2, 1), be32(3, 5), be32(4, 0), be32(5, 0)]));
        break;
      }
      case 'log': {
        if (next(c) !== 'prefix') throw new Unsupported();
        const prefix = quoted(next(c));
        if (next(c) !== 'group') throw new Unsupported();
        out.push(expr('log', [be16(1, int(next(c), 0xffff)), strAttr(2, prefix)]));
        break;
      }
      case 'comment':
        comment = quoted(next(c));
        if (c.i !== toks.length) throw new Unsupported();
        break;
      default: {
        // A raw transport payload, `@th,<bit offset>,<bit length>` (whole bytes only), against integers.
        const raw = /^@th,(\d+),(\d+)$/.exec(t);
        if (!raw || Number(raw[1]) % 8 || Number(raw[2]) % 8 || Number(raw[2]) === 0 || Number(raw[2]) > 128) throw new Unsupported();
        const len = Number(raw[2]) / 8;
        const neq = peekNeq(c);
        const ints = values(c, (v) => {
          if (!/^0x[0-9a-f]+$/i.test(v) || v.length - 2 > len * 2) throw new Unsupported();
          return Buffer.from(v.slice(2).padStart(len * 2, '0'), 'hex');
        });
        out.push(payload(PAYLOAD.TRANSPORT, Number(raw[1]) / 8, len), inSet(DATATYPE.integer, len, ints, neq, sets));
      }
    }
  }
  let ud: Buffer | undefined;
  if (comment !== undefined) {
    // The attribute in one buffer (header, TLV type and length, the comment, NUL, padding): built in pieces and
    // concatenated it was a good part of a bulk load's encoding.
    const len = Buffer.byteLength(comment) + 1;
    if (len > COMMENT_MAX) throw new Unsupported();
    ud = Buffer.allocUnsafe((4 + 2 + len + 3) & ~3);
    ud.fill(0, 4 + len); // the comment's NUL and the padding
    ud.writeUInt16LE(4 + 2 + len, 0);
    ud.writeUInt16LE(NFTA_RULE_USERDATA, 2);
    ud[4] = NFTNL_UDATA_RULE_COMMENT;
    ud[5] = len;
    // ASCII by hand (rule ids are): Buffer.write of a short string costs a native call each.
    if (len === comment.length + 1) for (let k = 0; k < comment.length; k++) ud[6 + k] = comment.charCodeAt(k);
    else ud.write(comment, 6);
  }
  // Built without spreads (a bulk load makes 10,000 of these): absent fields stay absent.
  const r: RuleNetlink = { expressions: nest(NFTA_RULE_EXPRESSIONS, out) };
  if (ud) r.userdata = ud;
  if (sets.length) r.sets = sets;
  return r;
}

const userdataOf = (r: RuleNetlink): Buffer[] => (r.userdata ? [r.userdata] : []);

/**
 * `table bridge bees` created with our owner comment, as header() writes it (libnftnl's table userdata, TLV type 0).
 * An existing table is left as it is: without NFTA_TABLE_FLAGS the kernel's update of it is no operation.
 */
export function newTable(): BatchMessage {
  const comment = Buffer.from(`${OWNER_COMMENT}\0`);
  return {
    type: NFT_MSG.NEWTABLE,
    flags: NLM_F_CREATE,
    family,
    attrs: [
      table(NFTA_TABLE_NAME),
      attr(NFTA_TABLE_USERDATA, Buffer.concat([Buffer.of(NFTNL_UDATA_TABLE_COMMENT, comment.length), comment])),
    ],
  };
}

/** Chain `name` of `table bridge bees` created (no error when it exists). */
export const newChain = (name: string): BatchMessage => ({
  type: NFT_MSG.NEWCHAIN,
  flags: NLM_F_CREATE,
  family,
  attrs: [table(NFTA_CHAIN_TABLE), strAttr(NFTA_CHAIN_NAME, name)],
});
/** Every rule of chain `name` deleted (`flush chain`). */
export const flushChain = (name: string): BatchMessage => ({
  type: NFT_MSG.DELRULE,
  flags: 0,
  family,
  attrs: [table(NFTA_RULE_TABLE), strAttr(NFTA_RULE_CHAIN, name)],
});
/** The table and chain attributes of a rule of chain `name`: built once for all the rules of a chain. */
export const ruleHead = (name: string): Buffer[] => [table(NFTA_RULE_TABLE), strAttr(NFTA_RULE_CHAIN, name)];
/** A rule appended to chain `name` (or to the chain its `head`, table and chain attributes, names). */
export const newRule = (name: string, r: RuleNetlink, head = ruleHead(name)): BatchMessage => ({
  type: NFT_MSG.NEWRULE,
  flags: NLM_F_CREATE | NLM_F_APPEND,
  family,
  attrs: [...head, r.expressions, ...userdataOf(r)],
});
/**
 * A rule inserted into chain `name` just before the rule of handle `before` (NFTA_RULE_POSITION without
 * NLM_F_APPEND), or appended when `before` is undefined. A `before` that is no longer in the chain fails the batch
 * (ENOENT).
 */
export const insertRule = (name: string, r: RuleNetlink, before: bigint | undefined): BatchMessage => ({
  type: NFT_MSG.NEWRULE,
  flags: NLM_F_CREATE | (before === undefined ? NLM_F_APPEND : 0),
  family,
  attrs: [
    table(NFTA_RULE_TABLE),
    strAttr(NFTA_RULE_CHAIN, name),
    ...(before === undefined ? [] : [handleAttr(NFTA_RULE_POSITION, before)]),
    r.expressions,
    ...userdataOf(r),
  ],
});
/** The rule of handle `handle` of chain `name` deleted (ENOENT fails the batch when it is not there). */
export const deleteRule = (name: string, handle: bigint): BatchMessage => ({
  type: NFT_MSG.DELRULE,
  flags: 0,
  family,
  attrs: [table(NFTA_RULE_TABLE), strAttr(NFTA_RULE_CHAIN, name), handleAttr(NFTA_RULE_HANDLE, handle)],
});
function handleAttr(type: number, h: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(h);
  return attr(type, b);
}
/** A rule of the given expressions (list elements), without comment. */
export const ruleOf = (expressions: Buffer[]): RuleNetlink => ({ expressions: nest(NFTA_RULE_EXPRESSIONS, expressions) });

/**
 * Compiled chains as nfnetlink messages for `table bridge bees`: each chain created (new at attach: `add chain` of
 * a chain holding rules makes the kernel's commit wait, but a new one does not), flushed, its rules appended. The
 * chains they jump to must exist or be among `chains`. Undefined when a chain needs sets (their declarations stay
 * with libnftables) or a rule this encoder does not know.
 */
export function chainMessages(chains: readonly CompiledChain[]): BatchMessage[] | undefined {
  if (chains.some((c) => c.sets.length > 0)) return undefined;
  const create: BatchMessage[] = [];
  const fill: BatchMessage[] = [];
  for (const c of chains) {
    if (c.name !== chainName(c.chainId)) return undefined;
    create.push(newChain(c.name));
    fill.push(flushChain(c.name));
    const head = [table(NFTA_RULE_TABLE), strAttr(NFTA_RULE_CHAIN, c.name)];
    for (const r of c.rules) {
      const nl = ruleNetlink(r);
      if (!nl) return undefined;
      fill.push(...(nl.sets ?? []), newRule(c.name, nl, head));
    }
  }
  // Every chain exists before any rule jumps to one of them.
  return [...create, ...fill];
}
