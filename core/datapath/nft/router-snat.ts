// Router SNAT: what a router instance sends out of its uplink is masqueraded twice, in the router namespace
// (to the uplink's host-side address) and in the host namespace (to the host's address on its way out), each in a
// base chain this feature owns in its `ip bees` table (ROUTER_NAT, HOST_NAT).
import { nftApply } from './apply.js';
import { baseChainScript, deleteTableScript, dropTable } from './script.js';
import { HOST_NAT, ROUTER_NAT } from './tables.js';

/**
 * In the router namespace at `nsPath`: masquerade what leaves through `uplink`, or no NAT at all. The namespace is
 * ours, so the table goes even without our comment (one made before tables carried it).
 */
export function setRouterSnat(nsPath: string, uplink: string, snat: boolean, context: string): Promise<void> {
  const script = snat ? baseChainScript(ROUTER_NAT, 'post', [`oifname "${uplink}" masquerade`]) : deleteTableScript(ROUTER_NAT);
  return nftApply(nsPath, script, context);
}

/**
 * In the host namespace: masquerade router uplink traffic (sources in `uplinkNet`) leaving towards anything but
 * another router's uplink (interfaces `<uplinkPrefix>*`).
 */
export function setHostMasquerade(netns: string | undefined, uplinkNet: string, uplinkPrefix: string, context: string): Promise<void> {
  return nftApply(netns, baseChainScript(HOST_NAT, 'post', [`ip saddr ${uplinkNet} oifname != "${uplinkPrefix}*" masquerade`]), context);
}

/** Remove the host's masquerade table when no router is left (only if it is ours). */
export async function dropHostMasquerade(netns: string | undefined): Promise<void> {
  await dropTable(netns, HOST_NAT);
}
