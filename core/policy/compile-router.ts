// A router's MidoNet chains compiled for its own namespace (`table inet bees-r`, core/datapath/nft/router-chains.ts;
// ../shared/reference/chains-lb.md §1.6 steps 5–7, §2.4, §2.6). Pure: model in, rule texts out.
//
// MidoNet evaluates a router's inbound filter ("pre-routing") before the route lookup and its outbound filter
// ("post-routing") after it, with NAT rules inline. nftables splits filtering from NAT (NAT chains see only the
// first packet of a connection, and a NAT statement ends its chain), so each MidoNet chain is compiled twice:
// - a filter view `f-<id>`, run on every packet before the NAT of its hook (prerouting at mangle priority for the
//   inbound filter, forward for the outbound one), so its conditions see the packet as MidoNet's rules did, before
//   translation. A forward NAT rule there is its condition on original-direction packets with the rule's
//   flowAction as verdict; a reverse NAT rule is its condition on reply packets of a connection conntrack translated
//   that way ("applies only if a reverse binding exists") — conntrack itself undoes the translation;
// - a NAT view `ni-<id>` (inbound, dstnat) or `no-<id>` (outbound, srcnat), run on a connection's first packet:
//   forward NAT rules as nft `dnat`/`snat`, decisive filter rules as `accept` (they end MidoNet's chain, so no later
//   NAT rule may translate), return and jump as such, reverse NAT rules left out (NAT chains never see replies).
// Differences from MidoNet, all refused or documented rather than silently wrong: DNAT only in the inbound chain
// and SNAT only in the outbound one (the only hooks nftables translates on); one NAT target per rule; a NAT with
// flowAction continue ends the NAT view (nft NAT is terminal), while the filter view goes on with later rules
// matching untranslated headers; no port or address groups yet.
import type { Chain, NatTarget } from '../model/types.js';
import { CompileError, conditionTerms, expand, type CompileContext } from './compile.js';
import type { PolicyRule } from './simulate.js';

export type RouterHook = 'in' | 'out';

/** The nft chain names of a MidoNet chain in a router namespace. */
export const filterViewName = (chainId: string): string => `f-${chainId}`;
export const natViewName = (chainId: string, hook: RouterHook): string => `n${hook === 'in' ? 'i' : 'o'}-${chainId}`;

/** A router's chains as its namespace holds them. */
export interface RouterFilters {
  /** nft chain name → rule texts, in order. */
  chains: Record<string, string[]>;
  /** The router's inbound and outbound filter chain ids, when set and compiled. */
  inbound?: string;
  outbound?: string;
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
}

const FLOW_VERDICT = { accept: 'accept', continue: '', return: 'return' } as const;

function targetText(t: NatTarget): string {
  const addr = t.addressFrom === t.addressTo ? t.addressFrom : `${t.addressFrom}-${t.addressTo}`;
  if (!t.portTo) return addr;
  return `${addr}:${t.portFrom === t.portTo ? t.portFrom : `${t.portFrom}-${t.portTo}`}`;
}

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

/** Compile one chain's filter view. */
function filterView(chainId: string, src: RouterChainSource, ctx: CompileContext): { rules: string[]; jumps: string[] } {
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
        verdict = FLOW_VERDICT[rule.flowAction ?? 'accept'];
        prefix = 'ct direction original';
        break;
      case 'rev_dnat':
      case 'rev_snat':
        verdict = FLOW_VERDICT[rule.flowAction ?? 'accept'];
        prefix = `ct direction reply ct status ${rule.action === 'rev_dnat' ? 'dnat' : 'snat'}`;
        break;
    }
    const terms = conditionTerms(rule.condition, ctx, new Map(), rule.id);
    if (terms === null) continue;
    const tail = ['counter', verdict, `comment "r=${rule.id}"`].filter(Boolean).join(' ');
    for (const match of expand(terms, rule.id)) rules.push([prefix, match, tail].filter(Boolean).join(' '));
  }
  return { rules, jumps };
}

/** Compile one chain's NAT view for a hook. */
function natView(
  chainId: string,
  hook: RouterHook,
  src: RouterChainSource,
  ctx: CompileContext,
  addresses: Set<string>,
): { rules: string[]; jumps: string[] } {
  const rules: string[] = [];
  const jumps: string[] = [];
  for (const rule of sorted(src.rulesByChain.get(chainId))) {
    let stmt: string;
    switch (rule.action) {
      case 'accept':
      case 'drop':
      case 'reject':
        stmt = 'accept'; // decided: no later rule of MidoNet's chain translates this connection
        break;
      case 'return':
        stmt = 'return';
        break;
      case 'continue':
      case 'rev_dnat':
      case 'rev_snat':
        continue;
      case 'jump':
        if (!rule.jumpChainId || !src.chains.has(rule.jumpChainId)) continue;
        stmt = `jump ${natViewName(rule.jumpChainId, hook)}`;
        jumps.push(rule.jumpChainId);
        break;
      case 'dnat':
      case 'snat': {
        const want = rule.action === 'dnat' ? 'in' : 'out';
        if (hook !== want)
          throw new CompileError(
            `rule ${rule.id}: ${rule.action} is only supported in a router's ${want === 'in' ? 'inbound' : 'outbound'} chain`,
          );
        const targets = rule.natTargets ?? [];
        if (targets.length !== 1) throw new CompileError(`rule ${rule.id}: exactly one NAT target is supported`);
        const t = targets[0]!;
        if (rule.action === 'snat') for (const a of addressRange(t.addressFrom, t.addressTo)) addresses.add(a);
        else if (rule.condition.nwDst && !rule.condition.invNwDst && /^[\d.]+(\/32)?$/.test(rule.condition.nwDst))
          addresses.add(rule.condition.nwDst.replace(/\/32$/, '')); // a floating IP: the host must route it here
        // nft refuses a port translation without a protocol that has ports.
        const ported = t.portTo ? 'meta l4proto { tcp, udp } ' : '';
        stmt = `${ported}${rule.action} ip to ${targetText(t)}`;
        break;
      }
    }
    const terms = conditionTerms(rule.condition, ctx, new Map(), rule.id);
    if (terms === null) continue;
    const tail = `${stmt} comment "r=${rule.id}"`;
    for (const match of expand(terms, rule.id)) rules.push(match ? `${match} ${tail}` : tail);
  }
  return { rules, jumps };
}

/** The chains compiled for a broken chain: fail closed (drop everything, counted). */
const BROKEN = ['counter drop comment "r=broken"'];

/**
 * Compile a router's inbound and outbound filters (and every chain they jump to) for its namespace. Undefined when
 * the router has no filter.
 */
export function compileRouterFilters(
  router: { inboundFilterId?: string | undefined; outboundFilterId?: string | undefined },
  src: RouterChainSource,
): RouterFilters | undefined {
  if (!router.inboundFilterId && !router.outboundFilterId) return undefined;
  const ctx: CompileContext = {
    macOf: () => undefined,
    chainExists: (id) => src.chains.has(id),
    router: { ifnameOf: (id) => src.ifnameOf(id) },
  };
  const out: RouterFilters = { chains: {}, addresses: [], errors: [] };
  const addresses = new Set<string>();
  const hooks: [RouterHook, string | undefined][] = [
    ['in', router.inboundFilterId],
    ['out', router.outboundFilterId],
  ];
  for (const [hook, top] of hooks) {
    if (!top) continue;
    const closure: string[] = [];
    const queue = [top];
    const filters: Record<string, string[]> = {};
    const nats: Record<string, string[]> = {};
    let broken: string | undefined;
    while (queue.length) {
      const id = queue.shift()!;
      if (closure.includes(id)) continue;
      closure.push(id);
      try {
        const f = filterView(id, src, ctx);
        const n = natView(id, hook, src, ctx, addresses);
        filters[filterViewName(id)] = f.rules;
        nats[natViewName(id, hook)] = n.rules;
        queue.push(...f.jumps, ...n.jumps);
      } catch (e) {
        broken = `chain ${id}: ${(e as Error).message}`;
        break;
      }
    }
    if (broken) {
      // The whole filter fails closed: its top chain drops everything until its rules compile again.
      out.errors.push(broken);
      out.chains[filterViewName(top)] = BROKEN;
      out.chains[natViewName(top, hook)] = [];
    } else {
      Object.assign(out.chains, filters, nats);
    }
    out[hook === 'in' ? 'inbound' : 'outbound'] = top;
  }
  out.addresses = [...addresses].sort();
  return out;
}
