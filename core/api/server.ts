// The REST API: fastify over the topology service. Every route declares its schemas (see routes.ts); every client
// mistake is a 4xx whose message names the field, never a 500. Access: the unix socket is protected by its file
// mode; TCP listeners demand a bearer token (a full one, or a read-only one for GETs), serve TLS when given a
// certificate, and a listener reachable from other machines must have both (listen() refuses it otherwise).
import Fastify, { type FastifyError } from 'fastify';
import { timingSafeEqual } from 'node:crypto';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { classify } from '../errors.js';
import type { Store } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';
import { SCHEMAS } from '../model/schema.js';
import { KINDS } from '../model/types.js';
import { describeAjvError, strictAjv } from '../topology/shape.js';
import type { Topology } from '../topology/service.js';
import { openApiDocument } from './openapi.js';
import type { ApiErrorBody } from './paths.js';
import { apiRoutes } from './routes.js';
import type { LocalAttribution, LocalProber } from './attribution.js';
import { eventRoutes } from './events.js';
import { isUiAsset, uiRoutes } from '../ui/serve.js';
import { requestIdOf as requestId } from './request-id.js';

import { setListenGuard, type ListenGuard as Guard, type ServerApp } from './listen.js';

export { isLoopback, listen, type ServerApp } from './listen.js';

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
  extraRoutes?: (app: ServerApp) => void;
  /** Largest accepted body (default 1 MiB). */
  bodyLimit?: number;
  /** fastify logging (default off; 500s are always written to stderr). */
  logger?: boolean;
  version?: string;
  /** The agent's kernel, for per-port counters and drops (core/api/attribution.ts). */
  attribution?: LocalAttribution;
  prober?: LocalProber;
}

export const API_VERSION = '0.1.0';

function sameToken(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

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

/**
 * How the API compiles a request part's schema. Bodies: no coercion and no stripping, so a wrong type or an unknown
 * field is an error, not silently "fixed". Query strings and path parameters are text by nature: coerced to the
 * declared types. Exported for the test that compiles every route's schemas, since the server only does on use.
 */
export function requestValidatorCompiler(): (schema: object, httpPart: string | undefined) => ValidateFunction {
  const bodyAjv = strictAjv();
  const textAjv = new Ajv({ allErrors: false, coerceTypes: true, removeAdditional: false, useDefaults: false, strict: false });
  return (schema, httpPart) => (httpPart === 'body' ? bodyAjv : textAjv).compile(schema);
}

/** What fastify calls to validate a request part: ajv's function shape. */
type Validate = ((data: unknown, cxt?: Parameters<ValidateFunction>[1]) => boolean) & {
  errors?: ErrorObject[] | null;
  schemaEnv?: unknown;
};

/**
 * An ajv validator compiled when its route is first called, not when the server starts: the agent serves ~90 route
 * schemas of which a host uses a few, and compiling them all cost ~1 MB of generated source and its code in every
 * idle agent (issue 12, idle RSS) and CPU at start. Same validation, same errors (`errors` is copied across).
 */
export function compiledOnFirstUse(compile: () => ValidateFunction): Validate {
  let v: ValidateFunction | undefined;
  const lazy: Validate = (data, cxt) => {
    v ??= compile();
    const ok = v(data, cxt);
    lazy.errors = v.errors ?? null;
    return ok;
  };
  // fastify hands the request part's parent (which ajv needs to coerce or default a root value) only to a function
  // carrying ajv's schemaEnv.
  lazy.schemaEnv = true;
  return lazy;
}

const PART_NAMES: Record<string, string> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

export function buildApi(opts: ApiOptions): ServerApp {
  checkToken('token', opts.token);
  checkToken('read token', opts.readToken);
  if (opts.token !== undefined && opts.token === opts.readToken) throw new Error('the read-only token must differ from the full token');
  const base = {
    logger: opts.logger ?? false,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    // Keep-alive clients must not hold a closing server open.
    forceCloseConnections: true,
    // Ids may be 256 characters (idSchema), percent-encoded in a path up to three times that; fastify's default of
    // 100 answered 414 for an object the API had just created.
    routerOptions: { maxParamLength: 1024 },
    // A request id on every request: the caller's X-Request-Id when it is a plain token (so one id follows an
    // operation across services), else a new one; logged with each line (--log) and answered in X-Request-Id.
    requestIdHeader: false as const,
    genReqId: (req: { headers: Record<string, string | string[] | undefined> }) => requestId(req.headers['x-request-id']),
  };
  const app: ServerApp = opts.tls ? Fastify({ ...base, https: { cert: opts.tls.cert, key: opts.tls.key } }) : Fastify(base);
  const guard: Guard = { tls: !!opts.tls, token: opts.token !== undefined || opts.readToken !== undefined, unix: false };
  setListenGuard(app, guard);
  const compile = requestValidatorCompiler();
  app.setValidatorCompiler(({ schema, httpPart }) => compiledOnFirstUse(() => compile(schema, httpPart)));
  app.setSchemaErrorFormatter((errors, dataVar) => {
    const part = PART_NAMES[dataVar] ?? dataVar;
    const { message, field } = describeAjvError(errors[0] as ErrorObject);
    const err = new TopologyError('invalid', part === 'body' ? message : `${part}: ${message}`, field || undefined);
    return err;
  });

  app.addHook('onRequest', async (req, reply) => {
    void reply.header('x-request-id', req.id);
    // Fails closed: whatever goes wrong deciding, the answer is 401, never the route.
    let access: Access;
    try {
      if (guard.unix || !guard.token) return;
      // The web view's page and scripts hold no data; what they show is fetched with the token.
      if (isUiAsset(req.method, req.url)) return;
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
    const { kind, status, message, field } = classify(err);
    if (kind !== 'internal') {
      const id = (err as TopologyError & { existingId?: string }).existingId;
      // The framework's own refusals keep their status; two have names of their own in this API's bodies.
      const error = status === 413 ? 'too_large' : status === 415 ? 'unsupported_media_type' : kind;
      return reply.code(status).send(errorBody(error, message, field, id));
    }
    process.stderr.write(`bees api: ${req.method} ${req.url} (request ${req.id}): ${err.stack ?? err.message}\n`);
    return reply.code(500).send(errorBody('internal', `internal error: ${err.message}`));
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(errorBody('not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
  });

  const routes = apiRoutes({
    topology: opts.topology,
    store: opts.store,
    version: opts.version ?? API_VERSION,
    attribution: opts.attribution,
    prober: opts.prober,
  });
  // Success bodies are serialised from the route's success schema, so an answer carries the documented fields and
  // nothing else. The table's schemas point at the model objects the OpenAPI way (#/components/schemas/Kind): each
  // response schema carries those components for the pointers to resolve inside it.
  const components = { schemas: Object.fromEntries(KINDS.map((k) => [k, SCHEMAS[k].object])) };
  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.url,
      schema: { ...r.schema, ...(r.success.schema ? { response: { [r.success.status]: { ...r.success.schema, components } } } : {}) },
      handler: async (req, reply) => {
        const result = await r.handler({ params: req.params ?? {}, query: req.query ?? {}, body: req.body });
        reply.code(r.success.status);
        if (r.success.status === 204) return reply.send();
        return result;
      },
    });
  }
  // Built on the first request: ~200 KB of JSON every agent held from start for a document few ever fetch.
  let doc: ReturnType<typeof openApiDocument> | undefined;
  app.get('/openapi.json', async () => (doc ??= openApiDocument(routes, { version: opts.version ?? API_VERSION, token: guard.token })));
  eventRoutes(app, opts.store);
  uiRoutes(app);
  opts.extraRoutes?.(app);
  return app;
}
