// The L4 load balancer's compiler: from the VIPs, pools and members a host's clients can reach to the nft script of
// table `ip bees-lb` (IPv4 VIPs) or `ip6 bees-lb` (IPv6 VIPs) in that host's namespace (core/datapath/README.md "Load
// balancing"). Pure: no kernel, no store; the datapath (core/datapath/nft/lb.ts) applies what this returns.
//
// Dual stack: one table per family, compiled from the same host description. A VIP goes to the table of its
// address's family and is served by the members of its pool of that same family only (a Kubernetes dual-stack
// Service is one pool with a VIP and endpoints of each family). NodePorts are published on the hosts' underlay
// addresses, which are IPv4: they are compiled into the IPv4 table only.
//
// Shape (chains-lb.md §3.6, kube-proxy's nftables mode): `pre` (nat prerouting, dstnat) sends each client bridge to
// its chain `b-<bridge>`, whose one rule looks up `ip daddr . l4proto . dport` in a verdict map to `v-<vip>`; that
// chain keeps a sticky client on its member (dynamic set per member, with a timeout), else picks a member by weight
// (`numgen random mod Σweights` over ranges); `m-<vip>-<member>` marks hairpin connections and DNATs. `post` (nat
// postrouting, srcnat) SNATs marked connections to the client bridge's gateway.
import { HOST_LB, HOST_LB6, OWNER_COMMENT } from '../datapath/nft/tables.js';
import { isIPv6 } from 'node:net';
import type { PoolMember, Vip } from '../model/types.js';

/** ct mark bit of a hairpin connection (a member reaching its own VIP). Not used by Docker or kube-proxy (0x4000). */
export const HAIRPIN_CT_MARK = 0x01000000;

/** Sticky sessions last this long after a client's last new connection, unless the VIP says otherwise. */
export const DEFAULT_AFFINITY_TIMEOUT_S = 10_800;

/**
 * A client bridge on this host: its device, and the gateway that hairpin connections are SNATed to. Only frames
 * coming in on these bridges are load balanced.
 */
export interface LbBridge {
  ifname: string;
  gateway: string;
  /** The bridge's IPv6 gateway (dual stack): IPv6 VIPs are served on bridges that have one. */
  gateway6?: string;
}

/** Address family of a compiled table: 4 → `ip bees-lb`, 6 → `ip6 bees-lb`. */
export type LbFamily = 4 | 6;

/** The family a VIP or member address belongs to (anything not IPv6 is treated, and checked, as IPv4). */
export const familyOf = (address: string): LbFamily => (address.includes(':') ? 6 : 4);

/** The VIPs of one family, each with only the members of that family (dual-stack pools hold both). */
export function ofFamily(vips: readonly LbVip[], family: LbFamily): LbVip[] {
  return vips
    .filter((v) => familyOf(v.address) === family)
    .map((v) =>
      v.members.every((m) => familyOf(m.address) === family)
        ? v
        : { ...v, members: v.members.filter((m) => familyOf(m.address) === family) },
    );
}

/**
 * A member as the compiler needs it: the model's PoolMember (core/model/types.ts) without pool linkage. Selectable
 * when adminStateUp, weight > 0 and status is not 'down' (MidoNet: active = weight > 0, admin up, status ACTIVE;
 * 'unknown' counts as up until a health monitor says otherwise). A backup member is used only while no other
 * member of its VIP is selectable.
 */
export type LbMember = Pick<PoolMember, 'id' | 'address' | 'port' | 'weight' | 'adminStateUp' | 'status' | 'backup'>;

/**
 * A VIP with its pool's members, and the bridges of this host whose clients reach it (the router's bridges, so
 * tenants with overlapping VIP addresses stay apart). Extends the model's Vip (read-only there) with what the
 * datapath needs: the members, the bridges, and what happens to a leaving member's connections.
 */
export interface LbVip extends Pick<Vip, 'id' | 'address' | 'port' | 'protocol' | 'sessionPersistence'> {
  members: readonly LbMember[];
  bridges: readonly string[];
  /** Seconds a sticky client keeps its member after its last new connection. */
  affinityTimeoutS?: number;
  /** The pool's Pool.memberRemoval: 'cut' deletes a leaving member's conntrack entries, 'drain' (default) keeps them. */
  memberRemoval?: 'drain' | 'cut';
  /** Published on every host's underlay address (Vip.nodePort): see LbNodePort. */
  nodePort?: LbNodePort;
}

/**
 * A VIP's port published on this host's own addresses (NodePort-like). A connection arriving there goes to a member
 * on this host (DNAT, client address kept), or, with the 'cluster' policy, possibly to another host that has
 * members: DNAT to that host's address at the same port and masquerade, so the reply comes back through this host
 * (the other host then picks among its own members). A connection forwarded by a peer only ever goes to local
 * members, so nothing loops.
 */
export interface LbNodePort {
  port: number;
  /** externalTrafficPolicy 'local': only members on this host. */
  local: boolean;
  /** Ids of the VIP's members on this host. */
  localMembers: readonly string[];
  /** Other hosts with members in rotation: their address and the sum of those members' weights. */
  remotes: readonly { address: string; weight: number }[];
  /** Addresses of every other host: connections from them were forwarded and stay here. */
  peers: readonly string[];
}

export interface LbHost {
  bridges: readonly LbBridge[];
  vips: readonly LbVip[];
}

/** What the table holds now (from a listing), so chains and sets no longer wanted are removed. */
export interface LbExisting {
  chains: ReadonlySet<string>;
  sets: ReadonlySet<string>;
}

export const selectable = (m: LbMember): boolean => m.adminStateUp && m.weight > 0 && m.status !== 'down';

/** The members that get new connections: the selectable ones that are not backups, or else the selectable backups. */
export function inRotation(members: readonly LbMember[]): LbMember[] {
  const live = members.filter(selectable);
  const primary = live.filter((m) => !m.backup);
  return primary.length > 0 ? primary : live;
}

const NAME = /^[A-Za-z0-9_-]+$/;
function id(kind: string, s: string): string {
  if (!NAME.test(s)) throw new Error(`load balancer: ${kind} id "${s}" must be letters, digits, '-' or '_'`);
  return s;
}

export const bridgeChain = (ifname: string): string => `b-${ifname}`;
export const vipChain = (vip: string): string => `v-${vip}`;
export const memberChain = (vip: string, member: string): string => `m-${vip}-${member}`;
export const affinitySet = (vip: string, member: string): string => `a-${vip}-${member}`;
export const nodePortChain = (vip: string): string => `n-${vip}`;
export const nodePortLocalChain = (vip: string): string => `nl-${vip}`;
export const nodePortHostChain = (vip: string, address: string): string => `nh-${vip}-${address.replace(/\./g, '_')}`;

/** ct mark bit of a NodePort connection forwarded to another host: masqueraded on the way out. */
export const FORWARD_CT_MARK = 0x02000000;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
function ipv4(what: string, s: string): string {
  const m = IPV4.exec(s);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new Error(`load balancer: ${what} "${s}" is not an IPv4 address`);
  return s;
}
function ipv6(what: string, s: string): string {
  if (!isIPv6(s)) throw new Error(`load balancer: ${what} "${s}" is not an IPv6 address`);
  return s;
}
function port(what: string, p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`load balancer: ${what} ${p} is not a port`);
  return p;
}

/** `numgen random mod Σweights vmap { ranges }`: target i gets the range of width weight_i in [0, Σweights). */
function numgen(targets: readonly { weight: number; chain: string }[]): string | undefined {
  const live = targets.filter((x) => x.weight > 0);
  if (live.length === 0) return undefined;
  let at = 0;
  const elements = live.map((x) => {
    const from = at;
    at += x.weight;
    return `${x.weight === 1 ? `${from}` : `${from}-${at - 1}`} : goto ${x.chain}`;
  });
  return `numgen random mod ${at} vmap { ${elements.join(', ')} }`;
}

/**
 * The `numgen` verdict map spreading new connections by weight over the members in rotation. Undefined when no
 * member is selectable.
 */
export function weightedVmap(vip: string, members: readonly LbMember[]): string | undefined {
  return numgen(inRotation(members).map((m) => ({ weight: m.weight, chain: memberChain(vip, m.id) })));
}

/** The table's content as chains (rules in order; `pre`, `post` and `out` included) and affinity sets. */
interface LbContent {
  chains: Map<string, string[]>;
  /** Affinity set → timeout (s), for every member of a sticky VIP. */
  sets: Map<string, number>;
  /** Affinity sets of members out of rotation: their sticky clients are let go. */
  idle: Set<string>;
}

const BASE = new Set(['pre', 'post', 'out']);

/** What differs between the two families' tables: address match keyword, checks, DNAT target, set type. */
interface FamilyWords {
  /** `ip` or `ip6`: the payload expression (`ip saddr`) and the NAT family (`dnat ip to`). */
  nf: 'ip' | 'ip6';
  check: (what: string, s: string) => string;
  /** `addr:port` as the DNAT target writes it. */
  target: (address: string, port: number) => string;
  setType: 'ipv4_addr' | 'ipv6_addr';
}
const WORDS: Record<LbFamily, FamilyWords> = {
  4: { nf: 'ip', check: ipv4, target: (a, p) => `${a}:${p}`, setType: 'ipv4_addr' },
  6: { nf: 'ip6', check: ipv6, target: (a, p) => `[${a}]:${p}`, setType: 'ipv6_addr' },
};

function content(host: LbHost, family: LbFamily = 4): LbContent {
  const w = WORDS[family];
  const chains = new Map<string, string[]>();
  const sets = new Map<string, number>();
  const idle = new Set<string>();
  const bridges = new Map<string, string>();
  for (const b of host.bridges) {
    const gateway = family === 4 ? b.gateway : b.gateway6;
    if (gateway !== undefined) bridges.set(id('bridge', b.ifname), w.check(`gateway of ${b.ifname}`, gateway));
  }
  const byBridge = new Map<string, string[]>();
  const nodePorts: string[] = [];

  for (const v of ofFamily(host.vips, family)) {
    id('vip', v.id);
    w.check(`address of VIP ${v.id}`, v.address);
    port(`port of VIP ${v.id}`, v.port);
    const sticky = v.sessionPersistence === 'source_ip';
    const timeout = v.affinityTimeoutS ?? DEFAULT_AFFINITY_TIMEOUT_S;
    const rotation = new Set(inRotation(v.members).map((m) => m.id));
    const rules: string[] = [];
    for (const m of v.members) {
      id('member', m.id);
      w.check(`address of member ${m.id}`, m.address);
      port(`port of member ${m.id}`, m.port);
      const set = affinitySet(v.id, m.id);
      if (sticky) sets.set(set, timeout);
      if (!rotation.has(m.id)) {
        // MidoNet: a member that is disabled or down loses its sticky clients at once.
        if (sticky) idle.add(set);
        continue;
      }
      if (sticky) rules.push(`${w.nf} saddr @${set} goto ${memberChain(v.id, m.id)}`);
      chains.set(memberChain(v.id, m.id), [
        `${w.nf} saddr ${m.address} ct mark set ct mark or ${hex(HAIRPIN_CT_MARK)}`,
        ...(sticky ? [`update @${set} { ${w.nf} saddr }`] : []),
        `meta l4proto ${v.protocol} dnat ${w.nf} to ${w.target(m.address, m.port)}`,
      ]);
    }
    // No selectable member: new connections are dropped (MidoNet; a bridged reject cannot be sent, chains-lb.md §0).
    rules.push(weightedVmap(v.id, v.members) ?? 'drop');
    chains.set(vipChain(v.id), rules);
    for (const b of v.bridges) {
      if (!bridges.has(b)) {
        if (family === 6 && host.bridges.some((x) => x.ifname === b))
          throw new Error(`load balancer: IPv6 VIP ${v.id} names bridge ${b}, which has no IPv6 gateway`);
        throw new Error(`load balancer: VIP ${v.id} names bridge ${b}, which is not among the host's bridges`);
      }
      const list = byBridge.get(b) ?? [];
      list.push(`${v.address} . ${v.protocol} . ${v.port} : goto ${vipChain(v.id)}`);
      byBridge.set(b, list);
    }
    // Node ports are on the hosts' underlay addresses (IPv4): published by the IPv4 table only.
    const np = family === 4 ? v.nodePort : undefined;
    if (np) {
      port(`node port of VIP ${v.id}`, np.port);
      const byId = new Map(v.members.map((m) => [m.id, m]));
      const local = numgen(
        np.localMembers.filter((mid) => rotation.has(mid)).map((mid) => ({ weight: byId.get(mid)!.weight, chain: memberChain(v.id, mid) })),
      );
      chains.set(nodePortLocalChain(v.id), [local ?? 'drop']);
      const localWeight = np.localMembers.filter((mid) => rotation.has(mid)).reduce((s, mid) => s + byId.get(mid)!.weight, 0);
      const n: string[] = [];
      if (np.peers.length)
        n.push(`ip saddr { ${np.peers.map((a) => ipv4('peer address', a)).join(', ')} } goto ${nodePortLocalChain(v.id)}`);
      if (np.local) n.push(`goto ${nodePortLocalChain(v.id)}`);
      else {
        const targets = [{ weight: localWeight, chain: nodePortLocalChain(v.id) }];
        for (const r of np.remotes) {
          const c = nodePortHostChain(v.id, ipv4('host address', r.address));
          targets.push({ weight: r.weight, chain: c });
          chains.set(c, [
            `ct mark set ct mark or ${hex(FORWARD_CT_MARK)}`,
            `meta l4proto ${v.protocol} dnat ip to ${r.address}:${np.port}`,
          ]);
        }
        n.push(numgen(targets) ?? 'drop');
      }
      chains.set(nodePortChain(v.id), n);
      nodePorts.push(`${v.protocol} . ${np.port} : goto ${nodePortChain(v.id)}`);
    }
  }
  const pre: string[] = [];
  const post: string[] = [];
  for (const [b, gateway] of bridges) {
    const vips = byBridge.get(b);
    if (!vips) continue;
    chains.set(bridgeChain(b), [`${w.nf} daddr . meta l4proto . th dport vmap { ${vips.join(', ')} }`]);
    pre.push(`iifname "${b}" goto ${bridgeChain(b)}`);
    post.push(
      `oifname "${b}" ct mark and ${hex(HAIRPIN_CT_MARK)} == ${hex(HAIRPIN_CT_MARK)} ct direction original snat ${w.nf} to ${gateway}`,
    );
  }
  const out: string[] = [];
  if (nodePorts.length) {
    const lookup = `fib daddr type local meta l4proto . th dport vmap { ${nodePorts.join(', ')} }`;
    pre.push(lookup);
    out.push(lookup);
    post.push(`ct mark and ${hex(FORWARD_CT_MARK)} == ${hex(FORWARD_CT_MARK)} ct direction original masquerade`);
  }
  chains.set('pre', pre);
  chains.set('post', post);
  chains.set('out', out);
  return { chains, sets, idle };
}

/**
 * The transaction for one host namespace: table and base chains (created if missing), and the chains and sets
 * that differ from `prev` (what was applied last; absent: everything is rewritten, and whatever `existing` lists
 * beyond what is wanted is deleted). A member change therefore replaces only its VIP's chains. Affinity sets of
 * members in rotation are kept, so sticky clients stay where they are across unrelated changes; those of members
 * that leave rotation are flushed.
 */
export function compileLb(host: LbHost, existing?: LbExisting, prev?: LbHost, family: LbFamily = 4): string {
  const table = family === 4 ? HOST_LB : HOST_LB6;
  const t = `${table.family} ${table.name}`;
  const next = content(host, family);
  const before = prev ? content(prev, family) : undefined;
  // What the kernel holds: the listing when given, else what was applied last, else nothing.
  const haveChains = existing?.chains ?? new Set(before ? [...before.chains.keys()].filter((c) => !BASE.has(c)) : []);
  const haveSets = existing?.sets ?? new Set(before?.sets.keys() ?? []);
  const out: string[] = [];
  out.push(`add table ${t} { comment "${OWNER_COMMENT}"; }`);
  for (const c of table.baseChains)
    out.push(`add chain ${t} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`);

  // Sets whose timeout changed are re-made: the chains referring to them are rewritten around it.
  const remade = new Set(
    before ? [...next.sets].filter(([s, to]) => haveSets.has(s) && before.sets.has(s) && before.sets.get(s) !== to).map(([s]) => s) : [],
  );
  const refers = (rules: readonly string[]): boolean => [...remade].some((s) => rules.some((r) => r.includes(`@${s} `)));
  const changed = [...next.chains].filter(([c, rules]) => {
    const was = before?.chains.get(c);
    return !was || (!BASE.has(c) && !haveChains.has(c)) || JSON.stringify(was) !== JSON.stringify(rules) || refers(rules);
  });
  const gone = [...haveChains].filter((c) => !next.chains.has(c) && !BASE.has(c));
  // Flush first, so no rule still refers to what is deleted or re-made below.
  for (const [c] of changed) out.push(...(BASE.has(c) ? [] : [`add chain ${t} ${c}`]), `flush chain ${t} ${c}`);
  for (const c of gone) out.push(`flush chain ${t} ${c}`);
  for (const s of remade) out.push(`delete set ${t} ${s}`);
  for (const [s, timeout] of next.sets)
    if (!haveSets.has(s) || !before?.sets.has(s) || remade.has(s))
      out.push(`add set ${t} ${s} { type ${WORDS[family].setType}; flags dynamic, timeout; timeout ${timeout}s; }`);
  for (const s of next.idle) if (haveSets.has(s) && !before?.idle.has(s)) out.push(`flush set ${t} ${s}`);
  for (const [c, rules] of changed) for (const r of rules) out.push(`add rule ${t} ${c} ${r}`);
  for (const c of gone) out.push(`delete chain ${t} ${c}`);
  for (const s of haveSets) if (!next.sets.has(s)) out.push(`delete set ${t} ${s}`);
  return out.join('\n') + '\n';
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/** A member that left rotation, and whether its established connections are cut. */
export interface LeavingMember {
  vipId: string;
  vip: string;
  protocol: 'tcp' | 'udp';
  member: string;
  /**
   * 'cut' when the pool says so, or when the member is down or gone from the pool's addresses (nothing can answer
   * there: the next packet is better balanced afresh); 'drain' keeps them (removed or disabled, pool says drain).
   */
  action: 'cut' | 'drain';
}

/**
 * Members that were in rotation in `before` and are not in `after` (removed, disabled, down, replaced by a
 * returning primary), per VIP.
 */
export function leavingMembers(beforeAll: readonly LbVip[], afterAll: readonly LbVip[]): LeavingMember[] {
  const out: LeavingMember[] = [];
  // Each VIP with the members it is served by (its own family), as compiled.
  const before = [...ofFamily(beforeAll, 4), ...ofFamily(beforeAll, 6)];
  const after = [...ofFamily(afterAll, 4), ...ofFamily(afterAll, 6)];
  for (const b of before) {
    const a = after.find((x) => x.id === b.id);
    const still = new Set(a ? inRotation(a.members).map((m) => `${m.id}|${m.address}`) : []);
    for (const m of inRotation(b.members)) {
      if (still.has(`${m.id}|${m.address}`)) continue;
      const now = a?.members.find((x) => x.id === m.id && x.address === m.address);
      const dead = now?.status === 'down';
      const action = dead || (a ?? b).memberRemoval === 'cut' ? 'cut' : 'drain';
      out.push({ vipId: b.id, vip: b.address, protocol: b.protocol, member: m.address, action });
    }
  }
  return out;
}
