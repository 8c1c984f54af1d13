// The REST surface as one table: every route with its JSON schemas and handler. The server registers it with
// fastify and the OpenAPI document is generated from it, so the two cannot drift apart.
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import { SCHEMAS, fieldsOf, idSchema, type JsonSchema } from '../model/schema.js';
import { KINDS, type Kind } from '../model/types.js';
import type { Store } from '../store/store.js';
import { LIST_FILTER_KEYS, type Topology } from '../topology/service.js';
import { securityGroupRoutes } from './security-groups.js';
import { attributionRoutes, probeTrace, type LocalAttribution, type LocalProber } from './attribution.js';
import { HOST_LIVENESS_PREFIX, KIND_PATHS, type ApiStatus } from './paths.js';
import { TopologyError } from '../topology/errors.js';
import { TraceError, traceTopology, type TraceRequest, type TraceResult } from '../policy/trace.js';
import { PolicyError } from '../policy/simulate.js';

export type Method = 'GET' | 'POST' | 'PATCH' | 'DELETE';

/** The request parts a route validates; fastify checks each against its schema before the handler runs. */
export interface RouteSchema {
  params?: JsonSchema;
  querystring?: JsonSchema;
  body?: JsonSchema;
}

/**
 * The type a request part has once validated against schema `S`, as the json-schema-to-ts type provider derives it
 * for fastify. A schema built at run time (the per-kind ones from model/schema.ts) is not literal, so nothing can be
 * derived from it: such a part, and an absent one, has the `Loose` type (query strings and paths are text).
 */
type Validated<S, Loose> = S extends JsonSchema
  ? unknown extends (JsonSchemaToTsProvider & { schema: S })['validator']
    ? Loose
    : (JsonSchemaToTsProvider & { schema: S })['validator']
  : Loose;

export interface RouteInput<S extends RouteSchema = RouteSchema> {
  params: Validated<S['params'], Record<string, string>>;
  query: Validated<S['querystring'], Record<string, string>>;
  body: Validated<S['body'], unknown>;
}

/** A route as written in the table: its handler's input is typed from its own schemas. */
export interface TypedRoute<S extends RouteSchema> {
  method: Method;
  /** fastify form, ":id" for parameters */
  url: string;
  operationId: string;
  summary: string;
  tag: string;
  schema: S;
  /** Success status and the schema of its body (none for 204). */
  success: { status: number; schema?: JsonSchema; description: string };
  handler(input: RouteInput<S>): Promise<unknown>;
}

/** A route as the server and the OpenAPI document take it: the request parts as fastify hands them over. */
export interface ApiRoute extends Omit<TypedRoute<RouteSchema>, 'handler'> {
  handler(input: { params: unknown; query: unknown; body: unknown }): Promise<unknown>;
}

/**
 * Enters a route into the table. The one place where the request's parts take their schema-derived types: the server
 * registers `schema` with fastify, whose validators refuse any request that does not match before this handler runs.
 */
export function route<const S extends RouteSchema>(r: TypedRoute<S>): ApiRoute {
  return { ...r, handler: (input) => r.handler(input as RouteInput<S>) };
}

export interface RouteContext {
  topology: Topology;
  store: Store;
  version: string;
  /** The kernel of the agent serving this API (counters, drop log); absent in a standalone API. */
  attribution?: LocalAttribution | undefined;
  /** The agent's probe sender (`bees trace --probe`); absent in a standalone API. */
  prober?: LocalProber | undefined;
}

export const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: idSchema } } as const;
const errorRef = { $ref: '#/components/schemas/Error' };
export const ERROR_SCHEMA: JsonSchema = {
  type: 'object',
  required: ['error', 'message'],
  properties: { error: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' }, id: { type: 'string' } },
};
export { errorRef };

function filterSchema(kind: Kind): JsonSchema {
  const fields = new Set(fieldsOf(kind));
  const properties: Record<string, JsonSchema> = {};
  for (const key of LIST_FILTER_KEYS) if (fields.has(key)) properties[key] = { type: 'string', minLength: 1, maxLength: 256 };
  return { type: 'object', additionalProperties: false, properties };
}

function kindRoutes(kind: Kind, ctx: RouteContext): ApiRoute[] {
  const base = `/v1/${KIND_PATHS[kind]}`;
  const object = { $ref: `#/components/schemas/${kind}` };
  const { topology } = ctx;
  return [
    route({
      method: 'GET',
      url: base,
      operationId: `list${kind}`,
      summary: `List ${kind} objects (filters: equality on fields)`,
      tag: kind,
      schema: { querystring: filterSchema(kind) },
      success: { status: 200, schema: { type: 'array', items: object }, description: `${kind} objects` },
      handler: ({ query }) => topology.list(kind, query),
    }),
    route({
      method: 'POST',
      url: base,
      operationId: `create${kind}`,
      summary: `Create a ${kind}`,
      tag: kind,
      schema: { body: SCHEMAS[kind].create },
      success: { status: 201, schema: object, description: `The created ${kind}` },
      handler: ({ body }) => topology.create(kind, body),
    }),
    route({
      method: 'GET',
      url: `${base}/:id`,
      operationId: `get${kind}`,
      summary: `Get a ${kind}`,
      tag: kind,
      schema: { params: idParams },
      success: { status: 200, schema: object, description: `The ${kind}` },
      handler: ({ params }) => topology.get(kind, params.id),
    }),
    route({
      method: 'PATCH',
      url: `${base}/:id`,
      operationId: `update${kind}`,
      summary: `Update a ${kind} (merge patch: null clears a field)`,
      tag: kind,
      schema: { params: idParams, body: SCHEMAS[kind].patch },
      success: { status: 200, schema: object, description: `The updated ${kind}` },
      handler: ({ params, body }) => topology.update(kind, params.id, body),
    }),
    route({
      method: 'DELETE',
      url: `${base}/:id`,
      operationId: `delete${kind}`,
      summary: `Delete a ${kind} (409 while referenced)`,
      tag: kind,
      schema: { params: idParams },
      success: { status: 204, description: 'Deleted' },
      handler: async ({ params }) => {
        await topology.delete(kind, params.id);
      },
    }),
  ];
}

export function apiRoutes(ctx: RouteContext): ApiRoute[] {
  const { topology, store } = ctx;
  const linkBody = {
    type: 'object',
    additionalProperties: false,
    required: ['bridgeId'],
    properties: {
      bridgeId: idSchema,
      address: { type: 'string', minLength: 4, maxLength: 68, description: 'Router address in CIDR form' },
    },
  } as const;
  return [
    ...KINDS.flatMap((k) => kindRoutes(k, ctx)),
    ...securityGroupRoutes(topology),
    ...attributionRoutes(topology, ctx.attribution),
    route({
      method: 'POST',
      url: '/v1/routers/:id/attach',
      operationId: 'attachRouter',
      tag: 'Router',
      summary: 'Link a router to a bridge: router port with the gateway address, peered bridge port, routes to the bridge subnets',
      schema: { params: idParams, body: linkBody },
      success: {
        status: 200,
        description: 'The two ports of the link',
        schema: {
          type: 'object',
          properties: { routerPort: { $ref: '#/components/schemas/Port' }, bridgePort: { $ref: '#/components/schemas/Port' } },
        },
      },
      handler: ({ params, body }) => {
        return topology.attachRouter(params.id, body.bridgeId, body.address === undefined ? {} : { address: body.address });
      },
    }),
    route({
      method: 'POST',
      url: '/v1/routers/:id/detach',
      operationId: 'detachRouter',
      tag: 'Router',
      summary: 'Remove the link between a router and a bridge',
      schema: { params: idParams, body: { ...linkBody, properties: { bridgeId: idSchema } } },
      success: { status: 204, description: 'Detached' },
      handler: async ({ params, body }) => {
        await topology.detachRouter(params.id, body.bridgeId);
      },
    }),
    route({
      method: 'POST',
      url: '/v1/trace',
      operationId: 'trace',
      tag: 'Trace',
      summary: 'What the chains do with a packet between two workloads (the simulator over the stored topology)',
      schema: { body: TRACE_BODY },
      success: {
        status: 200,
        description: 'Every chain and rule met by the request and its reply, and the verdicts',
        schema: { type: 'object', additionalProperties: true },
      },
      handler: ({ body }) => {
        const { probe, ...req } = body;
        if (!probe) return trace(topology, req);
        return probeTrace(topology, ctx.prober, (srcPort) => trace(topology, { ...req, srcPort }), req.proto ?? 'tcp');
      },
    }),
    route({
      method: 'GET',
      url: '/v1/liveness/hosts',
      operationId: 'hostLiveness',
      tag: 'Host',
      summary: 'Live hosts: the ephemeral records agents hold in the store, by host id',
      schema: {},
      success: { status: 200, description: 'host id -> record', schema: { type: 'object', additionalProperties: true } },
      handler: async () => {
        const records = await store.listEphemeral(HOST_LIVENESS_PREFIX);
        return Object.fromEntries(Object.entries(records).map(([k, v]) => [k.slice(HOST_LIVENESS_PREFIX.length), v]));
      },
    }),
    route({
      method: 'GET',
      url: '/v1/status',
      operationId: 'status',
      tag: 'Status',
      summary: 'Store URL, whether it answers, and object counts',
      schema: {},
      success: {
        status: 200,
        description: 'Status',
        schema: {
          type: 'object',
          properties: {
            store: { type: 'string' },
            reachable: { type: 'boolean' },
            error: { type: 'string' },
            lastSeq: { type: 'integer' },
            counts: { type: 'object', additionalProperties: { type: 'integer' } },
            version: { type: 'string' },
          },
        },
      },
      handler: () => status(ctx),
    }),
  ];
}

const TRACE_BODY = {
  type: 'object',
  additionalProperties: false,
  required: ['src', 'dst'],
  properties: {
    src: { type: 'string', minLength: 1, maxLength: 200, description: 'Port id, workload address or workload id' },
    dst: { type: 'string', minLength: 1, maxLength: 200, description: 'Port id, workload address or workload id' },
    proto: { type: 'string', enum: ['tcp', 'udp', 'icmp'] },
    port: { type: 'integer', minimum: 1, maximum: 65535, description: 'Destination port (default 80)' },
    srcPort: { type: 'integer', minimum: 1, maximum: 65535 },
    probe: { type: 'boolean', description: "Also send a real packet (the source host's agent only) and report each host's kernel" },
  },
} as const;

async function trace(topology: Topology, req: TraceRequest): Promise<TraceResult> {
  const [ports, bridges, chains, rules, ipAddrGroups] = await Promise.all([
    topology.list('Port'),
    topology.list('Bridge'),
    topology.list('Chain'),
    topology.list('Rule'),
    topology.list('IpAddrGroup'),
  ]);
  try {
    return traceTopology({ ports, bridges, chains, rules, ipAddrGroups }, req);
  } catch (e) {
    if (e instanceof TraceError) throw new TopologyError('invalid', e.message, e.field);
    // The stored policy holds what the simulator will not guess at (support.ts): the request is fine, the policy not.
    if (e instanceof PolicyError) throw new TopologyError('conflict', e.message);
    throw e;
  }
}

async function status(ctx: RouteContext): Promise<ApiStatus> {
  const out: ApiStatus = { store: ctx.store.url, reachable: false, counts: {}, version: ctx.version };
  // The store client knows its connection is down: say so now instead of waiting out the timeouts below.
  const health = ctx.store.health();
  if (!health.up) {
    out.error = health.reason ?? 'the store is not reachable';
    return out;
  }
  try {
    out.lastSeq = await withTimeout(ctx.store.lastSeq(), 5000);
    const counted = await withTimeout(Promise.all(KINDS.map(async (k) => [k, (await ctx.topology.list(k)).length] as const)), 5000);
    for (const [k, n] of counted) out.counts[k] = n;
    out.reachable = true;
  } catch (err) {
    out.error = (err as Error).message;
  }
  return out;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
