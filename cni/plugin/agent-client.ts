// The workload API's client over HTTP on the agent's unix socket (core/workload/types.ts); it fails with the
// errors of core/workload/api.ts, re-exported here for the plugin's code. The shipped plugin does not use it (the
// CNI logic runs inside the agent, see cni/README.md); it serves tools and tests that drive the workload API from
// another process.
import { request } from 'node:http';
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
} from '../../core/workload/types.js';
import { AgentError, AgentProtocolError, AgentUnreachable, type WorkloadApi } from '../../core/workload/api.js';
import { DEFAULT_AGENT_TIMEOUT_MS } from './protocol.js';

export { AgentError, AgentProtocolError, AgentUnreachable };

interface RawResponse {
  status: number;
  text: string;
}

function httpCall(socket: string, method: string, path: string, body: string | undefined, timeoutMs: number): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: socket,
        path,
        method,
        headers: body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {},
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  switch (err.code) {
    case 'ENOENT':
      return 'no such socket (is the agent running?)';
    case 'ECONNREFUSED':
      return 'connection refused (is the agent running?)';
    case 'EACCES':
      return 'permission denied (the plugin must run as root)';
    case 'ETIMEDOUT':
      return err.message;
  }
  if (err.name === 'TimeoutError') return 'timed out waiting for the agent';
  return err.message ?? String(e);
}

export class AgentClient implements WorkloadApi {
  constructor(
    readonly socket: string,
    readonly timeoutMs = DEFAULT_AGENT_TIMEOUT_MS,
  ) {}

  private async call<T>(method: 'GET' | 'POST', path: string, payload?: unknown): Promise<T> {
    const body = payload === undefined ? undefined : JSON.stringify(payload);
    let raw: RawResponse;
    try {
      raw = await httpCall(this.socket, method, path, body, this.timeoutMs);
    } catch (e) {
      throw new AgentUnreachable(this.socket, describe(e));
    }
    let parsed: unknown;
    try {
      parsed = raw.text === '' ? {} : JSON.parse(raw.text);
    } catch {
      throw new AgentProtocolError(
        `the agent at ${this.socket} answered ${method} ${path} with HTTP ${raw.status} and a body that is not JSON: ${raw.text.slice(0, 200)}`,
      );
    }
    if (raw.status >= 400) {
      const b = parsed as Partial<WorkloadErrorBody>;
      const errBody: WorkloadErrorBody = {
        error: typeof b.error === 'string' ? b.error : `HTTP ${raw.status}`,
        code: b.code ?? (raw.status === 404 ? 'not_found' : raw.status >= 500 ? 'internal' : 'invalid'),
      };
      if (typeof b.field === 'string') errBody.field = b.field;
      throw new AgentError(raw.status, errBody);
    }
    return parsed as T;
  }

  attach(req: AttachRequest): Promise<AttachResult> {
    return this.call('POST', '/v1/attach', req);
  }
  detach(req: DetachRequest): Promise<Record<string, never>> {
    return this.call('POST', '/v1/detach', req);
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
}
