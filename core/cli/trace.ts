// `bees trace SRC DST`: what the chains do with a packet between two workloads, asked of the API (POST /v1/trace,
// core/policy/trace.ts): every device, chain and rule on the path, and the verdict.
import type { TraceResult } from '../policy/trace.js';
import type { ProbeReport } from '../api/attribution.js';
import { apiClient, CliError, COMMON_USAGE, intOption, parse, printJson, type Command } from './command.js';

const trace: Command = {
  name: 'trace',
  summary: 'Show what the filters do with a packet between two workloads',
  usage: `bees trace SRC DST [--proto tcp|udp|icmp] [--port N] [--probe] [--json]
  SRC, DST: port id, workload address or workload id
  --proto P     tcp (default), udp or icmp (an echo request)
  --port N      destination port for tcp/udp (default 80)
  --probe       also send a real packet from SRC and report what each host's kernel did (IPv4; ask the agent
                of SRC's host: --api <its API>)
Exit status: 0 when the request and its reply are delivered, 3 when not, 4 when a probe disagrees with the
simulation.
${COMMON_USAGE}`,
  async run(args, io) {
    const { values, positionals } = parse(
      trace,
      args,
      { proto: { type: 'string' }, port: { type: 'string' }, probe: { type: 'boolean' } },
      { min: 2, max: 2 },
    );
    const proto = values.proto ?? 'tcp';
    if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new CliError(`trace: --proto must be tcp, udp or icmp, not '${proto}'`, 2);
    const port = intOption('port', values.port);
    const api = apiClient(values, io);
    const r = await api.request<TraceResult & { probe?: ProbeReport }>('POST', '/v1/trace', {
      src: positionals[0],
      dst: positionals[1],
      proto,
      ...(port !== undefined ? { port } : {}),
      ...(values.probe ? { probe: true } : {}),
    });
    if (values.json) printJson(io, r);
    else {
      const { formatTrace } = await import('../policy/trace.js');
      io.out(formatTrace(r) + '\n');
      if (r.probe) io.out(formatProbe(r.probe) + '\n');
    }
    if (r.probe && !r.probe.agrees) return 4;
    return r.delivered ? 0 : 3;
  },
};

/** The probe beside the simulation: each host's kernel, then the verdicts side by side. */
function formatProbe(p: ProbeReport): string {
  const leg = (l: ProbeReport['hosts'][number]['request']): string =>
    l.verdict === 'drop' ? `DROP${l.ruleId ? ` by rule ${l.ruleId}` : ''}` : l.verdict.toUpperCase();
  const lines = ['probe (a real packet; what each kernel did):'];
  for (const h of p.hosts) {
    lines.push(`  host ${h.hostId}: request ${leg(h.request)}, reply ${leg(h.reply)}${h.error ? ` (${h.error})` : ''}`);
    for (const s of [...h.request.steps, ...h.reply.steps].filter((x) => x.ruleId)) {
      lines.push(`    ${s.table} ${s.chain}: rule ${s.ruleId} → ${s.verdict}`);
    }
  }
  const k = p.kernel;
  lines.push(
    `kernel: request ${k.request.toUpperCase()}${k.requestRuleId ? ` by rule ${k.requestRuleId}` : ''}, reply ${k.reply.toUpperCase()}${k.replyRuleId ? ` by rule ${k.replyRuleId}` : ''}`,
  );
  lines.push(p.agrees ? 'simulation and kernel agree' : 'simulation and kernel DISAGREE');
  return lines.join('\n');
}

export const commands = [trace];
