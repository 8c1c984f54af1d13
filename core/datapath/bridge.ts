// A virtual bridge on this host: Linux bridge bb-<vni> + VXLAN port bx-<vni>. Remote ports are programmed, never
// learned: static FDB entries send each remote MAC to its host, all-zero entries replicate broadcast/unknown
// traffic to every host with ports on the bridge, and neighbour entries let the VXLAN device answer ARP/ND
// itself (`proxy`), so address resolution never crosses the underlay.
import { familyOf, normalizeMac } from './addresses.js';
import { canonicalIp } from '../net/ip.js';
import { ipBatch, isGone } from './exec.js';
import { installTunnelFilter, removeTunnelFilter } from './nft/index.js';
import { announce } from './announce.js';
import { deleteFdb, getLink, listFdb, listNeighbours, setBridgeFdb, setTunnelFdb, withNetlink, type FdbEntry } from './netlink/index.js';
import { bridgeName, checkVni, vxlanName } from './names.js';
import type { BridgeRemotesDelta, DesiredBridge } from './types.js';
import { deleteNeighbour, replaceNeighbour } from './netlink/neighbour.js';

export interface HostContext {
  netns: string | undefined;
  underlayIp: string;
  tunnelPort: number;
  underlayMtu: number;
}

const ZERO_MAC = '00:00:00:00:00:00';

export function bridgeMtu(ctx: HostContext, mtu: number | undefined): number {
  return mtu ?? ctx.underlayMtu - 50;
}

export async function ensureBridge(ctx: HostContext, b: DesiredBridge): Promise<void> {
  checkVni(b.vni);
  const br = bridgeName(b.vni);
  const vx = vxlanName(b.vni);
  const mtu = bridgeMtu(ctx, b.mtu);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`bridge ${b.vni}: invalid MTU ${mtu}`);
  const remotes = b.remotes.map((r) => {
    familyOf(r.hostIp, `host address of remote port ${r.mac}`);
    r.ips.forEach((ip) => familyOf(ip, `address of remote port ${r.mac}`));
    return { ...r, mac: normalizeMac(r.mac) };
  });
  const ctxMsg = `bridge ${br}`;
  // Read in-process (no `ip`/`bridge` processes): the periodic resync re-runs this for every bridge of every host,
  // and a change arriving meanwhile waits for it.
  const read = await withNetlink(ctx.netns, async (s) => {
    const brLink = await getLink(s, br);
    const vxLink = await getLink(s, vx);
    const fdb = vxLink ? await listFdb(s, vxLink.index) : [];
    const neigh = vxLink ? await listNeighbours(s, vxLink.index) : [];
    return { brLink, vxLink, fdb, neigh };
  });
  const { brLink, vxLink } = read;

  if (brLink && brLink.kind !== 'bridge') throw new Error(`${ctxMsg}: a ${brLink.kind ?? 'non-bridge'} device of that name exists`);
  const v = vxLink?.vxlan;
  const vxFresh =
    !vxLink ||
    vxLink.kind !== 'vxlan' ||
    v?.id !== b.vni ||
    v.local !== canonicalIp(ctx.underlayIp) ||
    v.port !== ctx.tunnelPort ||
    v.learning ||
    !v.proxy;
  // The links are set up by one `ip -batch` only when something of them is missing or differs: a converged bridge
  // (every resync, every restart of the agent) costs no process.
  const linksOk =
    !vxFresh &&
    brLink !== undefined &&
    vxLink.masterIndex === brLink.index &&
    vxLink.bridgePort?.learning === false &&
    brLink.bridge?.nfCallIptables === true &&
    brLink.bridge.nfCallIp6tables === true &&
    brLink.mtu === mtu &&
    vxLink.mtu === mtu &&
    brLink.up &&
    vxLink.up;
  const ip: string[] = [];
  if (!linksOk) {
    if (!brLink) {
      ip.push(`link add ${br} mtu ${mtu} type bridge mcast_snooping 0`);
      // The bridge carries no host addresses; no IPv6 link-local chatter from it.
      ip.push(`link set dev ${br} addrgenmode none`);
    }
    if (vxLink && vxFresh) ip.push(`link del ${vx}`);
    if (vxFresh) {
      ip.push(`link add ${vx} mtu ${mtu} type vxlan id ${b.vni} local ${ctx.underlayIp} dstport ${ctx.tunnelPort} nolearning proxy`);
      ip.push(`link set dev ${vx} addrgenmode none`);
    }
    ip.push(`link set dev ${vx} master ${br}`);
    // Remote MACs are programmed; learning on the tunnel port would let routed frames (source = anycast gateway
    // MAC) move the gateway away from the local router leg.
    ip.push(`link set dev ${vx} type bridge_slave learning off`);
    // Bridged frames go through the IP hooks (br_netfilter) on purpose, whatever the host's sysctls say: stateful
    // policy needs their conntrack. The host firewall lets them through FORWARD (host-firewall.ts; README).
    ip.push(`link set dev ${br} type bridge nf_call_iptables 1 nf_call_ip6tables 1`);
    ip.push(`link set dev ${br} mtu ${mtu}`, `link set dev ${vx} mtu ${mtu}`);
    ip.push(`link set dev ${br} up`, `link set dev ${vx} up`);
  }

  // Neighbours (ARP/ND suppression).
  const wantNeigh = new Map<string, string>();
  for (const r of remotes) for (const a of r.ips) wantNeigh.set(canonicalIp(a), r.mac);
  const haveNeigh = new Map((vxFresh ? [] : read.neigh).map((n) => [n.ip, n]));
  const neighDel = [...haveNeigh.keys()].filter((a) => !wantNeigh.has(a));
  const neighSet: { ip: string; mac: string }[] = [];
  // Remote IPv4 addresses that appear or move to another MAC are announced on the local bridge on their owner's
  // behalf: the owner's own gratuitous ARP cannot cross, because the VXLAN device's ARP proxy consumes every ARP
  // frame. Local workloads holding an old MAC for a reused address then update at once.
  const arrivedV4: { ip: string; mac: string }[] = [];
  for (const [a, mac] of wantNeigh) {
    const have = haveNeigh.get(a);
    if (!have || have.mac !== mac || !have.permanent) neighSet.push({ ip: a, mac });
    // Not for a device just made (the bridge's first set-up, or the agent's after a reboot): nothing local can hold
    // an entry for these yet, and a host with many remote ports would flood its workloads for nothing.
    if (!vxFresh && (!have || have.mac !== mac) && familyOf(a) === 4) arrivedV4.push({ ip: a, mac });
  }

  // FDB: unicast per remote MAC (vxlan `self` entry: where to tunnel; bridge `master` entry: forward to the
  // tunnel port only, instead of flooding) and all-zero entries for head-end replication.
  const haveFdb = vxFresh ? [] : read.fdb;
  const want = new Map<string, string>(); // key mac|dst for self entries
  for (const r of remotes) want.set(`${r.mac}|${canonicalIp(r.hostIp)}`, r.mac);
  const flood = [...new Set(b.floodHosts.filter((h) => h !== ctx.underlayIp))];
  flood.forEach((h) => familyOf(h, 'flood host address'));
  for (const h of flood) want.set(`${ZERO_MAC}|${canonicalIp(h)}`, ZERO_MAC);
  const wantMaster = new Set(remotes.map((r) => r.mac));
  const fdbDel: { mac: string; dst?: string }[] = [];
  const haveSelf = new Set<string>();
  const isOurStatic = (f: FdbEntry): boolean => !f.self && f.masterIndex === brLink?.index && f.static && !f.permanent;
  for (const f of haveFdb) {
    if (f.self && f.dst) {
      const key = `${f.mac}|${f.dst}`;
      haveSelf.add(key);
      if (!want.has(key)) fdbDel.push({ mac: f.mac, dst: f.dst });
    } else if (isOurStatic(f) && !wantMaster.has(f.mac)) {
      fdbDel.push({ mac: f.mac });
    }
  }
  const haveMaster = new Set(haveFdb.filter(isOurStatic).map((f) => f.mac));
  const fdbSelf = [...want].filter(([key]) => !haveSelf.has(key)).map(([key, mac]) => ({ mac, dst: key.split('|')[1]! }));
  const fdbMaster = [...wantMaster].filter((mac) => !haveMaster.has(mac));

  // Neighbour entries on a fresh device must wait for it; FDB and filter can go in parallel afterwards.
  await ipBatch(ctx.netns, ip, `could not set up ${br}/${vx}`);
  const kernel = async (): Promise<number | undefined> => {
    if (!neighDel.length && !neighSet.length && !fdbDel.length && !fdbSelf.length && !fdbMaster.length && !arrivedV4.length)
      return undefined;
    return withNetlink(ctx.netns, async (s) => {
      const index = ip.length ? (await getLink(s, vx))?.index : vxLink!.index;
      if (index === undefined) throw new Error(`${ctxMsg}: no ${vx}`);
      try {
        for (const f of fdbDel) await deleteFdb(s, index, f.mac, f.dst);
        for (const a of neighDel) await deleteNeighbour(s, index, a);
        for (const f of fdbSelf) await setTunnelFdb(s, index, f.mac, f.dst, f.mac === ZERO_MAC);
        for (const mac of fdbMaster) await setBridgeFdb(s, index, mac);
        for (const n of neighSet) await replaceNeighbour(s, index, n.ip, n.mac);
      } catch (e) {
        throw new Error(`could not program the FDB and neighbours of ${vx}: ${(e as Error).message}`);
      }
      return arrivedV4.length ? (ip.length ? (await getLink(s, br))?.index : brLink?.index) : undefined;
    });
  };
  const [brIndex] = await Promise.all([kernel(), installTunnelFilter(ctx.netns, vx, b.gateways ?? [])]);
  if (brIndex !== undefined) {
    for (const why of announce(ctx.netns, brIndex, arrivedV4)) process.emitWarning(`bridge ${br}: ${why}`);
  }
}

/**
 * Change only the remote ports of bridge `vni`, set up by ensureBridge before (core/agent/plan.ts bridgeDelta):
 * FDB and neighbour entries through netlink in-process, new IPv4 neighbours announced on the local bridge (see
 * ensureBridge). No kernel re-read and no process: a workload arriving elsewhere costs each host a few netlink
 * requests. A failure leaves the bridge for the caller's next full ensureBridge.
 */
export async function updateBridgeRemotes(ctx: HostContext, vni: number, d: BridgeRemotesDelta): Promise<void> {
  checkVni(vni);
  const br = bridgeName(vni);
  const vx = vxlanName(vni);
  for (const h of [...d.tunnel.add.map((e) => e.hostIp), ...d.flood.add]) familyOf(h, 'host address of a remote port');
  const arrivedV4 = d.neighbours.add.filter((n) => familyOf(n.ip) === 4).map((n) => ({ ip: n.ip, mac: normalizeMac(n.mac) }));
  const brIndex = await withNetlink(ctx.netns, async (s) => {
    const index = (await getLink(s, vx))?.index;
    if (index === undefined) throw new Error(`bridge ${br}: no ${vx}`);
    // Removals first: an entry that is already gone is no error (the delta is what to reach, not what to undo).
    for (const e of d.tunnel.remove) await deleteFdb(s, index, normalizeMac(e.mac), e.hostIp);
    for (const m of d.macs.remove) await deleteFdb(s, index, normalizeMac(m));
    for (const h of d.flood.remove) await deleteFdb(s, index, ZERO_MAC, h);
    for (const ip of d.neighbours.remove) await deleteNeighbour(s, index, ip);
    for (const e of d.tunnel.add) await setTunnelFdb(s, index, normalizeMac(e.mac), e.hostIp);
    for (const h of d.flood.add) if (h !== ctx.underlayIp) await setTunnelFdb(s, index, ZERO_MAC, h, true);
    for (const m of d.macs.add) await setBridgeFdb(s, index, normalizeMac(m));
    for (const n of d.neighbours.add) await replaceNeighbour(s, index, n.ip, normalizeMac(n.mac));
    return arrivedV4.length ? (await getLink(s, br))?.index : undefined;
  });
  if (brIndex !== undefined) for (const why of announce(ctx.netns, brIndex, arrivedV4)) process.emitWarning(`bridge ${br}: ${why}`);
}

/** Remove the bridge and its tunnel; ports still enslaved are released (their veths stay until unplugged). */
export async function removeBridge(ctx: HostContext, vni: number): Promise<void> {
  checkVni(vni);
  const br = bridgeName(vni);
  const vx = vxlanName(vni);
  const del = async (dev: string): Promise<void> => {
    try {
      await ipBatch(ctx.netns, [`link del ${dev}`], `could not delete ${dev}`);
    } catch (e) {
      if (!isGone(e)) throw e;
    }
  };
  await Promise.all([del(vx), del(br), removeTunnelFilter(ctx.netns, vx)]);
}
