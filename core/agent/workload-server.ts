// The workload API on the agent's root-only unix socket (see core/workload/types.ts for the protocol). Adapters
// hold no store credentials: whoever can reach this socket can plumb workloads on this host, nothing more.
import { Ajv, type ErrorObject } from 'ajv';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { REQUEST_ID_HEADER, requestIdOf } from '../api/request-id.js';
import { inOperation } from './operation-log.js';
import { classify } from '../errors.js';
import { AgentError, type WorkloadApi } from '../workload/api.js';
import type {
  AttachRequest,
  AttachResult,
  CheckRequest,
  CheckResult,
  DetachRequest,
  GcRequest,
  GcResult,
  StatusResult,
  WorkloadErrorBody,
} from '../workload/types.js';
import type { Workloads } from './workloads.js';

const ref = {
  orchestrator: { type: 'string', enum: ['cni', 'docker', 'mesos', 'kubernetes', 'cli', 'api'] },
  workloadId: { type: 'string', minLength: 1, maxLength: 512 },
  ifname: { type: 'string', minLength: 1, maxLength: 15 },
} as const;
const selector = {
  tenant: { type: 'string', minLength: 1, maxLength: 253 },
  network: { type: 'string', minLength: 1, maxLength: 253 },
} as const;

const attachSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['orchestrator', 'workloadId', 'ifname', 'network'],
  properties: {
    ...ref,
    ...selector,
    netns: { type: 'string', maxLength: 4096 },
    create: {
      type: 'object',
      additionalProperties: false,
      required: ['subnets'],
      properties: {
        subnets: {
          type: 'array',
          minItems: 1,
          maxItems: 8,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['cidr'],
            properties: { cidr: { type: 'string' }, gateway: { type: 'string' } },
          },
        },
        mtu: { type: 'integer', minimum: 576, maximum: 65535 },
      },
    },
    ips: { type: 'array', maxItems: 2, items: { type: 'string', maxLength: 64 } },
    mac: { type: 'string', maxLength: 32 },
    portMappings: {
      type: 'array',
      maxItems: 1024,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['hostPort', 'containerPort', 'protocol'],
        properties: {
          hostPort: { type: 'integer', minimum: 1, maximum: 65535 },
          containerPort: { type: 'integer', minimum: 1, maximum: 65535 },
          protocol: { type: 'string', enum: ['tcp', 'udp', 'sctp'] },
          hostIP: { type: 'string' },
        },
      },
    },
    bandwidth: {
      type: 'object',
      additionalProperties: false,
      properties: {
        ingressRate: { type: 'integer', minimum: 0 },
        ingressBurst: { type: 'integer', minimum: 0 },
        egressRate: { type: 'integer', minimum: 0 },
        egressBurst: { type: 'integer', minimum: 0 },
      },
    },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    hostSideOnly: { type: 'boolean' },
  },
} as const;

const detachSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['orchestrator', 'workloadId', 'ifname'],
  properties: { ...ref, ...selector, netns: { type: 'string', maxLength: 4096 } },
} as const;

const gcSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['orchestrator', 'valid'],
  properties: {
    orchestrator: ref.orchestrator,
    ...selector,
    valid: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['workloadId', 'ifname'],
        properties: { workloadId: { type: 'string' }, ifname: { type: 'string' } },
      },
    },
  },
} as const;

// Response schemas: fastify serialises each answer from its schema (fast-json-stringify), so a field that is not
// listed here never reaches a client. They list every field of the result types in core/workload/types.ts, which
// the CNI plugin, the Docker driver and the CLI read.
const attachResultSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['portId', 'bridgeId', 'tenantId', 'interface', 'hostInterface', 'ips', 'routes', 'mtu'],
  properties: {
    portId: { type: 'string' },
    bridgeId: { type: 'string' },
    tenantId: { type: 'string' },
    interface: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'mac', 'mtu', 'sandbox'],
      properties: { name: { type: 'string' }, mac: { type: 'string' }, mtu: { type: 'integer' }, sandbox: { type: 'string' } },
    },
    hostInterface: {
      type: 'object',
      additionalProperties: false,
      required: ['name', 'mac'],
      properties: { name: { type: 'string' }, mac: { type: 'string' } },
    },
    peerInterface: { type: 'string' },
    ips: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['address', 'family'],
        properties: { address: { type: 'string' }, gateway: { type: 'string' }, family: { type: 'integer', enum: [4, 6] } },
      },
    },
    routes: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['dst'],
        properties: { dst: { type: 'string' }, gw: { type: 'string' } },
      },
    },
    dns: {
      type: 'object',
      additionalProperties: false,
      properties: {
        nameservers: { type: 'array', items: { type: 'string' } },
        domain: { type: 'string' },
        search: { type: 'array', items: { type: 'string' } },
        options: { type: 'array', items: { type: 'string' } },
      },
    },
    mtu: { type: 'integer' },
  },
} as const;

const emptyResultSchema = { type: 'object', additionalProperties: false, properties: {} } as const;

const checkResultSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['ok', 'problems'],
  properties: { ok: { type: 'boolean' }, problems: { type: 'array', items: { type: 'string' } } },
} as const;

const gcResultSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['removed'],
  properties: {
    removed: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['orchestrator', 'workloadId', 'ifname'],
        properties: { orchestrator: ref.orchestrator, workloadId: { type: 'string' }, ifname: { type: 'string' } },
      },
    },
  },
} as const;

const statusResultSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['ready', 'hostId', 'store'],
  properties: { ready: { type: 'boolean' }, hostId: { type: 'string' }, store: { type: 'string' }, reason: { type: 'string' } },
} as const;

/** The type json-schema-to-ts reads from a schema: what fastify's type provider gives a handler. */
type FromSchema<S> = (JsonSchemaToTsProvider & { schema: S })['validator'];
/** Compiles only when A and B are each assignable to the other. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// The protocol's types (core/workload/types.ts, read by every client) and the schemas the server checks and
// serialises with must say the same thing: each line fails to compile when the two drift apart.
const agree: [
  Same<FromSchema<typeof attachSchema>, AttachRequest>,
  Same<FromSchema<typeof detachSchema>, DetachRequest>,
  Same<FromSchema<typeof checkSchema>, CheckRequest>,
  Same<FromSchema<typeof gcSchema>, GcRequest>,
  Same<FromSchema<typeof attachResultSchema>, AttachResult>,
  Same<FromSchema<typeof checkResultSchema>, CheckResult>,
  Same<FromSchema<typeof gcResultSchema>, GcResult>,
  Same<FromSchema<typeof statusResultSchema>, StatusResult>,
] = [true, true, true, true, true, true, true, true];
void agree;

/** The workload API's answer to a failure: the status of its kind (core/errors.ts) and the body with that kind. */
function errorOf(err: unknown): { status: number; body: WorkloadErrorBody } {
  const { kind, status, message, field } = classify(err);
  return { status, body: { error: message, code: kind, ...(field ? { field } : {}) } };
}

/**
 * Routes an adapter adds to the workload server (the CNI shim's `POST /v1/cni`), registered as a fastify plugin
 * in a scope of their own, with the in-process workload API to call.
 */
export type WorkloadRoutes = (app: FastifyInstance, api: WorkloadApi) => Promise<void>;

const checkSchema = { ...detachSchema, required: ['orchestrator', 'workloadId', 'ifname'] } as const;

/**
 * The workload API called in-process by the agent-hosted CNI logic: the same body schemas (checked by an Ajv with
 * Fastify's default options, so coercion and stripping match the HTTP routes), the same Workloads calls, and the
 * same errorOf mapping, thrown as the AgentError the HTTP client would have thrown for that answer.
 */
export class InProcessWorkloadApi implements WorkloadApi {
  private readonly ajv = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: true, allErrors: false });
  private readonly valid = {
    attach: this.ajv.compile(attachSchema),
    detach: this.ajv.compile(detachSchema),
    check: this.ajv.compile(checkSchema),
    gc: this.ajv.compile(gcSchema),
  };

  constructor(private readonly workloads: Workloads) {}

  private async call<T>(schema: keyof InProcessWorkloadApi['valid'] | undefined, body: unknown, fn: () => Promise<T>): Promise<T> {
    try {
      if (schema) {
        const v = this.valid[schema];
        if (!v(body)) {
          // Fastify's schemaErrorFormatter words, status 400: what errorOf makes of a failed route validation.
          const text = (v.errors ?? []).map((e: ErrorObject) => `body${e.instancePath} ${e.message ?? 'is invalid'}`).join(', ');
          throw Object.assign(new Error(text), { statusCode: 400 });
        }
      }
      return await fn();
    } catch (e) {
      const { status, body: errBody } = errorOf(e);
      if (status >= 500) process.stderr.write(`workload api (cni): ${(e as Error)?.stack ?? String(e)}\n`);
      throw new AgentError(status, errBody);
    }
  }

  attach(req: AttachRequest) {
    return this.call('attach', req, () => this.workloads.attach(req));
  }
  detach(req: DetachRequest) {
    return this.call('detach', req, async () => {
      await this.workloads.detach(req);
      return {};
    });
  }
  check(req: CheckRequest) {
    return this.call('check', req, () => this.workloads.check(req));
  }
  gc(req: GcRequest) {
    return this.call('gc', req, () => this.workloads.gc(req));
  }
  status() {
    return this.call(undefined, undefined, async () => this.workloads.status());
  }
}

export function buildWorkloadServer(
  workloads: Workloads,
  extraRoutes: WorkloadRoutes[] = [],
  opts: { logger?: FastifyServerOptions['logger'] } = {},
): FastifyInstance {
  const app = Fastify({
    logger: opts.logger ?? false,
    bodyLimit: 256 * 1024,
    // Every call is one workload operation with an id (operation-log.ts): the caller's X-Request-Id when plain.
    requestIdHeader: false,
    genReqId: (req) => requestIdOf(req.headers[REQUEST_ID_HEADER]),
  });
  app.addHook('onRequest', (req, reply, done) => {
    void reply.header(REQUEST_ID_HEADER, req.id);
    // The rest of the request (handlers, the workload logic, the agent's log lines) runs as this operation.
    inOperation({ reqId: req.id, log: req.log }, done);
  });
  app.setErrorHandler((err, _req, reply) => {
    const { status, body } = errorOf(err);
    if (status >= 500) process.stderr.write(`workload api: ${(err as Error).stack ?? String(err)}\n`);
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send({ error: `no such workload API call: ${req.method} ${req.url}`, code: 'not_found' } satisfies WorkloadErrorBody);
  });
  // Bodies and answers typed from the schemas: the handlers get what validation let through, and must return
  // what the response schema serialises.
  const typed = app.withTypeProvider<JsonSchemaToTsProvider>();
  typed.post('/v1/attach', { schema: { body: attachSchema, response: { 200: attachResultSchema } } }, async (req) =>
    workloads.attach(req.body),
  );
  typed.post('/v1/detach', { schema: { body: detachSchema, response: { 200: emptyResultSchema } } }, async (req) => {
    await workloads.detach(req.body);
    return {};
  });
  typed.post('/v1/check', { schema: { body: checkSchema, response: { 200: checkResultSchema } } }, async (req) =>
    workloads.check(req.body),
  );
  typed.post('/v1/gc', { schema: { body: gcSchema, response: { 200: gcResultSchema } } }, async (req) => workloads.gc(req.body));
  // Polled by readiness checks: not worth two log lines each.
  typed.get('/v1/status', { logLevel: 'warn', schema: { response: { 200: statusResultSchema } } }, async () => workloads.status());
  const api = new InProcessWorkloadApi(workloads);
  for (const routes of extraRoutes) void app.register(async (scope) => routes(scope, api));
  return app;
}
