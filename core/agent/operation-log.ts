// One request id per workload operation (attach, detach, check, gc), on every log line the operation writes, so one
// id finds what happened to one container among thousands of lines. An operation that arrives over the workload
// socket (the HTTP workload API, the CNI shim's POST /v1/cni) takes its id from fastify's request (the caller's
// X-Request-Id when it is a plain token, else a new one, answered in X-Request-Id); one that arrives in-process
// (the Docker plugin) gets a new id here. The id travels with the operation's async context (AsyncLocalStorage),
// so the agent's own log lines written while the operation runs go through the operation's logger too.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { FastifyBaseLogger } from 'fastify';
import type { Workloads } from './workloads.js';
import { ownerKey } from './workload-args.js';
import type { WorkloadRef } from '../workload/types.js';

export interface Operation {
  reqId: string;
  /** fastify's logger, bound to the request id. */
  log: FastifyBaseLogger;
}

const current = new AsyncLocalStorage<Operation>();

/** The operation the calling code runs for, if any. */
export function currentOperation(): Operation | undefined {
  return current.getStore();
}

/** Run `fn` (and whatever it starts) as part of operation `op`. */
export function inOperation<T>(op: Operation, fn: () => T): T {
  return current.run(op, fn);
}

/**
 * A line when each operation starts and one when it ends (its outcome, duration, and the port or the error), through
 * the current request's logger, or a new id's when called in-process. Wrapped in place, like AgentMetrics.instrument.
 */
export function logOperations(
  workloads: Workloads,
  root: FastifyBaseLogger,
  /** Told every failure (kept for `bees status`). */
  onError?: (operation: string, reqId: string, message: string) => void,
): void {
  const wrap =
    <Req, Res>(
      name: string,
      method: (req: Req) => Promise<Res>,
      what: (req: Req) => Record<string, unknown>,
      done: (r: Res) => Record<string, unknown>,
    ) =>
    (req: Req): Promise<Res> => {
      let op = currentOperation();
      if (!op) {
        const id = randomUUID();
        op = { reqId: id, log: root.child({ reqId: id }) };
      }
      const { log, reqId } = op;
      return inOperation(op, async () => {
        const started = performance.now();
        log.info({ operation: name, ...what(req) }, `${name} started`);
        try {
          const r = await method(req);
          log.info({ operation: name, ms: Math.round(performance.now() - started), ...done(r) }, `${name} done`);
          return r;
        } catch (e) {
          const err = e as Error & { code?: string };
          // A refusal (bad request, conflict) is the caller's; anything else is ours to look at.
          const level = err.code === 'invalid' || err.code === 'conflict' || err.code === 'not_found' ? 'warn' : 'error';
          log[level](
            { operation: name, ms: Math.round(performance.now() - started), error: err.message },
            `${name} failed: ${err.message}`,
          );
          onError?.(name, reqId, err.message);
          throw e;
        }
      });
    };
  const { attach, detach, check, gc } = {
    attach: workloads.attach.bind(workloads),
    detach: workloads.detach.bind(workloads),
    check: workloads.check.bind(workloads),
    gc: workloads.gc.bind(workloads),
  };
  const ref = (r: WorkloadRef & { network?: string; tenant?: string }) => ({
    workload: ownerKey(r),
    ifname: r.ifname,
    ...(r.network ? { network: r.network } : {}),
    ...(r.tenant ? { tenant: r.tenant } : {}),
  });
  workloads.attach = wrap('attach', attach, ref, (r) => ({ port: r.portId, ips: r.ips.map((i) => i.address), host: r.hostInterface.name }));
  workloads.detach = wrap('detach', detach, ref, () => ({}));
  workloads.check = wrap('check', check, ref, (r) => ({ ok: r.ok, ...(r.problems.length ? { problems: r.problems } : {}) }));
  workloads.gc = wrap(
    'gc',
    gc,
    (r) => ({ orchestrator: r.orchestrator, valid: r.valid.length }),
    (r) => ({ removed: r.removed.length }),
  );
}
