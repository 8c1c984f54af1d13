// The plugin's HTTP face: fastify on a unix socket, one POST route per libnetwork method. Bodies are JSON
// whatever their content type says (Docker sends application/vnd.docker.plugins.v1.2+json) and may be empty.
// Malformed calls get HTTP 400 before any handler runs; failures of a well-formed call are answered the way
// libnetwork reads them: HTTP 200 with {"Err": …} (network) or {"Error": …} (IPAM).
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import Fastify, { type FastifyInstance } from 'fastify';
import { isErrorKind } from '../../core/errors.js';
import { TopologyError } from '../../core/topology/errors.js';
import { DriverError } from './backend.js';
import type { IpamDriver } from './ipam-driver.js';
import type { NetworkDriver } from './network-driver.js';
import { IPAM, NETWORK, schemas } from './protocol.js';

export const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

type Schema = (typeof schemas)[keyof typeof schemas];
/** The type json-schema-to-ts reads from a schema: what fastify's type provider gives a handler. */
type FromSchema<S> = (JsonSchemaToTsProvider & { schema: S })['validator'];

type Family = typeof NETWORK | typeof IPAM | 'Plugin';

/** The key libnetwork reads an error from, per interface. */
function errorBody(family: Family, message: string): Record<string, string> {
  return family === IPAM ? { Error: message } : { Err: message };
}

function familyOfUrl(url: string): Family {
  const path = url.split('?')[0]!.replace(/^\//, '');
  if (path.startsWith(`${IPAM}.`)) return IPAM;
  if (path.startsWith(`${NETWORK}.`)) return NETWORK;
  return 'Plugin';
}

/** Errors that are the answer to a well-formed call (bad option, unknown network, pool exhausted…). */
function isApplicationError(err: unknown): boolean {
  if (err instanceof DriverError || err instanceof TopologyError) return true;
  // Errors relayed from the agent's APIs carry a kind of core/errors.ts: all but 'internal' answer the call.
  const code = err instanceof Error ? (err as Error & { code?: unknown }).code : undefined;
  return isErrorKind(code) && code !== 'internal';
}

export interface DriverServerOptions {
  network?: NetworkDriver;
  ipam?: IpamDriver;
  /** Log every call (method and outcome) to stderr. */
  log?: boolean;
}

export function buildServer(opts: DriverServerOptions): FastifyInstance {
  const app = Fastify({
    logger: opts.log ? { level: 'info' } : false,
    bodyLimit: 1 << 20,
    // Docker's types are exact: a number where an id belongs is a malformed call, not something to coerce.
    ajv: { customOptions: { coerceTypes: false } },
  });

  // Any content type, or none: the body is JSON text or empty.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body).trim();
    if (text === '') return done(null, {});
    try {
      done(null, JSON.parse(text) ?? {});
    } catch (e) {
      const err = new Error(`request body is not JSON: ${(e as Error).message}`) as Error & { statusCode: number };
      err.statusCode = 400;
      done(err, undefined);
    }
  });
  // No content type and no body: fastify leaves the body unset.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined || req.body === null) req.body = {};
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('content-type', CONTENT_TYPE);
    return payload;
  });

  app.setErrorHandler((err: Error & { statusCode?: number; validation?: unknown }, req, reply) => {
    const family = familyOfUrl(req.url);
    if (err.validation || (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)) {
      return reply.code(err.statusCode && err.statusCode < 500 ? err.statusCode : 400).send(errorBody(family, err.message));
    }
    if (isApplicationError(err)) return reply.code(200).send(errorBody(family, err.message));
    req.log.error(err);
    return reply.code(500).send(errorBody(family, `internal error: ${err.message}`));
  });
  app.setNotFoundHandler((req, reply) => {
    // 404 is how libnetwork learns a method is not implemented.
    reply.code(404).send(errorBody(familyOfUrl(req.url), `${req.method} ${req.url}: not implemented`));
  });

  const implementsList: string[] = [];
  if (opts.network) implementsList.push(NETWORK);
  if (opts.ipam) implementsList.push(IPAM);
  app.post('/Plugin.Activate', async () => ({ Implements: implementsList }));

  // Each handler gets the body typed from the schema it was checked against (json-schema-to-ts): a driver method
  // whose request type asks for more than the schema guarantees does not compile.
  const route = <S extends Schema>(path: string, schema: S, handler: (body: FromSchema<S>) => Promise<object> | object) => {
    // The one cast: fastify checked the body against S before this runs, and the type provider cannot carry a type
    // parameter through its route generics (it leaves FromSchema<S> unresolved and widens it with unknown).
    app.post(`/${path}`, { schema: { body: schema } }, async (req) => handler(req.body as FromSchema<S>));
  };
  const bare = (path: string, handler: () => Promise<object> | object) => {
    app.post(`/${path}`, async () => handler());
  };

  const n = opts.network;
  if (n) {
    bare(`${NETWORK}.GetCapabilities`, () => n.capabilities());
    route(`${NETWORK}.CreateNetwork`, schemas.createNetwork, (b) => n.createNetwork(b));
    route(`${NETWORK}.AllocateNetwork`, schemas.createNetwork, (b) => n.allocateNetwork(b));
    route(`${NETWORK}.FreeNetwork`, schemas.networkIds, (b) => n.freeNetwork(b));
    route(`${NETWORK}.DeleteNetwork`, schemas.networkIds, (b) => n.deleteNetwork(b));
    route(`${NETWORK}.CreateEndpoint`, schemas.createEndpoint, (b) => n.createEndpoint(b));
    route(`${NETWORK}.EndpointOperInfo`, schemas.endpointIds, (b) => n.endpointOperInfo(b));
    route(`${NETWORK}.DeleteEndpoint`, schemas.endpointIds, (b) => n.deleteEndpoint(b));
    route(`${NETWORK}.Join`, schemas.join, (b) => n.join(b));
    route(`${NETWORK}.Leave`, schemas.endpointIds, (b) => n.leave(b));
    route(`${NETWORK}.ProgramExternalConnectivity`, schemas.endpointIds, (b) => n.programExternalConnectivity(b));
    route(`${NETWORK}.RevokeExternalConnectivity`, schemas.endpointIds, (b) => n.revokeExternalConnectivity(b));
    // Node discovery: the overlay needs nothing from it, the agents find each other through the store.
    route(`${NETWORK}.DiscoverNew`, schemas.discover, () => ({}));
    route(`${NETWORK}.DiscoverDelete`, schemas.discover, () => ({}));
  }
  const i = opts.ipam;
  if (i) {
    bare(`${IPAM}.GetCapabilities`, () => i.capabilities());
    bare(`${IPAM}.GetDefaultAddressSpaces`, () => i.defaultAddressSpaces());
    route(`${IPAM}.RequestPool`, schemas.requestPool, (b) => i.requestPool(b));
    route(`${IPAM}.ReleasePool`, schemas.poolId, (b) => i.releasePool(b));
    route(`${IPAM}.RequestAddress`, schemas.requestAddress, (b) => i.requestAddress(b));
    route(`${IPAM}.ReleaseAddress`, schemas.releaseAddress, (b) => i.releaseAddress(b));
  }
  return app;
}
