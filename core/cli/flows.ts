// `bees flows [--follow] [--port P] [--json]`: connections this host's kernel allowed and denied, each with the rule
// that decided, from the local agent's flow log (core/api/flows.ts). Denied packets are always logged; allowed
// connections only when the agent runs with --flow-log.
import type { FlowOut, FlowsResponse } from '../api/flows.js';
import { apiClient, COMMON_USAGE, parse, type Command } from './command.js';

const what = (r: FlowOut): string => {
  const x = r as FlowOut & { proto?: number; srcIp?: string; dstIp?: string; srcPort?: number; dstPort?: number; icmpType?: number };
  const proto = x.proto === 6 ? 'tcp' : x.proto === 17 ? 'udp' : x.proto === 1 ? 'icmp' : `proto ${x.proto}`;
  if (x.srcPort !== undefined) return `${proto} ${x.srcIp}:${x.srcPort} > ${x.dstIp}:${x.dstPort}`;
  if (x.icmpType !== undefined) return `${proto} ${x.srcIp} > ${x.dstIp} type ${x.icmpType}`;
  return x.srcIp ? `${proto} ${x.srcIp} > ${x.dstIp}` : 'non-IP';
};

const line = (r: FlowOut): string =>
  `${new Date(Number(r.time)).toISOString()} ${r.verdict === 'accept' ? 'allowed' : 'denied '} rule ${r.ruleId} ` +
  `${r.inPortId ?? r.inIfname ?? '?'} -> ${r.outPortId ?? r.outIfname ?? '?'} ${what(r)}`;

const flows: Command = {
  name: 'flows',
  summary: "Connections this host's kernel allowed and denied, with the rule that decided (ask the host's agent)",
  usage: `bees flows [--follow] [--port PORT] [--json]
  Denied packets are logged always, allowed connections (their first packet) only when the agent runs with
  --flow-log. Rate-limited per rule in the kernel (10/s): a flood shows as a sample.
  --follow     keep printing new records (Ctrl-C to stop)
  --port P     only records to or from port P (bound on the agent's host)
  --json       one JSON object per line
${COMMON_USAGE}`,
  async run(args, io) {
    const { values } = parse(flows, args, { follow: { type: 'boolean' }, port: { type: 'string' } }, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const query = (since: number) => {
      const q = new URLSearchParams();
      if (since) q.set('since', String(since));
      if (values.port) q.set('port', String(values.port));
      const s = q.toString();
      return s ? `/v1/flows?${s}` : '/v1/flows';
    };
    let since = 0;
    let first = true;
    for (;;) {
      const r = await api.request<FlowsResponse>('GET', query(since));
      if (first && !r.logging) io.err('bees: flows are not logged on this host (NFLOG unavailable)\n');
      else if (first && !r.accepts) io.err('bees: allowed connections are not logged (start the agent with --flow-log)\n');
      first = false;
      for (const x of r.records) io.out((values.json ? JSON.stringify(x) : line(x)) + '\n');
      since = Math.max(since, ...r.records.map((x) => x.seq));
      if (!values.follow) return;
      await new Promise((res) => setTimeout(res, 500));
    }
  },
};

export const commands = [flows];
