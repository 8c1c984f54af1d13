// A router's filters with NAT as a pure function (chains-lb.md §1.6 steps 5–7): the oracle of
// compile-router.ts (core/test/router-chains-kernel.test.ts compares them in the kernel). Condition matching is
// simulate.ts's (MidoNet's Condition.java); rule and chain evaluation is Chain.scala's with the NAT rule kinds.
//
// Deliberate differences from MidoNet, the same the compiler makes (core/datapath/README.md, "Router chains"):
// - the reverse translation of a reply is conntrack's, done whether or not the chain holds a reverse NAT rule; a
//   reverse rule only gives its verdict (it "applies" exactly when the connection was translated that way);
// - a forward NAT rule applies to packets of the forward direction only (a reply never starts a new binding);
// - a reply meets the inbound filter untranslated, the outbound filter with its destination restored (un-SNAT
//   happens before routing) and its source still translated (un-DNAT happens on the way out).
import type { NatTarget } from '../model/types.js';
import { PolicyError, Simulator, replyOf, type Packet, type PolicyView, type TraceStep } from './simulate.js';

export type RouterStage = 'router-inbound' | 'router-outbound';

export interface RouterFiltersOf {
  id: string;
  inboundFilterId?: string | undefined;
  outboundFilterId?: string | undefined;
  adminStateUp?: boolean;
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

type Outcome = 'accept' | 'drop' | 'reject' | 'continue' | 'return';

/** The target a NAT rule translates to: the first address and port of its (single) target, deterministic. */
function natTo(t: NatTarget | undefined, ruleId: string): { ip: string; port?: number | undefined } {
  if (!t) throw new PolicyError(`rule ${ruleId}: a NAT rule needs a target`);
  return { ip: t.addressFrom, port: t.portTo ? t.portFrom : undefined };
}

class RouterChains {
  constructor(readonly sim: Simulator) {}

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
      const matched = this.sim.matches(rule.condition, st.packet);
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
            const to = natTo(rule.natTargets?.[0], rule.id);
            if (rule.action === 'dnat') {
              nat.dnat = { ip: st.packet.dstIp!, port: st.packet.dstPort };
              st.packet = { ...st.packet, dstIp: to.ip, ...(to.port !== undefined ? { dstPort: to.port } : {}) };
            } else {
              nat.snat = { ip: st.packet.srcIp!, port: st.packet.srcPort };
              st.packet = { ...st.packet, srcIp: to.ip, ...(to.port !== undefined ? { srcPort: to.port } : {}) };
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
 * inbound filter, the route (`route(dstIp)` gives the router port it leaves by) and the outbound filter, then the
 * reply of what was delivered, the same way back with conntrack's reverse translation. `delivered` is what a TCP
 * connect or an echo observes; `request.packet` is what the destination sees.
 */
export function simulateRoutedExchange(
  view: PolicyView | Simulator,
  router: RouterFiltersOf,
  request: Packet,
  route: (dstIp: string) => string | undefined,
): { request: RoutedVerdict; reply?: RoutedVerdict; delivered: boolean } {
  const sim = view instanceof Simulator ? view : new Simulator(view);
  const chains = new RouterChains(sim);
  const nat: NatState = {};
  const pass = (p: Packet, reply: boolean): RoutedVerdict => {
    const trace: TraceStep[] = [];
    let packet: Packet = { ...p, returnFlow: reply };
    if (router.adminStateUp === false) return { verdict: 'drop', packet, trace };
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
    if (router.outboundFilterId) {
      const r = chains.process(router.outboundFilterId, 'out', packet, nat, reply, trace, 'router-outbound');
      if (r.verdict !== 'accept') return { verdict: r.verdict, stage: 'router-outbound', ruleId: r.ruleId, packet, trace };
      packet = r.packet;
    }
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
