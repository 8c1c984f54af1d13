// A small client of the agent's workload API (HTTP over its unix socket), for the CLI, the adapters that run
// in Node and the tests. Errors keep the agent's code and field so callers can answer in their own protocol.
import http from 'node:http';
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
} from './types.js';

export const DEFAULT_WORKLOAD_SOCKET = '/run/bees/workload.sock';

export class WorkloadApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: WorkloadErrorBody['code'],
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'WorkloadApiError';
  }
}

export class WorkloadClient {
  constructor(
    readonly socketPath: string = DEFAULT_WORKLOAD_SOCKET,
    private readonly timeoutMs = 120_000,
  ) {}

  attach(req: AttachRequest): Promise<AttachResult> {
    return this.call('POST', '/v1/attach', req);
  }

  async detach(req: DetachRequest): Promise<void> {
    await this.call('POST', '/v1/detach', req);
  }

  check(req: CheckRequest): Promise<CheckResult> {
    return this.call('POST', '/v1/check', req);
  }

  gc(req: GcRequest): Promise<GcResult> {
    return this.call('POST', '/v1/gc', req);
  }

  status(): Promise<StatusResult> {
    return this.call('GET', '/v1/status');
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = http.request(
        {
          socketPath: this.socketPath,
          method,
          path,
          timeout: this.timeoutMs,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : {};
            } catch {
              reject(
                new WorkloadApiError(
                  res.statusCode ?? 500,
                  'internal',
                  `agent answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`,
                ),
              );
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const e = parsed as Partial<WorkloadErrorBody>;
              reject(
                new WorkloadApiError(res.statusCode ?? 500, e.code ?? 'internal', e.error ?? `agent answered ${res.statusCode}`, e.field),
              );
              return;
            }
            resolve(parsed as T);
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`the agent did not answer ${path} within ${this.timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const why =
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? `cannot reach the bees agent at ${this.socketPath} (${err.code}): is it running?`
            : err.message;
        reject(new WorkloadApiError(503, 'unavailable', why));
      });
      if (payload) req.write(payload);
      req.end();
    });
  }
}
