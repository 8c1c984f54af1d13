// The HTTP face of the API server double: fastify on 127.0.0.1, the REST paths of kube-apiserver
// (/api/v1/..., /apis/<group>/<version>/..., namespaced or not, /status and pods/binding) mapped onto the store's
// verbs, bearer-token check, and errors as `Status` bodies.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import YAML from 'yaml';
import { kinds, type Kind } from './kinds.js';
import { SelectorError } from './selectors.js';
import { keyOf, methodNotAllowed, notFoundPath, StatusError, type Obj } from './apiserver-errors.js';
import { apiGroupList, apiResourceList, openapiV3Doc, openapiV3Index } from './apiserver-discovery.js';
import { listResponse } from './apiserver-list.js';
import type { ObjectStore } from './apiserver-store.js';
import type { Watches } from './apiserver-watch.js';
import type { Writes } from './apiserver-writes.js';
import type { TestPki } from './pki.js';

export interface HttpParts {
  store: ObjectStore;
  writes: Writes;
  watches: Watches;
  /** Every request as "METHOD path?query" is appended here. */
  requests: string[];
  /** Required as `Authorization: Bearer <token>` when set. */
  requiredToken?: string | undefined;
}

export function createHttp(parts: HttpParts, tls?: TestPki): FastifyInstance {
  // The https variant of Fastify's instance type differs only in the server class; handlers use the common part.
  const app: FastifyInstance = tls
    ? Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024, https: { key: tls.key, cert: tls.cert } })
    : Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  app.all('/*', (req, reply) => handle(parts, req, reply));
  return app;
}

async function handle(parts: HttpParts, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  const url = new URL(req.url, 'http://x');
  parts.requests.push(`${req.method} ${url.pathname}${url.search}`);
  try {
    if (parts.requiredToken !== undefined && req.headers.authorization !== `Bearer ${parts.requiredToken}`) {
      throw new StatusError(401, 'Unauthorized', 'Unauthorized');
    }
    const answer = route(parts, req, url, reply);
    if (answer === undefined) return; // streaming (watch)
    reply
      .code(answer.code ?? 200)
      .type('application/json')
      .send(JSON.stringify(answer.body));
  } catch (e) {
    const err =
      e instanceof StatusError
        ? e
        : e instanceof SelectorError
          ? new StatusError(400, 'BadRequest', e.message)
          : new StatusError(500, 'InternalError', `Internal error occurred: ${(e as Error).message}`);
    reply.code(err.code).type('application/json').send(JSON.stringify(err.toStatus()));
  }
}

function route(parts: HttpParts, req: FastifyRequest, url: URL, reply: FastifyReply): { code?: number; body: unknown } | undefined {
  const { store, writes, watches } = parts;
  const p = url.pathname.replace(/\/+$/, '');
  const q = url.searchParams;
  if (p === '/version') return { body: { major: '1', minor: '32', gitVersion: 'v1.32.0-bees-test', platform: 'linux/amd64' } };
  if (p === '/healthz' || p === '/readyz' || p === '/livez') return { body: 'ok' };
  if (p === '/api')
    return {
      body: { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: url.host }] },
    };
  if (p === '/apis') return { body: apiGroupList() };
  if (p === '/openapi/v3') return { body: openapiV3Index() };
  if (p.startsWith('/openapi/v3/')) return { body: openapiV3Doc(p.slice('/openapi/v3/'.length)) };
  if (p === '/openapi/v2') throw new StatusError(404, 'NotFound', 'the server serves OpenAPI v3 only (/openapi/v3)');

  const segs = p.split('/').filter((s) => s !== '');
  let group: string;
  let version: string;
  let rest: string[];
  if (segs[0] === 'api' && segs[1] === 'v1') {
    group = '';
    version = 'v1';
    rest = segs.slice(2);
  } else if (segs[0] === 'apis' && segs.length >= 3) {
    // segs.length >= 3, so both are present.
    group = segs[1]!;
    version = segs[2]!;
    rest = segs.slice(3);
    if (!kinds.some((k) => k.group === group && k.version === version)) throw notFoundPath();
  } else throw notFoundPath();
  if (rest.length === 0) return { body: apiResourceList(group, version) };

  let ns: string | undefined;
  const byPlural = (pl: string): Kind | undefined => kinds.find((k) => k.group === group && k.version === version && k.plural === pl);
  if (rest[0] === 'namespaces' && rest.length >= 3 && byPlural(rest[2]!)?.namespaced) {
    ns = rest[1];
    rest = rest.slice(2);
  }
  const k = byPlural(rest[0]!); // rest is not empty: checked above, and the namespaces branch leaves at least 1
  if (!k) throw notFoundPath();
  const name = rest[1];
  const sub = rest[2];
  const binding = sub === 'binding' && k.kind === 'Pod';
  if (rest.length > 3 || (sub !== undefined && !(sub === 'status' && k.status) && !binding)) throw notFoundPath();
  if (k.namespaced && name !== undefined && ns === undefined) throw notFoundPath();
  const strict = q.get('fieldValidation') === 'Strict';
  const dryRun = q.has('dryRun');
  const body = (): Obj => parseBody(req);

  switch (req.method) {
    case 'GET':
      if (name !== undefined) return { body: store.get(k, ns, name) };
      if (q.get('watch') === 'true' || q.get('watch') === '1') {
        watches.open(k, ns, q, reply);
        return undefined;
      }
      return { body: listResponse(store, k, ns, q) };
    case 'POST':
      // binding means rest[2] is set, so name is too; Pods are namespaced, and the check above makes ns set with name.
      if (binding) return { code: 201, body: writes.bind(ns!, name!, body()) };
      if (name !== undefined) throw methodNotAllowed();
      if (dryRun) return { code: 201, body: writes.admit(k, ns, body(), strict) };
      return { code: 201, body: writes.create(k, ns, body(), strict) };
    case 'PUT':
      if (name === undefined) throw methodNotAllowed();
      return { body: writes.update(k, ns, name, body(), { subresource: sub, strict }) };
    case 'PATCH': {
      if (name === undefined) throw methodNotAllowed();
      const type = String(req.headers['content-type'] ?? '')
        .split(';')[0]!
        .trim(); // split always yields at least one element;
      const existed = store.objects.has(keyOf(k, ns, name));
      const out = writes.patch(k, ns, name, type, body(), {
        subresource: sub,
        strict: type === 'application/apply-patch+yaml' ? q.get('fieldValidation') !== 'Ignore' : strict,
      });
      return { code: existed ? 200 : 201, body: out };
    }
    case 'DELETE': {
      if (name === undefined) throw methodNotAllowed();
      let pre: string | undefined;
      try {
        pre = ((parseBody(req).preconditions as Obj | undefined)?.resourceVersion as string | undefined) ?? undefined;
      } catch {
        pre = undefined;
      }
      return { body: writes.delete(k, ns, name, pre) };
    }
    default:
      throw methodNotAllowed();
  }
}

function parseBody(req: FastifyRequest): Obj {
  const raw = req.body;
  if (typeof raw !== 'string' || raw.trim() === '') throw new StatusError(400, 'BadRequest', 'the request body is empty');
  let v: unknown;
  try {
    // apply-patch+yaml may be YAML; JSON is YAML too.
    v = String(req.headers['content-type'] ?? '').includes('yaml') ? YAML.parse(raw) : JSON.parse(raw);
  } catch (e) {
    throw new StatusError(400, 'BadRequest', `couldn't get version/kind; json parse error: ${(e as Error).message}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new StatusError(400, 'BadRequest', 'the body must be an object');
  return v as Obj;
}
