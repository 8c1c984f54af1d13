// The workload API on the agent's root-only unix socket (see core/workload/types.ts for the protocol). Adapters
// hold no store credentials: whoever can reach this socket can plumb workloads on this host, nothing more.
import { unescape as percentDecode } from 'node:querystring';
import { Ajv, type ErrorObject } from 'ajv';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { AgentError } from '../../cni/plugin/agent-client.js';
import { CNI_ENV_VARS, CNI_PATH_ROUTE, EXIT_CODE_HEADER, MAX_STDIN_BYTES, headerOf } from '../../cni/plugin/protocol.js';
import { runCni, type WorkloadApi } from '../../cni/plugin/run.js';
import { traceLine } from './trace.js';
import { TopologyError, httpStatusOf } from '../topology/errors.js';
import { StoreError } from '../store/store.js';
import type { AttachRequest, CheckRequest, DetachRequest, GcRequest, WorkloadErrorBody } from '../workload/types.js';
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

const checkSchema = { ...detachSchema, required: ['orchestrator', 'workloadId', 'ifname'] } as const;

/**
 * The workload API called in-process by the agent-hosted CNI logic: the same body schemas (checked by an Ajv with
 * Fastify's default options, so coercion and stripping match the HTTP routes), the same Workloads calls, and the
 * same errorOf mapping, thrown as the AgentError the HTTP client would have thrown for that answer.
 */
export class InProcessWorkloadApi implements WorkloadApi {
  private readonly ajv = new Ajv({ coerceTypes: 'array', useDefaults: true, removeAdditional: true, allErrors: false });
  private readonly valid = {
    attach: this.ajv.compile(attachSchema), detach: this.ajv.compile(detachSchema), check: this.ajv.compile(checkSchema), gc: this.ajv.compile(gcSchema),
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

  attach(req: AttachRequest) { return this.call('attach', req, () => this.workloads.attach(req)); }
  detach(req: DetachRequest) { return this.call('detach', req, async () => { await this.workloads.detach(req); return {}; }); }
  check(req: CheckRequest) { return this.call('check', req, () => this.workloads.check(req)); }
  gc(req: GcRequest) { return this.call('gc', req, () => this.workloads.gc(req)); }
  status() { return this.call(undefined, undefined, async () => this.workloads.status()); }
}

/** The CNI environment from the shim's headers: percent-encoded values, an absent header is an unset variable. */
function cniEnvOf(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of CNI_ENV_VARS) {
    const h = headers[headerOf(name)];
    // querystring.unescape never throws: a malformed escape or invalid UTF-8 stays visible for parseEnv to refuse.
    if (typeof h === 'string') env[name] = percentDecode(h);
  }
  return env;
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
  app.post('/v1/check', { schema: { body: checkSchema } }, async (req) =>
    workloads.check(req.body as never));
  app.post('/v1/gc', { schema: { body: gcSchema } }, async (req) => workloads.gc(req.body as never));
  app.get('/v1/status', async () => workloads.status());
  // The `midonet` CNI shim's one call (cni/README.md): body = the plugin's stdin as is, whatever its content type;
  // answer = what the plugin prints, and its exit status in a header. Own scope: its body parser takes anything.
  const api = new InProcessWorkloadApi(workloads);

  void app.register(async (cni) => {
    cni.removeAllContentTypeParsers();
    cni.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_STDIN_BYTES }, (_req, body, done) => done(null, body));
    cni.post(CNI_PATH_ROUTE, { bodyLimit: MAX_STDIN_BYTES }, async (req, reply) => {
      const stdin = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
      const started = performance.now();
      const env = cniEnvOf(req.headers);
      const out = await runCni(env, stdin, api);
      traceLine(`cni ${env.CNI_COMMAND ?? '?'} exit=${out.exitCode} ${(performance.now() - started).toFixed(1)}`);
      return reply.code(200).header(EXIT_CODE_HEADER, String(out.exitCode)).type('application/json; charset=utf-8').send(out.stdout);
    });
  });
  return app;
}
