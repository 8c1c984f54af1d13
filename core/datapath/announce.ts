// Announcing a freshly plugged workload's addresses: a gratuitous ARP per IPv4 address and an unsolicited,
// overriding neighbour advertisement per IPv6 address, sent from inside the workload's namespace. Addresses are
// reused (a pod replaced by another gets the address back, with a new MAC); neighbours that still hold the old
// MAC would send into the void until their entry ages out, tens of seconds. The announcement updates every
// existing entry on the virtual bridge at once, across hosts (broadcast and ff02::1 are replicated to every host
// with a port on the bridge). Sent on packet/raw sockets opened in the namespace: no process, a few system calls.
import { familyOf, normalizeMac } from './addresses.js';
import { AF_INET6, ipBytes, macBytes as macOctets } from './netlink/attributes.js';
import { getLink } from './netlink/link.js';
import { libc } from './netlink/libc.js';
import { inNamespace, withNetlink } from './netlink/netns.js';

const AF_PACKET = 17;
const SOCK_DGRAM = 2;
const SOCK_RAW = 3;
const IPPROTO_IPV6 = 41;
const IPPROTO_ICMPV6 = 58;
const IPV6_MULTICAST_IF = 17;
const IPV6_MULTICAST_HOPS = 18;
const ETH_P_ARP = 0x0806;

const macBytes = (mac: string): Buffer => macOctets(normalizeMac(mac));
const int32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
};

/** A gratuitous ARP request: sender and target protocol address both `ip`. */
export function gratuitousArp(mac: string, ip: string): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // Ethernet
  b.writeUInt16BE(0x0800, 2); // IPv4
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(1, 6); // request: every stack updates an existing entry from it
  macBytes(mac).copy(b, 8);
  ipBytes(ip).copy(b, 14);
  ipBytes(ip).copy(b, 24); // target hardware address stays zero
  return b;
}

/** An unsolicited neighbour advertisement for `ip` with the Override flag and the target link-layer address. */
export function unsolicitedAdvert(mac: string, ip: string): Buffer {
  return Buffer.concat([
    Buffer.from([136, 0, 0, 0, 0x20, 0, 0, 0]), // type, code, checksum (the kernel computes it), flags: O
    ipBytes(ip),
    Buffer.from([2, 1]), // option: target link-layer address, 8 bytes
    macBytes(mac),
  ]);
}

/** An address to announce and the MAC it belongs to. */
export interface Announcement {
  ip: string;
  mac: string;
}

/**
 * Closing a packet socket waits for an RCU grace period (af_packet's release calls synchronize_net): 8 to 40 ms
 * here, and done on the event loop it stalled every request in flight (an attach's reply waited for its own
 * announcement's close). So packet sockets are closed on a pool thread, one at a time: a burst of attaches must not
 * take every pool thread, where nft transactions and file writes run too.
 */
const closing: number[] = [];
let closer: Promise<void> | undefined;
let unclosed = 0;

function closeInBackground(fd: number): void {
  closing.push(fd);
  unclosed++;
  closer ??= (async () => {
    for (let next = closing.shift(); next !== undefined; next = closing.shift()) {
      await libc()
        .closeAsync(next)
        .catch(() => libc().close(next));
      unclosed--;
    }
    closer = undefined;
  })();
}

/** Packet sockets of announcements still being closed in the background. */
export function announcementsClosing(): number {
  return unclosed;
}

/** Resolves once every socket an announcement opened is closed (tests check that none is left open). */
export async function announcementsClosed(): Promise<void> {
  while (closer) await closer;
}

/**
 * Announcement sockets of one interface (`ifindex` of the namespace at `netns`, the current one when undefined),
 * opened once for the families needed and kept for repeated sends; `close` releases them.
 */
class Announcer {
  private readonly fds: { v4?: number; v6?: number } = {};
  readonly problems: string[] = [];
  private readonly ll = Buffer.alloc(20);
  private readonly to = Buffer.alloc(28);

  constructor(netns: string | undefined, ifindex: number, families: { v4: boolean; v6: boolean }) {
    const c = libc();
    if (families.v4) {
      // SOCK_DGRAM packet socket: the kernel builds the Ethernet header from the sockaddr_ll (broadcast).
      const fd = inNamespace(netns, () => c.socket(AF_PACKET, SOCK_DGRAM, ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8)));
      if (fd < 0) this.problems.push('gratuitous ARP: no socket');
      else this.fds.v4 = fd;
      this.ll.writeUInt16LE(AF_PACKET, 0);
      this.ll.writeUInt16BE(ETH_P_ARP, 2);
      this.ll.writeInt32LE(ifindex, 4);
      this.ll[11] = 6;
      Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).copy(this.ll, 12);
    }
    if (families.v6) {
      const fd = inNamespace(netns, () => c.socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6));
      if (fd < 0) this.problems.push('neighbour advertisement: no socket');
      else {
        this.fds.v6 = fd;
        c.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, int32(255), 4); // ND is only valid with hop limit 255
        c.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, int32(ifindex), 4);
      }
      this.to.writeUInt16LE(AF_INET6, 0);
      ipBytes('ff02::1').copy(this.to, 8);
      this.to.writeUInt32LE(ifindex, 24);
    }
  }

  /** Send one announcement per entry; returns what could not be sent. */
  send(entries: Announcement[]): string[] {
    const c = libc();
    const problems: string[] = [];
    for (const { ip, mac } of entries) {
      if (familyOf(ip) === 4) {
        if (this.fds.v4 === undefined) continue;
        const arp = gratuitousArp(mac, ip);
        if (c.sendto(this.fds.v4, arp, arp.length, 0, this.ll, this.ll.length) !== arp.length)
          problems.push(`gratuitous ARP for ${ip} not sent`);
      } else {
        if (this.fds.v6 === undefined) continue;
        const na = unsolicitedAdvert(mac, ip);
        if (c.sendto(this.fds.v6, na, na.length, 0, this.to, this.to.length) !== na.length)
          problems.push(`neighbour advertisement for ${ip} not sent`);
      }
    }
    return problems;
  }

  close(): void {
    if (this.fds.v4 !== undefined) closeInBackground(this.fds.v4);
    if (this.fds.v6 !== undefined) libc().close(this.fds.v6); // a raw IPv6 socket closes at once
    delete this.fds.v4;
    delete this.fds.v6;
  }
}

function announcerFor(netns: string | undefined, ifindex: number, entries: Announcement[]): Announcer {
  const fams = entries.map((e) => familyOf(e.ip));
  return new Announcer(netns, ifindex, { v4: fams.includes(4), v6: fams.includes(6) });
}

/**
 * Send the announcements (plain addresses) from interface `ifindex` of the namespace at `netns` (the current one
 * when undefined), one socket per family for all of them. Each names its own MAC; the frame's source is the
 * interface's. Best effort by nature (datagrams): returns what could not be sent instead of throwing.
 */
export function announce(netns: string | undefined, ifindex: number, entries: Announcement[]): string[] {
  const a = announcerFor(netns, ifindex, entries);
  try {
    return [...a.problems, ...a.send(entries)];
  } finally {
    a.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Announce once the interface is operationally up, then once more shortly after (as `arping -U -c 2` would). A
 * veth that was just set up drops what it is given until the kernel's link watcher activates its queue (up to a
 * second later), so sending at once would be lost. Runs in the background of an attach; gives up quietly when the
 * workload is gone, and reports other failures to `warn`.
 */
export async function announceWhenUp(
  netns: string,
  ifindex: number,
  entries: Announcement[],
  warn: (why: string) => void,
  timeoutMs = 3000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  try {
    const up = await withNetlink(netns, async (s) => {
      for (;;) {
        const link = await getLink(s, ifindex);
        if (!link) return false; // unplugged meanwhile
        if (link.operstate === 'UP') return true;
        if (Date.now() > deadline) {
          warn(`not announced: the interface stayed ${link.operstate} for ${timeoutMs} ms`);
          return false;
        }
        await sleep(10);
      }
    });
    if (!up) return;
    // Both rounds on the same sockets: one close (and its grace period) per plug instead of two.
    const a = announcerFor(netns, ifindex, entries);
    try {
      for (const why of [...a.problems, ...a.send(entries)]) warn(why);
      await sleep(300);
      a.send(entries);
    } finally {
      a.close();
    }
  } catch {
    // The namespace or the interface went away (the workload was detached): nothing to announce to.
  }
}
