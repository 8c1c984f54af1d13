// Which links the kernel has unregistered, seen from a socket subscribed to a namespace's link notifications.
//
// Why: deleting a veth returns to the caller only after the kernel's netdev_run_todo(), which runs once the rtnl
// lock is released and waits for an RCU barrier and the device's last references: 15–30 ms here, longer than the
// rest of a CNI DEL put together. By then the link had long been unregistered: the kernel sends RTM_DELLINK from
// unregister_netdevice_many(), under the rtnl lock, after NETDEV_UNREGISTER has taken its addresses, routes,
// neighbours, bridge port and FDB entries away, and the veth's peer follows in the same locked section. Whatever
// could reuse its name or addresses on this host (a new link, an address) takes the rtnl lock after that section.
// The wait that follows only frees memory. So a deletion counts as done when its notification arrives
// (link-reaper.ts), while the request itself finishes on its pool thread.
//
// The socket is read without blocking (nothing in Node can wait on a netlink descriptor): the caller polls it.
import { inNamespace } from './netns.js';
import { KernelError, lastErrno, libc } from './libc.js';
import {
  AF_NETLINK,
  SOCK_RAW,
  SOCK_CLOEXEC,
  NETLINK_ROUTE,
  SOL_SOCKET,
  SO_RCVBUF,
  MSG_DONTWAIT,
  NLMSG_HDRLEN,
  EINTR,
  EAGAIN,
  ENOBUFS,
} from './sys.js';

const RTMGRP_LINK = 1;
const RTM_DELLINK = 17;

export class LinkDepartures {
  private readonly buf = Buffer.alloc(64 * 1024);
  private closed = false;
  /** Indexes of the links whose RTM_DELLINK has been read. */
  readonly gone = new Set<number>();
  /** The kernel dropped notifications for us (buffer full): `gone` may miss some, so it proves nothing missing. */
  overrun = false;

  private constructor(private readonly fd: number) {}

  /** Subscribe to the link notifications of the namespace at `netns` (the current one when undefined). */
  static open(netns: string | undefined): LinkDepartures {
    const c = libc();
    const fd = inNamespace(netns, () => c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (fd < 0) throw new KernelError('netlink socket', lastErrno());
    const size = Buffer.alloc(4);
    size.writeInt32LE(1 << 20);
    c.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, size, 4);
    const addr = Buffer.alloc(12); // sockaddr_nl: family, pad, pid 0 (the kernel assigns one), groups
    addr.writeUInt16LE(AF_NETLINK, 0);
    addr.writeUInt32LE(RTMGRP_LINK, 8);
    if (c.bind(fd, addr, 12) < 0) {
      const errno = lastErrno();
      c.close(fd);
      throw new KernelError('netlink bind to link notifications', errno);
    }
    return new LinkDepartures(fd);
  }

  /** Read every notification queued so far (never waits); returns `gone`. */
  poll(): Set<number> {
    const c = libc();
    while (!this.closed) {
      const n = c.recv(this.fd, this.buf, this.buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const errno = lastErrno();
        if (errno === EINTR) continue;
        if (errno === ENOBUFS) {
          this.overrun = true;
          continue;
        }
        if (errno === EAGAIN) break;
        throw new KernelError('read link notifications', errno);
      }
      for (let off = 0; off + NLMSG_HDRLEN <= n;) {
        const len = this.buf.readUInt32LE(off);
        if (len < NLMSG_HDRLEN || off + len > n) break;
        // struct ifinfomsg after the header: family, pad, type (u16), index (s32) at 4.
        if (this.buf.readUInt16LE(off + 4) === RTM_DELLINK && len >= NLMSG_HDRLEN + 8) {
          this.gone.add(this.buf.readInt32LE(off + NLMSG_HDRLEN + 4));
        }
        off += (len + 3) & ~3;
      }
    }
    return this.gone;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc().close(this.fd);
  }
}
