// The L4 load balancer in a host namespace: table `ip bees-lb` (compiled by core/lb/compile.ts) and what the
// kernel needs around it for a DNAT done on a bridge by br_netfilter (core/datapath/README.md "Load balancing"):
// per client bridge a policy route table and permanent neighbours, rp_filter off, hairpin on member ports; and,
// when members leave, their conntrack entries cut. Not wired into the agent yet: applyLoadBalancers() takes the
// whole desired state of one host namespace.
import { compileLb, leavingMembers, type LbBridge, type LbExisting, type LbVip } from '../../lb/compile.js';
import { CommandError, inNetns, ipBatch, run, runJson } from '../exec.js';
import { nftApply, nftQuery } from './apply.js';
import { dropTable } from './script.js';
import { HOST_LB } from './tables.js';

/** Route tables of client bridges: this base + the bridge's VNI (24 bits), away from main/local/default. */
export const LB_ROUTE_TABLE_BASE = 0x62000000;
/** Priority of the `iif <bridge>` policy rules (before main at 32766). */
export const LB_RULE_PRIORITY = 10_500;

/** A client bridge with what its policy route table and neighbours are made of. */
export interface LbBridgeRouting extends LbBridge {
  /** Route table id (e.g. LB_ROUTE_TABLE_BASE + VNI). */
  table: number;
  /** The bridge's subnets (CIDR): same-bridge members are reached on-link. */
  subnets: readonly string[];
  /** The anycast gateway MAC (the router leg's). */
  gatewayMac: string;
  /** Every member on this bridge's subnets, with its MAC: the host namespace has no address to ARP from. */
  neighbours: readonly { address: string; mac: string }[];
}

export interface LbHostSpec {
  bridges: readonly LbBridgeRouting[];
  vips: readonly LbVip[];
  /** Host ends of the local ports of members: `hairpin on`, so a member's own connection can go back out. */
  hairpinPorts: readonly string[];
  /**
   * What happens to established connections of a member that leaves (removed, disabled, down): 'cut' deletes its
   * conntrack entries (the next packet is balanced afresh; TCP gets a reset from the new member), 'drain' keeps TCP
   * connections until they end. UDP is always cut: a UDP "connection" never ends while the client keeps sending.
   * Default 'drain'.
   */
  onLeave?: 'drain' | 'cut';
}

/** The last state applied per namespace, to tell which members left. */
const applied = new Map<string, readonly LbVip[]>();

/** Chains and sets of our table from a `list table` output. */
export function parseExisting(listing: string): LbExisting {
  const chains = new Set<string>();
  const sets = new Set<string>();
  for (const line of listing.split('\n')) {
    const c = /^\s+chain (\S+) \{/.exec(line);
    if (c && c[1] !== 'pre' && c[1] !== 'post') chains.add(c[1]!);
    const s = /^\s+set (\S+) \{/.exec(line);
    if (s) sets.add(s[1]!);
  }
  return { chains, sets };
}

async function routing(netns: string | undefined, spec: LbHostSpec): Promise<void> {
  const rules = await runJson<{ priority?: number; iif?: string; table?: string }[]>(
    netns,
    ['ip', '-j', 'rule', 'show'],
    'could not list policy rules',
  );
  const lines: string[] = [];
  for (const b of spec.bridges) {
    const have = rules.some((r) => r.iif === b.ifname && r.priority === LB_RULE_PRIORITY && String(r.table) === String(b.table));
    if (!have) lines.push(`rule add iif ${b.ifname} lookup ${b.table} priority ${LB_RULE_PRIORITY}`);
    for (const s of b.subnets) lines.push(`route replace ${s} dev ${b.ifname} scope link table ${b.table}`);
    lines.push(`route replace default via ${b.gateway} dev ${b.ifname} onlink table ${b.table}`);
    lines.push(`neigh replace ${b.gateway} lladdr ${b.gatewayMac} dev ${b.ifname} nud permanent`);
    for (const n of b.neighbours) lines.push(`neigh replace ${n.address} lladdr ${n.mac} dev ${b.ifname} nud permanent`);
  }
  for (const p of spec.hairpinPorts) lines.push(`link set dev ${p} type bridge_slave hairpin on`);
  await ipBatch(netns, lines, 'load balancer: could not set up routing of client bridges');
  for (const b of spec.bridges) {
    await run(inNetns(netns, ['sysctl', '-qw', `net.ipv4.conf.${b.ifname}.rp_filter=0`]), {
      context: `load balancer: rp_filter of ${b.ifname}`,
    });
  }
}

/** Delete conntrack entries of connections to `vip` answered by `member` (none is not an error). */
async function cut(netns: string | undefined, protocol: 'tcp' | 'udp', vip: string, member: string): Promise<void> {
  try {
    await run(inNetns(netns, ['conntrack', '-D', '-p', protocol, '--orig-dst', vip, '--reply-src', member]), {
      context: 'load balancer: conntrack',
    });
  } catch (e) {
    // conntrack exits 1 when no entry matched ("0 flow entries have been deleted").
    if (!(e instanceof CommandError && /0 flow entries/.test(e.stderr))) throw e;
  }
}

/**
 * Make the load balancer of host namespace `netns` what `spec` says, in one nft transaction (routing first, so a
 * VIP is never translated before its frames can be re-routed). Members that left since the last call get no new
 * connections; their UDP (and with onLeave 'cut', TCP) conntrack entries are deleted.
 */
export async function applyLoadBalancers(netns: string | undefined, spec: LbHostSpec): Promise<void> {
  await routing(netns, spec);
  const listing = await nftQuery(netns, `list table ${HOST_LB.family} ${HOST_LB.name}`, 'nft').catch(() => '');
  await nftApply(netns, compileLb(spec, parseExisting(listing)), 'load balancer: could not apply table');
  const key = netns ?? '';
  for (const l of leavingMembers(applied.get(key) ?? [], spec.vips)) {
    if (l.protocol === 'udp' || spec.onLeave === 'cut') await cut(netns, l.protocol, l.vip, l.member);
  }
  applied.set(key, spec.vips);
}

/** Remove the load balancer table of `netns` (if ours). Policy routes and neighbours stay with their bridges. */
export async function removeLoadBalancers(netns: string | undefined): Promise<void> {
  applied.delete(netns ?? '');
  await dropTable(netns, HOST_LB);
}
