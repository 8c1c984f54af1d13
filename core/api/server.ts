// The REST API: fastify over the topology service. Every route declares its schemas (see routes.ts); every client
// mistake is a 4xx whose message names the field, never a 500. Access: the unix socket is protected by its file
// mode; TCP listeners demand a bearer token (a full one, or a read-only one for GETs), serve TLS when given a
// certificate, and a listener reachable from other machines must have both (listen() refuses it otherwise).
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import type { Store } from '../store/store.js';
import { TopologyError, httpStatusOf } from '../topology/errors.js';
import { describeAjvError, strictAjv } from '../topology/shape.js';
import type { Topology } from '../topology/service.js';
import { openApiDocument } from './openapi.js';
import type { ApiErrorBody } from './paths.js';
import { apiRoutes } from './routes.js';

export interface ApiOptions {
  topology: Topology;
  store: Store;
  /** Bearer token demanded on TCP connections (never on the unix socket): any request. */
  token?: string;
  /** A second bearer token that may only read: GET/HEAD requests (the topology, /metrics); others are 403. */
  readToken?: string;
  /** Serve HTTPS with this certificate chain and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** More routes (e.g. the agent's), registered after the topology routes. */
  extraRoutes?: (app: FastifyInstance) => void;
  /** Largest accepted body (default 1 MiB). */
  bodyLimit?: number;
  /** fastify logging (default off; 500s are always written to stderr). */
  logger?: boolean;
  version?: string;
}

export const API_VERSION = '0.1.0';

function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What listen() needs to know about an app: whether it can be exposed beyond this machine. */
interface Guard {
  tls: boolean;
  token: boolean;
  /** Set by listen(): the unix socket needs no token, anything else (TCP, or not listened yet: inject) does. */
  unix: boolean;
}
const guards = new WeakMap<FastifyInstance, Guard>();

/** Reads methods a read-only token may use. */
const READ_METHODS = new Set(['GET', 'HEAD']);

type Access = 'full' | 'read' | 'none';

/** The access a request's Authorization header grants. Throws on nothing it can see; the hook fails closed anyway. */
function accessOf(header: string | undefined, token: string | undefined, readToken: string | undefined): Access {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return 'none';
  if (token !== undefined && sameToken(m[1]!, token)) return 'full';
  if (readToken !== undefined && sameToken(m[1]!, readToken)) return 'read';
  return 'none';
}

/** Tokens must be real secrets: an empty one would compare equal to an empty header. */
function checkToken(name: string, value: string | undefined): void {
  if (value === undefined) return;
  if (value.trim() === '' || /\s/.test(value)) throw new Error(`${name}: a bearer token must be non-empty and contain no whitespace`);
}

function errorBody(error: string, message: string, field?: string, id?: string): ApiErrorBody {
  return { error, message, ...(field ? { field } : {}), ...(id ? { id } : {}) };
}

const PART_NAMES: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

export function buildApi(opts: ApiOptions): FastifyInstance {
  checkToken('token', opts.token);
  checkToken('read token', opts.readToken);
  if (opts.token !== undefined && opts.token === opts.readToken) throw new Error('the read-only token must differ from the full token');
  const base = { logger: opts.logger ?? false, bodyLimit: opts.bodyLimit ?? 1024 * 1024, return503OnClosing: true,
    // Keep-alive clients must not hold a closing server open.
    forceCloseConnections: true,
    // Ids may be 256 characters (idSchema), percent-encoded in a path up to three times that; fastify's default of
    // 100 answered 414 for an object the API had just created.
    routerOptions: { maxParamLength: 1024 } };
  // The https variant has its own overload; the app is used the same way afterwards.
  const app = (opts.tls ? Fastify({ ...base, https: { cert: opts.tls.cert, key: opts.tls.key } }) : Fastify(base)) as unknown as FastifyInstance;
  const guard: Guard = { tls: !!opts.tls, token: opts.token !== undefined || opts.readToken !== undefined, unix: false };
  guards.set(app, guard);
  // Bodies: no coercion and no stripping, so a wrong type or an unknown field is an error, not silently "fixed".
  // Query strings and path parameters are text by nature: coerce them to the declared types.
  const bodyAjv = strictAjv();
  const textAjv = new Ajv({ allErrors: false, coerceTypes: true, removeAdditional: false, useDefaults: false, strict: false });
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema));
  app.setSchemaErrorFormatter((errors, dataVar) => {
    const part = PART_NAMES[dataVar] ?? dataVar;
    const { message, field } = describeAjvError(errors[0] as ErrorObject);
    const err = new TopologyError('invalid', part === 'body' ? message : `${part}: ${message}`, field || undefined);
    return err;
  });

  app.addHook('onRequest', async (req, reply) => {
    // Fails closed: whatever goes wrong deciding, the answer is 401, never the route.
    let access: Access;
    try {
      if (guard.unix || !guard.token) return;
      access = accessOf(req.headers.authorization, opts.token, opts.readToken);
    } catch {
      access = 'none';
    }
    if (access === 'none') {
      return reply.code(401).header('www-authenticate', 'Bearer').send(errorBody('unauthorized', 'missing or wrong bearer token'));
    }
    if (access === 'read' && !READ_METHODS.has(req.method)) {
      return reply.code(403).send(errorBody('forbidden', `the read-only token may not ${req.method} ${req.url.split('?')[0]}`));
    }
  });

  app.setErrorHandler((err: FastifyError | TopologyError | Error, req, reply) => {
    if (err instanceof TopologyError) {
      const id = (err as TopologyError & { existingId?: string }).existingId;
      return reply.code(httpStatusOf(err.code)).send(errorBody(err.code, err.message, err.field, id));
    }
    const status = (err as FastifyError).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      const code = status === 413 ? 'too_large' : status === 415 ? 'unsupported_media_type' : status === 404 ? 'not_found' : 'invalid';
      return reply.code(status).send(errorBody(code, err.message));
    }
    process.stderr.write(`bees api: ${req.method} ${req.url}: ${err.stack ?? err.message}\n`);
    return reply.code(500).send(errorBody('internal', `internal error: ${err.message}`));
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
  });

  const routes = apiRoutes({ topology: opts.topology, store: opts.store, version: opts.version ?? API_VERSION });
  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.url,
      schema: r.schema,
      handler: async (req, reply) => {
        const result = await r.handler({
          params: (req.params ?? {}) as Record<string, string>,
          query: (req.query ?? {}) as Record<string, string>,
          body: req.body,
        });
        reply.code(r.success.status);
        if (r.success.status === 204) return reply.send();
        return result;
      },
    });
  }
  const doc = openApiDocument(routes, { version: opts.version ?? API_VERSION, token: guard.token });
  app.get('/openapi.json', async () => doc);
  opts.extraRoutes?.(app);
  return app;
}

/** 127.0.0.0/8, ::1 and localhost: a listener there is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return !!mapped && mapped[1]!.startsWith('127.');
}

/**
 * Listens on `unix:/path` (mode 0600, a stale socket file replaced, a live one refused) or `tcp://host:port`
 * (`https://host:port` too, which insists on TLS). A TCP listener beyond loopback is refused unless the app has
 * both TLS and a token: a bearer token in clear text is anyone's who can watch the wire.
 * Returns the endpoint actually bound (the port filled in for port 0; https:// when serving TLS).
 */
export async function listen(app: FastifyInstance, endpoint: string): Promise<string> {
  const guard = guards.get(app) ?? { tls: false, token: false, unix: false };
  if (endpoint.startsWith('unix:')) {
    guard.unix = true;
    const file = endpoint.slice('unix:'.length);
    if (!file) throw new Error(`listen: ${endpoint}: no socket path`);
    await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
    if (await exists(file)) {
      if (await answers(file)) throw new Error(`listen: ${file} is in use by another server`);
      await rm(file, { force: true });
    }
    await app.listen({ path: file });
    await chmod(file, 0o600);
    return `unix:${file}`;
  }
  const m = /^(tcp|https):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(endpoint);
  if (!m) throw new Error(`listen: ${JSON.stringify(endpoint)} is neither unix:/path nor tcp://host:port`);
  const host = m[2]!.replace(/^\[|\]$/g, '');
  if (m[1] === 'https' && !guard.tls) throw new Error(`listen: ${endpoint}: https needs a certificate and key (--tls-cert, --tls-key)`);
  if (!isLoopback(host) && !(guard.tls && guard.token)) {
    const missing = [guard.tls ? '' : 'TLS (--tls-cert, --tls-key)', guard.token ? '' : 'a token (--token-file or $BEES_API_TOKEN)'].filter(Boolean).join(' and ');
    throw new Error(`listen: refusing ${endpoint}: a TCP listener beyond loopback needs TLS and a token; missing ${missing}`);
  }
  await app.listen({ host, port: Number(m[3]) });
  const addr = app.server.address() as net.AddressInfo;
  return `${guard.tls ? 'https' : 'tcp'}://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
