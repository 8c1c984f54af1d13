// The agent's default log is for people reading a terminal (`bees up`, `bees agent` by hand): plain lines. fastify's
// logger (pino) writes JSON; in text mode its lines are turned into plain ones here, and its per-request lines
// ("incoming request", "request completed", whose content the operation's own lines already say) are dropped.
// `--log-format json` keeps every line as pino wrote it, for collectors.

/** pino's numeric levels, as words for the lines that need attention. */
const LEVEL_WORD: Record<number, string> = { 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** Fields every pino line has, or that the text says anyway. */
const OMIT = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'reqId', 'req', 'res', 'responseTime', 'error']);

const REQUEST_LINES = new Set(['incoming request', 'request completed']);

function value(v: unknown): string {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

/** One pino JSON line as a plain one (without a trailing newline); undefined for a line text mode leaves out. */
export function pinoLineAsText(line: string): string | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const msg = typeof o.msg === 'string' ? o.msg : '';
  if (REQUEST_LINES.has(msg)) return undefined;
  const level = typeof o.level === 'number' ? LEVEL_WORD[o.level] : undefined;
  const fields = Object.entries(o)
    .filter(([k, v]) => !OMIT.has(k) && v !== undefined)
    .map(([k, v]) => `${k}=${value(v)}`);
  const req = typeof o.reqId === 'string' ? ` [request ${o.reqId}]` : '';
  return `${level ? `${level} ` : ''}${msg}${fields.length ? ` ${fields.join(' ')}` : ''}${req}`;
}
