// Our nftables table in the host namespace (`table bridge bees`): anti-spoofing per workload port and the filter
// that keeps anycast-gateway traffic off the tunnels. One chain per port/tunnel, reached through a verdict map
// keyed by interface name, so adding or removing a port touches exactly its own chain and map element, and the
// whole change is one atomic `nft -f` transaction.
import { eui64LinkLocal, familyOf, ipv6Groups, normalizeMac, solicitedNode } from './addresses.js';
import { nftApply, nftQuery } from './exec.js';
import { NFT_TABLE, portChain, tunnelChain } from './names.js';

const T = `bridge ${NFT_TABLE}`;

/**
 * The table, its maps and its base chain with its two rules. Idempotent, but not cheap: it flushes the base chain
 * and any nftables transaction that deletes rules waits for an RCU grace period (about 12 ms here, against 0.3 ms
 * for one that only adds), so it is applied by ensureSkeleton() when missing, not by every port's script.
 */
export function skeleton(): string {
  return [
    header(),
    // Priority before the default filter priority so our drops come first. Port chains only drop or return, so
    // a frame leaving a workload is also checked against the tunnel filter.
    `add chain ${T} forward { type filter hook forward priority -10; policy accept; }`,
    `flush chain ${T} forward`,
    `add rule ${T} forward iifname vmap @ports`,
    `add rule ${T} forward oifname vmap @tunnels`,
    '',
  ].join('\n');
}

/** The table and its maps, all that port and tunnel scripts refer to: adding what exists deletes nothing. */
function header(): string {
  return [`add table ${T}`, `add map ${T} ports { type ifname : verdict; }`, `add map ${T} tunnels { type ifname : verdict; }`, ''].join('\n');
}

/** What `list chain` prints for a complete base chain: both dispatch rules. */
export function skeletonComplete(listing: string): boolean {
  return /iifname vmap @ports/.test(listing) && /oifname vmap @tunnels/.test(listing);
}

/**
 * Install the skeleton in `netns` unless it is already complete. Checked on every use (a listing costs well under a
 * millisecond) rather than remembered, so a table removed behind our back is rebuilt before a port relies on it.
 */
export async function ensureSkeleton(netns: string | undefined): Promise<void> {
  const listing = await nftQuery(netns, `list chain ${T} forward`, 'nft').catch(() => '');
  if (!skeletonComplete(listing)) await nftApply(netns, skeleton(), `could not install table ${T}`);
}

export interface PortSecuritySpec {
  hostIfname: string;
  mac: string;
  /** Plain IPs (no prefix). */
  ips: string[];
}

const set = (items: string[]): string => `{ ${items.join(', ')} }`;

/** An IPv6 address as the 128-bit integer nft compares raw payload with. */
const ipv6Hex = (ip: string): string => `0x${ipv6Groups(ip).map((g) => g.toString(16).padStart(4, '0')).join('')}`;

/** Install or replace the anti-spoofing chain of one port. */
export function portSecurityScript(p: PortSecuritySpec): string {
  const mac = normalizeMac(p.mac);
  const v4 = p.ips.filter((ip) => familyOf(ip) === 4);
  const v6 = p.ips.filter((ip) => familyOf(ip) === 6);
  const c = portChain(p.hostIfname);
  const r = (rule: string): string => `add rule ${T} ${c} ${rule}`;
  const lines = [
    `add chain ${T} ${c}`,
    `flush chain ${T} ${c}`,
    r(`ether saddr != ${mac} drop`),
    // Tagged frames would carry headers the rules below do not look at.
    r('ether type { 8021q, 8021ad } drop'),
  ];
  if (v4.length) {
    lines.push(r(`ether type arp arp saddr ether != ${mac} drop`));
    // 0.0.0.0 is the sender of ARP probes (address conflict detection).
    lines.push(r(`ether type arp arp saddr ip != ${set([...v4, '0.0.0.0'])} drop`));
    lines.push(r(`ether type ip ip saddr != ${set(v4)} drop`));
  } else {
    lines.push(r('ether type { arp, ip } drop'));
  }
  // Link-local (EUI-64 of the port's MAC) for neighbour discovery; :: only for ICMPv6 (DAD, MLD).
  lines.push(r(`ether type ip6 ip6 saddr != ${set([...v6, eui64LinkLocal(mac), '::'])} drop`));
  lines.push(r('ether type ip6 ip6 saddr :: meta l4proto != ipv6-icmp drop'));
  // A neighbour advertisement names its target in the payload, not in the source address: without this, a
  // workload could claim a neighbour's IPv6 address (the ND twin of the ARP rule above). nft 1.0 has no keyword
  // for the target, so it is matched raw: 16 bytes at offset 8 of the ICMPv6 header.
  const targets = [...v6, eui64LinkLocal(mac)].map(ipv6Hex);
  lines.push(r(`ether type ip6 meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert @th,64,128 != ${set(targets)} drop`));
  // Only the virtual router advertises routes and redirects, and only the agent's IPAM hands out addresses: a
  // workload acting as a router or a DHCP server would hijack its neighbours' traffic.
  lines.push(r('ether type ip6 meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-redirect } drop'));
  lines.push(r('ether type ip udp sport 67 drop'));
  lines.push(r('ether type ip6 udp sport 547 drop'));
  lines.push(`add element ${T} ports { "${p.hostIfname}" : jump ${c} }`);
  return header() + lines.join('\n') + '\n';
}

/** Remove a port's chain and map element; a no-op when absent (add-then-delete inside one transaction). */
export function removePortScript(hostIfname: string): string {
  const c = portChain(hostIfname);
  return header() + [
    `add chain ${T} ${c}`,
    `add element ${T} ports { "${hostIfname}" : jump ${c} }`,
    `delete element ${T} ports { "${hostIfname}" }`,
    `flush chain ${T} ${c}`,
    `delete chain ${T} ${c}`,
    '',
  ].join('\n');
}

export interface Gateway { ip: string; mac: string }

/**
 * The filter on a bridge's VXLAN port. The gateway lives on every host (anycast), so broadcast/multicast it sends
 * (ARP, DAD, MLD), frames addressed to it, and ARP/ND asking for it are local matters that must not be tunnelled.
 * Unicast frames the gateway routed (source = gateway MAC) must cross: that is how routed traffic reaches
 * the destination host; the VXLAN port does not learn, so they cannot displace the local gateway.
 */
export function tunnelFilterScript(vni: number, vxlanIfname: string, gateways: Gateway[]): string {
  const c = tunnelChain(vni);
  const r = (rule: string): string => `add rule ${T} ${c} ${rule}`;
  const lines = [`add chain ${T} ${c}`, `flush chain ${T} ${c}`];
  const macs = [...new Set(gateways.map((g) => normalizeMac(g.mac)))];
  const v4 = gateways.map((g) => g.ip).filter((ip) => familyOf(ip) === 4);
  const v6 = gateways.map((g) => g.ip).filter((ip) => familyOf(ip) === 6);
  if (macs.length) {
    lines.push(r(`ether daddr ${set(macs)} drop`));
    lines.push(r(`ether saddr ${set(macs)} ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 drop`));
  }
  if (v4.length) lines.push(r(`ether type arp arp daddr ip ${set(v4)} drop`));
  if (v6.length) {
    lines.push(r(`ether type ip6 ip6 daddr ${set([...new Set(v6.map(solicitedNode))])} icmpv6 type nd-neighbor-solicit drop`));
  }
  lines.push(`add element ${T} tunnels { "${vxlanIfname}" : jump ${c} }`);
  return header() + lines.join('\n') + '\n';
}

export function removeTunnelScript(vni: number, vxlanIfname: string): string {
  const c = tunnelChain(vni);
  return header() + [
    `add chain ${T} ${c}`,
    `add element ${T} tunnels { "${vxlanIfname}" : jump ${c} }`,
    `delete element ${T} tunnels { "${vxlanIfname}" }`,
    `flush chain ${T} ${c}`,
    `delete chain ${T} ${c}`,
    '',
  ].join('\n');
}

export const deleteTableScript = (): string => `add table ${T}\ndelete table ${T}\n`;
