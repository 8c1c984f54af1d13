// Interface counters (IFLA_STATS64, struct rtnl_link_stats64 in linux/if_link.h) of every link of a namespace, in
// one RTM_GETLINK dump: what a metrics scrape reads, once per scrape, however many ports the host carries. Read
// over netlink rather than sysfs because /sys/class/net shows the namespace sysfs was mounted in, not the one asked.
import { parseAttrs, readString } from './attributes.js';
import type { NetlinkSocket } from './socket.js';

const RTM_GETLINK = 18;
const IFLA_IFNAME = 3;
const IFLA_STATS64 = 23;

export interface LinkStats {
  rxPackets: number;
  txPackets: number;
  rxBytes: number;
  txBytes: number;
  rxDropped: number;
  txDropped: number;
}

/** Counters of every link by name (links without IFLA_STATS64 are left out). */
export async function linkStats(s: NetlinkSocket): Promise<Map<string, LinkStats>> {
  const out = new Map<string, LinkStats>();
  // struct ifinfomsg, all zero: every link of the namespace.
  for (const r of await s.dump(RTM_GETLINK, Buffer.alloc(16), 'list link counters')) {
    const a = parseAttrs(r.body, 16);
    const name = a.get(IFLA_IFNAME);
    const st = a.get(IFLA_STATS64);
    if (!name || !st || st.length < 64) continue;
    // u64 fields in order: rx_packets, tx_packets, rx_bytes, tx_bytes, rx_errors, tx_errors, rx_dropped, tx_dropped.
    const u = (i: number) => Number(st.readBigUInt64LE(i * 8));
    out.set(readString(name), { rxPackets: u(0), txPackets: u(1), rxBytes: u(2), txBytes: u(3), rxDropped: u(6), txDropped: u(7) });
  }
  return out;
}
