// A small client of the agent's workload API (core/workload/types.ts): JSON over HTTP on a unix socket.
import { request } from 'node:http';
import type {
  AttachRequest, AttachResult, DetachRequest, StatusResult, WorkloadErrorBody,
} from '../../core/workload/types.js';

export const DEFAULT_WORKLOAD_SOCKET = '/run/bees/workload.sock';

/** An error answered by the agent, with the code of its error contract (server.ts maps it to Err/Error). */
export class WorkloadError extends Error {
  constructor(readonly code: WorkloadErrorBody['code'], message: string, readonly status: number) {
    super(message);
    this.name = 'WorkloadError';
  }
}

export class WorkloadClient {
  constructor(readonly socketPath: string = DEFAULT_WORKLOAD_SOCKET, private readonly timeoutMs = 60_000) {}

  private call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
    const data = body === undefined ? undefined : JSON.stringify(body);
    return new Promise<T>((resolve, reject) => {
      const req = request({
        socketPath: this.socketPath, path, method, timeout: this.timeoutMs,
        headers: { Host: 'bees', ...(data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {}) },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => { text += c; });
        res.on('end', () => {
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : {};
          } catch {
            return reject(new WorkloadError('internal', `agent answered ${res.statusCode} with non-JSON: ${text.slice(0, 200)}`, res.statusCode ?? 0));
          }
          if ((res.statusCode ?? 500) >= 400) {
            const e = parsed as Partial<WorkloadErrorBody>;
            return reject(new WorkloadError(e.code ?? 'internal', `agent: ${e.error ?? text}`, res.statusCode ?? 0));
          }
          resolve(parsed as T);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`agent at ${this.socketPath}: no answer in ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(new WorkloadError('unavailable', `agent at ${this.socketPath}: ${err.message}`, 0)));
      if (data) req.write(data);
      req.end();
    });
  }

  attach(req: AttachRequest): Promise<AttachResult> {
    return this.call('POST', '/v1/attach', req);
  }

  async detach(req: DetachRequest): Promise<void> {
    await this.call('POST', '/v1/detach', req);
  }

  status(): Promise<StatusResult> {
    return this.call('GET', '/v1/status');
  }
}
