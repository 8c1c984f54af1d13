// The registry of every nftables table the agent creates: one declaration per table (family, name, namespace, base
// chains with hook and priority, the maps it owns), and the per-device stages features hang their chains on. No
// other file spells a table name: scripts are built from these declarations (script.ts), so a sweep can find
// exactly our tables and a new feature sees where its chains would sit among the others'.
//
// Ownership: every table is created with the comment OWNER_COMMENT (nftables keeps a table's comment from its
// creation on; a later `add table … { comment }` does not change it). Sweeps delete a table only when it is in this
// registry and carries that comment, so a table of the same name made by someone else is left alone.
//
// Room for a host firewall (Docker's FORWARD DROP / br_netfilter, core/datapath/host-firewall.ts) and for the next
// tables of the policy work (`inet bees-ct`, `ip bees-lb`, `inet bees-r`, /work/shared/reference/chains-lb.md §2.2):
// each is one more declaration here.

import { VXLAN_PREFIX } from '../names.js';

export const OWNER_COMMENT = 'managed by bees';

export type Family = 'bridge' | 'ip' | 'ip6' | 'inet';
export type Hook = 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting';

/** A chain the kernel enters from a hook. Lower priority runs first; `accept` ends one base chain, not the hook. */
export interface BaseChain {
  name: string;
  type: 'filter' | 'nat';
  hook: Hook;
  priority: number;
  /**
   * Its fixed rules (map lookups), installed when the chain is missing or incomplete, never rewritten otherwise.
   * Absent: the chain belongs to one feature, which writes its rules itself.
   */
  rules?: readonly string[];
  /** The maps its rules look up (created with it). */
  maps?: readonly string[];
}

export interface Table {
  family: Family;
  name: string;
  /** Which namespace holds it: the host's (the agent's hostNetns) or each router instance's. */
  namespace: 'host' | 'router';
  baseChains: readonly BaseChain[];
  /** Map name → nft type. */
  maps: Readonly<Record<string, string>>;
}

/**
 * Per-device chains of one feature: the device's chain `chain(ifname)` is reached through the element
 * `"<ifname>" : jump <chain>` of `map`, which base chain `base` looks up. Each feature has its own map and chain
 * names, so replacing one feature's rules for a port (flush of its own chain) never touches another feature's.
 * Names stay as earlier agents made them (`p-`, `t-`): a map element cannot be re-added pointing elsewhere ("File
 * exists"), so a renamed chain would fail every re-plug of a port made before an upgrade.
 */
export interface Stage {
  table: Table;
  base: string;
  map: string;
  chain: (ifname: string) => string;
}

const IFNAME_VERDICT = 'ifname : verdict';

/**
 * Host namespace, bridged frames (`iifname`/`oifname` are the bridge ports): port security and the tunnel filters
 * at -10 (before the default filter priority), and the policy stages of chains-lb.md §2.4 at +10…+13, declared so
 * that their priorities are fixed here, installed only once a feature uses them.
 */
export const HOST_BRIDGE: Table = {
  family: 'bridge',
  name: 'bees',
  namespace: 'host',
  baseChains: [
    // Port chains only drop or return, so a frame leaving a workload is also checked against the tunnel filter.
    {
      name: 'forward',
      type: 'filter',
      hook: 'forward',
      priority: -10,
      rules: ['iifname vmap @ports', 'oifname vmap @tunnels'],
      maps: ['ports', 'tunnels'],
    },
    { name: 'st-from', type: 'filter', hook: 'forward', priority: 10, rules: ['iifname vmap @from-port'], maps: ['from-port'] },
    { name: 'st-bin', type: 'filter', hook: 'forward', priority: 11, rules: ['iifname vmap @bridge-in'], maps: ['bridge-in'] },
    { name: 'st-bout', type: 'filter', hook: 'forward', priority: 12, rules: ['oifname vmap @bridge-out'], maps: ['bridge-out'] },
    { name: 'st-to', type: 'filter', hook: 'forward', priority: 13, rules: ['oifname vmap @to-port'], maps: ['to-port'] },
  ],
  maps: {
    ports: IFNAME_VERDICT,
    tunnels: IFNAME_VERDICT,
    'from-port': IFNAME_VERDICT,
    'bridge-in': IFNAME_VERDICT,
    'bridge-out': IFNAME_VERDICT,
    'to-port': IFNAME_VERDICT,
  },
};

/** Anti-spoofing of a workload port (port-security.ts). */
export const PORT_SECURITY: Stage = { table: HOST_BRIDGE, base: 'forward', map: 'ports', chain: (port) => `p-${port}` };
/** What must not cross a bridge's VXLAN port (tunnel-filter.ts). */
export const TUNNEL_FILTER: Stage = {
  table: HOST_BRIDGE,
  base: 'forward',
  map: 'tunnels',
  chain: (vxlan) => `t-${vxlan.slice(VXLAN_PREFIX.length)}`,
};
/** MidoNet's port inbound filter, for the policy feature (chains-lb.md §2.4): frames coming from the port. */
export const FROM_PORT: Stage = { table: HOST_BRIDGE, base: 'st-from', map: 'from-port', chain: (port) => `fp-${port}` };
/** MidoNet's port outbound filter: frames going to the port. */
export const TO_PORT: Stage = { table: HOST_BRIDGE, base: 'st-to', map: 'to-port', chain: (port) => `tp-${port}` };
/** MidoNet's bridge inbound filter, bound per local interface of the bridge: frames entering it there. */
export const BRIDGE_IN: Stage = { table: HOST_BRIDGE, base: 'st-bin', map: 'bridge-in', chain: (i) => `bi-${i}` };
/** MidoNet's bridge outbound filter, bound per local interface: frames the bridge sends out there. */
export const BRIDGE_OUT: Stage = { table: HOST_BRIDGE, base: 'st-bout', map: 'bridge-out', chain: (i) => `bo-${i}` };

/** Every per-device stage: removing a device removes its chain in each of these (whatever feature made it). */
export const STAGES: readonly Stage[] = [PORT_SECURITY, TUNNEL_FILTER, FROM_PORT, BRIDGE_IN, BRIDGE_OUT, TO_PORT];

/**
 * `table inet bees-ct` (host namespace): the conntrack zone of each bridge (bridged frames reach the inet hooks
 * through br_netfilter with iif = the bridge), and the return-flow mark bit the bridge stages read (policy.ts
 * writes its chains: its map needs `typeof`, which the registry's `type` strings cannot say).
 */
export const HOST_CT: Table = {
  family: 'inet',
  name: 'bees-ct',
  namespace: 'host',
  baseChains: [
    { name: 'raw', type: 'filter', hook: 'prerouting', priority: -300 },
    { name: 'tag-forward', type: 'filter', hook: 'forward', priority: 0 },
    { name: 'tag-clear', type: 'filter', hook: 'postrouting', priority: 300 },
  ],
  maps: {},
};

/** Host namespace, routed: masquerade of router uplink traffic leaving the host (router-snat.ts). */
export const HOST_NAT: Table = {
  family: 'ip',
  name: 'bees',
  namespace: 'host',
  baseChains: [{ name: 'post', type: 'nat', hook: 'postrouting', priority: 100 }],
  maps: {},
};

/** Each router namespace: SNAT of what leaves through the uplink (router-snat.ts). */
export const ROUTER_NAT: Table = {
  family: 'ip',
  name: 'bees',
  namespace: 'router',
  baseChains: [{ name: 'post', type: 'nat', hook: 'postrouting', priority: 100 }],
  maps: {},
};

/**
 * Host namespace, routed: published host ports (port-publishing.ts), looked up for traffic from other hosts
 * (prerouting, dstnat) and from the host itself (output).
 */
const PORTMAP_LOOKUPS = [
  'fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @addr',
  'fib daddr type local dnat ip to meta l4proto . th dport map @any',
];
export const HOST_PORTMAP: Table = {
  family: 'ip',
  name: 'bees-portmap',
  namespace: 'host',
  baseChains: [
    { name: 'prerouting', type: 'nat', hook: 'prerouting', priority: -100, rules: PORTMAP_LOOKUPS, maps: ['any', 'addr'] },
    { name: 'output', type: 'nat', hook: 'output', priority: -100, rules: PORTMAP_LOOKUPS, maps: ['any', 'addr'] },
  ],
  maps: {
    any: 'inet_proto . inet_service : ipv4_addr . inet_service',
    addr: 'ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service',
  },
};

/**
 * Host namespace, bridged through br_netfilter: the L4 load balancer (lb.ts, compiled by core/lb/compile.ts). `pre`
 * DNATs new connections to a VIP coming in on a client bridge (dstnat); `post` SNATs hairpin connections to the
 * bridge's gateway (srcnat). The feature writes both chains' rules itself.
 */
export const HOST_LB: Table = {
  family: 'ip',
  name: 'bees-lb',
  namespace: 'host',
  baseChains: [
    { name: 'pre', type: 'nat', hook: 'prerouting', priority: -100 },
    { name: 'post', type: 'nat', hook: 'postrouting', priority: 100 },
    // Published VIP ports (Vip.nodePort) reached by processes of the host itself.
    { name: 'out', type: 'nat', hook: 'output', priority: -100 },
  ],
  maps: {},
};

/**
 * Each router namespace: the router's MidoNet chains (router-chains.ts, compiled by core/policy/compile-router.ts).
 * The inbound filter ("pre-routing") runs before the route lookup: its filter view at mangle priority, before
 * DNAT, so rules see the packet untranslated as MidoNet's did; its NAT view at dstnat. The outbound filter
 * ("post-routing") runs after it: filter view on forward, NAT view at srcnat - 1, so a chain's SNAT binds before
 * the uplink masquerade of ROUTER_NAT. Conntrack is per namespace: each router's NAT state is its own.
 */
export const ROUTER_FILTER: Table = {
  family: 'inet',
  name: 'bees-r',
  namespace: 'router',
  baseChains: [
    // Router port filters: the inbound one of the leg a packet enters by before the router's inbound filter, the
    // outbound one of the leg it leaves by after the router's outbound filter (forward: reject is refused later).
    { name: 'port-in', type: 'filter', hook: 'prerouting', priority: -160 },
    { name: 'in-filter', type: 'filter', hook: 'prerouting', priority: -150 },
    { name: 'in-nat', type: 'nat', hook: 'prerouting', priority: -100 },
    { name: 'out-filter', type: 'filter', hook: 'forward', priority: 0 },
    { name: 'port-out', type: 'filter', hook: 'forward', priority: 10 },
    { name: 'out-nat', type: 'nat', hook: 'postrouting', priority: 99 },
  ],
  maps: {},
};

/** Every table of ours, for sweeps and documentation. */
/** The same for IPv6 VIPs (dual stack): compiled from the same description, one table per family. */
export const HOST_LB6: Table = { ...HOST_LB, family: 'ip6' };

export const TABLES: readonly Table[] = [HOST_BRIDGE, HOST_NAT, ROUTER_NAT, HOST_PORTMAP, HOST_LB, HOST_LB6, HOST_CT, ROUTER_FILTER];
