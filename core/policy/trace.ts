// `bees trace` (issue 10 item 5): what the filters do with a packet between two workloads, from the topology alone.
// Resolves both ends (port id, workload address, or workload id), builds the packet, runs the simulator over the
// request and its reply, and names every chain and rule met on the way. Pure over a topology snapshot: the API
// route (core/api/routes.ts) lists the objects and calls traceTopology; the kernel's own counters (each compiled
// rule has one, commented `r=<rule id>`) tell what really happened.
import type { Bridge, Chain, IpAddrGroup, Port, Rule } from '../model/types.js';
import {
  ADMIN_DOWN,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  simulateExchange,
  type Packet,
  type StageName,
  type TraceStep,
  type Verdict,
} from './simulate.js';

export interface TraceRequest {
  src: string;
  dst: string;
  proto?: 'tcp' | 'udp' | 'icmp';
  /** Destination port (TCP/UDP); default 80. */
  port?: number;
  srcPort?: number;
}

export interface TraceTopology {
  ports: readonly Port[];
  bridges: readonly Bridge[];
  chains: readonly Chain[];
  rules: readonly Rule[];
  ipAddrGroups: readonly IpAddrGroup[];
}

export interface TraceEndpoint {
  portId: string;
  mac: string;
  ip: string;
  hostId?: string;
  interfaceName?: string;
  workloadId?: string;
}

export interface TraceHop {
  stage: StageName;
  /** The device whose filter it is: the port (inbound/outbound) or the bridge. */
  device: string;
  chainId: string;
  chainName?: string;
  ruleId?: string;
  depth: number;
  matched?: boolean;
  result: TraceStep['result'];
}

export interface TraceLeg {
  verdict: Verdict['verdict'];
  stage?: StageName;
  ruleId?: string;
  hops: TraceHop[];
}

export interface TraceResult {
  src: TraceEndpoint;
  dst: TraceEndpoint;
  bridge: { id: string; name: string };
  packet: Packet;
  request: TraceLeg;
  reply?: TraceLeg;
  delivered: boolean;
}

export class TraceError extends Error {
  constructor(
    message: string,
    readonly field: 'src' | 'dst' | 'proto' | 'port',
  ) {
    super(message);
    this.name = 'TraceError';
  }
}

const bare = (ip: string): string => ip.split('/')[0]!;

/** Candidate ports for one end: by id, by workload address, by workload id (workload ports only, for the latter two). */
function candidates(ports: readonly Port[], ref: string): Port[] {
  const byId = ports.filter((p) => p.id === ref);
  if (byId.length) return byId;
  const workload = ports.filter((p) => p.type === 'bridge' && !p.peerId);
  return workload.filter((p) => p.ips.some((ip) => bare(ip) === ref) || p.owner?.workloadId === ref);
}

const endpoint = (p: Port, ip: string): TraceEndpoint => ({
  portId: p.id,
  mac: p.mac,
  ip,
  ...(p.hostId ? { hostId: p.hostId } : {}),
  ...(p.interfaceName ? { interfaceName: p.interfaceName } : {}),
  ...(p.owner?.workloadId ? { workloadId: p.owner.workloadId } : {}),
});

export function traceTopology(topo: TraceTopology, req: TraceRequest): TraceResult {
  const proto = req.proto ?? 'tcp';
  if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new TraceError(`proto must be tcp, udp or icmp, not ${proto}`, 'proto');
  const port = req.port ?? 80;
  if (proto !== 'icmp' && (!Number.isInteger(port) || port < 1 || port > 65535))
    throw new TraceError(`port ${port} is not in 1–65535`, 'port');
  const srcs = candidates(topo.ports, req.src);
  const dsts = candidates(topo.ports, req.dst);
  if (!srcs.length) throw new TraceError(`no port, workload address or workload id "${req.src}"`, 'src');
  if (!dsts.length) throw new TraceError(`no port, workload address or workload id "${req.dst}"`, 'dst');
  // Tenants may reuse addresses: an address names a port once the other end fixes the bridge.
  const pairs = srcs.flatMap((s) =>
    dsts.filter((d) => d.id !== s.id && d.bridgeId && d.bridgeId === s.bridgeId).map((d) => [s, d] as const),
  );
  if (pairs.length === 0) {
    throw new TraceError(`"${req.src}" and "${req.dst}" share no network (routed paths are not traced yet)`, 'dst');
  }
  if (pairs.length > 1) {
    throw new TraceError(`"${req.src}" → "${req.dst}" is ambiguous (${pairs.length} pairs of ports); name the ports by id`, 'src');
  }
  const [s, d] = pairs[0]!;
  const bridge = topo.bridges.find((b) => b.id === s.bridgeId);
  if (!bridge) throw new TraceError(`network ${s.bridgeId} of port ${s.id} does not exist`, 'src');
  const ipOf = (p: Port, ref: string): string => {
    const ips = p.ips.map(bare);
    return ips.includes(ref) ? ref : (ips.find((ip) => !ip.includes(':')) ?? ips[0] ?? '');
  };
  const srcIp = ipOf(s, req.src);
  const dstIp = ipOf(d, req.dst);
  if (!srcIp || !dstIp) throw new TraceError(`${!srcIp ? req.src : req.dst} has no address`, !srcIp ? 'src' : 'dst');
  const packet: Packet = {
    srcMac: s.mac,
    dstMac: d.mac,
    srcIp,
    dstIp,
    inPortId: s.id,
    outPortId: d.id,
    ...(proto === 'icmp'
      ? { proto: PROTO_ICMP, icmpType: 8, icmpCode: 0 }
      : { proto: proto === 'tcp' ? PROTO_TCP : PROTO_UDP, srcPort: req.srcPort ?? 40000, dstPort: port }),
  };
  const view = { chains: topo.chains, rules: topo.rules, ipAddrGroups: topo.ipAddrGroups, ports: topo.ports };
  const x = simulateExchange(view, bridge, packet);
  const names = new Map(topo.chains.map((c) => [c.id, c.name]));
  const leg = (v: Verdict, from: Port, to: Port): TraceLeg => ({
    verdict: v.verdict,
    ...(v.stage ? { stage: v.stage } : {}),
    ...(v.ruleId ? { ruleId: v.ruleId } : {}),
    hops: v.trace.map((st) => ({
      stage: st.stage!,
      device: st.stage === 'port-inbound' ? `port ${from.id}` : st.stage === 'port-outbound' ? `port ${to.id}` : `bridge ${bridge.name}`,
      chainId: st.chainId,
      ...(names.has(st.chainId) ? { chainName: names.get(st.chainId)! } : {}),
      ...(st.ruleId ? { ruleId: st.ruleId } : {}),
      depth: st.depth,
      ...(st.matched !== undefined ? { matched: st.matched } : {}),
      result: st.result,
    })),
  });
  return {
    src: endpoint(s, srcIp),
    dst: endpoint(d, dstIp),
    bridge: { id: bridge.id, name: bridge.name },
    packet,
    request: leg(x.request, s, d),
    ...(x.reply ? { reply: leg(x.reply, d, s) } : {}),
    delivered: x.delivered,
  };
}

/** A table for people: the path, one line per chain entered and rule looked at, and the verdicts. */
export function formatTrace(r: TraceResult): string {
  const p = r.packet;
  const what = p.proto === PROTO_ICMP ? 'icmp echo' : `${p.proto === PROTO_TCP ? 'tcp' : 'udp'} ${p.srcPort} → ${p.dstPort}`;
  const lines = [`${r.src.ip} (port ${r.src.portId}) → ${r.dst.ip} (port ${r.dst.portId}) on network ${r.bridge.name}: ${what}`];
  const leg = (title: string, l: TraceLeg): void => {
    const why = l.ruleId === ADMIN_DOWN ? ' (administratively down)' : l.ruleId ? ` by rule ${l.ruleId}` : '';
    lines.push(`${title}: ${l.verdict.toUpperCase()}${l.stage ? ` at ${l.stage}` : ''}${why}`);
    if (!l.hops.length) lines.push('  (no filters)');
    for (const h of l.hops) {
      const pad = '  '.repeat(h.depth + 1);
      if (h.result === 'enter') lines.push(`${pad}${h.stage.padEnd(15)} ${h.device}  chain ${h.chainName ?? ''} (${h.chainId})`);
      else if (h.ruleId) lines.push(`${pad}  rule ${h.ruleId}: ${h.matched ? `matched → ${h.result}` : 'no match'}`);
      else lines.push(`${pad}  chain ${h.chainId}: ${h.result}`);
    }
  };
  leg('request', r.request);
  if (r.reply) leg('reply', r.reply);
  lines.push(r.delivered ? 'verdict: delivered' : 'verdict: not delivered');
  return lines.join('\n');
}
