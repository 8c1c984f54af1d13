// MidoNet chains compiled to nftables rules for the bridge and port stages of `table bridge bees`
// (../shared/reference/chains-lb.md §2.4–2.7). Pure: model in, rule texts out; core/datapath/nft/policy.ts applies
// them. simulate.ts is the oracle the kernel test compares these rules against.
//
// How MidoNet's semantics map (chains-lb.md §2.4, §2.6):
// - a chain is `c-<chainId>`, reached from a stage with `goto`, so falling off it, or `return` at its top, ends the
//   stage's base chain with policy accept = MidoNet's "falls off the top-level chain = ACCEPT"; `accept` ends that
//   stage only and the next stage still runs, as MidoNet's next device's filter does;
// - `jump` is nft `jump` (a `return` in the target resumes after it); a missing target compiles to nothing
//   (MidoNet: CONTINUE); `reject` is `drop` (no reject in bridge tables; MidoNet drops on bridges too);
// - a condition is a conjunction of terms; a term MidoNet matches that nft cannot say in one expression (an
//   inverted address also matches non-IP frames) is a list of disjoint alternatives, and the rule is expanded into
//   one nft rule per combination. Disjoint: at most one expansion matches a packet, so even `jump` runs once;
// - return flow is a mark bit set by `table inet bees-ct` from conntrack (policy.ts), forward flow its absence;
// - ports are named by MAC (`ether saddr`/`daddr`): port security makes it sound, and it is the same on every
//   host; a port group is the set of its members' MACs, an address group two address sets (v4, v6);
// - fragments: br_netfilter defragments before the +10 stages, so `nonheader` never matches and the rest match
//   whole packets (chains-lb.md §2.5).
import type { IpAddrGroup } from '../model/types.js';
import { isCidr, isIp, normalizeMac } from '../net/ip.js';
import { unsupportedOnBridge } from './support.js';
import {
  ETH_IPV4,
  ETH_IPV6,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_SCTP,
  PROTO_TCP,
  PROTO_UDP,
  defaultFragmentPolicy,
  type PolicyCondition,
  type PolicyRule,
} from './simulate.js';

export class CompileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CompileError';
  }
}

/** skb->mark bits of `table inet bees-ct` (configurable: other users of the mark must not collide). */
export interface MarkBits {
  returnFlow: number;
  /** The first packet of a connection (conntrack state new), for the flow log of accepted connections. */
  newFlow?: number;
}
/** The bridge family has no conntrack here: the inet table tags new connections' first packets with this bit. */
export const NEW_FLOW_MARK = 0x40000000;
export const DEFAULT_MARKS: MarkBits = { returnFlow: 0x80000000 };

/**
 * Drop logging: every drop (and reject) rule is preceded by a rule with the same match that sends a copy of the
 * packet to NFLOG group `group`, at most `ratePerSecond` per second per rule, prefixed `bees drop r=<rule id>`
 * (core/datapath/nft/flow-log.ts reads them). The limit gates only the log rule: the drop itself is never limited.
 */
export interface DropLog {
  group: number;
  ratePerSecond: number;
}
/** "be" for bees; NFLOG groups are per network namespace. */
export const DEFAULT_DROP_LOG: DropLog = { group: 0xbee, ratePerSecond: 10 };
/** The NFLOG prefix of a logged packet: its verdict and rule (issue 13's flow logs add `accept`). */
export const logPrefix = (verdict: 'drop' | 'accept', ruleId: string): string => `bees ${verdict} r=${ruleId}`;

export interface CompileContext {
  /** MAC of a port, for in/out port conditions; undefined: unknown port (refused). */
  macOf(portId: string): string | undefined;
  /** Whether a chain exists (a jump to a missing one compiles to nothing). */
  chainExists(chainId: string): boolean;
  marks?: MarkBits;
  /**
   * Compiling for a router namespace (`table inet bees-r`, core/policy/compile-router.ts) rather than the bridge
   * stages: ports are the router's legs by interface name, forward/return flow is read from conntrack directly
   * (both directions of an uplink flow are routed on one host), and only IP reaches the hooks.
   */
  router?: { ifnameOf(portId: string): string | undefined };
  /** Log drops to NFLOG (the agent does); off when absent. */
  dropLog?: DropLog;
  /**
   * Log the first packet of each new connection an accept rule lets through (issue 13's flow logs), to the same
   * group with prefix `bees accept r=<rule id>`, rate-limited per rule. Off when absent: the agent turns it on
   * only with `--flow-log`, since it adds a conntrack lookup and a log rule per accept rule on every packet.
   */
  acceptLog?: DropLog;
}

export const chainName = (chainId: string): string => `c-${chainId}`;
export const portGroupSet = (groupId: string): string => `pg-${groupId}`;
export const addrGroupSet = (groupId: string, family: 4 | 6): string => `iag-${groupId}-v${family}`;

/** The nft sets a chain's rules refer to, with their types. */
export interface SetDecl {
  name: string;
  type: string;
  interval?: boolean;
}

/** Expansions beyond this are refused rather than silently blown up. */
const MAX_EXPANSION = 32;

const hex = (n: number): string => `0x${n.toString(16)}`;
const portSet = (items: string[]): string => (items.length === 1 ? items[0]! : `{ ${items.join(', ')} }`);
const range = (r: { start: number; end: number }): string => (r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`);

function isV6(addr: string): boolean {
  return addr.includes(':');
}

/**
 * What an alternative requires of the frame's network protocol: IPv4, IPv6, not IPv4, not IPv6, neither. An
 * expansion whose alternatives contradict each other can never match and is dropped (nft refuses some of them,
 * e.g. `ip daddr … ip6 daddr …`, with "conflicting protocols").
 */
export type Fam = '4' | '6' | '!4' | '!6' | '!ip';
export interface Alt {
  text: string;
  fam?: Fam | undefined;
  /** An inverted single-value header compare, with a form nft does not merge with its neighbour (see Apart). */
  apart?: Apart | undefined;
}

/**
 * Where an inverted compare reads, and the same match as a one-value range. nft 1.0.6 merges compares of
 * contiguous header fields with the same operator into one wider compare, in any order, even with other matches
 * between them: `ether saddr != A ether type != B` becomes one 8-byte `!=`, true when *either* field differs,
 * where MidoNet means both. A range expression is never merged, so `expand` writes the second of two adjacent
 * inverted compares as `!= v-v` (same meaning; one `range` expression in place of the `cmp`).
 */
export interface Apart {
  layer: 'll' | 'th';
  offset: number;
  len: number;
  text: string;
}
/** One nft match per alternative; a term holds one or more disjoint alternatives. */
export type Term = Alt[];

const CONFLICTS: Record<Fam, readonly Fam[]> = {
  '4': ['6', '!4', '!ip'],
  '6': ['4', '!6', '!ip'],
  '!4': ['4'],
  '!6': ['6'],
  '!ip': ['4', '6'],
};
const alt = (text: string, fam?: Fam): Alt => ({ text, fam });
const one = (text: string, fam?: Fam): Term => [alt(text, fam)];

/** Header fields nft merges when compared adjacently: byte offset and length in their header. */
const FIELDS = {
  'ether daddr': ['ll', 0, 6],
  'ether saddr': ['ll', 6, 6],
  'ether type': ['ll', 12, 2],
  'th sport': ['th', 0, 2],
  'th dport': ['th', 2, 2],
  'icmp type': ['th', 0, 1],
  'icmp code': ['th', 1, 1],
  'icmpv6 type': ['th', 0, 1],
  'icmpv6 code': ['th', 1, 1],
} as const;

/** `field value`, or `field != value` that stays a separate compare in the kernel (see Apart). */
function match(field: keyof typeof FIELDS, value: string, inv: boolean | undefined, fam?: Fam): Alt {
  if (!inv) return alt(`${field} ${value}`, fam);
  const [layer, offset, len] = FIELDS[field];
  return { text: `${field} != ${value}`, fam, apart: { layer, offset, len, text: `${field} != ${value}-${value}` } };
}

/** The operator of an inverted match (module-level: a closure per call cost tsx's keepNames a defineProperty). */
const not = (inv?: boolean): string => (inv ? '!= ' : '');

/** An address condition: MidoNet matches "has an IP source in the subnet"; inverted, also every non-IP frame. */
function addressTerm(dir: 'saddr' | 'daddr', cidr: string, inv?: boolean, router?: boolean): Term {
  const text: string = cidr;
  if (!isCidr(text) && !isIp(text)) throw new CompileError(`invalid address ${cidr}`);
  const v6 = isV6(cidr);
  const fam = v6 ? 'ip6' : 'ip';
  if (!inv) return one(`${fam} ${dir} ${cidr}`, v6 ? '6' : '4');
  const other = router
    ? alt(`meta nfproto != ipv${v6 ? 6 : 4}`, v6 ? '!6' : '!4')
    : { ...match('ether type', hex(v6 ? ETH_IPV6 : ETH_IPV4), true, v6 ? '!6' : '!4'), text: `ether type != ${fam}` };
  return [other, alt(`${fam} ${dir} != ${cidr}`, v6 ? '6' : '4')];
}

export function conditionTerms(c: PolicyCondition, ctx: CompileContext, sets: Map<string, SetDecl>, ruleId: string): Term[] | null {
  if (defaultFragmentPolicy(c) === 'nonheader') return null; // defragmented before our stages: never matches
  // noVlan needs no match: tagged frames never reach the filters (simulate.ts skips them too).
  const marks = ctx.marks ?? DEFAULT_MARKS;
  const terms: Term[] = [];
  const router = ctx.router;
  if (router) {
    // The bridge stages' mark bit, spelled out: a reply of an established connection, or a related packet.
    if (c.matchForwardFlow)
      terms.push([alt('ct direction original ct state != related'), alt('ct direction reply ct state != { established, related }')]);
    if (c.matchReturnFlow) terms.push([alt('ct direction reply ct state established'), alt('ct state related')]);
  } else {
    if (c.matchForwardFlow) terms.push(one(`meta mark & ${hex(marks.returnFlow)} == 0`));
    if (c.matchReturnFlow) terms.push(one(`meta mark & ${hex(marks.returnFlow)} == ${hex(marks.returnFlow)}`));
  }
  if (
    router &&
    (c.portGroupSrc !== undefined || c.portGroupDst !== undefined || c.ipAddrGroupSrc !== undefined || c.ipAddrGroupDst !== undefined)
  )
    throw new CompileError(`rule ${ruleId}: port and address groups are not supported in router chains yet`);
  // Each loop below is skipped whole when its fields are absent (most rules): its array literals are allocations.
  if (c.portGroupSrc !== undefined || c.portGroupDst !== undefined)
    for (const [field, dir, inv] of [
      ['portGroupSrc', 'saddr', c.invPortGroupSrc],
      ['portGroupDst', 'daddr', c.invPortGroupDst],
    ] as const) {
      const g = c[field];
      if (g === undefined) continue;
      const s = portGroupSet(g);
      sets.set(s, { name: s, type: 'ether_addr' });
      terms.push(one(`ether ${dir} ${not(inv)}@${s}`));
    }
  if (c.inPortIds?.length || c.outPortIds?.length)
    for (const [ids, dir, inv] of [
      [c.inPortIds, 'saddr', c.invInPorts],
      [c.outPortIds, 'daddr', c.invOutPorts],
    ] as const) {
      if (!ids?.length) continue;
      if (router) {
        const names = ids.map((id) => {
          const n = router.ifnameOf(id);
          if (!n) throw new CompileError(`rule ${ruleId}: port ${id} is not a port of this router`);
          return `"${n}"`;
        });
        terms.push(one(`${dir === 'saddr' ? 'iifname' : 'oifname'} ${not(inv)}${portSet([...new Set(names)])}`));
        continue;
      }
      const macs = ids.map((id) => {
        const m = ctx.macOf(id);
        if (!m) throw new CompileError(`rule ${ruleId}: port ${id} is unknown`);
        return m.toLowerCase();
      });
      const set = [...new Set(macs)];
      // A set is a lookup, never merged; a single MAC is a compare.
      terms.push(set.length === 1 ? [match(`ether ${dir}`, set[0]!, inv)] : one(`ether ${dir} ${not(inv)}${portSet(set)}`));
    }
  if (c.ethertype !== undefined && router) {
    // Only IPv4 and IPv6 reach a router's hooks: another ethertype never matches (inverted: always).
    const nf = c.ethertype === ETH_IPV4 ? 'ipv4' : c.ethertype === ETH_IPV6 ? 'ipv6' : undefined;
    if (nf) terms.push(one(`meta nfproto ${not(c.invEthertype)}${nf}`));
    else if (!c.invEthertype) return null;
  } else if (c.ethertype !== undefined) {
    const f = c.ethertype === ETH_IPV4 ? '4' : c.ethertype === ETH_IPV6 ? '6' : undefined;
    terms.push([match('ether type', hex(c.ethertype), c.invEthertype, f && (c.invEthertype ? `!${f}` : f))]);
  }
  if (c.dlSrc !== undefined || c.dlDst !== undefined)
    for (const [mac, mask, dir, inv] of [
      [c.dlSrc, c.dlSrcMask, 'saddr', c.invDlSrc],
      [c.dlDst, c.dlDstMask, 'daddr', c.invDlDst],
    ] as const) {
      if (mac === undefined) continue;
      const m = normalizeMac(mac);
      const k = mask === undefined ? undefined : normalizeMac(mask);
      if (k === undefined || k === 'ff:ff:ff:ff:ff:ff') terms.push([match(`ether ${dir}`, m, inv)]);
      else terms.push(one(`ether ${dir} & ${k} ${inv ? '!=' : '=='} ${maskMac(m, k)}`));
    }
  if (c.nwProto !== undefined) terms.push(one(`meta l4proto ${not(c.invNwProto)}${c.nwProto}`));
  if (c.nwSrc !== undefined) terms.push(addressTerm('saddr', c.nwSrc, c.invNwSrc, !!router));
  if (c.nwDst !== undefined) terms.push(addressTerm('daddr', c.nwDst, c.invNwDst, !!router));
  if (c.tpSrc || c.tpDst) {
    // MidoNet's "a range matches a packet without ports" would need alternatives over every protocol; a range is
    // compiled only next to the protocol it is about.
    if (c.nwProto === undefined || c.invNwProto) throw new CompileError(`rule ${ruleId}: a port range needs a (non-inverted) nwProto`);
    const icmp = c.nwProto === PROTO_ICMP ? 'icmp' : c.nwProto === PROTO_ICMPV6 ? 'icmpv6' : undefined;
    const ported = c.nwProto === PROTO_TCP || c.nwProto === PROTO_UDP || c.nwProto === PROTO_SCTP;
    if (!icmp && !ported) throw new CompileError(`rule ${ruleId}: protocol ${c.nwProto} has no ports`);
    // ICMP: type in the source-port slot, code in the destination-port slot (MidoNet's flow match).
    const f: Fam | undefined = icmp === 'icmp' ? '4' : icmp ? '6' : undefined;
    // A real range is a range expression already; one value is a compare (icmp type and code are adjacent bytes,
    // as are the two ports).
    if (c.tpSrc) terms.push(portTerm(c.tpSrc, c.invTpSrc, icmp ? `${icmp} type` : 'th sport', f));
    if (c.tpDst) terms.push(portTerm(c.tpDst, c.invTpDst, icmp ? `${icmp} code` : 'th dport', f));
  }
  if (c.ipAddrGroupSrc !== undefined || c.ipAddrGroupDst !== undefined)
    for (const [g, dir, inv] of [
      [c.ipAddrGroupSrc, 'saddr', c.invIpAddrGroupSrc],
      [c.ipAddrGroupDst, 'daddr', c.invIpAddrGroupDst],
    ] as const) {
      if (g === undefined) continue;
      const v4 = addrGroupSet(g, 4);
      const v6 = addrGroupSet(g, 6);
      // Interval sets hold prefixes as well as addresses (our groups accept CIDRs; MidoNet's held addresses only).
      sets.set(v4, { name: v4, type: 'ipv4_addr', interval: true });
      sets.set(v6, { name: v6, type: 'ipv6_addr', interval: true });
      terms.push(
        inv
          ? [alt('ether type != { ip, ip6 }', '!ip'), alt(`ip ${dir} != @${v4}`, '4'), alt(`ip6 ${dir} != @${v6}`, '6')]
          : [alt(`ip ${dir} @${v4}`, '4'), alt(`ip6 ${dir} @${v6}`, '6')],
      );
    }
  return terms;
}

/** A port (or ICMP type/code) range term: one value is a compare (it may need to stay apart), a range a range. */
function portTerm(r: { start: number; end: number }, inv: boolean | undefined, field: keyof typeof FIELDS, f: Fam | undefined): Term {
  return r.start === r.end ? [match(field, `${r.start}`, inv, f)] : one(`${field} ${not(inv)}${range(r)}`, f);
}

/** `mac & mask`, as nft compares a masked field with a value that has no bits outside the mask. */
function maskMac(mac: string, mask: string): string {
  const k = mask.split(':');
  return mac
    .split(':')
    .map((b, i) => (parseInt(b, 16) & parseInt(k[i]!, 16)).toString(16).padStart(2, '0'))
    .join(':');
}

const adjacent = (a: Apart, b: Apart): boolean => a.layer === b.layer && (a.offset + a.len === b.offset || b.offset + b.len === a.offset);

export function expand(terms: Term[], ruleId: string): string[] {
  // `neq`: the inverted compares a rule holds so far; one adjacent to them is written as a range (see Apart).
  if (terms.every((t) => t.length === 1)) {
    const text = single(terms);
    return text === undefined ? [] : [text];
  }
  let out: { text: string; fams: Fam[]; neq: Apart[] }[] = [{ text: '', fams: [], neq: [] }];
  for (const t of terms) {
    out = out.flatMap((prefix) =>
      t
        .filter((a) => !a.fam || !prefix.fams.some((f) => CONFLICTS[a.fam!].includes(f)))
        .map((a) => {
          const apart = a.apart && prefix.neq.some((n) => adjacent(n, a.apart!));
          const text = apart ? a.apart!.text : a.text;
          return {
            text: prefix.text ? `${prefix.text} ${text}` : text,
            fams: a.fam ? [...prefix.fams, a.fam] : prefix.fams,
            neq: a.apart && !apart ? [...prefix.neq, a.apart] : prefix.neq,
          };
        }),
    );
    if (out.length > MAX_EXPANSION) throw new CompileError(`rule ${ruleId}: condition expands to more than ${MAX_EXPANSION} nft rules`);
  }
  return out.map((x) => x.text);
}

/**
 * expand() of terms with one alternative each (most rules), without its per-term copies: a 10,000-rule chain is
 * compiled again for every change of it. undefined when two families conflict: the rule can never match.
 */
function single(terms: Term[]): string | undefined {
  let text = '';
  const fams: Fam[] = [];
  const neq: Apart[] = [];
  for (const [a] of terms as [Alt][]) {
    if (a.fam && fams.some((f) => CONFLICTS[a.fam!].includes(f))) return undefined;
    const apart = a.apart && neq.some((n) => adjacent(n, a.apart!));
    const t = apart ? a.apart!.text : a.text;
    text = text ? `${text} ${t}` : t;
    if (a.fam) fams.push(a.fam);
    if (a.apart && !apart) neq.push(a.apart);
  }
  return text;
}

function verdictOf(rule: PolicyRule, ctx: CompileContext): string | null {
  switch (rule.action) {
    case 'accept':
      return 'accept';
    case 'drop':
    case 'reject':
      return 'drop';
    case 'return':
      return 'return';
    case 'continue':
      return '';
    case 'jump':
      if (!rule.jumpChainId || !ctx.chainExists(rule.jumpChainId)) return null;
      return `jump ${chainName(rule.jumpChainId)}`;
    case 'rev_snat':
    case 'rev_dnat':
      return null; // applies only with a reverse binding, which bridge stages never have (simulate.ts agrees)
    default:
      throw new CompileError(`rule ${rule.id}: ${rule.action} is not supported on bridge or port filters`);
  }
}

export interface CompiledChain {
  chainId: string;
  name: string;
  /** Rule texts for `add rule … <name> <text>`, in order. */
  rules: string[];
  /** Sets the rules look up (created empty if missing; their elements come from the groups). */
  sets: SetDecl[];
  /** Chains this one jumps to (they must exist in the same transaction). */
  jumps: string[];
}

/** Compile one chain: its rules sorted by position, each with a counter and `comment "r=<rule id>"`. */
export function compileChain(chainId: string, rules: readonly PolicyRule[], ctx: CompileContext): CompiledChain {
  const sets = new Map<string, SetDecl>();
  const out: string[] = [];
  const jumps = new Set<string>();
  // What a cached rule's texts depend on besides the rule (see ruleCache).
  const ctxKey = ctx.router ? undefined : JSON.stringify([ctx.dropLog, ctx.acceptLog, ctx.marks]);
  for (const rule of [...rules].filter((r) => r.chainId === chainId).sort((a, b) => a.position - b.position)) {
    const cacheable =
      ctxKey !== undefined && rule.action !== 'jump' && !rule.condition.inPortIds?.length && !rule.condition.outPortIds?.length;
    const hit = cacheable ? ruleCache.get(rule) : undefined;
    if (hit && hit.ctxKey === ctxKey && hit.condition === rule.condition) {
      for (const d of hit.sets) sets.set(d.name, d);
      for (const line of hit.lines) out.push(line);
      continue;
    }
    const first = out.length;
    compileRule(rule, ctx, sets, out, jumps);
    if (cacheable) {
      ruleCache.set(rule, {
        ctxKey,
        condition: rule.condition,
        lines: out.slice(first),
        sets: sets.size ? conditionSets(rule.condition).flatMap((n) => sets.get(n) ?? []) : NO_SETS,
      });
    }
  }
  return { chainId, name: chainName(chainId), rules: out, sets: [...sets.values()], jumps: [...jumps] };
}

/**
 * The nft texts of one compiled rule, per rule object: a one-rule change recompiles its chain, and a 10,000-rule
 * chain took ~13 ms to compile again; the agent's store cache keeps an unchanged rule's object across passes (a
 * change replaces it), so only the changed rules compile. Reusing the same strings also lets chain-edit's diff compare
 * unchanged rules by identity. Only rules whose texts depend on nothing but the rule and the context's logging and
 * mark settings (the key) are cached: not port-id matches (macOf) nor jumps (chainExists), nor router chains.
 */
const NO_SETS: SetDecl[] = [];
const ruleCache = new WeakMap<PolicyRule, { ctxKey: string; condition: PolicyRule['condition']; lines: string[]; sets: SetDecl[] }>();

/** The set names a condition refers to (its groups), for ruleCache. */
function conditionSets(c: PolicyRule['condition']): string[] {
  const out: string[] = [];
  if (c.portGroupSrc !== undefined) out.push(portGroupSet(c.portGroupSrc));
  if (c.portGroupDst !== undefined) out.push(portGroupSet(c.portGroupDst));
  for (const g of [c.ipAddrGroupSrc, c.ipAddrGroupDst]) if (g !== undefined) out.push(addrGroupSet(g, 4), addrGroupSet(g, 6));
  return out;
}

/** Compile one rule of a bridge chain: its nft texts appended to `out`, its sets to `sets`, its jump to `jumps`. */
function compileRule(rule: PolicyRule, ctx: CompileContext, sets: Map<string, SetDecl>, out: string[], jumps: Set<string>): void {
  // Refused before anything compiles away: what the user wrote must not be silently ignored.
  const unsupported = unsupportedOnBridge(rule);
  if (unsupported) throw new CompileError(`rule ${rule.id}: ${unsupported.field} cannot be compiled: ${unsupported.why}`);
  const verdict = verdictOf(rule, ctx);
  if (verdict === null) return;
  const terms = conditionTerms(rule.condition, ctx, sets, rule.id);
  if (terms === null) return;
  if (rule.action === 'jump') jumps.add(rule.jumpChainId!);
  const tail = verdict ? `counter ${verdict} comment "r=${rule.id}"` : `counter comment "r=${rule.id}"`;
  // Not counted and commented `l=`: the counters stay one per rule (parseRuleCounters reads `r=`).
  const log =
    ctx.dropLog && verdict === 'drop'
      ? `limit rate ${ctx.dropLog.ratePerSecond}/second log prefix "${logPrefix('drop', rule.id)}" group ${ctx.dropLog.group} comment "l=${rule.id}"`
      : ctx.acceptLog && verdict === 'accept'
        ? `${ctx.router ? 'ct state new' : `meta mark & 0x${(ctx.marks?.newFlow ?? NEW_FLOW_MARK).toString(16)} != 0`} limit rate ${ctx.acceptLog.ratePerSecond}/second log prefix "${logPrefix('accept', rule.id)}" group ${ctx.acceptLog.group} comment "l=${rule.id}"`
        : undefined;
  for (const match of expand(terms, rule.id)) {
    if (log) out.push(match ? `${match} ${log}` : log);
    out.push(match ? `${match} ${tail}` : tail);
  }
}

/** Elements of an address group's sets, by family. */
export function addrGroupElements(g: Pick<IpAddrGroup, 'addresses'>): { v4: string[]; v6: string[] } {
  return { v4: g.addresses.filter((a) => !isV6(a)), v6: g.addresses.filter(isV6) };
}
