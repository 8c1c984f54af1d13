// A router's filters with NAT as a pure function (chains-lb.md §1.6 steps 4–8): the oracle of
// compile-router.ts (core/test/router-chains-kernel.test.ts compares them in the kernel). Condition matching is
// simulate.ts's (MidoNet's Condition.java); rule and chain evaluation is Chain.scala's with the NAT rule kinds.
//
// Order, as MidoNet's: the inbound filter of the router port the packet enters by, the router's inbound filter, the
// route, the router's outbound filter, the outbound filter of the router port it leaves by (after the translation).
//
// Deliberate differences from MidoNet, the same the compiler makes (core/datapath/README.md, "Router chains"):
// - the reverse translation of a reply is conntrack's, done whether or not the chain holds a reverse NAT rule; a
//   reverse rule only gives its verdict (it "applies" exactly when the connection was translated that way);
// - a forward NAT rule applies to packets of the forward direction only (a reply never starts a new binding);
// - a reply meets the inbound filters untranslated, the outbound filters with its destination restored (un-SNAT
//   happens before routing) and its source still translated (un-DNAT happens on the way out);
// - the outbound filter of the router port a packet leaves by sees it as the router's outbound filter did, before
//   that filter's SNAT (nftables rejects only up to the forward hook; NAT is applied after it);
// - forward NAT in a router port's filter is refused: that port's filter drops everything (as compiled);
// - port groups in a router are their members: a packet entering (leaving) by a member router port, or coming from
//   (going to) an address of a member bridge port.
import type { NatTarget, Port } from '../model/types.js';
import { ipEquals, isIp } from '../net/ip.js';
import { isDynamicNat } from './compile-router.js';
import {
  ADMIN_DOWN,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  PolicyError,
  Simulator,
  replyOf,
  type Packet,
  type PolicyCondition,
  type PolicyRule,
  type PolicyView,
  type TraceStep,
} from './simulate.js';

export type RouterStage = 'router-port-inbound' | 'router-inbound' | 'router-outbound' | 'router-port-outbound';

export interface RouterFiltersOf {
  id: string;
  inboundFilterId?: string | undefined;
  outboundFilterId?: string | undefined;
  adminStateUp?: boolean;
}

/** The topology a router simulation needs: a PolicyView whose ports may say their type and addresses (groups). */
export interface RouterPolicyView extends Omit<PolicyView, 'ports'> {
  ports: readonly (PolicyView['ports'][number] & Partial<Pick<Port, 'type' | 'ips'>>)[];
}

/** The connection a packet belongs to, as far as the router translated it. */
export interface NatState {
  dnat?: { ip: string; port?: number | undefined } | undefined;
  snat?: { ip: string; port?: number | undefined } | undefined;
}

export interface RoutedVerdict {
  verdict: 'accept' | 'drop' | 'reject';
  stage?: RouterStage | undefined;
  ruleId?: string | undefined;
  /** The packet as it leaves the router (translated; its outPortId the route's). */
  packet: Packet;
  trace: TraceStep[];
}

/** A translation a NAT rule may pick: an address of one of its targets, and a port when the target has ports. */
export interface NatChoice {
  ip: string;
  port?: number | undefined;
}

export interface RoutedOptions {
  /**
   * Which translation a forward NAT rule picks (the kernel picks a target at random): default the first address and
   * port of the first target. A caller enumerating every outcome passes each in turn.
   */
  choose?: (rule: PolicyRule, targets: readonly NatTarget[]) => NatChoice;
}

type Outcome = 'accept' | 'drop' | 'reject' | 'continue' | 'return';

const firstChoice = (_rule: PolicyRule, targets: readonly NatTarget[]): NatChoice => {
  const t = targets[0]!;
  return { ip: t.addressFrom, port: t.portTo ? t.portFrom : undefined };
};

const bare = (ip: string): string => (ip.includes('/') ? ip.slice(0, ip.indexOf('/')) : ip);
const sameIp = (a: string, b: string | undefined): boolean =>
  b !== undefined && isIp(a) && isIp(b) && a.includes(':') === b.includes(':') && ipEquals(a, b);

class RouterChains {
  readonly sim: Simulator;
  private readonly ports: RouterPolicyView['ports'];
  private readonly choose: NonNullable<RoutedOptions['choose']>;

  constructor(view: RouterPolicyView, opts: RoutedOptions) {
    this.sim = new Simulator(view);
    this.ports = view.ports;
    this.choose = opts.choose ?? firstChoice;
  }

  port(id: string | undefined) {
    return id === undefined ? undefined : this.ports.find((p) => p.id === id);
  }

  /** A port group in a router: entering (leaving) by a member router port, or from (to) a member bridge port's address. */
  private inGroup(groupId: string, portId: string | undefined, ip: string | undefined): boolean {
    for (const p of this.ports) {
      if (!p.portGroupIds?.includes(groupId)) continue;
      if (p.type === 'router' ? p.id === portId : (p.ips ?? []).some((a) => sameIp(bare(a), ip))) return true;
    }
    return false;
  }

  /** Condition.java `matches`, the port groups read as a router reads them. */
  matches(c: PolicyCondition, p: Packet): boolean {
    const { portGroupSrc, invPortGroupSrc, portGroupDst, invPortGroupDst, ...rest } = c;
    if (!this.sim.matches(rest, p)) return false;
    if (portGroupSrc !== undefined && this.inGroup(portGroupSrc, p.inPortId, p.srcIp) === !!invPortGroupSrc) return false;
    if (portGroupDst !== undefined && this.inGroup(portGroupDst, p.outPortId, p.dstIp) === !!invPortGroupDst) return false;
    return true;
  }

  /** Whether a router port's filter holds forward NAT (in it or a chain it jumps to): the compiler refuses it. */
  portFilterBroken(chainId: string): boolean {
    const seen = new Set<string>();
    const queue = [chainId];
    while (queue.length) {
      const id = queue.pop()!;
      if (seen.has(id)) continue;
      seen.add(id);
      for (const r of this.sim.rules(id)) {
        if (r.action === 'dnat' || r.action === 'snat') return true;
        if (r.action === 'jump' && r.jumpChainId) queue.push(r.jumpChainId);
      }
    }
    return false;
  }

  /** Chain.scala `process` for one router filter, with NAT: the packet may come out translated. */
  process(chainId: string, hook: 'in' | 'out', p: Packet, nat: NatState, reply: boolean, trace: TraceStep[], stage: RouterStage) {
    const state = { packet: { ...p }, ruleId: undefined as string | undefined };
    const r = this.apply(chainId, hook, state, nat, reply, new Set(), 0, trace, stage);
    const verdict: RoutedVerdict['verdict'] = r === 'drop' || r === 'reject' ? r : 'accept';
    return { verdict, packet: state.packet, ruleId: state.ruleId };
  }

  private apply(
    chainId: string,
    hook: 'in' | 'out',
    st: { packet: Packet; ruleId: string | undefined },
    nat: NatState,
    reply: boolean,
    visited: Set<string>,
    depth: number,
    trace: TraceStep[],
    stage: RouterStage,
  ): Outcome {
    if (depth > this.sim.maxDepth) throw new PolicyError(`chain ${chainId}: jumps nest deeper than ${this.sim.maxDepth}`);
    visited.add(chainId);
    trace.push({ chainId, depth, result: 'enter' });
    for (const rule of this.sim.rules(chainId)) {
      const matched = this.matches(rule.condition, st.packet);
      let result: Outcome | 'jump' = 'continue';
      if (matched) {
        switch (rule.action) {
          case 'accept':
          case 'drop':
          case 'reject':
          case 'return':
          case 'continue':
          case 'jump':
            result = rule.action;
            break;
          case 'dnat':
          case 'snat': {
            if (reply) break; // forward NAT rules bind forward flows only
            if ((rule.action === 'dnat') !== (hook === 'in'))
              throw new PolicyError(`rule ${rule.id}: ${rule.action} is not supported in this router chain`);
            const targets = rule.natTargets ?? [];
            if (targets.length === 0) throw new PolicyError(`rule ${rule.id}: a NAT rule needs a target`);
            const proto = st.packet.proto;
            const ported = proto === PROTO_TCP || proto === PROTO_UDP;
            // MidoNet's dynamic NAT (several targets, or ports) translates TCP, UDP and ICMP only; else it does not apply.
            if (isDynamicNat(targets) && !ported && proto !== PROTO_ICMP) break;
            const to = this.choose(rule, targets);
            const port = ported ? to.port : undefined;
            if (rule.action === 'dnat') {
              nat.dnat = { ip: st.packet.dstIp!, port: st.packet.dstPort };
              st.packet = { ...st.packet, dstIp: to.ip, ...(port !== undefined ? { dstPort: port } : {}) };
            } else {
              nat.snat = { ip: st.packet.srcIp!, port: st.packet.srcPort };
              st.packet = { ...st.packet, srcIp: to.ip, ...(port !== undefined ? { srcPort: port } : {}) };
            }
            result = rule.flowAction ?? 'accept';
            break;
          }
          case 'rev_dnat':
          case 'rev_snat':
            // Applies only when this connection was translated that way; conntrack does the translating.
            if (reply && (rule.action === 'rev_dnat' ? nat.dnat : nat.snat)) result = rule.flowAction ?? 'accept';
            break;
        }
      }
      trace.push({ stage: undefined, chainId, ruleId: rule.id, depth, matched, result });
      if (result === 'jump') {
        const target = rule.jumpChainId;
        if (!target || visited.has(target)) continue;
        const r = this.apply(target, hook, st, nat, reply, visited, depth + 1, trace, stage);
        if (r === 'return' || r === 'continue') continue;
        return r;
      }
      if (result !== 'continue') {
        if (result === 'drop' || result === 'reject') st.ruleId = rule.id;
        return result;
      }
    }
    return 'continue';
  }
}

/**
 * One connection through router `router`: the request (its `inPortId` the router port it enters by) through the
 * inbound filters, the route (`route(dstIp)` gives the router port it leaves by) and the outbound filters, then the
 * reply of what was delivered, the same way back with conntrack's reverse translation. `delivered` is what a TCP
 * connect or an echo observes; `request.packet` is what the destination sees.
 */
export function simulateRoutedExchange(
  view: RouterPolicyView,
  router: RouterFiltersOf,
  request: Packet,
  route: (dstIp: string) => string | undefined,
  opts: RoutedOptions = {},
): { request: RoutedVerdict; reply?: RoutedVerdict; delivered: boolean } {
  const chains = new RouterChains(view, opts);
  const nat: NatState = {};
  const pass = (p: Packet, reply: boolean): RoutedVerdict => {
    const trace: TraceStep[] = [];
    let packet: Packet = { ...p, returnFlow: reply };
    if (router.adminStateUp === false) return { verdict: 'drop', packet, trace };
    const portFilter = (stage: RouterStage, chainId: string | undefined, seen: Packet = packet): RoutedVerdict | undefined => {
      if (!chainId) return undefined;
      if (chains.portFilterBroken(chainId)) return { verdict: 'drop', stage, ruleId: 'broken', packet, trace };
      const r = chains.process(chainId, stage === 'router-port-inbound' ? 'in' : 'out', seen, nat, reply, trace, stage);
      return r.verdict === 'accept' ? undefined : { verdict: r.verdict, stage, ruleId: r.ruleId, packet, trace };
    };
    // A router port that is administratively down drops all it would carry (the agent drops at the port's leg).
    if (chains.port(packet.inPortId)?.adminStateUp === false)
      return { verdict: 'drop', stage: 'router-port-inbound', ruleId: ADMIN_DOWN, packet, trace };
    const pin = portFilter('router-port-inbound', chains.port(packet.inPortId)?.inboundFilterId);
    if (pin) return pin;
    if (router.inboundFilterId) {
      const r = chains.process(router.inboundFilterId, 'in', packet, nat, reply, trace, 'router-inbound');
      if (r.verdict !== 'accept') return { verdict: r.verdict, stage: 'router-inbound', ruleId: r.ruleId, packet, trace };
      packet = r.packet;
    }
    // A reply's destination is restored before routing (un-SNAT at prerouting).
    if (reply && nat.snat) packet = { ...packet, dstIp: nat.snat.ip, ...(nat.snat.port !== undefined ? { dstPort: nat.snat.port } : {}) };
    const out = route(packet.dstIp ?? '');
    if (out === undefined) return { verdict: 'drop', packet, trace };
    packet = { ...packet, outPortId: out };
    // The outbound port filter runs on forward, as the router's outbound filter view does: before the SNAT and the
    // un-DNAT of postrouting (nftables can reject only up to forward).
    const routed = packet;
    if (router.outboundFilterId) {
      const r = chains.process(router.outboundFilterId, 'out', packet, nat, reply, trace, 'router-outbound');
      if (r.verdict !== 'accept') return { verdict: r.verdict, stage: 'router-outbound', ruleId: r.ruleId, packet, trace };
      packet = r.packet;
    }
    const pout = portFilter('router-port-outbound', chains.port(out)?.outboundFilterId, routed);
    if (pout) return pout;
    // After the filters, as in the kernel: the leg's drop is in the bridge, which the packet reaches last.
    if (chains.port(out)?.adminStateUp === false)
      return { verdict: 'drop', stage: 'router-port-outbound', ruleId: ADMIN_DOWN, packet, trace };
    // And its source on the way out (un-DNAT at postrouting).
    if (reply && nat.dnat) packet = { ...packet, srcIp: nat.dnat.ip, ...(nat.dnat.port !== undefined ? { srcPort: nat.dnat.port } : {}) };
    return { verdict: 'accept', packet, trace };
  };
  const req = pass({ ...request, returnFlow: false }, false);
  if (req.verdict !== 'accept') return { request: req, delivered: false };
  const back = replyOf(req.packet);
  const reply = pass({ ...back, inPortId: req.packet.outPortId, outPortId: undefined }, true);
  return { request: req, reply, delivered: reply.verdict === 'accept' };
}
