// A small typed client of the REST API, over a unix socket, TCP or HTTPS (with a bearer token). Used by the CLI and
// the agent. Errors come back as ApiError, a TopologyError carrying the HTTP status, so callers branch on `code`.
import http from 'node:http';
import https from 'node:https';
import type { Kind, Models, Port } from '../model/types.js';
import { TopologyError, type TopologyErrorCode } from '../topology/errors.js';
import type { ListFilter } from '../topology/service.js';
import { KIND_PATHS, type ApiErrorBody, type ApiStatus } from './paths.js';

export const DEFAULT_API = 'unix:/run/bees/api.sock';

export class ApiError extends TopologyError {
  constructor(
    code: TopologyErrorCode,
    message: string,
    readonly status: number,
    field?: string,
    /** On a create conflict: the id of the object that exists. */
    readonly existingId?: string,
  ) {
    super(code, message, field);
    this.name = 'ApiError';
  }
}

function codeOf(status: number): TopologyErrorCode {
  if (status === 404) return 'not_found';
  if (status === 409) return 'conflict';
  if (status >= 500) return 'unavailable';
  return 'invalid';
}

export interface ApiClientOptions {
  token?: string;
  /** CA certificate(s) (PEM) to trust for an https:// endpoint, instead of the system store. */
  ca?: string | Buffer;
  /** Per-request timeout in ms (default 30 s). */
  timeoutMs?: number;
}

type Target = { socketPath: string } | { host: string; port: number; tls: boolean };

function parseEndpoint(endpoint: string): Target {
  if (endpoint.startsWith('unix:')) {
    const socketPath = endpoint.slice('unix:'.length);
    if (!socketPath) throw new TopologyError('invalid', `API endpoint ${endpoint}: no socket path`);
    return { socketPath };
  }
  const m = /^(tcp|http|https):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(endpoint);
  if (!m)
    throw new TopologyError(
      'invalid',
      `API endpoint ${JSON.stringify(endpoint)} is neither unix:/path, tcp://host:port nor https://host:port`,
    );
  return { host: m[2]!.replace(/^\[|\]$/g, ''), port: Number(m[3]), tls: m[1] === 'https' };
}

export class ApiClient {
  private readonly target: Target;

  constructor(
    readonly endpoint: string = DEFAULT_API,
    private readonly opts: ApiClientOptions = {},
  ) {
    this.target = parseEndpoint(endpoint);
  }

  /** One request; resolves with the parsed JSON body (undefined for 204), rejects with ApiError. */
  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    return new Promise<T>((resolve, reject) => {
      const t = this.target;
      const common = { method, path, headers, timeout: this.opts.timeoutMs ?? 30_000 };
      const onResponse = (res: http.IncomingMessage): void => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            parsed = undefined;
          }
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) return resolve(parsed as T);
          const e = (parsed ?? {}) as Partial<ApiErrorBody>;
          const code =
            typeof e.error === 'string' && ['invalid', 'not_found', 'conflict', 'exhausted', 'unavailable'].includes(e.error)
              ? (e.error as TopologyErrorCode)
              : codeOf(status);
          reject(new ApiError(code, e.message ?? `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ''}`, status, e.field, e.id));
        });
      };
      const req =
        'socketPath' in t
          ? http.request({ ...common, socketPath: t.socketPath }, onResponse)
          : t.tls
            ? https.request({ ...common, host: t.host, port: t.port, ...(this.opts.ca ? { ca: this.opts.ca } : {}) }, onResponse)
            : http.request({ ...common, host: t.host, port: t.port }, onResponse);
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs ?? 30_000} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is the API running?' : err.message;
        reject(new ApiError('unavailable', `cannot reach the API at ${this.endpoint}: ${err.code ?? ''} ${why}`.replace(/\s+/g, ' '), 0));
      });
      req.end(payload);
    });
  }

  list<K extends Kind>(kind: K, filter: ListFilter = {}): Promise<Models[K][]> {
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v !== undefined && v !== '') as [string, string][]);
    const qs = q.toString();
    return this.request('GET', `/v1/${KIND_PATHS[kind]}${qs ? `?${qs}` : ''}`);
  }

  get<K extends Kind>(kind: K, id: string): Promise<Models[K]> {
    return this.request('GET', `/v1/${KIND_PATHS[kind]}/${encodeURIComponent(id)}`);
  }

  create<K extends Kind>(kind: K, input: Partial<Models[K]> & Record<string, unknown>): Promise<Models[K]> {
    return this.request('POST', `/v1/${KIND_PATHS[kind]}`, input);
  }

  update<K extends Kind>(kind: K, id: string, patch: Record<string, unknown>): Promise<Models[K]> {
    return this.request('PATCH', `/v1/${KIND_PATHS[kind]}/${encodeURIComponent(id)}`, patch);
  }

  async delete(kind: Kind, id: string): Promise<void> {
    await this.request('DELETE', `/v1/${KIND_PATHS[kind]}/${encodeURIComponent(id)}`);
  }

  attachRouter(routerId: string, bridgeId: string, address?: string): Promise<{ routerPort: Port; bridgePort: Port }> {
    return this.request('POST', `/v1/routers/${encodeURIComponent(routerId)}/attach`, { bridgeId, ...(address ? { address } : {}) });
  }

  async detachRouter(routerId: string, bridgeId: string): Promise<void> {
    await this.request('POST', `/v1/routers/${encodeURIComponent(routerId)}/detach`, { bridgeId });
  }

  status(): Promise<ApiStatus> {
    return this.request('GET', '/v1/status');
  }

  /** Live hosts: host id -> the record its agent keeps in the store. */
  hostLiveness(): Promise<Record<string, unknown>> {
    return this.request('GET', '/v1/liveness/hosts');
  }
}
