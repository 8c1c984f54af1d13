// A virtual bridge on this host: Linux bridge bb-<vni> + VXLAN port bx-<vni>. Remote ports are programmed, never
// learned: static FDB entries send each remote MAC to its host, all-zero entries replicate broadcast/unknown
// traffic to every host with ports on the bridge, and neighbour entries let the VXLAN device answer ARP/ND
// itself (`proxy`), so address resolution never crosses the underlay.
import { familyOf, normalizeMac } from './addresses.js';
import { bridgeBatch, ipBatch, isGone, runJson } from './exec.js';
import { installTunnelFilter, removeTunnelFilter } from './nft/index.js';
import { announce } from './announce.js';
import { getLink, withNetlink } from './netlink/index.js';
import { bridgeName, checkVni, vxlanName } from './names.js';
import type { BridgeRemotesDelta, DesiredBridge } from './types.js';
import { deleteNeighbour, replaceNeighbour } from './netlink/neighbour.js';

export interface HostContext {
  netns: string | undefined;
  underlayIp: string;
  tunnelPort: number;
  underlayMtu: number;
}

interface LinkJson {
  ifname: string;
  mtu: number;
  master?: string;
  operstate?: string;
  address?: string;
  flags?: string[];
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown>; info_slave_data?: Record<string, unknown> };
}
interface FdbJson {
  mac: string;
  dst?: string;
  flags?: string[];
  master?: string;
  state?: string;
}
interface NeighJson {
  dst: string;
  lladdr?: string;
  state?: string[];
}

const ZERO_MAC = '00:00:00:00:00:00';

async function readOrEmpty<T>(p: Promise<T[]>): Promise<T[]> {
  try {
    return await p;
  } catch (e) {
    if (isGone(e)) return [];
    throw e;
  }
}

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
  const [brLinks, vxLinks, fdb, neigh] = await Promise.all([
    readOrEmpty(runJson<LinkJson[]>(ctx.netns, ['ip', '-d', '-j', 'link', 'show', 'dev', br], `${ctxMsg}: could not read`)),
    readOrEmpty(runJson<LinkJson[]>(ctx.netns, ['ip', '-d', '-j', 'link', 'show', 'dev', vx], `${ctxMsg}: could not read ${vx}`)),
    readOrEmpty(runJson<FdbJson[]>(ctx.netns, ['bridge', '-j', 'fdb', 'show', 'dev', vx], `${ctxMsg}: could not read FDB of ${vx}`)),
    readOrEmpty(runJson<NeighJson[]>(ctx.netns, ['ip', '-j', 'neigh', 'show', 'dev', vx], `${ctxMsg}: could not read neighbours of ${vx}`)),
  ]);

  const ip: string[] = [];
  if (brLinks[0] && brLinks[0].linkinfo?.info_kind !== 'bridge') {
    throw new Error(`${ctxMsg}: a ${brLinks[0].linkinfo?.info_kind ?? 'non-bridge'} device of that name exists`);
  }
  if (!brLinks[0]) {
    ip.push(`link add ${br} mtu ${mtu} type bridge mcast_snooping 0`);
    // The bridge carries no host addresses; no IPv6 link-local chatter from it.
    ip.push(`link set dev ${br} addrgenmode none`);
  }
  const d = vxLinks[0]?.linkinfo?.info_data;
  let vxFresh = !vxLinks[0];
  if (
    vxLinks[0] &&
    (vxLinks[0].linkinfo?.info_kind !== 'vxlan' ||
      d?.id !== b.vni ||
      d?.local !== ctx.underlayIp ||
      d?.port !== ctx.tunnelPort ||
      d?.learning !== false ||
      d?.proxy !== true)
  ) {
    ip.push(`link del ${vx}`);
    vxFresh = true;
  }
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

  // Neighbours (ARP/ND suppression).
  const wantNeigh = new Map<string, string>();
  for (const r of remotes) for (const a of r.ips) wantNeigh.set(a, r.mac);
  const haveNeigh = vxFresh ? [] : neigh;
  for (const n of haveNeigh) {
    if (!wantNeigh.has(n.dst)) ip.push(`neigh del ${n.dst} dev ${vx}`);
  }
  // Remote IPv4 addresses that appear or move to another MAC are announced on the local bridge on their owner's
  // behalf: the owner's own gratuitous ARP cannot cross, because the VXLAN device's ARP proxy consumes every ARP
  // frame. Local workloads holding an old MAC for a reused address then update at once.
  const arrivedV4: { ip: string; mac: string }[] = [];
  for (const [a, mac] of wantNeigh) {
    const have = haveNeigh.find((n) => n.dst === a);
    if (!have || have.lladdr !== mac || !have.state?.includes('PERMANENT'))
      ip.push(`neigh replace ${a} lladdr ${mac} dev ${vx} nud permanent`);
    // Not for a device just made (the bridge's first set-up, or the agent's after a reboot): nothing local can hold
    // an entry for these yet, and a host with many remote ports would flood its workloads for nothing.
    if (!vxFresh && (!have || have.lladdr !== mac) && familyOf(a) === 4) arrivedV4.push({ ip: a, mac });
  }

  // FDB: unicast per remote MAC (vxlan `self` entry: where to tunnel; bridge `master` entry: forward to the
  // tunnel port only, instead of flooding) and all-zero entries for head-end replication.
  const haveFdb = vxFresh ? [] : fdb;
  const want = new Map<string, string>(); // key mac|dst for self entries
  for (const r of remotes) want.set(`${r.mac}|${r.hostIp}`, r.mac);
  const flood = [...new Set(b.floodHosts.filter((h) => h !== ctx.underlayIp))];
  flood.forEach((h) => familyOf(h, 'flood host address'));
  for (const h of flood) want.set(`${ZERO_MAC}|${h}`, ZERO_MAC);
  const wantMaster = new Set(remotes.map((r) => r.mac));
  const fdbLines: string[] = [];
  const haveSelf = new Set<string>();
  for (const f of haveFdb) {
    if (f.flags?.includes('self') && f.dst) {
      const key = `${f.mac}|${f.dst}`;
      haveSelf.add(key);
      if (!want.has(key)) fdbLines.push(`fdb del ${f.mac} dev ${vx} dst ${f.dst} self`);
    } else if (f.master === br && f.state === 'static' && !wantMaster.has(f.mac)) {
      fdbLines.push(`fdb del ${f.mac} dev ${vx} master`);
    }
  }
  const haveMaster = new Set(haveFdb.filter((f) => f.master === br && f.state === 'static').map((f) => f.mac));
  for (const [key, mac] of want) {
    if (haveSelf.has(key)) continue;
    const dst = key.split('|')[1]!;
    fdbLines.push(
      mac === ZERO_MAC ? `fdb append ${mac} dev ${vx} dst ${dst} self permanent` : `fdb replace ${mac} dev ${vx} dst ${dst} self permanent`,
    );
  }
  for (const mac of wantMaster) if (!haveMaster.has(mac)) fdbLines.push(`fdb replace ${mac} dev ${vx} master static`);

  // Neighbour entries on a fresh device must wait for it; FDB and filter can go in parallel afterwards.
  await ipBatch(ctx.netns, ip, `could not set up ${br}/${vx}`);
  await Promise.all([
    bridgeBatch(ctx.netns, fdbLines, `could not program the FDB of ${vx}`),
    installTunnelFilter(ctx.netns, vx, b.gateways ?? []),
  ]);
  if (arrivedV4.length) {
    const index = await withNetlink(ctx.netns, async (s) => (await getLink(s, br))?.index);
    if (index !== undefined) {
      for (const why of announce(ctx.netns, index, arrivedV4)) process.emitWarning(`bridge ${br}: ${why}`);
    }
  }
}

/**
 * Change only the remote ports of bridge `vni`, set up by ensureBridge before (core/agent/plan.ts bridgeDelta):
 * neighbour entries through netlink in-process, FDB entries in one `bridge -batch`, new IPv4 neighbours announced
 * on the local bridge (see ensureBridge). No kernel re-read: a workload arriving elsewhere costs each host one
 * process instead of seven. A failure leaves the bridge for the caller's next full ensureBridge.
 */
export async function updateBridgeRemotes(ctx: HostContext, vni: number, d: BridgeRemotesDelta): Promise<void> {
  checkVni(vni);
  const br = bridgeName(vni);
  const vx = vxlanName(vni);
  // Checked before any of it reaches a batch line.
  for (const h of [...d.tunnel.add.map((e) => e.hostIp), ...d.flood.add]) familyOf(h, 'host address of a remote port');
  const fdb: string[] = [];
  for (const e of d.tunnel.remove) fdb.push(`fdb del ${normalizeMac(e.mac)} dev ${vx} dst ${e.hostIp} self`);
  for (const m of d.macs.remove) fdb.push(`fdb del ${normalizeMac(m)} dev ${vx} master`);
  for (const h of d.flood.remove) fdb.push(`fdb del ${ZERO_MAC} dev ${vx} dst ${h} self`);
  for (const e of d.tunnel.add) fdb.push(`fdb replace ${normalizeMac(e.mac)} dev ${vx} dst ${e.hostIp} self permanent`);
  for (const h of d.flood.add) if (h !== ctx.underlayIp) fdb.push(`fdb append ${ZERO_MAC} dev ${vx} dst ${h} self permanent`);
  for (const m of d.macs.add) fdb.push(`fdb replace ${normalizeMac(m)} dev ${vx} master static`);
  const arrivedV4 = d.neighbours.add.filter((n) => familyOf(n.ip) === 4).map((n) => ({ ip: n.ip, mac: normalizeMac(n.mac) }));
  const neighbours = async (): Promise<number | undefined> => {
    if (d.neighbours.add.length === 0 && d.neighbours.remove.length === 0 && arrivedV4.length === 0) return undefined;
    return withNetlink(ctx.netns, async (s) => {
      const index = (await getLink(s, vx))?.index;
      if (index === undefined) throw new Error(`bridge ${br}: no ${vx}`);
      for (const ip of d.neighbours.remove) await deleteNeighbour(s, index, ip);
      for (const n of d.neighbours.add) await replaceNeighbour(s, index, n.ip, normalizeMac(n.mac));
      return arrivedV4.length ? (await getLink(s, br))?.index : undefined;
    });
  };
  const [brIndex] = await Promise.all([neighbours(), bridgeBatch(ctx.netns, fdb, `could not program the FDB of ${vx}`)]);
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
