// Flow logs over REST (issue 13 item 3): connections this host's kernel allowed and denied, each with the id of the
// rule that decided, as the agent's flow log read them from NFLOG (core/datapath/flow-log.ts). Denied packets are
// always logged; allowed ones (the first packet of each new connection, per accept rule) only when the agent runs
// with `--flow-log`. Both are rate-limited per rule in the kernel, so a flood shows as a sample, never a backlog.
// Only this host's records: the kernel of another host is asked through that host's agent.
import type { Port } from '../model/types.js';
import { TopologyError } from '../topology/errors.js';
import type { Topology } from '../topology/service.js';
import type { LocalAttribution } from './attribution.js';
import { route, type ApiRoute } from './routes.js';

/** A flow record as served: the kernel's record with the bees ports of the interfaces it names. */
export interface FlowOut {
  seq: number;
  verdict: string;
  ruleId: string;
  inIfname?: string;
  outIfname?: string;
  inPortId?: string;
  outPortId?: string;
  [field: string]: unknown;
}

export interface FlowsResponse {
  hostId: string;
  /** Whether the flow log is read at all, and whether accepted connections are in it. */
  logging: boolean;
  accepts: boolean;
  records: FlowOut[];
}

export function flowRoutes(topology: Topology, local: LocalAttribution | undefined): ApiRoute[] {
  return [
    route({
      method: 'GET',
      url: '/v1/flows',
      operationId: 'listFlows',
      tag: 'Port',
      summary: "Connections this host's kernel allowed (with --flow-log) and denied, with the deciding rule (newest last)",
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            since: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'Only records after this sequence number' },
            port: { type: 'string', description: 'Only records to or from this port (bound on this host)' },
          },
        } as const,
      },
      success: { status: 200, description: 'The flow records', schema: { type: 'object', additionalProperties: true } },
      handler: async ({ query }) => {
        if (!local)
          throw new TopologyError('conflict', 'flow logs live in a host kernel: ask the agent of that host (bees --api <its API> flows)');
        const since = query.since ? Number(query.since) : 0;
        const ports = (await topology.list('Port', { hostId: local.hostId })).filter((p) => p.interfaceName);
        const byIfname = new Map(ports.map((p) => [p.interfaceName!, p]));
        let raw: unknown[];
        if (query.port) {
          const p: Port = await topology.get('Port', query.port);
          if (p.hostId !== local.hostId || !p.interfaceName)
            throw new TopologyError(
              'conflict',
              p.hostId
                ? `port ${p.id} is bound on host ${p.hostId}: its flows live in that host's kernel; ask that host's agent (bees --api <its API> flows --port ${p.id})`
                : `port ${p.id} is not bound to a host: nothing has reached a kernel`,
              'port',
            );
          raw = local.flowRecords(p.interfaceName, since);
        } else raw = local.recentFlowRecords?.(since) ?? [];
        const records = (raw as FlowOut[]).map((r) => {
          const inPort = r.inIfname ? byIfname.get(r.inIfname) : undefined;
          const outPort = r.outIfname ? byIfname.get(r.outIfname) : undefined;
          return { ...r, ...(inPort ? { inPortId: inPort.id } : {}), ...(outPort ? { outPortId: outPort.id } : {}) };
        });
        const state = local.flowLogState();
        const out: FlowsResponse = { hostId: local.hostId, logging: state.running, accepts: local.flowLogAccepts === true, records };
        return out;
      },
    }),
  ];
}
