// The virtual topology, in the spirit of MidoNet's NSDB model (see ../shared/reference/midonet-model.md).
// Every object is a plain JSON document with a string `id`; references are ids. The store keeps them,
// the topology service validates them, the agent realizes them in the kernel.

/** Free-form key/value settings carried by most objects (orchestrator labels, driver options). */
export type Options = Record<string, string>;

export interface Tenant {
  id: string;
  name: string;
  /** Bumped by every bridge create/update in the tenant, so concurrent writers that check subnet overlap conflict. */
  generation: number;
}

export interface Subnet {
  /** IPv4 or IPv6 network in CIDR form, e.g. "10.1.0.0/24" or "fd00:1::/64". */
  cidr: string;
  /** Gateway address inside `cidr`; defaults to the first usable address. Empty string: no gateway. */
  gateway?: string;
  /** Addresses never handed out (beyond network, gateway and broadcast). */
  reserved?: string[];
  /** Optional allocation range inside `cidr` (Docker's --ip-range). */
  range?: string;
  /** Prefix length of the per-host IPAM blocks; default /26 (IPv4) and /122 (IPv6), never shorter than `cidr`. */
  blockPrefix?: number;
}

export interface Bridge {
  id: string;
  tenantId: string;
  name: string;
  /** VXLAN network identifier used on the underlay (MidoNet's tunnel key). Unique cluster-wide. */
  tunnelKey: number;
  subnets: Subnet[];
  /** MTU of workload interfaces; when absent the agent derives it from the underlay minus encapsulation. */
  mtu?: number;
  /** No route to the outside (Docker --internal). */
  internal?: boolean;
  adminStateUp: boolean;
  inboundFilterId?: string;
  outboundFilterId?: string;
  options: Options;
  labels: Options;
}

export interface Router {
  id: string;
  tenantId: string;
  name: string;
  adminStateUp: boolean;
  inboundFilterId?: string;
  outboundFilterId?: string;
  loadBalancerId?: string;
  /** Source-NAT workload traffic leaving the overlay on the sending host (default true). */
  snat: boolean;
  options: Options;
}

/** Who asked for a port: the adapter and the orchestrator's identity of the workload and its interface. */
export interface PortOwner {
  orchestrator: 'cni' | 'docker' | 'mesos' | 'kubernetes' | 'cli' | 'api';
  workloadId: string;
  ifname: string;
}

export interface Port {
  id: string;
  tenantId: string;
  /** Bridge ports carry workloads (or link a router); router ports carry the router's address on a bridge. */
  type: 'bridge' | 'router';
  bridgeId?: string;
  routerId?: string;
  mac: string;
  /** Bridge ports: workload addresses without prefix. Router ports: addresses in CIDR form (gateway/len). */
  ips: string[];
  /** Interior link: a router port is peered with a bridge port on the bridge it serves. */
  peerId?: string;
  /** Binding: the host and local interface name this port is bound to (MidoNet's HostInterfacePort). */
  hostId?: string;
  interfaceName?: string;
  owner?: PortOwner;
  adminStateUp: boolean;
  /** Operational state written by the agent that realizes the binding. */
  status: 'up' | 'down' | 'unknown';
  /** Anti-spoofing: the workload may only send with its own MAC and IPs. */
  portSecurity: boolean;
  inboundFilterId?: string;
  outboundFilterId?: string;
  portGroupIds: string[];
  options: Options;
}

export interface TunnelZone {
  id: string;
  name: string;
  type: 'vxlan';
}

export interface TunnelZoneMembership {
  zoneId: string;
  /** This host's underlay address inside that zone. */
  ip: string;
}

export interface Host {
  id: string;
  name: string;
  /** Underlay addresses the host can be reached on. */
  addresses: string[];
  tunnelZones: TunnelZoneMembership[];
  /** UDP port of the VXLAN overlay on this host. */
  tunnelPort: number;
  /** Underlay MTU as measured by the agent. */
  underlayMtu?: number;
  version?: string;
}

export interface Route {
  id: string;
  routerId: string;
  dst: string;
  src?: string;
  nextHop: 'port' | 'blackhole' | 'reject' | 'local';
  nextHopPortId?: string;
  nextHopGateway?: string;
  weight: number;
}

export interface Chain {
  id: string;
  tenantId?: string;
  name: string;
}

export interface PortRange {
  start: number;
  end: number;
}

/**
 * MidoNet's FragmentPolicy (FragmentPolicy.java): which IP fragments a condition may match at all. It is checked
 * before anything else and `conjunctionInv` does not invert it. Absent: `header` when the condition has L4 ports,
 * else `any` (what MidoNet's REST API fills in).
 */
export type FragmentPolicy = 'any' | 'header' | 'nonheader' | 'unfragmented';

/** Deepest jump nesting a chain may lead to: nftables allows 16 (NFT_JUMP_STACK_SIZE), the stages use some. */
export const MAX_JUMP_DEPTH = 12;

/**
 * A rule's match, MidoNet's Condition (../shared/reference/chains-lb.md §1.2): every present field must match
 * (each one negated by its `inv…` flag), and `conjunctionInv` negates the whole. Absent fields match anything.
 * `portGroupSrc` is the groups of the port the packet entered by (for a workload's packet: the exterior port,
 * MidoNet's sticky `port_group_id` and `in_port_group_id` at once); `portGroupDst` those of its egress port
 * (`out_port_group_id`).
 */
export interface Condition {
  /** Negates the conjunction of all fields (not the fragment policy). */
  conjunctionInv?: boolean;
  /** Connection tracking: match only the packets of flows started in the forward direction, or their replies. */
  matchForwardFlow?: boolean;
  matchReturnFlow?: boolean;
  /** Untagged frames only; or frames whose outermost VLAN id is `vlan`. */
  noVlan?: boolean;
  vlan?: number;
  inPortIds?: string[];
  invInPorts?: boolean;
  outPortIds?: string[];
  invOutPorts?: boolean;
  portGroupSrc?: string;
  invPortGroupSrc?: boolean;
  portGroupDst?: string;
  invPortGroupDst?: boolean;
  /** 0x0800, 0x86dd, 0x0806 */
  ethertype?: number;
  invEthertype?: boolean;
  /** MAC addresses, compared under their mask (`mac & mask == dlSrc & mask`; no mask: exact). */
  dlSrc?: string;
  dlSrcMask?: string;
  invDlSrc?: boolean;
  dlDst?: string;
  dlDstMask?: string;
  invDlDst?: boolean;
  /** The IP TOS byte (DSCP and ECN). */
  nwTos?: number;
  invNwTos?: boolean;
  nwProto?: number;
  invNwProto?: boolean;
  nwSrc?: string;
  invNwSrc?: boolean;
  nwDst?: string;
  invNwDst?: boolean;
  /** L4 port ranges; for ICMP the type (tpSrc) and code (tpDst). A range matches a packet without ports. */
  tpSrc?: PortRange;
  invTpSrc?: boolean;
  tpDst?: PortRange;
  invTpDst?: boolean;
  ipAddrGroupSrc?: string;
  invIpAddrGroupSrc?: boolean;
  ipAddrGroupDst?: string;
  invIpAddrGroupDst?: boolean;
  /** A device (bridge, router or port id) the packet has already traversed in this simulation. */
  traversedDevice?: string;
  invTraversedDevice?: boolean;
  /** Inside an ICMP error: the embedded packet's source and destination, as subnets. */
  icmpDataSrcIp?: string;
  invIcmpDataSrcIp?: boolean;
  icmpDataDstIp?: string;
  invIcmpDataDstIp?: boolean;
  /** The destination was rewritten (DNAT or reverse SNAT) earlier on the packet's path. */
  matchNwDstRewritten?: boolean;
  fragmentPolicy?: FragmentPolicy;
}

export interface NatTarget {
  addressFrom: string;
  addressTo: string;
  portFrom: number;
  portTo: number;
}

export type RuleAction = 'accept' | 'drop' | 'reject' | 'jump' | 'return' | 'continue' | 'snat' | 'dnat' | 'rev_snat' | 'rev_dnat';

export const NAT_ACTIONS: readonly RuleAction[] = ['snat', 'dnat', 'rev_snat', 'rev_dnat'];

/** What a NAT rule yields after translating (MidoNet's `flowAction`): the NAT kind is `action`, this is the verdict. */
export type FlowAction = 'accept' | 'continue' | 'return';

export interface Rule {
  id: string;
  chainId: string;
  /** Rules of a chain are evaluated in ascending position. */
  position: number;
  condition: Condition;
  action: RuleAction;
  jumpChainId?: string | undefined;
  natTargets?: NatTarget[];
  /** NAT rules only (filled: `accept`). */
  flowAction?: FlowAction;
  /** Recorded in flow traces to say which rule allowed or dropped a packet. */
  description?: string;
}

export interface PortGroup {
  id: string;
  tenantId: string;
  name: string;
  stateful: boolean;
}

export interface IpAddrGroup {
  id: string;
  tenantId: string;
  name: string;
  addresses: string[];
}

export interface LoadBalancer {
  id: string;
  routerId: string;
  adminStateUp: boolean;
}

export interface Pool {
  id: string;
  loadBalancerId: string;
  protocol: 'tcp' | 'udp';
  lbMethod: 'round_robin' | 'random';
  healthMonitorId?: string;
  adminStateUp: boolean;
  /**
   * What happens to a removed or disabled member's open connections: 'drain' lets them finish (no new flows),
   * 'cut' deletes their conntrack entries at once. Absent: 'drain'.
   */
  memberRemoval?: 'drain' | 'cut';
}

export interface PoolMember {
  id: string;
  poolId: string;
  address: string;
  port: number;
  weight: number;
  adminStateUp: boolean;
  status: 'up' | 'down' | 'unknown';
  /**
   * Used only while no other member of the pool is selectable (Kubernetes' terminating-but-serving endpoints,
   * a standby). Absent: false.
   */
  backup?: boolean;
}

export interface Vip {
  id: string;
  poolId: string;
  address: string;
  port: number;
  protocol: 'tcp' | 'udp';
  sessionPersistence?: 'source_ip';
  /** Seconds a sticky client keeps its member after its last new connection (with sessionPersistence). */
  affinityTimeoutS?: number;
  /**
   * Also published on every host's underlay address at this port (Kubernetes NodePort): traffic from outside the
   * overlay is DNATed on the host it arrives at, and SNATed there so replies return the same way.
   */
  nodePort?: number;
  /**
   * 'local': connections arriving at a host's nodePort go only to members on that host, and keep the client's
   * source address (Kubernetes externalTrafficPolicy Local). Absent: 'cluster'.
   */
  externalTrafficPolicy?: 'cluster' | 'local';
  /** 'local': clients on the overlay reach only members on their own host (internalTrafficPolicy Local). */
  internalTrafficPolicy?: 'cluster' | 'local';
}

export interface HealthMonitor {
  id: string;
  type: 'tcp' | 'http';
  delay: number;
  timeout: number;
  maxRetries: number;
  adminStateUp: boolean;
  /** HTTP monitors: the path requested with GET, and the status codes that count as healthy (e.g. "200-399"). */
  urlPath?: string;
  expectedCodes?: string;
}

/** One address handed out from an IPAM block, with the workload interface that holds it. */
export interface Allocation {
  owner: string;
  ifname: string;
  hostId?: string;
  /** Epoch milliseconds. */
  at: number;
}

/**
 * A block of a bridge subnet (Calico's block affinity): a host claims blocks and allocates from them without
 * contending with other hosts; blocks of hosts that are gone are reclaimed.
 */
export interface IpamBlock {
  id: string;
  bridgeId: string;
  /** The subnet this block belongs to. */
  subnet: string;
  cidr: string;
  /** Host with affinity to this block; absent when the block is free for any host to claim. */
  hostId?: string;
  allocations: Record<string, Allocation>;
}

/** Every kind of object the store holds, by its kind name. */
export interface Models {
  Tenant: Tenant;
  Bridge: Bridge;
  Router: Router;
  Port: Port;
  Host: Host;
  TunnelZone: TunnelZone;
  Route: Route;
  Chain: Chain;
  Rule: Rule;
  PortGroup: PortGroup;
  IpAddrGroup: IpAddrGroup;
  LoadBalancer: LoadBalancer;
  Pool: Pool;
  PoolMember: PoolMember;
  Vip: Vip;
  HealthMonitor: HealthMonitor;
  IpamBlock: IpamBlock;
}

export type Kind = keyof Models;

export const KINDS: readonly Kind[] = [
  'Tenant',
  'Bridge',
  'Router',
  'Port',
  'Host',
  'TunnelZone',
  'Route',
  'Chain',
  'Rule',
  'PortGroup',
  'IpAddrGroup',
  'LoadBalancer',
  'Pool',
  'PoolMember',
  'Vip',
  'HealthMonitor',
  'IpamBlock',
];
