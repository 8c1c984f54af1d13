// The L4 load balancer's compiler: from the VIPs, pools and members a host's clients can reach to the nft script of
// table `ip bees-lb` in that host's namespace (core/datapath/README.md "Load balancing"). Pure: no kernel, no store;
// the datapath (core/datapath/nft/lb.ts) applies what this returns.
//
// Shape (chains-lb.md §3.6, kube-proxy's nftables mode): `pre` (nat prerouting, dstnat) sends each client bridge to
// its chain `b-<bridge>`, whose one rule looks up `ip daddr . l4proto . dport` in a verdict map to `v-<vip>`; that
// chain keeps a sticky client on its member (dynamic set per member, with a timeout), else picks a member by weight
// (`numgen random mod Σweights` over ranges); `m-<vip>-<member>` marks hairpin connections and DNATs. `post` (nat
// postrouting, srcnat) SNATs marked connections to the client bridge's gateway.
import { HOST_LB, OWNER_COMMENT } from '../datapath/nft/tables.js';
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
}

/**
 * A member as the compiler needs it: the model's PoolMember (core/model/types.ts) without pool linkage. Selectable
 * when adminStateUp, weight > 0 and status is not 'down' (MidoNet: active = weight > 0, admin up, status ACTIVE;
 * 'unknown' counts as up until a health monitor says otherwise).
 */
export type LbMember = Pick<PoolMember, 'id' | 'address' | 'port' | 'weight' | 'adminStateUp' | 'status'>;

/**
 * A VIP with its pool's members, and the bridges of this host whose clients reach it (the router's bridges, so
 * tenants with overlapping VIP addresses stay apart). Extends the model's Vip (read-only there) with what the
 * datapath needs: the members and the bridges, and the affinity timeout the model lacks.
 */
export interface LbVip extends Pick<Vip, 'id' | 'address' | 'port' | 'protocol' | 'sessionPersistence'> {
  members: readonly LbMember[];
  bridges: readonly string[];
  /** Seconds a sticky client keeps its member after its last new connection. */
  affinityTimeoutS?: number;
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

const NAME = /^[A-Za-z0-9_-]+$/;
function id(kind: string, s: string): string {
  if (!NAME.test(s)) throw new Error(`load balancer: ${kind} id "${s}" must be letters, digits, '-' or '_'`);
  return s;
}

export const bridgeChain = (ifname: string): string => `b-${ifname}`;
export const vipChain = (vip: string): string => `v-${vip}`;
export const memberChain = (vip: string, member: string): string => `m-${vip}-${member}`;
export const affinitySet = (vip: string, member: string): string => `a-${vip}-${member}`;

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
function ipv4(what: string, s: string): string {
  const m = IPV4.exec(s);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) throw new Error(`load balancer: ${what} "${s}" is not an IPv4 address`);
  return s;
}
function port(what: string, p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new Error(`load balancer: ${what} ${p} is not a port`);
  return p;
}

/**
 * The `numgen` verdict map spreading new connections by weight: member i gets the range of width weight_i in
 * [0, Σweights). Undefined when no member is selectable.
 */
export function weightedVmap(vip: string, members: readonly LbMember[]): string | undefined {
  const live = members.filter(selectable);
  if (live.length === 0) return undefined;
  let at = 0;
  const elements = live.map((m) => {
    const from = at;
    at += m.weight;
    const range = m.weight === 1 ? `${from}` : `${from}-${at - 1}`;
    return `${range} : goto ${memberChain(vip, m.id)}`;
  });
  return `numgen random mod ${at} vmap { ${elements.join(', ')} }`;
}

/**
 * The whole transaction for one host namespace: table and base chains (created if missing), every wanted chain
 * flushed and refilled, affinity sets of members that are gone or no longer selectable flushed or deleted, and
 * every chain and set of the table that is no longer wanted deleted. Sets of selectable members are kept, so
 * sticky clients stay where they are across unrelated changes.
 */
export function compileLb(host: LbHost, existing: LbExisting = { chains: new Set(), sets: new Set() }): string {
  const t = `${HOST_LB.family} ${HOST_LB.name}`;
  const out: string[] = [];
  const chains = new Map<string, string[]>();
  const sets = new Map<string, number>();
  const flushSets: string[] = [];
  const bridges = new Map(host.bridges.map((b) => [id('bridge', b.ifname), ipv4(`gateway of ${b.ifname}`, b.gateway)]));
  const byBridge = new Map<string, string[]>();

  for (const v of host.vips) {
    id('vip', v.id);
    ipv4(`address of VIP ${v.id}`, v.address);
    port(`port of VIP ${v.id}`, v.port);
    const sticky = v.sessionPersistence === 'source_ip';
    const timeout = v.affinityTimeoutS ?? DEFAULT_AFFINITY_TIMEOUT_S;
    const rules: string[] = [];
    for (const m of v.members) {
      id('member', m.id);
      ipv4(`address of member ${m.id}`, m.address);
      port(`port of member ${m.id}`, m.port);
      const set = affinitySet(v.id, m.id);
      if (!selectable(m)) {
        // MidoNet: a member that is disabled or down loses its sticky clients at once.
        if (existing.sets.has(set)) flushSets.push(set);
        if (existing.sets.has(set)) sets.set(set, timeout);
        continue;
      }
      if (sticky) {
        sets.set(set, timeout);
        rules.push(`ip saddr @${set} goto ${memberChain(v.id, m.id)}`);
      }
      chains.set(memberChain(v.id, m.id), [
        `ip saddr ${m.address} ct mark set ct mark or ${hex(HAIRPIN_CT_MARK)}`,
        ...(sticky ? [`update @${set} { ip saddr }`] : []),
        `meta l4proto ${v.protocol} dnat ip to ${m.address}:${m.port}`,
      ]);
    }
    // No selectable member: new connections are dropped (MidoNet; a bridged reject cannot be sent, chains-lb.md §0).
    rules.push(weightedVmap(v.id, v.members) ?? 'drop');
    chains.set(vipChain(v.id), rules);
    for (const b of v.bridges) {
      if (!bridges.has(b)) throw new Error(`load balancer: VIP ${v.id} names bridge ${b}, which is not among the host's bridges`);
      const list = byBridge.get(b) ?? [];
      list.push(`${v.address} . ${v.protocol} . ${v.port} : goto ${vipChain(v.id)}`);
      byBridge.set(b, list);
    }
  }
  const pre: string[] = [];
  const post: string[] = [];
  for (const [b, gateway] of bridges) {
    const vips = byBridge.get(b);
    if (!vips) continue;
    chains.set(bridgeChain(b), [`ip daddr . meta l4proto . th dport vmap { ${vips.join(', ')} }`]);
    pre.push(`iifname "${b}" goto ${bridgeChain(b)}`);
    post.push(`oifname "${b}" ct mark and ${hex(HAIRPIN_CT_MARK)} == ${hex(HAIRPIN_CT_MARK)} ct direction original snat ip to ${gateway}`);
  }

  out.push(`add table ${t} { comment "${OWNER_COMMENT}"; }`);
  for (const c of HOST_LB.baseChains)
    out.push(`add chain ${t} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`);
  // Flush every chain that exists or is wanted first, so no rule still refers to what is deleted below.
  const all = new Set([...existing.chains, ...chains.keys()].filter((c) => c !== 'pre' && c !== 'post'));
  for (const c of all) out.push(`add chain ${t} ${c}`, `flush chain ${t} ${c}`);
  out.push(`flush chain ${t} pre`, `flush chain ${t} post`);
  for (const [s, timeout] of sets) out.push(`add set ${t} ${s} { type ipv4_addr; flags dynamic, timeout; timeout ${timeout}s; }`);
  for (const s of flushSets) out.push(`flush set ${t} ${s}`);
  for (const [c, rules] of chains) for (const r of rules) out.push(`add rule ${t} ${c} ${r}`);
  for (const r of pre) out.push(`add rule ${t} pre ${r}`);
  for (const r of post) out.push(`add rule ${t} post ${r}`);
  for (const c of all) if (!chains.has(c)) out.push(`delete chain ${t} ${c}`);
  for (const s of existing.sets) if (!sets.has(s)) out.push(`delete set ${t} ${s}`);
  return out.join('\n') + '\n';
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

/**
 * Members whose connections must be cut after a change: those in `before` that are no longer selectable in
 * `after` (removed, disabled, down), per VIP, as `{ vip address, protocol, member address }`.
 */
export function leavingMembers(
  before: readonly LbVip[],
  after: readonly LbVip[],
): { vip: string; protocol: 'tcp' | 'udp'; member: string }[] {
  const out: { vip: string; protocol: 'tcp' | 'udp'; member: string }[] = [];
  for (const b of before) {
    const a = after.find((x) => x.id === b.id);
    for (const m of b.members.filter(selectable)) {
      const still = a?.members.find((x) => x.id === m.id && selectable(x) && x.address === m.address);
      if (!still) out.push({ vip: b.address, protocol: b.protocol, member: m.address });
    }
  }
  return out;
}
