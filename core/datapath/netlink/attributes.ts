// Netlink attributes (struct nlattr, linux/netlink.h): a 4-byte header (length, type) then the payload, padded to
// 4 bytes. Nested attributes are attributes whose payload is a run of attributes. Also the encodings of the
// values we put in them (addresses, MACs, strings).
import { formatIp, isMac, normalizeMac, parseIp } from '../../net/ip.js';

const NLA_HDRLEN = 4;
/** The high bits of nla_type are flags (nested, network byte order), not part of the type. */
const NLA_TYPE_MASK = 0x3fff;

export const align4 = (n: number): number => (n + 3) & ~3;

export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, NLA_HDRLEN);
  return b;
}

export const nested = (type: number, children: Buffer[]): Buffer => attr(type, Buffer.concat(children));

export function u8Attr(type: number, v: number): Buffer {
  return attr(type, Buffer.of(v));
}

export function u32Attr(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return attr(type, b);
}

/** A NUL-terminated string (interface names, kinds). */
export const strAttr = (type: number, s: string): Buffer => attr(type, Buffer.from(`${s}\0`));

/** Attributes of a message or nested attribute, by type; a repeated type keeps its last value. */
export function parseAttrs(buf: Buffer, start = 0, end = buf.length): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = start;
  while (off + NLA_HDRLEN <= end) {
    const len = buf.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > end) break; // malformed tail: keep what parsed
    out.set(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return out;
}

export const readString = (b: Buffer): string => {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString();
};

/** An address in network byte order, as netlink carries it. */
export function ipBytes(text: string, what?: string): Buffer {
  const ip = parseIp(text, what);
  const n = ip.family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

export function ipText(b: Buffer): string {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return formatIp({ family: b.length === 4 ? 4 : 6, value: v });
}

/** Address family numbers (linux/socket.h), as netlink messages and sockets carry them. */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const addressFamily = (family: 4 | 6): number => (family === 4 ? AF_INET : AF_INET6);

export function macBytes(mac: string): Buffer {
  const text: string = mac;
  if (!isMac(text)) throw new Error(`invalid MAC address "${mac}"`);
  return Buffer.from(
    normalizeMac(mac)
      .split(':')
      .map((p) => parseInt(p, 16)),
  );
}

export const macText = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
