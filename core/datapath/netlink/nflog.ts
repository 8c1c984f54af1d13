// NFLOG over nfnetlink (linux/netfilter/nfnetlink_log.h): the packets nft `log group N` hands to user space, read
// in-process. A socket of protocol NETLINK_NETFILTER binds to group N of its network namespace (NFLOG groups are
// per namespace, so an agent in a harness host's namespace reads only its own host's drops) and receives one
// NFULNL_MSG_PACKET per logged packet: the log prefix, the bridge ports it came in and would go out by, the MAC
// header and the first bytes of the packet.
//
// Reading never blocks the event loop and holds no pool thread: the socket is drained with MSG_DONTWAIT on a timer
// (the kernel queues what arrives meanwhile in the socket's buffer; what overflows it is counted as lost).
import { attr, ipText, macText, parseAttrs, readString } from './attributes.js';
import { KernelError, lastErrno, libc } from './libc.js';
import { inNamespace } from './netns.js';
import {
  AF_NETLINK,
  SOCK_RAW,
  SOCK_CLOEXEC,
  SOL_SOCKET,
  SO_RCVBUF,
  MSG_TRUNC,
  MSG_DONTWAIT,
  NLMSG_HDRLEN,
  EINTR,
  EAGAIN,
  ENOBUFS,
} from './sys.js';

const AF_UNSPEC = 0;
const NETLINK_NETFILTER = 12;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLMSG_ERROR = 2;

const NFNL_SUBSYS_ULOG = 4;
const NFULNL_MSG_PACKET = 0;
const NFULNL_MSG_CONFIG = 1;
const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULA_CFG_TIMEOUT = 4;
const NFULA_CFG_QTHRESH = 5;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_COPY_PACKET = 2;

const NFULA_PACKET_HDR = 1;
const NFULA_TIMESTAMP = 3;
const NFULA_IFINDEX_INDEV = 4;
const NFULA_IFINDEX_OUTDEV = 5;
const NFULA_IFINDEX_PHYSINDEV = 6;
const NFULA_IFINDEX_PHYSOUTDEV = 7;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;
const NFULA_HWHEADER = 16;

/** Bytes of each packet copied: enough for the MAC, IP and L4 headers. */
const COPY_RANGE = 128;

/** One logged packet, decoded as far as bees needs (addresses, protocol, ports, ICMP type). */
export interface LoggedPacket {
  /** Milliseconds since the epoch (the kernel's timestamp when it gave one, else when read). */
  time: number;
  prefix: string;
  /** Bridge ports (the veths) the packet came in by and would have gone out by, when known. */
  inIndex?: number;
  outIndex?: number;
  /** The bridge (or other device) itself. */
  inDevIndex?: number;
  outDevIndex?: number;
  ethertype?: number;
  srcMac?: string;
  dstMac?: string;
  srcIp?: string;
  dstIp?: string;
  proto?: number;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
  length?: number;
}

function check(rc: number, operation: string): number {
  if (rc < 0) throw new KernelError(operation, lastErrno());
  return rc;
}

/** The network and transport headers of `p` (an IP packet, as the bridge hooks hand it over). */
function decodeIp(b: Buffer, out: LoggedPacket): void {
  if (b.length < 1) return;
  const version = b[0]! >> 4;
  let l4 = -1;
  if (version === 4 && b.length >= 20) {
    out.srcIp = ipText(b.subarray(12, 16));
    out.dstIp = ipText(b.subarray(16, 20));
    out.proto = b[9]!;
    out.length = b.readUInt16BE(2);
    const fragOffset = b.readUInt16BE(6) & 0x1fff;
    if (fragOffset === 0) l4 = (b[0]! & 0x0f) * 4;
  } else if (version === 6 && b.length >= 40) {
    out.srcIp = ipText(b.subarray(8, 24));
    out.dstIp = ipText(b.subarray(24, 40));
    out.proto = b[6]!; // extension headers are not walked
    out.length = b.readUInt16BE(4) + 40;
    l4 = 40;
  }
  if (l4 < 0 || b.length < l4 + 4) return;
  if (out.proto === 1 || out.proto === 58) {
    out.icmpType = b[l4]!;
    out.icmpCode = b[l4 + 1]!;
  } else if (out.proto === 6 || out.proto === 17 || out.proto === 132) {
    out.srcPort = b.readUInt16BE(l4);
    out.dstPort = b.readUInt16BE(l4 + 2);
  }
}

/** Decode one NFULNL_MSG_PACKET body (nfgenmsg, then attributes). Exported for tests. */
export function decodePacket(body: Buffer, now = Date.now()): LoggedPacket {
  const a = parseAttrs(body, 4);
  const u32 = (t: number) => a.get(t)?.readUInt32BE(0);
  const out: LoggedPacket = { time: now, prefix: readString(a.get(NFULA_PREFIX) ?? Buffer.alloc(0)) };
  const ts = a.get(NFULA_TIMESTAMP);
  if (ts && ts.length >= 16) out.time = Number(ts.readBigUInt64BE(0)) * 1000 + Math.floor(Number(ts.readBigUInt64BE(8)) / 1000);
  // Bridge family: the physical ports are the bridge ports; without them (other families) the devices are.
  const phin = u32(NFULA_IFINDEX_PHYSINDEV);
  const phout = u32(NFULA_IFINDEX_PHYSOUTDEV);
  const indev = u32(NFULA_IFINDEX_INDEV);
  const outdev = u32(NFULA_IFINDEX_OUTDEV);
  const inIndex = phin ?? indev;
  const outIndex = phout ?? outdev;
  if (inIndex !== undefined) out.inIndex = inIndex;
  if (outIndex !== undefined) out.outIndex = outIndex;
  if (phin !== undefined && indev !== undefined) out.inDevIndex = indev;
  if (phout !== undefined && outdev !== undefined) out.outDevIndex = outdev;
  const hdr = a.get(NFULA_PACKET_HDR);
  if (hdr && hdr.length >= 2) out.ethertype = hdr.readUInt16BE(0);
  const hw = a.get(NFULA_HWHEADER);
  if (hw && hw.length >= 14) {
    out.dstMac = macText(hw.subarray(0, 6));
    out.srcMac = macText(hw.subarray(6, 12));
  }
  const payload = a.get(NFULA_PAYLOAD);
  if (payload && (out.ethertype === undefined || out.ethertype === 0x0800 || out.ethertype === 0x86dd)) decodeIp(payload, out);
  return out;
}

function message(type: number, flags: number, seq: number, family: number, resId: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat([Buffer.from([family, 0, resId >> 8, resId & 0xff]), ...attrs]);
  const msg = Buffer.alloc(NLMSG_HDRLEN + body.length);
  msg.writeUInt32LE(msg.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags, 6);
  msg.writeUInt32LE(seq, 8);
  body.copy(msg, NLMSG_HDRLEN);
  return msg;
}

const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

/** A socket bound to one NFLOG group of a network namespace. */
export class NflogSocket {
  private readonly buf = Buffer.alloc(256 * 1024);
  private closed = false;
  /** Packets the kernel could not queue to us (socket buffer full): they were dropped all the same, not logged. */
  lost = 0;

  private constructor(
    private readonly fd: number,
    readonly group: number,
  ) {}

  /** Bind NFLOG group `group` (0–65535) in the namespace at `netns` (the current one when undefined). */
  static open(group: number, netns?: string): NflogSocket {
    if (!Number.isInteger(group) || group < 0 || group > 0xffff) throw new Error(`NFLOG group ${group} is not in 0–65535`);
    const c = libc();
    const fd = inNamespace(netns, () => check(c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER), 'nfnetlink socket'));
    const s = new NflogSocket(fd, group);
    try {
      const size = Buffer.alloc(4);
      size.writeInt32LE(1 << 20);
      c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
      check(c.bind(fd, Buffer.from([AF_NETLINK & 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 12), 'nfnetlink bind');
      const type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
      s.request(type, AF_UNSPEC, [attr(NFULA_CFG_CMD, Buffer.from([NFULNL_CFG_CMD_BIND]))], `bind NFLOG group ${group}`);
      // The whole start of each packet; handed over at once (threshold 1), not batched for a second.
      const mode = Buffer.alloc(6);
      mode.writeUInt32BE(COPY_RANGE, 0);
      mode[4] = NFULNL_COPY_PACKET;
      s.request(
        type,
        AF_UNSPEC,
        [attr(NFULA_CFG_MODE, mode), attr(NFULA_CFG_QTHRESH, be32(1)), attr(NFULA_CFG_TIMEOUT, be32(1))],
        `configure NFLOG group ${group}`,
      );
    } catch (e) {
      c.close(fd);
      throw e;
    }
    return s;
  }

  private seq = 1;

  /** A configuration request and its acknowledgement (the kernel answers inside sendto). */
  private request(type: number, family: number, attrs: Buffer[], operation: string): void {
    const c = libc();
    const seq = ++this.seq;
    const msg = message(type, NLM_F_REQUEST | NLM_F_ACK, seq, family, this.group, attrs);
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    check(c.sendto(this.fd, msg, msg.length, 0, addr, 12), operation);
    for (;;) {
      const n = c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === EINTR) continue;
        throw new KernelError(`${operation}: no acknowledgement`, errno);
      }
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = this.buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN) break;
        if (this.buf.readUInt16LE(off + 4) === NLMSG_ERROR && this.buf.readUInt32LE(off + 8) === seq) {
          const errno = -this.buf.readInt32LE(off + NLMSG_HDRLEN);
          if (errno !== 0) throw new KernelError(operation, errno);
          return;
        }
        off += (len + 3) & ~3;
      }
    }
  }

  /** Every packet queued so far (never waits). */
  drain(): LoggedPacket[] {
    if (this.closed) return [];
    const c = libc();
    const out: LoggedPacket[] = [];
    for (;;) {
      const n = c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT | MSG_TRUNC);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === EINTR) continue;
        if (errno === ENOBUFS) {
          this.lost++; // the kernel dropped messages for us; the socket goes on
          continue;
        }
        if (errno === EAGAIN) return out;
        throw new KernelError(`read NFLOG group ${this.group}`, errno);
      }
      const end = Math.min(n, this.buf.length);
      for (let off = 0; off + NLMSG_HDRLEN <= end;) {
        const len = this.buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN || off + len > end) break;
        if (this.buf.readUInt16LE(off + 4) === ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET)) {
          out.push(decodePacket(Buffer.from(this.buf.subarray(off + NLMSG_HDRLEN, off + len))));
        }
        off += (len + 3) & ~3;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().close(this.fd);
  }
}
