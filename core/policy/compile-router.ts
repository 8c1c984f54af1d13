// A router's MidoNet chains compiled for its own namespace (`table inet bees-r`, core/datapath/nft/router-chains.ts;
// ../shared/reference/chains-lb.md §1.5–1.6 steps 4–8, §2.4, §2.6). Pure: model in, rule texts out.
//
// MidoNet evaluates, for a packet routed from router port X to router port Y: X's inbound filter, the router's
// inbound filter ("pre-routing"), the route lookup, the router's outbound filter ("post-routing"), Y's outbound
// filter, NAT rules inline. nftables splits filtering from NAT (NAT chains see only the first packet of a
// connection, and a NAT statement ends its chain), so each router chain is compiled twice:
// - a filter view `f-<id>`, run on every packet before the NAT of its hook (prerouting at mangle priority for the
//   inbound filter, forward for the outbound one), so its conditions see the packet as MidoNet's rules did, before
//   translation. A forward NAT rule there is its condition on original-direction packets with the rule's
//   flowAction as verdict; a reverse NAT rule is its condition on reply packets of a connection conntrack translated
//   that way ("applies only if a reverse binding exists") — conntrack itself undoes the translation;
// - a NAT view `ni-<id>` (inbound, dstnat) or `no-<id>` (outbound, srcnat), run on a connection's first packet:
//   forward NAT rules as nft `dnat`/`snat`, decisive filter rules as `accept` (they end MidoNet's chain, so no later
//   NAT rule may translate), return and jump as such, reverse NAT rules left out (NAT chains never see replies).
// Router port filters are filter views too, bound per leg: the inbound filter of the port a packet enters by runs
// before the router's inbound filter (prerouting, before it), the outbound filter of the port it leaves by after the
// router's outbound filter (forward, after it), as MidoNet orders them; unlike MidoNet's, the outbound port filter
// sees the packet before the router's SNAT (nftables can reject only up to forward; NAT comes at postrouting).
// Forward NAT in a port filter is refused (nftables binds one NAT per hook and connection: it could not stack on
// the router's).
// Several NAT targets: MidoNet picks a target at random, then an address and a port in its ranges; here one nft
// rule per target, each but the last gated by `numgen random mod k 0` so every target is picked with probability
// 1/n. A NAT rule with several targets or with ports is MidoNet's dynamic NAT: it applies to TCP and UDP (address
// and port) and ICMP (address) only; a single address-only target is static NAT (a floating IP), any protocol.
// Address groups are sets `iag-<id>-v4|v6` (interval: our groups hold prefixes too); a port group is its members:
// the addresses of its bridge ports (`pg-<id>-v4|v6`, port security makes the source address sound) and the legs of
// its ports on this router (`pgif-<id>`). portGroupSrc matches a packet that entered the router by a member leg or
// comes from a member's address (MidoNet's in-port and sticky port groups); portGroupDst one that leaves by a member
// leg (known only after routing) or goes to a member's address. Membership is set elements: a change never rewrites
// a chain.
// Differences from MidoNet, all refused or documented rather than silently wrong: DNAT only in the inbound chain
// and SNAT only in the outbound one (the only hooks nftables translates on); a NAT with flowAction continue ends the
// NAT view (nft NAT is terminal), while the filter view goes on with later rules matching untranslated headers.
import type { Chain, IpAddrGroup, NatTarget, Port } from '../model/types.js';
import { CompileError, addrGroupSet, conditionTerms, expand, type CompileContext, type Term } from './compile.js';
import type { PolicyCondition, PolicyRule } from './simulate.js';

export type RouterHook = 'in' | 'out';

/** The nft chain names of a MidoNet chain in a router namespace. */
export const filterViewName = (chainId: string): string => `f-${chainId}`;
export const natViewName = (chainId: string, hook: RouterHook): string => `n${hook === 'in' ? 'i' : 'o'}-${chainId}`;
/** Where a router port filter that cannot be compiled is bound: drops everything (fail closed). */
export const BROKEN_PORT_CHAIN = 'broken';
/** The sets of a port group in a router namespace: its bridge ports' addresses, and its legs on this router. */
export const routerPortGroupSet = (groupId: string, family: 4 | 6): string => `pg-${groupId}-v${family}`;
export const routerPortGroupIfSet = (groupId: string): string => `pgif-${groupId}`;

/** A named set of a router's table, with its elements. */
export interface RouterSet {
  type: 'ipv4_addr' | 'ipv6_addr' | 'ifname';
  interval?: boolean;
  elements: string[];
}

/** A router's chains as its namespace holds them. */
export interface RouterFilters {
  /** nft chain name → rule texts, in order. */
  chains: Record<string, string[]>;
  /** The router's inbound and outbound filter chain ids, when set and compiled. */
  inbound?: string;
  outbound?: string;
  /** Router port filters by leg interface: the nft chain each leg's inbound (outbound) packets go to. */
  portInbound?: Record<string, string>;
  portOutbound?: Record<string, string>;
  /** Sets the chains look up (address and port groups), by name. */
  sets?: Record<string, RouterSet>;
  /** Addresses the chains translate to or from beyond the router's subnets (floating IPs, SNAT targets). */
  addresses: string[];
  /** Chains that could not be compiled: bound to a drop-all instead (fail closed). */
  errors: string[];
}

export interface RouterChainSource {
  chains: ReadonlyMap<string, Chain>;
  rulesByChain: ReadonlyMap<string, readonly PolicyRule[]>;
  /** The leg interface (inside the router namespace) of one of this router's ports. */
  ifnameOf(portId: string): string | undefined;
  /** Address groups by id, for `ipAddrGroupSrc/Dst` (a missing group is an empty one). */
  ipAddrGroups?: ReadonlyMap<string, Pick<IpAddrGroup, 'addresses'>>;
  /** Ports that may be members of port groups (bridge ports by address, this router's ports by leg). */
  ports?: readonly Pick<Port, 'id' | 'type' | 'ips' | 'portGroupIds'>[];
}

/** A router port and its filters. */
export interface RouterPortFilters {
  id: string;
  inboundFilterId?: string | undefined;
  outboundFilterId?: string | undefined;
}

const FLOW_VERDICT = { accept: 'accept', continue: '', return: 'return' } as const;

const bare = (ip: string): string => (ip.includes('/') ? ip.slice(0, ip.indexOf('/')) : ip);

function targetText(t: NatTarget, withPort: boolean): string {
  const addr = t.addressFrom === t.addressTo ? t.addressFrom : `${t.addressFrom}-${t.addressTo}`;
  if (!withPort || !t.portTo) return addr;
  return `${addr}:${t.portFrom === t.portTo ? t.portFrom : `${t.portFrom}-${t.portTo}`}`;
}

/** MidoNet's dynamic NAT (several targets, or ports): applies to TCP, UDP and ICMP only. */
export const isDynamicNat = (targets: readonly NatTarget[]): boolean => targets.length > 1 || targets.some((t) => t.portTo > 0);

function sorted(rules: readonly PolicyRule[] | undefined): PolicyRule[] {
  return [...(rules ?? [])].sort((a, b) => a.position - b.position);
}

/** IPv4 addresses from `from` to `to` (NAT targets are small ranges; refused above 256). */
export function addressRange(from: string, to: string): string[] {
  const v = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
  const s = (n: number): string => [24, 16, 8, 0].map((b) => Math.floor(n / 2 ** b) % 256).join('.');
  if (from.includes(':') || to.includes(':')) throw new CompileError(`IPv6 NAT target ${from}-${to} is not supported`);
  const a = v(from);
  const b = v(to);
  if (b - a >= 256) throw new CompileError(`NAT target range ${from}-${to} is larger than 256 addresses`);
  const out: string[] = [];
  for (let n = a; n <= b; n++) out.push(s(n));
  return out;
}

/** Collects the sets the compiled rules refer to, with their elements from the topology. */
class SetCollector {
  readonly sets: Record<string, RouterSet> = {};
  constructor(private readonly src: RouterChainSource) {}

  addrGroup(id: string): { v4: string; v6: string } {
    const v4 = addrGroupSet(id, 4);
    const v6 = addrGroupSet(id, 6);
    if (!this.sets[v4]) {
      const addresses = [...(this.src.ipAddrGroups?.get(id)?.addresses ?? [])];
      this.sets[v4] = { type: 'ipv4_addr', interval: true, elements: addresses.filter((a) => !a.includes(':')).sort() };
      this.sets[v6] = { type: 'ipv6_addr', interval: true, elements: addresses.filter((a) => a.includes(':')).sort() };
    }
    return { v4, v6 };
  }

  portGroup(id: string): { v4: string; v6: string; ifs: string } {
    const v4 = routerPortGroupSet(id, 4);
    const v6 = routerPortGroupSet(id, 6);
    const ifs = routerPortGroupIfSet(id);
    if (!this.sets[v4]) {
      const addrs = new Set<string>();
      const legs = new Set<string>();
      for (const p of this.src.ports ?? []) {
        if (!p.portGroupIds.includes(id)) continue;
        if (p.type === 'router') {
          const leg = this.src.ifnameOf(p.id);
          if (leg) legs.add(leg);
        } else for (const ip of p.ips) addrs.add(bare(ip));
      }
      const all = [...addrs].sort();
      this.sets[v4] = { type: 'ipv4_addr', elements: all.filter((a) => !a.includes(':')) };
      this.sets[v6] = { type: 'ipv6_addr', elements: all.filter((a) => a.includes(':')) };
      this.sets[ifs] = { type: 'ifname', elements: [...legs].sort() };
    }
    return { v4, v6, ifs };
  }
}

/**
 * The terms of a router rule's condition: compile.ts's, with the group fields (which it leaves to this compiler)
 * matched against this table's sets.
 */
function routerTerms(c: PolicyCondition, ctx: CompileContext, sets: SetCollector, ruleId: string): Term[] | null {
  const rest: PolicyCondition = { ...c };
  for (const f of [
    'portGroupSrc',
    'invPortGroupSrc',
    'portGroupDst',
    'invPortGroupDst',
    'ipAddrGroupSrc',
    'invIpAddrGroupSrc',
    'ipAddrGroupDst',
    'invIpAddrGroupDst',
  ] as const)
    delete rest[f];
  const terms = conditionTerms(rest, ctx, new Map(), ruleId);
  if (terms === null) return null;
  const alt = (text: string, fam?: '4' | '6') => ({ text, fam });
  for (const [g, dir, inv] of [
    [c.ipAddrGroupSrc, 'saddr', c.invIpAddrGroupSrc],
    [c.ipAddrGroupDst, 'daddr', c.invIpAddrGroupDst],
  ] as const) {
    if (g === undefined) continue;
    const s = sets.addrGroup(g);
    const not = inv ? '!= ' : '';
    // Only IP reaches a router's hooks: a packet of one family is never in the other family's set.
    terms.push([alt(`ip ${dir} ${not}@${s.v4}`, '4'), alt(`ip6 ${dir} ${not}@${s.v6}`, '6')]);
  }
  for (const [g, dir, inv] of [
    [c.portGroupSrc, 'saddr', c.invPortGroupSrc],
    [c.portGroupDst, 'daddr', c.invPortGroupDst],
  ] as const) {
    if (g === undefined) continue;
    const s = sets.portGroup(g);
    const leg = dir === 'saddr' ? 'iifname' : 'oifname';
    // Disjoint alternatives (expand() relies on it): by leg, or not by leg and by address.
    terms.push(
      inv
        ? [alt(`${leg} != @${s.ifs} ip ${dir} != @${s.v4}`, '4'), alt(`${leg} != @${s.ifs} ip6 ${dir} != @${s.v6}`, '6')]
        : [
            alt(`${leg} @${s.ifs}`),
            alt(`${leg} != @${s.ifs} ip ${dir} @${s.v4}`, '4'),
            alt(`${leg} != @${s.ifs} ip6 ${dir} @${s.v6}`, '6'),
          ],
    );
  }
  return terms;
}

/** Compile one chain's filter view (`port`: a router port's filter, where forward NAT is refused). */
function filterView(
  chainId: string,
  src: RouterChainSource,
  ctx: CompileContext,
  sets: SetCollector,
  port: boolean,
): { rules: string[]; jumps: string[] } {
  const rules: string[] = [];
  const jumps: string[] = [];
  for (const rule of sorted(src.rulesByChain.get(chainId))) {
    let verdict: string;
    let prefix = '';
    switch (rule.action) {
      case 'accept':
      case 'drop':
      case 'return':
        verdict = rule.action;
        break;
      case 'continue':
        verdict = '';
        break;
      case 'reject':
        // MidoNet answers ICMP unreachable-prohibited from routers (chains-lb.md §0.4).
        verdict = 'reject with icmpx admin-prohibited';
        break;
      case 'jump':
        if (!rule.jumpChainId || !src.chains.has(rule.jumpChainId)) continue; // MidoNet: CONTINUE
        verdict = `jump ${filterViewName(rule.jumpChainId)}`;
        jumps.push(rule.jumpChainId);
        break;
      case 'dnat':
      case 'snat':
        if (port)
          throw new CompileError(
            `rule ${rule.id}: ${rule.action} in a router port's filter is not supported (put it in the router's chains)`,
          );
        verdict = FLOW_VERDICT[rule.flowAction ?? 'accept'];
        // Dynamic NAT applies (and so gives its verdict) only to the protocols it translates.
        prefix = isDynamicNat(rule.natTargets ?? []) ? 'ct direction original meta l4proto { tcp, udp, icmp }' : 'ct direction original';
        break;
      case 'rev_dnat':
      case 'rev_snat':
        verdict = FLOW_VERDICT[rule.flowAction ?? 'accept'];
        prefix = `ct direction reply ct status ${rule.action === 'rev_dnat' ? 'dnat' : 'snat'}`;
        break;
    }
    const terms = routerTerms(rule.condition, ctx, sets, rule.id);
    if (terms === null) continue;
    const tail = ['counter', verdict, `comment "r=${rule.id}"`].filter(Boolean).join(' ');
    for (const match of expand(terms, rule.id)) rules.push([prefix, match, tail].filter(Boolean).join(' '));
  }
  return { rules, jumps };
}

/**
 * The NAT statements of a forward NAT rule, one per target and protocol class: each target but the last gated by
 * `numgen random mod k 0` (k = targets left), so each is picked with probability 1/n.
 */
function natStatements(rule: PolicyRule, addresses: Set<string>): string[] {
  const targets = rule.natTargets ?? [];
  if (targets.length === 0) throw new CompileError(`rule ${rule.id}: a NAT rule needs a target`);
  const kind = rule.action as 'dnat' | 'snat';
  for (const t of targets) {
    const all = addressRange(t.addressFrom, t.addressTo); // also refuses IPv6 and large ranges
    if (kind === 'snat') for (const a of all) addresses.add(a);
  }
  if (kind === 'dnat' && rule.condition.nwDst && !rule.condition.invNwDst && /^[\d.]+(\/32)?$/.test(rule.condition.nwDst))
    addresses.add(rule.condition.nwDst.replace(/\/32$/, '')); // a floating IP: the host must route it here
  if (!isDynamicNat(targets)) return [`${kind} ip to ${targetText(targets[0]!, false)}`];
  const out: string[] = [];
  for (const [i, t] of targets.entries()) {
    const left = targets.length - i;
    const gate = left > 1 ? `numgen random mod ${left} 0 ` : '';
    // nft refuses a port translation without a protocol that has ports; ICMP is translated by address.
    if (t.portTo) {
      out.push(`meta l4proto { tcp, udp } ${gate}${kind} ip to ${targetText(t, true)}`);
      out.push(`meta l4proto icmp ${gate}${kind} ip to ${targetText(t, false)}`);
    } else out.push(`meta l4proto { tcp, udp, icmp } ${gate}${kind} ip to ${targetText(t, false)}`);
  }
  return out;
}

/** Compile one chain's NAT view for a hook. */
function natView(
  chainId: string,
  hook: RouterHook,
  src: RouterChainSource,
  ctx: CompileContext,
  sets: SetCollector,
  addresses: Set<string>,
): { rules: string[]; jumps: string[] } {
  const rules: string[] = [];
  const jumps: string[] = [];
  for (const rule of sorted(src.rulesByChain.get(chainId))) {
    let stmts: string[];
    switch (rule.action) {
      case 'accept':
      case 'drop':
      case 'reject':
        stmts = ['accept']; // decided: no later rule of MidoNet's chain translates this connection
        break;
      case 'return':
        stmts = ['return'];
        break;
      case 'continue':
      case 'rev_dnat':
      case 'rev_snat':
        continue;
      case 'jump':
        if (!rule.jumpChainId || !src.chains.has(rule.jumpChainId)) continue;
        stmts = [`jump ${natViewName(rule.jumpChainId, hook)}`];
        jumps.push(rule.jumpChainId);
        break;
      case 'dnat':
      case 'snat': {
        const want = rule.action === 'dnat' ? 'in' : 'out';
        if (hook !== want)
          throw new CompileError(
            `rule ${rule.id}: ${rule.action} is only supported in a router's ${want === 'in' ? 'inbound' : 'outbound'} chain`,
          );
        stmts = natStatements(rule, addresses);
        break;
      }
    }
    const terms = routerTerms(rule.condition, ctx, sets, rule.id);
    if (terms === null) continue;
    for (const match of expand(terms, rule.id))
      for (const stmt of stmts) rules.push(match ? `${match} ${stmt} comment "r=${rule.id}"` : `${stmt} comment "r=${rule.id}"`);
  }
  return { rules, jumps };
}

/** The chains compiled for a broken chain: fail closed (drop everything, counted). */
const BROKEN = ['counter drop comment "r=broken"'];

/**
 * Compile a router's inbound and outbound filters, its ports' filters (and every chain they jump to) for its
 * namespace. Undefined when neither the router nor any of its ports (with a leg here) has a filter.
 */
export function compileRouterFilters(
  router: { inboundFilterId?: string | undefined; outboundFilterId?: string | undefined },
  src: RouterChainSource,
  ports: readonly RouterPortFilters[] = [],
): RouterFilters | undefined {
  const legPorts = ports.filter((p) => (p.inboundFilterId || p.outboundFilterId) && src.ifnameOf(p.id));
  if (!router.inboundFilterId && !router.outboundFilterId && legPorts.length === 0) return undefined;
  const ctx: CompileContext = {
    macOf: () => undefined,
    chainExists: (id) => src.chains.has(id),
    router: { ifnameOf: (id) => src.ifnameOf(id) },
  };
  const out: RouterFilters = { chains: {}, addresses: [], errors: [] };
  const addresses = new Set<string>();
  const sets = new SetCollector(src);
  /** A filter's closure over jumps, compiled; the error of the first chain that does not compile. */
  const closure = (top: string, hook: RouterHook | 'port'): { chains: Record<string, string[]>; broken?: string } => {
    const chains: Record<string, string[]> = {};
    const seen = new Set<string>();
    const queue = [top];
    while (queue.length) {
      const id = queue.shift()!;
      if (seen.has(id)) continue;
      seen.add(id);
      try {
        const f = filterView(id, src, ctx, sets, hook === 'port');
        chains[filterViewName(id)] = f.rules;
        queue.push(...f.jumps);
        if (hook !== 'port') {
          const n = natView(id, hook, src, ctx, sets, addresses);
          chains[natViewName(id, hook)] = n.rules;
          queue.push(...n.jumps);
        }
      } catch (e) {
        return { chains, broken: `chain ${id}: ${(e as Error).message}` };
      }
    }
    return { chains };
  };
  const hooks: [RouterHook, string | undefined][] = [
    ['in', router.inboundFilterId],
    ['out', router.outboundFilterId],
  ];
  for (const [hook, top] of hooks) {
    if (!top) continue;
    const c = closure(top, hook);
    if (c.broken) {
      // The whole filter fails closed: its top chain drops everything until its rules compile again.
      out.errors.push(c.broken);
      out.chains[filterViewName(top)] = BROKEN;
      out.chains[natViewName(top, hook)] = [];
    } else {
      Object.assign(out.chains, c.chains);
    }
    out[hook === 'in' ? 'inbound' : 'outbound'] = top;
  }
  for (const p of [...legPorts].sort((a, b) => a.id.localeCompare(b.id))) {
    const leg = src.ifnameOf(p.id)!;
    for (const [field, top] of [
      ['portInbound', p.inboundFilterId],
      ['portOutbound', p.outboundFilterId],
    ] as const) {
      if (!top) continue;
      const c = closure(top, 'port');
      let bound = filterViewName(top);
      if (c.broken) {
        // Only this port's filter fails closed; a chain it shares with the router's filters stays as compiled.
        out.errors.push(`port ${p.id}: ${c.broken}`);
        out.chains[BROKEN_PORT_CHAIN] = BROKEN;
        bound = BROKEN_PORT_CHAIN;
      } else {
        // The router's own view of a shared chain wins (a broken router filter keeps its drop-all).
        for (const [name, rules] of Object.entries(c.chains)) if (!(name in out.chains)) out.chains[name] = rules;
      }
      (out[field] ??= {})[leg] = bound;
    }
  }
  if (Object.keys(sets.sets).length) out.sets = sets.sets;
  out.addresses = [...addresses].sort();
  return out;
}
