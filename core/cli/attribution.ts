// `bees port counters PORT` and `bees port drops PORT`: what the kernel of a port's host did with its packets, asked
// of that host's agent API (core/api/attribution.ts): per-rule counters of the chains on the port's path, and the
// drops logged with the rule that made them.
import type { PortCounters } from '../api/attribution.js';
import type { FlowRecord } from '../datapath/flow-log.js';
import { apiClient, COMMON_USAGE, parse, printJson, table, type Command } from './command.js';

const counters: Command = {
  name: 'port counters',
  summary: "Per-rule packet and byte counters on a port's path (ask the agent of the port's host)",
  usage: `bees port counters PORT [--json]
  PORT: port id. Counters belong to a chain: SHARED says how many ports of the host it filters.
${COMMON_USAGE}`,
  async run(args, io) {
    const { values, positionals } = parse(counters, args, {}, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const r = await api.request<PortCounters>('GET', `/v1/ports/${encodeURIComponent(positionals[0]!)}/counters`);
    if (values.json) return printJson(io, r);
    io.out(
      table(
        ['STAGE', 'CHAIN', 'RULE', 'PACKETS', 'BYTES', 'SHARED'],
        r.rules.map((x) => [x.stage, x.chainName ?? x.chainId, x.ruleId, String(x.packets), String(x.bytes), String(x.sharedBy)]),
      ),
    );
    const d = r.drops;
    io.out(
      d.logging
        ? `drops logged for this port: ${d.logged} (rate-limited per rule)${d.lost ? `; ${d.lost} log messages lost` : ''}\n`
        : 'drops are not logged on this host (NFLOG unavailable)\n',
    );
  },
};

const line = (r: FlowRecord): string => {
  const what =
    r.srcPort !== undefined
      ? `${r.proto === 6 ? 'tcp' : r.proto === 17 ? 'udp' : `proto ${r.proto}`} ${r.srcIp}:${r.srcPort} > ${r.dstIp}:${r.dstPort}`
      : r.icmpType !== undefined
        ? `icmp ${r.srcIp} > ${r.dstIp} type ${r.icmpType} code ${r.icmpCode}`
        : r.srcIp
          ? `proto ${r.proto} ${r.srcIp} > ${r.dstIp}`
          : `ethertype 0x${(r.ethertype ?? 0).toString(16)} ${r.srcMac ?? '?'} > ${r.dstMac ?? '?'}`;
  return `${new Date(r.time).toISOString()} ${r.verdict} rule ${r.ruleId} ${r.inIfname ?? '?'} -> ${r.outIfname ?? '?'} ${what}`;
};

const drops: Command = {
  name: 'port drops',
  summary: 'Packets to or from a port that a rule dropped, with the rule (ask the agent of the port\u2019s host)',
  usage: `bees port drops PORT [--follow] [--json]
  PORT: port id. Logging is rate-limited per rule (10/s): a flood shows as a sample.
  --follow     keep printing new drops (Ctrl-C to stop)
  --json       one JSON object per line
${COMMON_USAGE}`,
  async run(args, io) {
    const { values, positionals } = parse(drops, args, { follow: { type: 'boolean' } }, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const path = `/v1/ports/${encodeURIComponent(positionals[0]!)}/drops`;
    let since = 0;
    for (;;) {
      const r = await api.request<{ logging: boolean; records: FlowRecord[] }>('GET', since ? `${path}?since=${since}` : path);
      if (!r.logging && !since) io.err('bees: drops are not logged on this host (NFLOG unavailable)\n');
      for (const x of r.records) io.out((values.json ? JSON.stringify(x) : line(x)) + '\n');
      since = Math.max(since, ...r.records.map((x) => x.seq));
      if (!values.follow) return;
      await new Promise((res) => setTimeout(res, 500));
    }
  },
};

export const commands = [counters, drops];
