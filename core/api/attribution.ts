// Attribution over REST (issue 10 item 5): what the kernel of a port's host did with its packets. The per-rule
// counters of every chain on the port's path (its own filters, its bridge's, and the chains they jump to), read in
// one nft listing, and the drops logged for the port (core/datapath/flow-log.ts), newest last.
//
// Only the agent of the host a port is bound to can read them (they live in that host's kernel). An API served
// elsewhere (another host's agent, a standalone `bees api`) answers 409 naming the host and how to ask it, rather
// than proxying: agents' APIs are unix sockets by default, and a proxy would need every agent's address and
// credentials in the store. A counter belongs to a chain, and one chain may filter several ports of the host
// (security groups share theirs): each rule says how many local ports share it.
import type { Port, Rule } from '../model/types.js';
import type { StageName } from '../policy/simulate.js';
import { TopologyError } from '../topology/errors.js';
import type { Topology } from '../topology/service.js';
import { idParams, route, type ApiRoute } from './routes.js';
import type { TraceResult } from '../policy/trace.js';
import type { HostObservation, KernelLeg, ProbeSpec } from '../agent/probe.js';

/** What an agent gives the API to read its kernel (core/agent/agent.ts makes it). */
export interface LocalAttribution {
  hostId: string;
  /** Per-rule counters of every compiled chain on this host: one nft listing. */
  ruleCounters(): Promise<{ chainId: string; ruleId: string; packets: number; bytes: number }[]>;
  /** Logged packets to or from a host interface, after sequence number `since`. */
  flowRecords(ifname: string, since?: number): unknown[];
  /** Whether the flow log is read at all (NFLOG may be unavailable), and messages the kernel could not queue. */
  flowLogState(): { running: boolean; lost: number; group: number };
}

export interface RuleCounterOut {
  stage: StageName;
  chainId: string;
  chainName?: string;
  ruleId: string;
  packets: number;
  bytes: number;
  /** Local ports whose path holds this chain: the counter is theirs together. */
  sharedBy: number;
}

export interface PortCounters {
  portId: string;
  hostId: string;
  interfaceName: string;
  rules: RuleCounterOut[];
  /** Drops logged for the port (rate-limited per rule: a lower bound) and messages the kernel could not queue. */
  drops: { logged: number; lost: number; logging: boolean };
}

/** The stages of a port's path and the chain each starts at. */
function rootsOf(p: Port, bridge: { inboundFilterId?: string; outboundFilterId?: string } | undefined): [StageName, string][] {
  const out: [StageName, string | undefined][] = [
    ['port-inbound', p.inboundFilterId],
    ['bridge-inbound', bridge?.inboundFilterId],
    ['bridge-outbound', bridge?.outboundFilterId],
    ['port-outbound', p.outboundFilterId],
  ];
  return out.filter((x): x is [StageName, string] => x[1] !== undefined);
}

/** A chain and every chain it jumps to, in the order met. */
function closure(root: string, rules: readonly Rule[]): string[] {
  const seen: string[] = [];
  const queue = [root];
  while (queue.length) {
    const id = queue.shift()!;
    if (seen.includes(id)) continue;
    seen.push(id);
    for (const r of rules) if (r.chainId === id && r.action === 'jump' && r.jumpChainId) queue.push(r.jumpChainId);
  }
  return seen;
}

async function localPort(topology: Topology, local: LocalAttribution | undefined, id: string, what: string): Promise<Port> {
  const p = await topology.get('Port', id);
  if (p.type !== 'bridge' || !p.bridgeId)
    throw new TopologyError('invalid', `port ${id} is a router port: ${what} are kept for bridge ports`, 'id');
  if (!p.hostId || !p.interfaceName)
    throw new TopologyError('conflict', `port ${id} is not bound to a host: nothing has reached a kernel`, 'id');
  if (!local || p.hostId !== local.hostId) {
    const host = await topology.get('Host', p.hostId).catch(() => undefined);
    const where = host ? `host ${host.name} (${host.id}, ${host.addresses.join(', ')})` : `host ${p.hostId}`;
    throw new TopologyError(
      'conflict',
      `port ${id} is bound on ${where}; its ${what} live in that host's kernel: ask that host's agent ` +
        `(bees --api <its API, unix:/run/bees/api.sock on that host> port ${what === 'counters' ? 'counters' : 'drops'} ${id})`,
      'id',
    );
  }
  return p;
}

export function attributionRoutes(topology: Topology, local: LocalAttribution | undefined): ApiRoute[] {
  return [
    route({
      method: 'GET',
      url: '/v1/ports/:id/counters',
      operationId: 'portCounters',
      tag: 'Port',
      summary: "Per-rule packet and byte counters of the chains on a port's path, read from its host's kernel (that host's agent only)",
      schema: { params: idParams },
      success: {
        status: 200,
        description: 'Counters per rule, and the drops logged for the port',
        schema: { type: 'object', additionalProperties: true },
      },
      handler: async ({ params }) => {
        const p = await localPort(topology, local, params.id, 'counters');
        const l = local!;
        const [bridges, chains, rules, ports, counters] = await Promise.all([
          topology.list('Bridge'),
          topology.list('Chain'),
          topology.list('Rule'),
          topology.list('Port', { hostId: l.hostId }),
          l.ruleCounters(),
        ]);
        const bridgeOf = (x: Port) => bridges.find((b) => b.id === x.bridgeId);
        const pathOf = (x: Port) => new Set(rootsOf(x, bridgeOf(x)).flatMap(([, root]) => closure(root, rules)));
        const localPaths = ports.filter((x) => x.type === 'bridge' && x.interfaceName).map(pathOf);
        const byKey = new Map(counters.map((c) => [`${c.chainId}/${c.ruleId}`, c]));
        const names = new Map(chains.map((c) => [c.id, c.name]));
        const out: RuleCounterOut[] = [];
        for (const [stage, root] of rootsOf(p, bridgeOf(p))) {
          for (const chainId of closure(root, rules)) {
            const sharedBy = localPaths.filter((s) => s.has(chainId)).length;
            for (const r of rules.filter((x) => x.chainId === chainId).sort((a, b) => a.position - b.position)) {
              const c = byKey.get(`${chainId}/${r.id}`);
              out.push({
                stage,
                chainId,
                ...(names.has(chainId) ? { chainName: names.get(chainId)! } : {}),
                ruleId: r.id,
                packets: c?.packets ?? 0,
                bytes: c?.bytes ?? 0,
                sharedBy,
              });
            }
          }
        }
        const state = l.flowLogState();
        const logged = l.flowRecords(p.interfaceName!).filter((x) => (x as { verdict?: string }).verdict === 'drop').length;
        const result: PortCounters = {
          portId: p.id,
          hostId: l.hostId,
          interfaceName: p.interfaceName!,
          rules: out,
          drops: { logged, lost: state.lost, logging: state.running },
        };
        return result;
      },
    }),
    route({
      method: 'GET',
      url: '/v1/ports/:id/drops',
      operationId: 'portDrops',
      tag: 'Port',
      summary: 'Packets to or from a port that a rule dropped, as logged on its host (rate-limited per rule; newest last)',
      schema: {
        params: idParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { since: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'Only records after this sequence number' } },
        } as const,
      },
      success: { status: 200, description: 'The drop records', schema: { type: 'object', additionalProperties: true } },
      handler: async ({ params, query }) => {
        const p = await localPort(topology, local, params.id, 'drops');
        const l = local!;
        const records = l
          .flowRecords(p.interfaceName!, query.since ? Number(query.since) : 0)
          .filter((x) => (x as { verdict?: string }).verdict === 'drop');
        return { portId: p.id, hostId: l.hostId, interfaceName: p.interfaceName, logging: l.flowLogState().running, records };
      },
    }),
  ];
}

/** What an agent gives the API to probe from its workloads (core/agent/probe.ts). */
export interface LocalProber {
  hostId: string;
  /** Send `spec` from the namespace of the workload interface `ifname` with `spec.srcMac`; every host's view. */
  probe(ifname: string, spec: Omit<ProbeSpec, 'id'>): Promise<HostObservation[]>;
}

export interface ProbeReport {
  hosts: HostObservation[];
  /** The kernels together: dropped where any host dropped it, else accepted where it was seen. */
  kernel: { request: KernelLeg['verdict']; requestRuleId?: string; reply: KernelLeg['verdict']; replyRuleId?: string };
  /** The simulation's verdicts equal the kernel's (the reply compared only when the kernel saw one). */
  agrees: boolean;
}

function combine(legs: KernelLeg[]): { verdict: KernelLeg['verdict']; ruleId?: string } {
  const drop = legs.find((l) => l.verdict === 'drop');
  if (drop) return { verdict: 'drop', ...(drop.ruleId ? { ruleId: drop.ruleId } : {}) };
  return { verdict: legs.some((l) => l.verdict === 'accept') ? 'accept' : 'unseen' };
}

/**
 * `POST /v1/trace` with `probe`: the simulation of traceTopology plus a real packet sent by the agent of the
 * source's host (only that agent can: 409 elsewhere, naming the host).
 */
export async function probeTrace(
  topology: Topology,
  prober: LocalProber | undefined,
  simulate: (srcPort: number) => Promise<TraceResult>,
  proto: 'tcp' | 'udp' | 'icmp',
): Promise<TraceResult & { probe: ProbeReport }> {
  // A fresh source port (ICMP: echo id) per probe: no conntrack entry of an earlier one is met.
  const srcPort = 40000 + Math.floor(Math.random() * 20000);
  const sim = await simulate(srcPort);
  const src = await topology.get('Port', sim.src.portId);
  if (!src.hostId || !src.owner)
    throw new TopologyError('conflict', `port ${src.id} is not a bound workload port: nothing to send from`, 'src');
  if (!prober || prober.hostId !== src.hostId) {
    const host = await topology.get('Host', src.hostId).catch(() => undefined);
    throw new TopologyError(
      'conflict',
      `a probe is sent by the agent of the source's host: port ${src.id} is bound on ${host ? `host ${host.name} (${host.id})` : `host ${src.hostId}`}; ask that host's agent (bees --api <its API> trace … --probe)`,
      'src',
    );
  }
  if (sim.src.ip.includes(':') || sim.dst.ip.includes(':')) throw new TopologyError('invalid', 'probes are IPv4 only for now', 'src');
  const hosts = [...new Set([src.hostId, sim.dst.hostId].filter((h): h is string => !!h))];
  const observed = await prober.probe(src.owner.ifname, {
    proto,
    srcMac: sim.src.mac.toLowerCase(),
    dstMac: sim.dst.mac.toLowerCase(),
    srcIp: sim.src.ip,
    dstIp: sim.dst.ip,
    srcPort,
    dstPort: proto === 'icmp' ? 0 : (sim.packet.dstPort ?? 0),
    hosts,
  });
  const req = combine(observed.map((o) => o.request));
  const rep = combine(observed.map((o) => o.reply));
  const simReq = sim.request.verdict === 'reject' ? 'drop' : sim.request.verdict;
  const simRep = sim.reply ? (sim.reply.verdict === 'reject' ? 'drop' : sim.reply.verdict) : undefined;
  const sameRequest = req.verdict === simReq && (req.verdict !== 'drop' || req.ruleId === sim.request.ruleId);
  const sameReply = rep.verdict === 'unseen' || (rep.verdict === simRep && (rep.verdict !== 'drop' || rep.ruleId === sim.reply?.ruleId));
  return {
    ...sim,
    probe: {
      hosts: observed,
      kernel: {
        request: req.verdict,
        ...(req.ruleId ? { requestRuleId: req.ruleId } : {}),
        reply: rep.verdict,
        ...(rep.ruleId ? { replyRuleId: rep.ruleId } : {}),
      },
      agrees: sameRequest && sameReply,
    },
  };
}
