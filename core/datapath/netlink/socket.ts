// An rtnetlink socket (linux/netlink.h, linux/rtnetlink.h): requests out, replies, acknowledgements and kernel
// errors in. The kernel carries out a route-netlink request inside the sender's sendto() and has queued every
// reply before it returns. Most requests take microseconds, but some wait for RCU grace periods (deleting a veth:
// ~30 ms): those (RTM_DELLINK) are sent from a libuv pool thread so the event loop (and other kernel work) goes
// on meanwhile; the others are sent from the event loop itself, which is faster than a hop through the pool
// (twenty concurrent attaches make ~200 of them). The replies are then read without blocking. One request at a
// time per socket.
import { readString, parseAttrs } from './attributes.js';
import { KernelError, lastErrno, libc } from './libc.js';
import { Mutex } from '../../util/keyed-mutex.js';
import {
  AF_NETLINK,
  SOCK_RAW,
  SOCK_CLOEXEC,
  NETLINK_ROUTE,
  SOL_SOCKET,
  SO_RCVTIMEO,
  SOL_NETLINK,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  MSG_TRUNC,
  NLMSG_HDRLEN,
  EINTR,
  EAGAIN,
} from './sys.js';

export { KernelError };

const RTM_DELLINK = 17;

/**
 * At most this many slow requests of the process wait in the kernel at once. Changes serialise on the kernel's rtnl
 * lock anyway, so more gain nothing, while each holds one of libuv's four pool threads: twenty concurrent attaches
 * would hold them all and leave the store's fsync and the nft transactions queued behind the lock.
 */
const POOL_SLOTS = 2;

class Slots {
  private free = POOL_SLOTS;
  private readonly waiting: (() => void)[] = [];

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free++;
    }
  }
}

const poolSlots = new Slots();

export const NLM_F_REQUEST = 0x1;
const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
/** On NLMSG_ERROR: the request was not echoed back (NETLINK_CAP_ACK) / extended-ack attributes follow. */
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;

/** How long to wait for the kernel's answer before calling the socket wedged (it answers in microseconds). */
const RECV_TIMEOUT_S = 5;
const RECV_BUFFER = 64 * 1024;

export interface Reply {
  type: number;
  flags: number;
  body: Buffer;
}

function check(rc: number, operation: string): number {
  if (rc < 0) throw new KernelError(operation, lastErrno());
  return rc;
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private closed = false;
  private readonly buf = Buffer.alloc(RECV_BUFFER);

  private constructor(private readonly fd: number) {}

  /** A route-netlink socket in the calling thread's current network namespace. */
  static open(): NetlinkSocket {
    const c = libc();
    const fd = check(c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), 'netlink socket');
    try {
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      // Ask for the kernel's own words on errors, and not for a copy of our request with every ack.
      c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
      c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
      const tv = Buffer.alloc(16);
      tv.writeBigInt64LE(BigInt(RECV_TIMEOUT_S), 0);
      check(c.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16), 'netlink socket timeout');
      check(c.bind(fd, sockaddrNl(), 12), 'netlink bind');
    } catch (e) {
      c.close(fd);
      throw e;
    }
    return new NetlinkSocket(fd);
  }

  /** Close once the requests queued so far are done. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.queue.idle();
    this.closed = true;
    libc().close(this.fd);
  }

  /** Send a request that changes something; resolves when the kernel acknowledged it, rejects with its error. */
  async ack(type: number, flags: number, body: Buffer, operation: string): Promise<void> {
    await this.exchange(type, flags | NLM_F_ACK, body, operation);
  }

  /** A GET of one object: its reply. */
  async get(type: number, body: Buffer, operation: string): Promise<Reply> {
    const r = await this.exchange(type, NLM_F_ACK, body, operation);
    if (!r[0]) throw new Error(`${operation}: the kernel sent no reply`);
    return r[0];
  }

  /** A dump: every reply message until NLMSG_DONE. */
  dump(type: number, body: Buffer, operation: string): Promise<Reply[]> {
    return this.exchange(type, NLM_F_DUMP, body, operation);
  }

  /** Requests queue behind each other: replies are matched to the one request in flight. */
  private readonly queue = new Mutex();

  private exchange(type: number, flags: number, body: Buffer, operation: string): Promise<Reply[]> {
    return this.queue.run(() => this.exchangeNow(type, flags, body, operation));
  }

  private sendNow(msg: Buffer, addr: Buffer, operation: string): void {
    for (;;) {
      if (libc().sendto(this.fd, msg, msg.length, 0, addr, 12) >= 0) return;
      if (lastErrno() !== EINTR) throw new KernelError(`${operation}: netlink send`, lastErrno());
    }
  }

  private async exchangeNow(type: number, flags: number, body: Buffer, operation: string): Promise<Reply[]> {
    if (this.closed) throw new Error(`${operation}: netlink socket already closed`);
    const seq = (this.seq = (this.seq + 1) & 0x7fffffff);
    const msg = Buffer.alloc(NLMSG_HDRLEN + body.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(flags | NLM_F_REQUEST, 6);
    msg.writeUInt32LE(seq, 8);
    body.copy(msg, NLMSG_HDRLEN);
    const c = libc();
    const addr = sockaddrNl();
    if (type === RTM_DELLINK) {
      // errno of a call made on a pool thread is not readable here; a failed send (ENOBUFS, EINTR) is retried once
      // synchronously to learn why.
      if ((await poolSlots.run(() => c.sendtoAsync(this.fd, msg, msg.length, 0, addr, 12))) < 0) this.sendNow(msg, addr, operation);
    } else {
      this.sendNow(msg, addr, operation);
    }
    const replies: Reply[] = [];
    const dump = (flags & NLM_F_DUMP) === NLM_F_DUMP;
    for (;;) {
      const n = c.recv(this.fd, this.buf, this.buf.length, MSG_TRUNC);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === EINTR) continue;
        throw new KernelError(`${operation}: netlink receive`, errno, errno === EAGAIN ? `no answer in ${RECV_TIMEOUT_S} s` : undefined);
      }
      if (n > this.buf.length) throw new Error(`${operation}: a netlink reply of ${n} bytes did not fit the buffer`);
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = this.buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN || off + len > n) throw new Error(`${operation}: malformed netlink reply`);
        const mtype = this.buf.readUInt16LE(off + 4);
        const mflags = this.buf.readUInt16LE(off + 6);
        const mseq = this.buf.readUInt32LE(off + 8);
        const payload = Buffer.from(this.buf.subarray(off + NLMSG_HDRLEN, off + len));
        off += (len + 3) & ~3;
        if (mseq !== seq) continue; // a late answer to an earlier request that failed on our side
        if (mtype === NLMSG_ERROR) {
          const errno = -payload.readInt32LE(0);
          if (errno !== 0) throw new KernelError(operation, errno, extAckMessage(payload, mflags));
          return replies;
        }
        if (mtype === NLMSG_DONE) {
          const errno = payload.length >= 4 ? -payload.readInt32LE(0) : 0;
          if (errno > 0) throw new KernelError(operation, errno, extAckMessage(payload, mflags));
          return replies;
        }
        replies.push({ type: mtype, flags: mflags, body: payload });
        // A GET answered without NLM_F_MULTI may still be followed by its ack; a dump ends with DONE.
        if (!dump && !(mflags & NLM_F_MULTI) && !(flags & NLM_F_ACK)) return replies;
      }
    }
  }
}

function sockaddrNl(): Buffer {
  const a = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (the kernel), groups 0
  a.writeUInt16LE(AF_NETLINK, 0);
  return a;
}

/** The kernel's explanatory text (NLMSGERR_ATTR_MSG), found after the error code and the echoed request. */
function extAckMessage(payload: Buffer, flags: number): string | undefined {
  if (!(flags & NLM_F_ACK_TLVS) || payload.length < 4 + NLMSG_HDRLEN) return undefined;
  const echoed = flags & NLM_F_CAPPED ? NLMSG_HDRLEN : payload.readUInt32LE(4);
  const msg = parseAttrs(payload, 4 + ((echoed + 3) & ~3)).get(NLMSGERR_ATTR_MSG);
  return msg ? readString(msg) : undefined;
}
