// Defaults that more than one part of the system must agree on (the topology fills them into the model, the
// datapath and the agent fall back to them), kept in one place so they cannot drift apart.

/**
 * UDP port of the VXLAN overlay when a host announces none: MidoNet's vxlan_overlay_udp_port. Not IANA's 4789, so
 * the overlay does not collide with a host's own VXLAN devices (Docker overlay, flannel) bound to the IANA port.
 */
export const DEFAULT_TUNNEL_PORT = 6677;
