// Port security: anti-spoofing of a workload port, one chain per port (`p-<port>`) in the PORT_SECURITY stage of
// `table bridge bees`. Replacing it on a re-plug flushes that chain only; other features' chains for the same port
// (their own stages) are untouched.
import { eui64LinkLocal, familyOf, ipv6Groups, normalizeMac } from '../addresses.js';
import { nftApply } from './apply.js';
import { applyStageChain, listStageChain, removeStageChainScript } from './script.js';
import { PORT_SECURITY } from './tables.js';

export interface PortSecuritySpec {
  hostIfname: string;
  mac: string;
  /** Plain IPs (no prefix). */
  ips: string[];
}

const set = (items: string[]): string => `{ ${items.join(', ')} }`;

/** An IPv6 address as the 128-bit integer nft compares raw payload with. */
const ipv6Hex = (ip: string): string =>
  `0x${ipv6Groups(ip)
    .map((g) => g.toString(16).padStart(4, '0'))
    .join('')}`;

/** The rules of one port's chain: only its MAC and addresses may leave it. */
export function portSecurityRules(p: PortSecuritySpec): string[] {
  const mac = normalizeMac(p.mac);
  const v4 = p.ips.filter((ip) => familyOf(ip) === 4);
  const v6 = p.ips.filter((ip) => familyOf(ip) === 6);
  const rules = [
    `ether saddr != ${mac} drop`,
    // Tagged frames would carry headers the rules below do not look at.
    'ether type { 8021q, 8021ad } drop',
  ];
  if (v4.length) {
    rules.push(`ether type arp arp saddr ether != ${mac} drop`);
    // 0.0.0.0 is the sender of ARP probes (address conflict detection).
    rules.push(`ether type arp arp saddr ip != ${set([...v4, '0.0.0.0'])} drop`);
    rules.push(`ether type ip ip saddr != ${set(v4)} drop`);
  } else {
    rules.push('ether type { arp, ip } drop');
  }
  // Link-local (EUI-64 of the port's MAC) for neighbour discovery; :: only for ICMPv6 (DAD, MLD).
  rules.push(`ether type ip6 ip6 saddr != ${set([...v6, eui64LinkLocal(mac), '::'])} drop`);
  rules.push('ether type ip6 ip6 saddr :: meta l4proto != ipv6-icmp drop');
  // A neighbour advertisement names its target in the payload, not in the source address: without this, a
  // workload could claim a neighbour's IPv6 address (the ND twin of the ARP rule above). nft 1.0 has no keyword
  // for the target, so it is matched raw: 16 bytes at offset 8 of the ICMPv6 header.
  const targets = [...v6, eui64LinkLocal(mac)].map(ipv6Hex);
  rules.push(`ether type ip6 meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert @th,64,128 != ${set(targets)} drop`);
  // Only the virtual router advertises routes and redirects, and only the agent's IPAM hands out addresses: a
  // workload acting as a router or a DHCP server would hijack its neighbours' traffic.
  rules.push('ether type ip6 meta l4proto ipv6-icmp icmpv6 type { nd-router-advert, nd-redirect } drop');
  rules.push('ether type ip udp sport 67 drop');
  rules.push('ether type ip6 udp sport 547 drop');
  return rules;
}

/** Install or replace the port's anti-spoofing chain (the base chain first, only when it is missing). */
export function installPortSecurity(netns: string | undefined, p: PortSecuritySpec): Promise<void> {
  return applyStageChain(netns, PORT_SECURITY, p.hostIfname, portSecurityRules(p), `could not install port security for ${p.hostIfname}`);
}

/** The script removing a port's anti-spoofing chain; a no-op when absent (for batching in sweeps). */
export const removePortSecurityScript = (hostIfname: string): string => removeStageChainScript(PORT_SECURITY, hostIfname);

export function removePortSecurity(netns: string | undefined, hostIfname: string, context: string): Promise<void> {
  return nftApply(netns, removePortSecurityScript(hostIfname), context);
}

/** Whether the port's chain is installed for `mac`. */
export async function hasPortSecurity(netns: string | undefined, hostIfname: string, mac: string): Promise<boolean> {
  return (await listStageChain(netns, PORT_SECURITY, hostIfname)).includes(normalizeMac(mac));
}
