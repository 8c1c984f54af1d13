// Plugging a workload into a virtual bridge: a veth whose peer is created directly inside the workload's
// namespace under its final name, MAC and MTU (no rename dance), configured there, with the port's anti-spoofing
// chain installed beside it. All of it in-process (rtnetlink sockets opened in each namespace, libnftables): no
// spawn per attach, detach or check.
import { canonicalIp } from '../net/ip.js';
import { IFNAME_RULES, ifnameProblem, validIfname } from '../net/ifname.js';
import { familyOf, normalizeMac, parseCidr, checkDestination } from './addresses.js';
import type { HostContext } from './bridge.js';
import { announceWhenUp } from './announce.js';
import { applyBandwidth, checkBandwidth, ifbName, shapes } from './bandwidth.js';
import { bridgeMtu } from './bridge.js';
import { isGone } from './exec.js';
import { deleteLinks } from './link-reaper.js';
import {
  canonicalDestination,
  createVeth,
  deleteLink,
  getLink,
  KernelError,
  listAddresses,
  listRoutes,
  replaceAddress,
  replaceRoute,
  setLink,
  withNetlink,
  type NetlinkSocket,
  type Route,
} from './netlink/index.js';
import {
  ensureBaseChains,
  forgetDevices,
  hasPortSecurity,
  nftApply,
  PORT_SECURITY,
  removePortSecurityScript,
  stageChainScript,
} from './nft/index.js';
import { portSecurityRules } from './nft/port-security.js';
import { ensureConntrack, installedBindTargets, policyBaseChains, policyChangeScript, removedElements } from './nft/policy.js';
import { changeSetElements } from './nft/policy-elements.js';
import { policyMessages, portSecurityMessages } from './nft/port-binding.js';
import { chainExists, nftBatch } from './nft/nfnetlink.js';
import { HOST_BRIDGE } from './nft/tables.js';
import { chainName } from '../policy/compile.js';
import { bridgeName, checkVni, isPlugName, plugName, plugPeerName } from './names.js';
import type { PlugResult, PlugSpec, PolicyChange } from './types.js';

interface Checked extends PlugSpec {
  hostIfname: string;
  mac: string;
  mtu: number;
}

function validate(ctx: HostContext, p: PlugSpec): Checked {
  checkVni(p.vni);
  const problem = ifnameProblem(p.ifname);
  if (problem) throw new Error(`invalid interface name "${p.ifname}": ${problem} (${IFNAME_RULES})`);
  if (!p.hostSideOnly && !p.netns) throw new Error(`plug ${p.ifname}: a network namespace path is required`);
  if (p.netns && /\s/.test(p.netns)) throw new Error(`invalid network namespace path "${p.netns}"`);
  const hostIfname = p.hostIfname ?? plugName(p.netns, p.ifname);
  if (!validIfname(hostIfname) || !isPlugName(hostIfname)) {
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
  if (p.bandwidth) checkBandwidth(p.bandwidth, `plug ${p.ifname}`);
  const mtu = p.mtu ?? bridgeMtu(ctx, undefined);
  if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535) throw new Error(`plug ${p.ifname}: invalid MTU ${mtu}`);
  return { ...p, hostIfname, mac: normalizeMac(p.mac), mtu };
}

/** Configure the workload side, inside its namespace: loopback and the interface up, addresses, routes. */
async function configureWorkload(p: Checked): Promise<number> {
  return withNetlink(p.netns, async (s) => {
    const link = await getLink(s, p.ifname);
    if (!link) throw new Error(`${p.ifname} did not appear in ${p.netns}`);
    await setLink(s, 'lo', { up: true });
    await setLink(s, link.index, { up: true });
    // No DAD: ND never crosses the tunnel (the VXLAN device answers it), so DAD could not detect a duplicate
    // anyway, and it would hold the address tentative for a second or more.
    for (const c of p.ips) await replaceAddress(s, link.index, c, { nodad: parseCidr(c).family === 6 });
    for (const g of p.gateways ?? []) await replaceRoute(s, { dst: 'default', gateway: g, oif: link.index });
    for (const r of p.routes ?? []) await replaceRoute(s, { dst: r.dst, gateway: r.gw, oif: link.index });
    return link.index;
  });
}

/** Wrap what went wrong in the words of the step that failed. */
async function step<T>(context: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw new Error(`${context}: ${(e as Error).message}`, { cause: e });
  }
}

/** The host side: the veth pair (its peer born in the workload), no IPv6 autoconfiguration; not yet in its bridge. */
async function createHostSide(ctx: HostContext, p: Checked, br: string): Promise<void> {
  await withNetlink(ctx.netns, async (s) => {
    // Checked first so that a missing bridge leaves nothing behind to remove.
    if (!(await getLink(s, br))) throw new Error(`bridge ${br} does not exist`);
    const peer = p.hostSideOnly ? plugPeerName(p.hostIfname) : p.ifname;
    const netns = p.hostSideOnly ? undefined : p.netns;
    const veth = { name: p.hostIfname, mtu: p.mtu, peer: { name: peer, mac: p.mac, mtu: p.mtu, netns } };
    try {
      await createVeth(s, veth);
    } catch (e) {
      // Level-triggered: a leftover from an earlier attempt is replaced (its peer in the workload goes with it).
      if (!(e instanceof KernelError && e.code === 'EEXIST')) throw e;
      await deleteLink(s, p.hostIfname);
      await createVeth(s, veth);
    }
    // Before it goes up, so the kernel never gives it a link-local address.
    await setLink(s, p.hostIfname, { noIpv6AddrGen: true });
  });
}

/** The host side becomes a port of `br`, up: from here on frames cross the bridge. */
async function joinBridge(ctx: HostContext, p: Checked, br: string): Promise<void> {
  await withNetlink(ctx.netns, async (s) => {
    const bridge = await getLink(s, br);
    if (!bridge) throw new Error(`bridge ${br} does not exist`);
    await setLink(s, p.hostIfname, { master: bridge.index, up: true });
  });
}

/** The chains a policy change binds or jumps to without carrying them. */
function referenced(c: PolicyChange): Set<string> {
  const carried = new Set(c.chains.map((x) => x.chainId));
  const ids = [...c.bindings.flatMap((b) => (b.chainId === null ? [] : [b.chainId])), ...c.chains.flatMap((x) => x.jumps)];
  return new Set(ids.filter((id) => !carried.has(id)));
}

/**
 * The plug's nft work: its anti-spoofing chain (or its removal) and the policy change it carries, one transaction
 * (one nft run, after one listing of the base chains it hangs on); elements the change deletes from sets follow
 * through nfnetlink.
 */
async function installFilters(ctx: HostContext, p: Checked): Promise<void> {
  const host = p.hostIfname;
  const policy = p.policy;
  const bases = [
    ...(p.portSecurity ? [{ table: PORT_SECURITY.table, name: PORT_SECURITY.base }] : []),
    ...(policy ? policyBaseChains(policy) : []),
  ];
  if (policy?.zones.some((z) => z.zone !== null)) await ensureConntrack(ctx.netns);
  await ensureBaseChains(ctx.netns, bases);
  const securityRules = p.portSecurity
    ? portSecurityRules({ hostIfname: host, mac: p.mac, ips: p.ips.map((c) => parseCidr(c).ip) })
    : undefined;
  // First as one nfnetlink batch (port security, the chains the policy brings, its bindings: one kernel
  // transaction, no libnftables), presuming the chains it binds or jumps to without carrying them are installed, as
  // the agent believes (it sends only chains it has not applied): no kernel lookup for them. Should one be missing,
  // the batch fails whole (ENOENT) and the careful way below looks them up and creates the missing ones empty.
  if (securityRules) {
    const presumed = policy ? policyMessages(policy, referenced(policy), () => true) : undefined;
    const batch = !policy || presumed ? portSecurityMessages(host, securityRules) : undefined;
    if (batch) {
      const context = `could not install port security${policy ? ' and policy' : ''} of ${host}`;
      const sent = await nftBatch(ctx.netns, [...batch, ...(presumed ?? [])], context).then(
        () => true,
        (e: unknown) => {
          if (policy && e instanceof KernelError && e.code === 'ENOENT') return false;
          throw e;
        },
      );
      if (sent) return;
    }
  }
  const installed = policy ? installedBindTargets(ctx.netns, policy) : new Set<string>();
  // Bound to chains already installed (a shared chain), or bringing chains whose rules all have a netlink form:
  // the policy goes over nfnetlink beside the port security's nft transaction, so libnftables parses nothing of it;
  // both are committed before the port joins its bridge.
  const raw =
    policy && policyMessages(policy, installed, (id) => chainExists(ctx.netns, HOST_BRIDGE.family, HOST_BRIDGE.name, chainName(id)));
  const security = securityRules ? stageChainScript(PORT_SECURITY, host, securityRules) : removePortSecurityScript(host);
  const what = p.portSecurity ? `install port security` : `clear port security`;
  await Promise.all([
    nftApply(
      ctx.netns,
      security + (policy && !raw ? policyChangeScript(policy, installed) : ''),
      `could not ${what}${policy && !raw ? ' and policy' : ''} of ${host}`,
    ),
    raw ? nftBatch(ctx.netns, raw, `could not apply the policy of ${host}`) : undefined,
  ]);
  if (policy && !raw) await changeSetElements(ctx.netns, removedElements(policy), `could not remove set elements for ${host}`);
}

/**
 * The part of a plug that needs no addresses: the veth pair, its peer in the workload, neither up nor in a bridge
 * (so no frame crosses it before its filters exist). Made while IPAM allocates; plug() with `prepared` goes on.
 */
export async function preparePlug(ctx: HostContext, spec: PlugSpec): Promise<void> {
  const p = validate(ctx, { ...spec, ips: [], gateways: [], routes: [] });
  const br = bridgeName(p.vni);
  const peer = p.hostSideOnly ? plugPeerName(p.hostIfname) : p.ifname;
  const where = p.hostSideOnly ? '' : ` in ${p.netns}`;
  try {
    await step(`could not create ${p.hostIfname} (peer ${peer}${where}) on ${br}`, () => createHostSide(ctx, p, br));
  } catch (e) {
    await unplug(ctx, p.hostIfname).catch(() => undefined);
    throw e;
  }
}

export async function plug(ctx: HostContext, spec: PlugSpec): Promise<PlugResult> {
  const p = validate(ctx, spec);
  const br = bridgeName(p.vni);
  const host = p.hostIfname;
  const peer = p.hostSideOnly ? plugPeerName(host) : p.ifname;
  const where = p.hostSideOnly ? '' : ` in ${p.netns}`;
  const filters = installFilters(ctx, p);
  let ifindex: number | undefined;
  const link = async (): Promise<void> => {
    if (!p.prepared) await step(`could not create ${host} (peer ${peer}${where}) on ${br}`, () => createHostSide(ctx, p, br));
    // The port joins its bridge only once its filters (port security, the policy it carries) are committed: they
    // are in force from its first frame. When they failed, that error is the one reported (below).
    if (
      !(await filters.then(
        () => true,
        () => false,
      ))
    )
      return;
    await step(`could not attach ${host} to ${br}`, () => joinBridge(ctx, p, br));
    if (shapes(p.bandwidth)) await step(`could not shape ${host}`, () => applyBandwidth(ctx.netns, host, p.bandwidth!));
    if (!p.hostSideOnly) ifindex = await step(`could not configure ${p.ifname} in ${p.netns}`, () => configureWorkload(p));
  };
  // The nft transaction and the veth's creation proceed side by side (each waits in the kernel on a pool thread).
  const [h, s] = await Promise.allSettled([link(), filters]);
  try {
    if (s.status === 'rejected') throw s.reason;
    if (h.status === 'rejected') throw h.reason;
  } catch (e) {
    await unplug(ctx, host).catch(() => undefined);
    throw e;
  }
  // Last, once port security admits them, in the background: neighbours holding an old MAC for a reused
  // address learn the new one.
  if (ifindex !== undefined && p.netns) {
    void announceWhenUp(
      p.netns,
      ifindex,
      p.ips.map((c) => ({ ip: parseCidr(c).ip, mac: p.mac })),
      (why) => process.emitWarning(`plug ${host}: ${why}`),
    );
  }
  return p.hostSideOnly ? { hostIfname: host, mac: p.mac, peerIfname: peer } : { hostIfname: host, mac: p.mac };
}

/** Remove a plug: the veth (its peer goes with it, namespace or not), its ifb if shaped, and exactly its nft chains, of every feature. */
export async function unplug(ctx: HostContext, hostIfname: string): Promise<void> {
  if (!validIfname(hostIfname) || !isPlugName(hostIfname)) throw new Error(`invalid host interface name "${hostIfname}"`);
  // Batched with the other plugs being removed at the same time (link-reaper.ts).
  const del = step(`could not delete ${hostIfname}`, () => deleteLinks(ctx.netns, [hostIfname, ifbName(hostIfname)]));
  await Promise.all([del, forgetDevices(ctx.netns, [hostIfname], `could not remove the nft chains of ${hostIfname}`)]);
}

/** What is wrong with a plug, compared with its spec; [] when healthy. */
export async function checkPlug(ctx: HostContext, spec: PlugSpec): Promise<string[]> {
  const p = validate(ctx, spec);
  const problems: string[] = [];
  const br = bridgeName(p.vni);
  await withNetlink(ctx.netns, async (s) => {
    const h = await getLink(s, p.hostIfname);
    if (!h) return problems.push(`host interface ${p.hostIfname} is missing`);
    const bridge = await getLink(s, br);
    if (!bridge || h.masterIndex !== bridge.index) problems.push(`${p.hostIfname} is not a port of ${br}`);
    if (!h.up) problems.push(`${p.hostIfname} is down`);
  });
  if (p.portSecurity) {
    if (!(await hasPortSecurity(ctx.netns, p.hostIfname, p.mac))) problems.push(`port security of ${p.hostIfname} is not installed`);
  }
  if (p.hostSideOnly) return problems;
  try {
    problems.push(...(await withNetlink(p.netns, (s) => checkWorkload(s, p))));
  } catch (e) {
    problems.push(isGone(e) ? `${p.ifname} is missing in ${p.netns}` : (e as Error).message);
  }
  return problems;
}

/** The workload side of checkPlug, read through a socket in the workload's namespace. */
async function checkWorkload(s: NetlinkSocket, p: Checked): Promise<string[]> {
  const w = await getLink(s, p.ifname);
  if (!w) return [`${p.ifname} is missing in ${p.netns}`];
  const problems: string[] = [];
  if (w.mac !== p.mac) problems.push(`${p.ifname} has MAC ${w.mac}, expected ${p.mac}`);
  if (w.mtu !== p.mtu) problems.push(`${p.ifname} has MTU ${w.mtu}, expected ${p.mtu}`);
  if (!w.up) problems.push(`${p.ifname} is down`);
  const addrs = await listAddresses(s, w.index);
  for (const c of p.ips) {
    const { ip, prefix } = parseCidr(c);
    if (!addrs.some((a) => a.ip === canonicalIp(ip) && a.prefix === prefix)) problems.push(`${p.ifname} lacks address ${c}`);
  }
  const routes = await listRoutes(s);
  const has = (dst: string, gw: string | undefined): boolean =>
    routes.some(
      (r: Route) =>
        r.oif === w.index && r.dst === canonicalDestination(dst, gw && familyOf(gw) === 6 ? 6 : 4) && r.gateway === (gw && canonicalIp(gw)),
    );
  for (const g of p.gateways ?? []) if (!has('default', g)) problems.push(`no default route via ${g}`);
  for (const r of p.routes ?? []) if (!has(r.dst, r.gw)) problems.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing`);
  return problems;
}
