// Plugging a workload into a virtual bridge: a veth whose peer is created directly inside the workload's
// namespace under its final name (no rename dance), configured there in one `ip -batch`, with the port's
// anti-spoofing chain installed in parallel. Three spawns per attach.
import { familyOf, normalizeMac, parseCidr, checkDestination } from './addresses.js';
import type { HostContext } from './bridge.js';
import { bridgeMtu } from './bridge.js';
import { CommandError, ipBatch, isGone, nftApply, run, runJson, inNetns } from './exec.js';
import { portSecurityScript, removePortScript } from './filter-table.js';
import { bridgeName, checkVni, isPlugName, plugName, plugPeerName } from './names.js';
import type { PlugResult, PlugSpec } from './types.js';

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;

interface Checked extends PlugSpec { hostIfname: string; mac: string; mtu: number }

function validate(ctx: HostContext, p: PlugSpec): Checked {
  checkVni(p.vni);
  if (!IFNAME.test(p.ifname ?? '')) throw new Error(`invalid interface name "${p.ifname}"`);
  if (!p.hostSideOnly && !p.netns) throw new Error(`plug ${p.ifname}: a network namespace path is required`);
  if (p.netns && /\s/.test(p.netns)) throw new Error(`invalid network namespace path "${p.netns}"`);
  const hostIfname = p.hostIfname ?? plugName(p.netns, p.ifname);
  if (!IFNAME.test(hostIfname) || !isPlugName(hostIfname)) {
    throw new Error(`invalid host interface name "${hostIfname}": must start with "bv" and fit 15 characters`);
  }
  p.ips.forEach((c) => parseCidr(c, `address of ${p.ifname}`));
  const gws = p.gateways ?? [];
  const fams = gws.map((g) => familyOf(g, `gateway of ${p.ifname}`));
  if (new Set(fams).size !== fams.length) throw new Error(`plug ${p.ifname}: at most one gateway per address family`);
  for (const r of p.routes ?? []) {
    checkDestination(r.dst);
    if (r.gw) familyOf(r.gw, `gateway of route ${r.dst}`);
  }
  const mtu = p.mtu ?? bridgeMtu(ctx, undefined);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`plug ${p.ifname}: invalid MTU ${mtu}`);
  return { ...p, hostIfname, mac: normalizeMac(p.mac), mtu };
}

/** Lines configuring the workload side, run inside its namespace. */
function workloadLines(p: Checked): string[] {
  const l = ['link set dev lo up', `link set dev ${p.ifname} up`];
  // No DAD: ND never crosses the tunnel (the VXLAN device answers it), so DAD could not detect a duplicate
  // anyway, and it would hold the address tentative for a second or more.
  for (const c of p.ips) l.push(`addr replace ${c} dev ${p.ifname}${parseCidr(c).family === 6 ? ' nodad' : ''}`);
  for (const g of p.gateways ?? []) l.push(`route replace ${familyOf(g) === 4 ? '0.0.0.0/0' : '::/0'} via ${g} dev ${p.ifname}`);
  for (const r of p.routes ?? []) {
    const dst = r.dst === 'default' ? (r.gw && familyOf(r.gw) === 6 ? '::/0' : '0.0.0.0/0') : r.dst;
    l.push(`route replace ${dst}${r.gw ? ` via ${r.gw}` : ''} dev ${p.ifname}`);
  }
  return l;
}

export async function plug(ctx: HostContext, spec: PlugSpec): Promise<PlugResult> {
  const p = validate(ctx, spec);
  const br = bridgeName(p.vni);
  const host = p.hostIfname;
  const peer = p.hostSideOnly ? plugPeerName(host) : p.ifname;
  const where = p.hostSideOnly ? '' : ` netns ${p.netns}`;
  const hostLines = [
    `link add ${host} mtu ${p.mtu} type veth peer name ${peer} address ${p.mac} mtu ${p.mtu}${where}`,
    `link set dev ${host} addrgenmode none`,
    `link set dev ${host} master ${br}`,
    `link set dev ${host} up`,
  ];
  const createHost = async (): Promise<void> => {
    try {
      await ipBatch(ctx.netns, hostLines, `could not create ${host} (peer ${peer}${where ? ` in ${p.netns}` : ''}) on ${br}`);
    } catch (e) {
      // Level-triggered: a leftover from an earlier attempt is replaced (its peer in the workload goes with it).
      if (!(e instanceof CommandError && /File exists/.test(e.stderr))) throw e;
      await ipBatch(ctx.netns, [`link del ${host}`, ...hostLines], `could not recreate ${host} on ${br}`);
    }
  };
  const security = p.portSecurity
    ? nftApply(ctx.netns, portSecurityScript({ hostIfname: host, mac: p.mac, ips: p.ips.map((c) => parseCidr(c).ip) }),
      `could not install port security for ${host}`)
    : nftApply(ctx.netns, removePortScript(host), `could not clear port security of ${host}`);
  const [h, s] = await Promise.allSettled([createHost(), security]);
  try {
    if (h.status === 'rejected') throw h.reason;
    if (s.status === 'rejected') throw s.reason;
    if (!p.hostSideOnly) await ipBatch(p.netns, workloadLines(p), `could not configure ${p.ifname} in ${p.netns}`);
  } catch (e) {
    await unplug(ctx, host).catch(() => undefined);
    throw e;
  }
  return p.hostSideOnly ? { hostIfname: host, mac: p.mac, peerIfname: peer } : { hostIfname: host, mac: p.mac };
}

/** Remove a plug: the veth (its peer goes with it, namespace or not) and exactly its nft chain. */
export async function unplug(ctx: HostContext, hostIfname: string): Promise<void> {
  if (!IFNAME.test(hostIfname) || !isPlugName(hostIfname)) throw new Error(`invalid host interface name "${hostIfname}"`);
  const del = ipBatch(ctx.netns, [`link del ${hostIfname}`], `could not delete ${hostIfname}`).catch((e) => {
    if (!isGone(e)) throw e;
  });
  await Promise.all([del, nftApply(ctx.netns, removePortScript(hostIfname), `could not remove port security of ${hostIfname}`)]);
}

interface AddrJson { ifname: string; mtu: number; operstate: string; address: string; master?: string; flags: string[];
  addr_info: { local: string; prefixlen: number; family: string }[] }
interface RouteJson { dst: string; gateway?: string; dev?: string }

/** What is wrong with a plug, compared with its spec; [] when healthy. */
export async function checkPlug(ctx: HostContext, spec: PlugSpec): Promise<string[]> {
  const p = validate(ctx, spec);
  const problems: string[] = [];
  const br = bridgeName(p.vni);
  const hostSide = await runJson<AddrJson[]>(ctx.netns, ['ip', '-j', 'link', 'show', 'dev', p.hostIfname], `could not read ${p.hostIfname}`)
    .catch((e) => { if (isGone(e)) return []; throw e; });
  const h = hostSide[0];
  if (!h) problems.push(`host interface ${p.hostIfname} is missing`);
  else {
    if (h.master !== br) problems.push(`${p.hostIfname} is not a port of ${br}`);
    if (!h.flags.includes('UP')) problems.push(`${p.hostIfname} is down`);
  }
  if (p.portSecurity) {
    const chain = await run(inNetns(ctx.netns, ['nft', 'list', 'chain', 'bridge', 'bees', `p-${p.hostIfname}`]), { context: 'nft' })
      .catch(() => '');
    if (!chain.includes(p.mac)) problems.push(`port security of ${p.hostIfname} is not installed`);
  }
  if (p.hostSideOnly) return problems;
  let wl: AddrJson[] = [];
  let routes: RouteJson[] = [];
  try {
    [wl, routes] = await Promise.all([
      runJson<AddrJson[]>(p.netns, ['ip', '-j', 'addr', 'show', 'dev', p.ifname], `could not read ${p.ifname} in ${p.netns}`),
      runJson<RouteJson[]>(p.netns, ['ip', '-j', 'route', 'show', 'table', 'main'], `could not read routes in ${p.netns}`)
        .then(async (v4) => [...v4, ...await runJson<RouteJson[]>(p.netns, ['ip', '-6', '-j', 'route', 'show', 'table', 'main'], 'routes')]),
    ]);
  } catch (e) {
    problems.push(isGone(e) ? `${p.ifname} is missing in ${p.netns}` : (e as Error).message);
    return problems;
  }
  const w = wl[0];
  if (!w) return [...problems, `${p.ifname} is missing in ${p.netns}`];
  if (w.address !== p.mac) problems.push(`${p.ifname} has MAC ${w.address}, expected ${p.mac}`);
  if (w.mtu !== p.mtu) problems.push(`${p.ifname} has MTU ${w.mtu}, expected ${p.mtu}`);
  if (!w.flags.includes('UP')) problems.push(`${p.ifname} is down`);
  for (const c of p.ips) {
    const { ip, prefix } = parseCidr(c);
    if (!w.addr_info.some((a) => a.local === ip && a.prefixlen === prefix)) problems.push(`${p.ifname} lacks address ${c}`);
  }
  for (const g of p.gateways ?? []) {
    if (!routes.some((r) => r.dst === 'default' && r.gateway === g)) problems.push(`no default route via ${g}`);
  }
  for (const r of p.routes ?? []) {
    if (!routes.some((x) => (x.dst === r.dst || (r.dst === 'default' && x.dst === 'default')) && x.gateway === r.gw)) {
      problems.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing`);
    }
  }
  return problems;
}
