// The agent's metrics on a TCP port of their own (`bees agent --metrics-listen ADDR:PORT`), for Prometheus in a
// cluster: it scrapes every node over the network, and the REST API's unix socket is out of its reach. This listener
// serves GET /metrics and nothing else (no topology, no writes), so unlike the REST API it may listen beyond
// loopback in clear text, as exporters do; a bearer token (`--metrics-token-file`) keeps strangers out.
import Fastify from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import net from 'node:net';
import { isLoopback } from '../api/listen.js';
import type { AgentMetrics } from './metrics.js';

export interface MetricsListener {
  /** The address actually bound, tcp://HOST:PORT (the port filled in for port 0). */
  endpoint: string;
  close(): Promise<void>;
}

/** `HOST:PORT`, `[V6]:PORT` or a bare IPv6 address with the port after its last colon; the port may be 0. */
export function parseMetricsListen(value: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^(.+):(\d+)$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || !Number.isInteger(port) || port > 65535 || !(net.isIP(m[1]!) || /^[A-Za-z0-9.-]+$/.test(m[1]!)))
    throw new Error(`--metrics-listen must be ADDR:PORT (e.g. 0.0.0.0:9878 or [::]:9878), got '${value}'`);
  return { host: m[1]!, port };
}

function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

export async function startMetricsListener(
  metrics: AgentMetrics,
  address: string,
  opts: { token?: string; log?: (msg: string) => void } = {},
): Promise<MetricsListener> {
  const { host, port } = parseMetricsListen(address);
  const token = opts.token;
  if (token !== undefined && (token.trim() === '' || /\s/.test(token)))
    throw new Error('metrics token: a bearer token must be non-empty and contain no whitespace');
  const app = Fastify({ logger: false, forceCloseConnections: true, return503OnClosing: true });
  app.addHook('onRequest', async (req, reply) => {
    if (token === undefined) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !sameToken(m[1]!, token))
      return reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'unauthorized', message: 'missing or wrong bearer token' });
  });
  app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()));
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: 'not_found', message: `the metrics listener serves GET /metrics only, not ${req.method} ${req.url}` });
  });
  await app.listen({ host, port });
  const bound = (app.server.address() as net.AddressInfo).port;
  const endpoint = `tcp://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  if (token === undefined && !isLoopback(host))
    opts.log?.(`metrics on ${endpoint} without a token: anyone who reaches this address can read them (--metrics-token-file)`);
  return { endpoint, close: () => app.close() };
}
