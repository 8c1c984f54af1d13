// `bees trace SRC DST`: what the chains do with a packet between two workloads, asked of the API (POST /v1/trace,
// core/policy/trace.ts): every device, chain and rule on the path, and the verdict.
import type { TraceResult } from '../policy/trace.js';
import { apiClient, CliError, COMMON_USAGE, intOption, parse, printJson, type Command } from './command.js';

const trace: Command = {
  name: 'trace',
  summary: 'Show what the filters do with a packet between two workloads',
  usage: `bees trace SRC DST [--proto tcp|udp|icmp] [--port N] [--json]
  SRC, DST: port id, workload address or workload id
  --proto P     tcp (default), udp or icmp (an echo request)
  --port N      destination port for tcp/udp (default 80)
Exit status: 0 when the request and its reply are delivered, 3 when not.
${COMMON_USAGE}`,
  async run(args, io) {
    const { values, positionals } = parse(trace, args, { proto: { type: 'string' }, port: { type: 'string' } }, { min: 2, max: 2 });
    const proto = values.proto ?? 'tcp';
    if (!['tcp', 'udp', 'icmp'].includes(proto)) throw new CliError(`trace: --proto must be tcp, udp or icmp, not '${proto}'`, 2);
    const port = intOption('port', values.port);
    const api = apiClient(values, io);
    const r = await api.request<TraceResult>('POST', '/v1/trace', {
      src: positionals[0],
      dst: positionals[1],
      proto,
      ...(port !== undefined ? { port } : {}),
    });
    if (values.json) printJson(io, r);
    else {
      const { formatTrace } = await import('../policy/trace.js');
      io.out(formatTrace(r) + '\n');
    }
    return r.delivered ? 0 : 3;
  },
};

export const commands = [trace];
