// The filter on a bridge's VXLAN port, one chain per tunnel device (`t-<vni hex>`) in the TUNNEL_FILTER stage of
// `table bridge bees`.
import { familyOf, normalizeMac, solicitedNode } from '../addresses.js';
import { nftApply } from './apply.js';
import { applyStageChain, removeStageChainScript } from './script.js';
import { TUNNEL_FILTER } from './tables.js';

export interface Gateway {
  ip: string;
  mac: string;
}

const set = (items: string[]): string => `{ ${items.join(', ')} }`;

/**
 * The gateway lives on every host (anycast), so broadcast/multicast it sends (ARP, DAD, MLD), frames addressed to
 * it, and ARP/ND asking for it are local matters that must not be tunnelled. Unicast frames the gateway routed
 * (source = gateway MAC) must cross: that is how routed traffic reaches the destination host; the VXLAN port does
 * not learn, so they cannot displace the local gateway.
 */
export function tunnelFilterRules(gateways: Gateway[]): string[] {
  const rules: string[] = [];
  const macs = [...new Set(gateways.map((g) => normalizeMac(g.mac)))];
  const v4 = gateways.map((g) => g.ip).filter((ip) => familyOf(ip) === 4);
  const v6 = gateways.map((g) => g.ip).filter((ip) => familyOf(ip) === 6);
  if (macs.length) {
    rules.push(`ether daddr ${set(macs)} drop`);
    rules.push(`ether saddr ${set(macs)} ether daddr & 01:00:00:00:00:00 == 01:00:00:00:00:00 drop`);
  }
  if (v4.length) rules.push(`ether type arp arp daddr ip ${set(v4)} drop`);
  if (v6.length) {
    rules.push(`ether type ip6 ip6 daddr ${set([...new Set(v6.map(solicitedNode))])} icmpv6 type nd-neighbor-solicit drop`);
  }
  return rules;
}

export function installTunnelFilter(netns: string | undefined, vxlanIfname: string, gateways: Gateway[]): Promise<void> {
  const context = `could not install the tunnel filter of ${vxlanIfname}`;
  return applyStageChain(netns, TUNNEL_FILTER, vxlanIfname, tunnelFilterRules(gateways), context);
}

export const removeTunnelFilterScript = (vxlanIfname: string): string => removeStageChainScript(TUNNEL_FILTER, vxlanIfname);

export function removeTunnelFilter(netns: string | undefined, vxlanIfname: string): Promise<void> {
  return nftApply(netns, removeTunnelFilterScript(vxlanIfname), `could not remove the tunnel filter of ${vxlanIfname}`);
}
