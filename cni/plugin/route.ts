// The `midonet` CNI shim's one call on the agent's workload socket (cni/README.md), added to the agent's workload
// server by the composition root (app/agent.ts): body = the plugin's stdin as is, whatever its content type;
// answer = what the plugin prints, and its exit status in a header. It runs in a scope of its own, so its body
// parser that takes anything does not leak into the workload API's JSON routes.
import { unescape as percentDecode } from 'node:querystring';
import type { FastifyInstance } from 'fastify';
import { traceLine } from '../../core/agent/trace.js';
import type { WorkloadApi } from '../../core/workload/api.js';
import { CNI_ENV_VARS, CNI_PATH_ROUTE, EXIT_CODE_HEADER, MAX_STDIN_BYTES, headerOf } from './protocol.js';
import { runCni } from './run.js';

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

/**
 * A failed call's error object names the agent's request id in `details`: the runtime shows the error, and the id
 * finds every agent log line of the operation (core/agent/operation-log.ts).
 */
function withRequestId(stdout: string, reqId: string): string {
  try {
    const err = JSON.parse(stdout) as { details?: string };
    err.details = err.details ? `${err.details} (agent request id ${reqId})` : `agent request id ${reqId}`;
    return JSON.stringify(err) + '\n';
  } catch {
    return stdout;
  }
}

/** Registers `POST /v1/cni`, running each call against the agent's in-process workload API. */
export async function cniRoute(cni: FastifyInstance, api: WorkloadApi): Promise<void> {
  cni.removeAllContentTypeParsers();
  cni.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_STDIN_BYTES }, (_req, body, done) => done(null, body));
  cni.post(CNI_PATH_ROUTE, { bodyLimit: MAX_STDIN_BYTES }, async (req, reply) => {
    const stdin = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
    const started = performance.now();
    const env = cniEnvOf(req.headers);
    const out = await runCni(env, stdin, api);
    traceLine(`cni ${env.CNI_COMMAND ?? '?'} exit=${out.exitCode} ${(performance.now() - started).toFixed(1)}`);
    const stdout = out.exitCode === 0 ? out.stdout : withRequestId(out.stdout, req.id);
    return reply.code(200).header(EXIT_CODE_HEADER, String(out.exitCode)).type('application/json; charset=utf-8').send(stdout);
  });
}
