// Queueing disciplines (RTM_*QDISC, linux/rtnetlink.h), read as `tc qdisc show` lists them, without a process: the
// fast path must know whether a port is shaped (bandwidth.ts puts a tbf at its root and an ingress qdisc on it),
// because a frame it redirects skips both.
import { parseAttrs, readString } from './attributes.js';
import type { NetlinkSocket } from './socket.js';

const RTM_NEWQDISC = 36;
const RTM_GETQDISC = 38;
const TCA_KIND = 1;
const TCMSG_LEN = 20; // struct tcmsg: family, pad[3], ifindex, handle, parent, info

export interface Qdisc {
  ifindex: number;
  kind: string;
  handle: number;
  parent: number;
}

/** Every qdisc of the socket's namespace (the kernel's dump filters nothing by device). */
export async function listQdiscs(s: NetlinkSocket): Promise<Qdisc[]> {
  const out: Qdisc[] = [];
  for (const r of await s.dump(RTM_GETQDISC, Buffer.alloc(TCMSG_LEN), 'list qdiscs')) {
    if (r.type !== RTM_NEWQDISC) continue;
    const kind = parseAttrs(r.body, TCMSG_LEN).get(TCA_KIND);
    out.push({
      ifindex: r.body.readInt32LE(4),
      handle: r.body.readUInt32LE(8),
      parent: r.body.readUInt32LE(12),
      kind: kind ? readString(kind) : '',
    });
  }
  return out;
}
