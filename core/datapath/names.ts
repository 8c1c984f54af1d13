// Names of the kernel objects the datapath owns. Every name starts with a prefix of ours so inventory and sweep
// can tell our objects from everybody else's, and stays within IFNAMSIZ (15 characters).
import { createHash } from 'node:crypto';

export const BRIDGE_PREFIX = 'bb-';
export const VXLAN_PREFIX = 'bx-';
/** Host end of a workload veth. */
export const PLUG_PREFIX = 'bv';
/** Peer of a host-side-only plug, left in the host namespace for the caller to move. */
export const PLUG_PEER_PREFIX = 'bp';
/** Host end of a router leg into a virtual bridge. */
export const LEG_PREFIX = 'bl';
/** Host end of a router's uplink to the host's root namespace. */
export const UPLINK_PREFIX = 'bu';
/** Router-namespace end of the uplink. */
export const ROUTER_UPLINK = 'up0';

export const MAX_VNI = 0xffffff;

export function checkVni(vni: number): void {
  if (!Number.isInteger(vni) || vni < 1 || vni > MAX_VNI) {
    throw new Error(`invalid VNI ${vni}: must be an integer in 1..${MAX_VNI}`);
  }
}

const hex = (vni: number): string => vni.toString(16);

export const bridgeName = (vni: number): string => `${BRIDGE_PREFIX}${hex(vni)}`;
export const vxlanName = (vni: number): string => `${VXLAN_PREFIX}${hex(vni)}`;
/** Router-namespace end of the leg on bridge `vni`. */
export const routerLegName = (vni: number): string => `l-${hex(vni)}`;

export function vniOfBridgeName(name: string): number | undefined {
  const m = /^bb-([0-9a-f]{1,6})$/.exec(name);
  return m ? parseInt(m[1]!, 16) : undefined;
}

function shortHash(...parts: string[]): string {
  return createHash('sha1').update(parts.join('\0')).digest('hex').slice(0, 10);
}

/** Default host-side name of a workload interface: stable for (netns, ifname), so a retried plug reuses it. */
export const plugName = (netns: string, ifname: string): string => `${PLUG_PREFIX}${shortHash(netns, ifname)}`;
export const plugPeerName = (hostIfname: string): string => `${PLUG_PEER_PREFIX}${hostIfname.slice(PLUG_PREFIX.length)}`;
export const legName = (routerId: string, vni: number): string => `${LEG_PREFIX}${shortHash(routerId, String(vni))}`;
export const uplinkName = (routerId: string): string => `${UPLINK_PREFIX}${shortHash(routerId)}`;
/** The namespace of a router instance on this host: the whole id, so inventory can give ids back. */
export const routerNsName = (prefix: string, routerId: string): string => `${prefix}${routerId}`;

export function isPlugName(name: string): boolean {
  return name.startsWith(PLUG_PREFIX) && name.length > PLUG_PREFIX.length;
}
