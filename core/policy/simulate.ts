// MidoNet's chain semantics as a pure function: what the filters of a bridged path do with one packet, and which
// chains and rules it met on the way. It is the compiler's test oracle (compile.ts must agree with it in the
// kernel) and the core of `bees trace`. The semantics are MidoNet's (../shared/reference/chains-lb.md §1.2–1.6):
// Condition.java `matches`, Chain.scala `apply`/`process`, Simulator.scala `InAndOutFilters`.
import { contains, ipEquals, isIp, isMac, normalizeMac } from '../net/ip.js';
import { unsupportedOnBridge } from './support.js';
import type { Chain, Condition, IpAddrGroup, Port, PortRange, Rule } from '../model/types.js';

/** MidoNet's FragmentPolicy: which fragments a condition may match at all (checked before any inversion). */
export type FragmentPolicy = 'any' | 'header' | 'nonheader' | 'unfragmented';

/**
 * Condition fields MidoNet has and core/model/types.ts lacks yet (chains-lb.md §1.11): the per-field inversions and
 * the fragment policy. Kept here until the model grows them (issue 10 item 1); a plain Condition is a valid one.
 * `portGroupSrc` is read as the groups of the ingress port (for a bridged packet from a workload, the exterior
 * port where it entered, i.e. MidoNet's sticky `port_group_id` and `in_port_group_id` at once), `portGroupDst` as
 * the groups of the egress port (MidoNet's `out_port_group_id`).
 */
export interface PolicyCondition extends Condition {
  invInPorts?: boolean;
  invOutPorts?: boolean;
  invPortGroupSrc?: boolean;
  invPortGroupDst?: boolean;
  invIpAddrGroupSrc?: boolean;
  invIpAddrGroupDst?: boolean;
  invEthertype?: boolean;
  invNwProto?: boolean;
  invTpSrc?: boolean;
  invTpDst?: boolean;
  /** Default as MidoNet's REST API fills it: `header` when the condition has L4 ports, else `any`. */
  fragmentPolicy?: FragmentPolicy;
}

export interface PolicyRule extends Omit<Rule, 'condition'> {
  condition: PolicyCondition;
}

/** What the simulator needs of the topology: chains with their rules, ports (groups, filters), address groups. */
export interface PolicyView {
  chains: readonly Chain[];
  rules: readonly PolicyRule[];
  ipAddrGroups: readonly IpAddrGroup[];
  ports: readonly Pick<Port, 'id' | 'portGroupIds' | 'inboundFilterId' | 'outboundFilterId' | 'adminStateUp'>[];
}

export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;
export const ETH_ARP = 0x0806;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_SCTP = 132;
export const PROTO_ICMPV6 = 58;

/** One packet as a device's filters see it. */
export interface Packet {
  srcMac?: string | undefined;
  dstMac?: string | undefined;
  /** Defaults from the addresses: IPv4 or IPv6. */
  ethertype?: number | undefined;
  srcIp?: string | undefined;
  dstIp?: string | undefined;
  proto?: number | undefined;
  srcPort?: number | undefined;
  dstPort?: number | undefined;
  icmpType?: number | undefined;
  icmpCode?: number | undefined;
  /** The current device's ingress and egress port ids (the egress is unknown while flooding). */
  inPortId?: string | undefined;
  outPortId?: string | undefined;
  /** A reply (or related packet) of a connection whose forward packets were delivered (chains-lb.md §1.7). */
  returnFlow?: boolean | undefined;
  fragment?: 'none' | 'first' | 'later' | undefined;
  vlan?: number | undefined;
}

/** MidoNet's rule results; `reject` on a bridge or port acts as a drop (chains-lb.md §0.4). */
export type Result = 'accept' | 'drop' | 'reject' | 'continue' | 'return' | 'jump';

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Every rule looked at, in order, with whether its condition matched and what came of it. */
export interface TraceStep {
  stage?: StageName | undefined;
  chainId: string;
  /** Absent for entering a chain (or skipping one already visited). */
  ruleId?: string;
  depth: number;
  matched?: boolean;
  result: Result | 'enter' | 'skipped-visited' | 'missing';
}

/** nftables allows 16 nested jumps; the vmap's own jump and room for later stages leave 12 (chains-lb.md §2.6). */
export const MAX_JUMP_DEPTH = 12;

const rangeHas = (r: PortRange, v: number): boolean => v >= r.start && v <= r.end;

function ethertypeOf(p: Packet): number | undefined {
  if (p.ethertype !== undefined) return p.ethertype;
  const ip = p.srcIp ?? p.dstIp;
  if (!ip) return undefined;
  return ip.includes(':') ? ETH_IPV6 : ETH_IPV4;
}

/** MidoNet puts the ICMP type in the source-port slot and the code in the destination-port slot. */
function l4Slots(p: Packet): { src?: number | undefined; dst?: number | undefined } {
  if (p.proto === PROTO_ICMP || p.proto === PROTO_ICMPV6) return { src: p.icmpType, dst: p.icmpCode };
  if (p.proto === PROTO_TCP || p.proto === PROTO_UDP || p.proto === PROTO_SCTP) return { src: p.srcPort, dst: p.dstPort };
  return {};
}

export const defaultFragmentPolicy = (c: PolicyCondition): FragmentPolicy => c.fragmentPolicy ?? (c.tpSrc || c.tpDst ? 'header' : 'any');

function fragmentAccepted(policy: FragmentPolicy, f: Packet['fragment'] = 'none'): boolean {
  switch (policy) {
    case 'any':
      return true;
    case 'header':
      return f !== 'later';
    case 'nonheader':
      return f === 'later';
    case 'unfragmented':
      return f === 'none';
  }
}

/** `mac & mask == want & mask`, MidoNet's masked MAC match (no mask: exact); a packet without a MAC never matches. */
function macMatches(want: string, mask: string | undefined, mac: string | undefined): boolean {
  if (mac === undefined || !isMac(mac)) return false;
  const k = (mask === undefined ? 'ff:ff:ff:ff:ff:ff' : normalizeMac(mask)).split(':').map((x) => parseInt(x, 16));
  const a = normalizeMac(want).split(':');
  const b = normalizeMac(mac).split(':');
  return k.every((m, i) => (parseInt(a[i]!, 16) & m) === (parseInt(b[i]!, 16) & m));
}

function inSubnet(cidr: string, ip: string | undefined): boolean {
  if (!ip || !isIp(ip)) return false;
  if (cidr.includes(':') !== ip.includes(':')) return false;
  return contains(cidr.includes('/') ? cidr : `${cidr}/${cidr.includes(':') ? 128 : 32}`, ip);
}

export class Simulator {
  private readonly chains = new Map<string, Chain>();
  private readonly rulesOf = new Map<string, PolicyRule[]>();
  private readonly groups = new Map<string, IpAddrGroup>();
  private readonly ports = new Map<string, PolicyView['ports'][number]>();

  constructor(
    view: PolicyView,
    readonly maxDepth = MAX_JUMP_DEPTH,
  ) {
    for (const c of view.chains) this.chains.set(c.id, c);
    for (const r of view.rules) {
      const list = this.rulesOf.get(r.chainId) ?? [];
      list.push(r);
      this.rulesOf.set(r.chainId, list);
    }
    for (const list of this.rulesOf.values()) list.sort((a, b) => a.position - b.position);
    for (const g of view.ipAddrGroups) this.groups.set(g.id, g);
    for (const p of view.ports) this.ports.set(p.id, p);
  }

  /** The chain's rules in evaluation order. */
  rules(chainId: string): readonly PolicyRule[] {
    return this.rulesOf.get(chainId) ?? [];
  }

  port(id: string | undefined): PolicyView['ports'][number] | undefined {
    return id === undefined ? undefined : this.ports.get(id);
  }

  private groupsOf(portId: string | undefined): readonly string[] {
    return (portId && this.ports.get(portId)?.portGroupIds) || [];
  }

  private inAddrGroup(groupId: string, ip: string | undefined): boolean {
    // MidoNet's IPAddrGroup holds exact addresses; a CIDR in ours is honoured as a prefix (chains-lb.md §2.7).
    const g = this.groups.get(groupId);
    if (!g || !ip || !isIp(ip)) return false;
    return g.addresses.some((a) =>
      a.includes('/') ? inSubnet(a, ip) : isIp(a) && a.includes(':') === ip.includes(':') && ipEquals(a, ip),
    );
  }

  /** Condition.java `matches`: fragment policy first, then every field in MidoNet's order. */
  matches(c: PolicyCondition, p: Packet): boolean {
    if (!fragmentAccepted(defaultFragmentPolicy(c), p.fragment)) return false;
    const inv = (hit: boolean, invert?: boolean): boolean => hit !== !!invert;
    if (c.matchForwardFlow && p.returnFlow) return false;
    if (c.matchReturnFlow && !p.returnFlow) return false;
    if (c.portGroupSrc !== undefined && !inv(this.groupsOf(p.inPortId).includes(c.portGroupSrc), c.invPortGroupSrc)) return false;
    if (c.portGroupDst !== undefined && !inv(this.groupsOf(p.outPortId).includes(c.portGroupDst), c.invPortGroupDst)) return false;
    if (c.inPortIds?.length && !inv(p.inPortId !== undefined && c.inPortIds.includes(p.inPortId), c.invInPorts)) return false;
    if (c.outPortIds?.length && !inv(p.outPortId !== undefined && c.outPortIds.includes(p.outPortId), c.invOutPorts)) return false;
    if (c.ethertype !== undefined && !inv(ethertypeOf(p) === c.ethertype, c.invEthertype)) return false;
    if (c.dlSrc !== undefined && !inv(macMatches(c.dlSrc, c.dlSrcMask, p.srcMac), c.invDlSrc)) return false;
    if (c.dlDst !== undefined && !inv(macMatches(c.dlDst, c.dlDstMask, p.dstMac), c.invDlDst)) return false;
    if (c.nwProto !== undefined && !inv(p.proto === c.nwProto, c.invNwProto)) return false;
    if (c.nwSrc !== undefined && !inv(inSubnet(c.nwSrc, p.srcIp), c.invNwSrc)) return false;
    if (c.nwDst !== undefined && !inv(inSubnet(c.nwDst, p.dstIp), c.invNwDst)) return false;
    const l4 = l4Slots(p);
    // A port range matches a packet without ports (Condition.java): MidoNet's quirk, kept.
    if (c.tpSrc && !inv(l4.src === undefined || rangeHas(c.tpSrc, l4.src), c.invTpSrc)) return false;
    if (c.tpDst && !inv(l4.dst === undefined || rangeHas(c.tpDst, l4.dst), c.invTpDst)) return false;
    if (c.ipAddrGroupSrc !== undefined && !inv(this.inAddrGroup(c.ipAddrGroupSrc, p.srcIp), c.invIpAddrGroupSrc)) return false;
    if (c.ipAddrGroupDst !== undefined && !inv(this.inAddrGroup(c.ipAddrGroupDst, p.dstIp), c.invIpAddrGroupDst)) return false;
    return true;
  }

  /**
   * Chain.scala `process`: one filter. Decisive results (accept, drop, reject) are the outcome; anything else
   * (falling off, return) is ACCEPT.
   */
  process(chainId: string, p: Packet, trace: TraceStep[] = [], stage?: StageName): 'accept' | 'drop' | 'reject' {
    const r = this.apply(chainId, p, new Set(), 0, trace, stage);
    return r === 'drop' || r === 'reject' || r === 'accept' ? r : 'accept';
  }

  private apply(chainId: string, p: Packet, visited: Set<string>, depth: number, trace: TraceStep[], stage?: StageName): Result {
    if (depth > this.maxDepth) {
      throw new PolicyError(`chain ${chainId}: jumps nest deeper than ${this.maxDepth}`);
    }
    visited.add(chainId);
    trace.push({ stage, chainId, depth, result: 'enter' });
    for (const rule of this.rules(chainId)) {
      // What the compiler refuses is not guessed at here either (support.ts): no verdict the kernel would not give.
      const unsupported = unsupportedOnBridge(rule);
      if (unsupported)
        throw new PolicyError(`rule ${rule.id}: ${unsupported.field} is not supported on bridge or port filters: ${unsupported.why}`);
      const matched = this.matches(rule.condition, p);
      let result: Result = 'continue';
      if (matched) result = this.ruleResult(rule);
      trace.push({ stage, chainId, ruleId: rule.id, depth, matched, result });
      if (result === 'jump') {
        const target = rule.jumpChainId;
        if (!target || !this.chains.has(target)) {
          trace.push({ stage, chainId: target ?? '', depth: depth + 1, result: 'missing' });
          continue;
        }
        if (visited.has(target)) {
          // MidoNet skips a chain already visited in this filter's evaluation (not only loops).
          trace.push({ stage, chainId: target, depth: depth + 1, result: 'skipped-visited' });
          continue;
        }
        const r = this.apply(target, p, visited, depth + 1, trace, stage);
        if (r === 'return' || r === 'continue') continue;
        return r;
      }
      if (result !== 'continue') return result;
    }
    return 'continue';
  }

  /** What a matching rule yields (Rule.process: only if apply() says it applies). */
  private ruleResult(rule: PolicyRule): Result {
    switch (rule.action) {
      case 'accept':
      case 'drop':
      case 'reject':
      case 'return':
      case 'continue':
      case 'jump':
        return rule.action;
      case 'rev_snat':
      case 'rev_dnat':
        // Applies only when a reverse binding exists; bridge and port stages translate nothing, so: never.
        return 'continue';
      default:
        throw new PolicyError(`rule ${rule.id}: ${rule.action} is not simulated on bridge or port filters`);
    }
  }
}

/** The filters of a bridged packet, in MidoNet's order (chains-lb.md §1.6 steps 1–3 and 10). */
export type StageName = 'port-inbound' | 'bridge-inbound' | 'bridge-outbound' | 'port-outbound';
export const STAGE_ORDER: readonly StageName[] = ['port-inbound', 'bridge-inbound', 'bridge-outbound', 'port-outbound'];

/**
 * The rule id of a drop by an administratively down port, bridge or router (MidoNet: a down device drops all its
 * traffic). Also the id of the chain the agent binds to a down port's own stages (core/agent/plan.ts), so the
 * kernel's counter and log say `r=admin/down` as the simulator does. Stored ids cannot hold '/' (idSchema), so no
 * chain or rule of the topology shares it.
 */
export const ADMIN_DOWN = 'admin/down';

export interface BridgeFilters {
  id: string;
  inboundFilterId?: string;
  outboundFilterId?: string;
  adminStateUp?: boolean;
}

export interface Verdict {
  /** What happens to the packet: `reject` is reported as such but bridges drop it (no reject there). */
  verdict: 'accept' | 'drop' | 'reject';
  /** The stage that decided, when not accepted; with the chain whose rule did. */
  stage?: StageName | undefined;
  ruleId?: string | undefined;
  trace: TraceStep[];
}

/**
 * A packet bridged from exterior port `p.inPortId` to exterior port `p.outPortId` on `bridge`: the source port's
 * inbound filter, the bridge's inbound then outbound filters, the destination port's outbound filter. The first
 * stage whose result is not ACCEPT decides (Simulator.scala `InAndOutFilters`). The port ids of the packet stay
 * the same at every stage: on one bridge the ingress and egress ports are the exterior ports themselves.
 */
export function simulateBridged(view: PolicyView | Simulator, bridge: BridgeFilters, p: Packet): Verdict {
  const sim = view instanceof Simulator ? view : new Simulator(view);
  const trace: TraceStep[] = [];
  const src = sim.port(p.inPortId);
  const dst = sim.port(p.outPortId);
  if (p.vlan !== undefined) return { verdict: 'accept', trace }; // bridges skip their filters for tagged frames
  const stages: [StageName, string | undefined, boolean | undefined][] = [
    ['port-inbound', src?.inboundFilterId, src?.adminStateUp],
    ['bridge-inbound', bridge.inboundFilterId, bridge.adminStateUp],
    ['bridge-outbound', bridge.outboundFilterId, bridge.adminStateUp],
    ['port-outbound', dst?.outboundFilterId, dst?.adminStateUp],
  ];
  for (const [stage, chainId, up] of stages) {
    if (up === false) return { verdict: 'drop', stage, ruleId: ADMIN_DOWN, trace };
    if (!chainId) continue;
    const before = trace.length;
    const r = sim.process(chainId, p, trace, stage);
    if (r !== 'accept') {
      const decided = trace
        .slice(before)
        .reverse()
        .find((s) => s.ruleId && (s.result === 'drop' || s.result === 'reject'));
      return { verdict: r, stage, ruleId: decided?.ruleId, trace };
    }
  }
  return { verdict: 'accept', trace };
}

/**
 * A request and its reply across one bridge, as conntrack sees it: the reply is a return flow exactly when the
 * request was delivered (a dropped packet leaves no state, chains-lb.md §1.7 and §2.2). Returns both verdicts;
 * `delivered` is what a TCP connect or an echo would observe.
 */
export function simulateExchange(
  view: PolicyView | Simulator,
  bridge: BridgeFilters,
  request: Packet,
): {
  request: Verdict;
  reply?: Verdict;
  delivered: boolean;
} {
  const sim = view instanceof Simulator ? view : new Simulator(view);
  const req = simulateBridged(sim, bridge, { ...request, returnFlow: false });
  if (req.verdict !== 'accept') return { request: req, delivered: false };
  const reply = simulateBridged(sim, bridge, replyOf(request));
  return { request: req, reply, delivered: reply.verdict === 'accept' };
}

/** The reply of a packet: addresses, ports and in/out ports swapped; ICMP echo request → echo reply. */
export function replyOf(p: Packet): Packet {
  const r: Packet = {
    ...p,
    srcMac: p.dstMac,
    dstMac: p.srcMac,
    srcIp: p.dstIp,
    dstIp: p.srcIp,
    srcPort: p.dstPort,
    dstPort: p.srcPort,
    inPortId: p.outPortId,
    outPortId: p.inPortId,
    returnFlow: true,
  };
  if (p.proto === PROTO_ICMP && p.icmpType === 8) r.icmpType = 0;
  if (p.proto === PROTO_ICMPV6 && p.icmpType === 128) r.icmpType = 129;
  return r;
}
