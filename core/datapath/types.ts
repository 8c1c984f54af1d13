// The datapath's contract with the agent: desired state in, converged kernel out.
import type { Bandwidth } from './bandwidth.js';
import type { CompiledChain, SetDecl } from '../policy/compile.js';
import type { StageName } from '../policy/simulate.js';
import type { RouterFilters } from '../policy/compile-router.js';
import type { LbHostSpec } from './nft/lb.js';
import type { FastPort } from './fastpath/fastpath.js';

export type { FastPort };

export interface DatapathOptions {
  /** This host's address on the underlay: the VXLAN source address. */
  underlayIp: string;
  /** UDP port of the VXLAN overlay (MidoNet's vxlan_overlay_udp_port); default DEFAULT_TUNNEL_PORT (core/model/defaults.ts). */
  tunnelPort?: number;
  /** MTU of the underlay; virtual networks get 50 bytes less unless told otherwise. Default 1500. */
  underlayMtu?: number;
  /**
   * Network namespace (path) standing for the host's root namespace. Tests run several "hosts" as namespaces on
   * one machine; the agent leaves it unset.
   */
  hostNetns?: string;
  /**
   * Prefix of the named network namespaces (/run/netns) holding router instances; default "br-". Namespace names
   * are machine-wide, so several simulated hosts on one machine need distinct prefixes.
   */
  routerNsPrefix?: string;
  /**
   * The tc-BPF fast path for ports without filters (fastpath/, README "The fast path"); default on. Off, or where it
   * cannot load (no clang/libbpf, an old kernel), every frame takes the bridge.
   */
  fastPath?: boolean;
  /** Where the datapath says what it decided on its own (the fast path turned off, a port left off it). */
  log?: (msg: string, level?: 'warn') => void;
}

/** Where a remote port lives: FDB (MAC -> host) and ARP/ND suppression (IPs -> MAC) entries. */
export interface RemotePort {
  mac: string;
  /** Plain IPs, no prefix. */
  ips: string[];
  /** Underlay address of the host the port is bound to. */
  hostIp: string;
}

export interface GatewayAddress {
  ip: string;
  mac: string;
}

export interface DesiredBridge {
  /** Tunnel key of the virtual bridge. */
  vni: number;
  /** MTU of the bridge and its ports; default underlay MTU - 50. */
  mtu?: number;
  /** Every port of the bridge bound to another host. */
  remotes: RemotePort[];
  /** Underlay addresses of the other hosts with ports on the bridge: broadcast and unknown unicast go to each. */
  floodHosts: string[];
  /** The anycast gateway addresses of routers on this bridge (kept off the tunnel). */
  gateways?: GatewayAddress[];
}

/**
 * What changes in a bridge already set up when only its remote ports and flood hosts moved (a workload came or
 * went elsewhere): core/agent/plan.ts bridgeDelta computes it, Datapath.setBridgeRemotes applies it.
 */
export interface BridgeRemotesDelta {
  /** Neighbour entries (ARP/ND suppression) to add or change (`mac`), and addresses to remove. */
  neighbours: { add: { ip: string; mac: string }[]; remove: string[] };
  /** Unicast tunnel entries (`self`): a MAC at a host, to add and to remove. */
  tunnel: { add: { mac: string; hostIp: string }[]; remove: { mac: string; hostIp: string }[] };
  /** MACs to forward to the tunnel port (bridge `master` entries), to add and to remove. */
  macs: { add: string[]; remove: string[] };
  /** Hosts to replicate broadcast and unknown unicast to, to add and to remove. */
  flood: { add: string[]; remove: string[] };
}

export interface PlugRoute {
  dst: string;
  gw?: string;
}

export interface PlugSpec {
  vni: number;
  /** Path of the workload's network namespace; may be empty with hostSideOnly. */
  netns: string;
  /** Interface name inside the workload. */
  ifname: string;
  /** Host-side name; default derived from (netns, ifname). */
  hostIfname?: string;
  mac: string;
  /** CIDR form, e.g. 10.1.0.5/24. */
  ips: string[];
  /** Default gateways, at most one per family. */
  gateways?: string[];
  routes?: PlugRoute[];
  mtu?: number;
  portSecurity?: boolean;
  /** Create both veth ends in the host namespace; the caller moves the peer (libnetwork). */
  hostSideOnly?: boolean;
  /** Shape the port (bandwidth.ts); absent: unshaped. */
  bandwidth?: Bandwidth;
  /**
   * A policy change committed in the plug's own nft transaction (with its port security), before the port joins
   * its bridge: the port's filters are in force from its first frame, at no extra nft run (core/datapath/plug.ts).
   */
  policy?: PolicyChange;
  /** The veth pair was made already by preparePlug with this spec's names, MAC and MTU: plug goes on from there. */
  prepared?: boolean;
}

export interface PlugResult {
  hostIfname: string;
  mac: string;
  /** With hostSideOnly: the peer left in the host namespace for the caller to move. */
  peerIfname?: string;
}

export interface RouterLeg {
  vni: number;
  /** The anycast gateway MAC: the same on every host. */
  mac: string;
  /** CIDR form: gateway/prefix of each subnet of the bridge. */
  addresses: string[];
}

export interface RouterRoute {
  dst: string;
  /** Next-hop address. */
  via?: string;
  /** Leg (bridge) the route leaves by; needed when `via` is absent (on-link). */
  vni?: number;
  /** Drop (MidoNet BLACKHOLE) or reject (REJECT). */
  type?: 'blackhole' | 'reject';
}

export interface RouterNeighbour {
  ip: string;
  mac: string;
  vni: number;
}

export interface DesiredRouter {
  id: string;
  legs: RouterLeg[];
  routes?: RouterRoute[];
  /** Every port of the router's bridges (local and remote), so the router never ARPs. */
  neighbours?: RouterNeighbour[];
  /** Source-NAT traffic leaving towards the host/outside (needs an uplink). */
  snat?: boolean;
  /** Subnets the host namespace routes to through this router (those not colliding on this host). */
  hostReachable?: string[];
  /** The router's MidoNet chains compiled for its namespace (core/policy/compile-router.ts); absent: none. */
  filters?: RouterFilters;
}

/**
 * A change of this host's policy (core/agent/plan.ts: planPolicy, policyDelta), carried out in one transaction in
 * this order: conntrack zones, sets, chains (each replaced alone), stage bindings, then removals of what nothing
 * refers to any more.
 */
export interface PolicyChange {
  /** `was`: a removed zone's value (an element re-added with another value is "File exists"). */
  zones: { vni: number; zone: number | null; was?: number }[];
  /** `elements`: the set's whole content (flushed first); else only `add` and `remove`. */
  sets: { decl: SetDecl; elements?: string[]; add?: string[]; remove?: string[] }[];
  chains: CompiledChain[];
  /** A chain id, or null to unbind. */
  bindings: { ifname: string; stage: StageName; chainId: string | null }[];
  removeChains: string[];
  removeSets: string[];
}

/** The fast path as the agent reports it. */
export interface FastPathStatus {
  state: 'on' | 'off' | 'unavailable';
  /** Why it is off or unavailable, or its last failure. */
  reason?: string;
  /** Host-side interfaces it carries. */
  ports: string[];
  /** Frames by outcome since it was loaded (tx_fast, tx_bridge, tx_spoof, rx_fast, rx_bridge, rx_nat). */
  outcomes: Record<string, number>;
  /** Per carried port: frames and bytes it carried each way. */
  counts: Record<string, { txPackets: number; txBytes: number; rxPackets: number; rxBytes: number }>;
}

export interface Inventory {
  bridges: number[];
  plugs: string[];
  routers: string[];
}

/**
 * What the agent's reconciler drives: desired state in, converged kernel out. LinuxDatapath implements it; each
 * method converges (tolerating what already exists) and touches only objects of ours.
 */
export interface Datapath {
  ensureBridge(b: DesiredBridge): Promise<void>;
  /** Optional fast path: change only the remote ports of a bridge ensureBridge has set up (no kernel re-read). */
  setBridgeRemotes?(vni: number, delta: BridgeRemotesDelta): Promise<void>;
  removeBridge(vni: number): Promise<void>;
  plug(p: PlugSpec): Promise<PlugResult>;
  /**
   * Optional: the part of a plug that needs no addresses (the veth pair, down and in no bridge), so that it
   * overlaps IPAM. `p.ips` are ignored. The plug that follows is given `prepared: true`; unplug removes it.
   */
  preparePlug?(p: PlugSpec): Promise<void>;
  unplug(hostIfname: string): Promise<void>;
  checkPlug(p: PlugSpec): Promise<string[]>;
  ensureRouter(r: DesiredRouter): Promise<void>;
  /** Optional fast path: change only the permanent neighbours of a router ensureRouter has set up. */
  setRouterNeighbours?(id: string, add: RouterNeighbour[], remove: RouterNeighbour[]): Promise<void>;
  /** Optional fast path: change only the chains of a router ensureRouter has set up (from `prev` to `next`). */
  setRouterFilters?(id: string, prev: RouterFilters | undefined, next: RouterFilters | undefined): Promise<void>;
  removeRouter(id: string): Promise<void>;
  /** MidoNet chains in force (core/datapath/nft/policy.ts); absent: this datapath enforces no policy. */
  applyPolicy?(change: PolicyChange): Promise<void>;
  /** The L4 load balancer of this host (core/datapath/nft/lb.ts); `full`: re-read the kernel, rewrite everything. */
  applyLoadBalancers?(spec: LbHostSpec, opts: { full: boolean }): Promise<void>;
  /**
   * Optional: the local ports the fast path may carry now (no filter bound, on a bridge set up here); the datapath
   * leaves shaped ones and what it cannot attach to on the bridge path.
   */
  setFastPath?(ports: FastPort[]): Promise<void>;
  fastPathStatus?(): FastPathStatus;
  inventory(): Promise<Inventory>;
  /** Removes every object of ours that `desired` does not name. */
  sweep(desired: Partial<Inventory>): Promise<void>;
}
