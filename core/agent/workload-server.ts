// The workload API on the agent's root-only unix socket (see core/workload/types.ts for the protocol). Adapters
// hold no store credentials: whoever can reach this socket can plumb workloads on this host, nothing more.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { TopologyError, httpStatusOf } from '../topology/errors.js';
import { StoreError } from '../store/store.js';
import type { WorkloadErrorBody } from '../workload/types.js';
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
          type: 'array', minItems: 1, maxItems: 8,
          items: { type: 'object', additionalProperties: false, required: ['cidr'], properties: { cidr: { type: 'string' }, gateway: { type: 'string' } } },
        },
        mtu: { type: 'integer', minimum: 576, maximum: 65535 },
      },
    },
    ips: { type: 'array', maxItems: 2, items: { type: 'string', maxLength: 64 } },
    mac: { type: 'string', maxLength: 32 },
    portMappings: {
      type: 'array', maxItems: 1024,
      items: {
        type: 'object', additionalProperties: false, required: ['hostPort', 'containerPort', 'protocol'],
        properties: {
          hostPort: { type: 'integer', minimum: 1, maximum: 65535 },
          containerPort: { type: 'integer', minimum: 1, maximum: 65535 },
          protocol: { type: 'string', enum: ['tcp', 'udp', 'sctp'] },
          hostIP: { type: 'string' },
        },
      },
    },
    bandwidth: {
      type: 'object', additionalProperties: false,
      properties: {
        ingressRate: { type: 'integer', minimum: 0 }, ingressBurst: { type: 'integer', minimum: 0 },
        egressRate: { type: 'integer', minimum: 0 }, egressBurst: { type: 'integer', minimum: 0 },
      },
    },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    hostSideOnly: { type: 'boolean' },
  },
} as const;

const detachSchema = {
  type: 'object', additionalProperties: false, required: ['orchestrator', 'workloadId', 'ifname'],
  properties: { ...ref, ...selector, netns: { type: 'string', maxLength: 4096 } },
} as const;

const gcSchema = {
  type: 'object', additionalProperties: false, required: ['orchestrator', 'valid'],
  properties: {
    orchestrator: ref.orchestrator,
    ...selector,
    valid: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, required: ['workloadId', 'ifname'], properties: { workloadId: { type: 'string' }, ifname: { type: 'string' } } },
    },
  },
} as const;

function errorOf(err: unknown): { status: number; body: WorkloadErrorBody } {
  if (err instanceof TopologyError) {
    return { status: httpStatusOf(err.code), body: { error: err.message, code: err.code, ...(err.field ? { field: err.field } : {}) } };
  }
  if (err instanceof StoreError) {
    const code = err.code === 'Unavailable' || err.code === 'Closed' ? 'unavailable' : err.code === 'NotFound' ? 'not_found' : 'conflict';
    return { status: code === 'unavailable' ? 503 : code === 'not_found' ? 404 : 409, body: { error: err.message, code } };
  }
  const fe = err as FastifyError;
  if (fe && typeof fe.statusCode === 'number' && fe.statusCode < 500) {
    return { status: fe.statusCode, body: { error: fe.message, code: 'invalid' } };
  }
  return { status: 500, body: { error: (err as Error)?.message ?? String(err), code: 'internal' } };
}

export function buildWorkloadServer(workloads: Workloads): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 256 * 1024 });
  app.setErrorHandler((err, _req, reply) => {
    const { status, body } = errorOf(err);
    if (status >= 500) process.stderr.write(`workload api: ${(err as Error).stack ?? String(err)}\n`);
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ error: `no such workload API call: ${req.method} ${req.url}`, code: 'not_found' } satisfies WorkloadErrorBody);
  });
  app.post('/v1/attach', { schema: { body: attachSchema } }, async (req) => workloads.attach(req.body as never));
  app.post('/v1/detach', { schema: { body: detachSchema } }, async (req) => {
    await workloads.detach(req.body as never);
    return {};
  });
  app.post('/v1/check', { schema: { body: { ...detachSchema, required: ['orchestrator', 'workloadId', 'ifname'] } } }, async (req) =>
    workloads.check(req.body as never));
  app.post('/v1/gc', { schema: { body: gcSchema } }, async (req) => workloads.gc(req.body as never));
  app.get('/v1/status', async () => workloads.status());
  return app;
}
