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
 * Send the announcements (plain addresses) from interface `ifindex` of the namespace at `netns` (the current one
 * when undefined), one socket per family for all of them. Each names its own MAC; the frame's source is the
 * interface's. Best effort by nature (datagrams): returns what could not be sent instead of throwing.
 */
export function announce(netns: string | undefined, ifindex: number, entries: Announcement[]): string[] {
  const c = libc();
  const problems: string[] = [];
  const v4 = entries.filter((e) => familyOf(e.ip) === 4);
  const v6 = entries.filter((e) => familyOf(e.ip) === 6);
  const withSocket = (domain: number, type: number, protocol: number, what: string, use: (fd: number) => void) => {
    const fd = inNamespace(netns, () => c.socket(domain, type, protocol));
    if (fd < 0) {
      problems.push(`${what}: no socket`);
      return;
    }
    try {
      use(fd);
    } finally {
      c.close(fd);
    }
  };
  if (v4.length) {
    // SOCK_DGRAM packet socket: the kernel builds the Ethernet header from the sockaddr_ll (broadcast).
    const ll = Buffer.alloc(20);
    ll.writeUInt16LE(AF_PACKET, 0);
    ll.writeUInt16BE(ETH_P_ARP, 2);
    ll.writeInt32LE(ifindex, 4);
    ll[11] = 6;
    Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).copy(ll, 12);
    withSocket(AF_PACKET, SOCK_DGRAM, ((ETH_P_ARP & 0xff) << 8) | (ETH_P_ARP >> 8), 'gratuitous ARP', (fd) => {
      for (const { ip, mac } of v4) {
        const arp = gratuitousArp(mac, ip);
        if (c.sendto(fd, arp, arp.length, 0, ll, ll.length) !== arp.length) problems.push(`gratuitous ARP for ${ip} not sent`);
      }
    });
  }
  if (v6.length) {
    const to = Buffer.alloc(28);
    to.writeUInt16LE(AF_INET6, 0);
    ipBytes('ff02::1').copy(to, 8);
    to.writeUInt32LE(ifindex, 24);
    withSocket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, 'neighbour advertisement', (fd) => {
      c.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, int32(255), 4); // ND is only valid with hop limit 255
      c.setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, int32(ifindex), 4);
      for (const { ip, mac } of v6) {
        const na = unsolicitedAdvert(mac, ip);
        if (c.sendto(fd, na, na.length, 0, to, to.length) !== na.length) problems.push(`neighbour advertisement for ${ip} not sent`);
      }
    });
  }
  return problems;
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
    for (const why of announce(netns, ifindex, entries)) warn(why);
    await sleep(300);
    announce(netns, ifindex, entries);
  } catch {
    // The namespace or the interface went away (the workload was detached): nothing to announce to.
  }
}
