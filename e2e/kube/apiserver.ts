// A test double of kube-apiserver: an in-memory store served over HTTP with the list/watch contract of the real
// one (global resourceVersion, history window with 410 Expired, bookmarks, selector transitions), the write verbs
// kubectl and @kubernetes/client-node use, strict field validation, discovery and enough OpenAPI v3 for kubectl to
// apply with validation on. It is NOT a Kubernetes API server: no admission, no RBAC, no field ownership in
// server-side apply, no garbage collector. See e2e/kube/README.md for what it does and does not do.
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import YAML from 'yaml';
import { apiVersionOf, kinds, schemaErrors, unknownFields, type Kind } from './kinds.js';
import { jsonMergePatch, strategicMergePatch } from './merge.js';
import type { TestPki } from './pki.js';
import {
  matchFields,
  matchLabels,
  parseFieldSelector,
  parseLabelSelector,
  SelectorError,
  type FieldRequirement,
  type Requirement,
} from './selectors.js';

type Obj = Record<string, unknown>;
interface Meta {
  name: string;
  namespace?: string | undefined;
  resourceVersion?: string | undefined;
  uid?: string;
  labels?: Record<string, string>;
  finalizers?: string[];
  deletionTimestamp?: string;
  generateName?: string;
  generation?: number;
  [k: string]: unknown;
}
type KObj = Obj & { metadata: Meta };

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED';

interface HistoryEvent {
  rv: number;
  kind: Kind;
  type: EventType;
  object: KObj; // state after the event (the last state, for DELETED)
  previous?: KObj | undefined; // state before, for selector transitions
}

interface Watcher {
  kind: Kind;
  namespace?: string | undefined;
  labels: Requirement[];
  fields: FieldRequirement[];
  res: ServerResponse;
  /** Fault injection: a stalled watch stays open but receives nothing, like a half-dead TCP connection. */
  stalled: boolean;
  close(): void;
}

export interface ApiServerOptions {
  /** Events kept for watch resumption; a watch from an older RV gets 410 Expired. Default 1000. */
  historyLimit?: number;
  /** Interval of BOOKMARK events on watches that asked for them. Default 1000 ms (kube-apiserver: about 1 min). */
  bookmarkIntervalMs?: number;
  /** A deleted namespace stays Terminating this long before it and its content go. Default 200 ms. */
  namespaceDeletionDelayMs?: number;
  /** Serve HTTPS with this certificate (see makeTestPki); default plain HTTP. */
  tls?: TestPki;
  /** Require `Authorization: Bearer <token>`, else 401; default: any or none. Kubeconfigs carry this token. */
  token?: string;
  /** Watches without timeoutSeconds are closed after this. Default 30 min, like --min-request-timeout. */
  defaultWatchTimeoutSeconds?: number;
}

export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Obj,
  ) {
    super(message);
  }
  toStatus(): Obj {
    return {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: this.message,
      reason: this.reason,
      ...(this.details ? { details: this.details } : {}),
      code: this.code,
    };
  }
}

const clone = <T>(x: T): T => structuredClone(x);
const keyOf = (k: Kind, ns: string | undefined, name: string): string => `${k.group}/${k.plural}/${ns ?? ''}/${name}`;

export class ApiServer {
  private readonly app: FastifyInstance;
  private readonly objects = new Map<string, KObj>();
  private readonly history: HistoryEvent[] = [];
  private readonly watchers = new Set<Watcher>();
  private rv = 1;
  /** Events with rv <= compactedRv are no longer held: watching from before it is 410 Expired. */
  private compactedRv = 0;
  private historyLimit: number;
  private readonly bookmarkIntervalMs: number;
  private readonly defaultWatchTimeout: number;
  private readonly namespaceDeletionDelayMs: number;
  private nextClusterIp = 1;
  private readonly tls?: TestPki | undefined;
  private readonly token: string;
  private readonly requireToken: boolean;
  /** Every request as "METHOD path?query", for tests that assert on the wire. */
  readonly requests: string[] = [];
  url = '';

  constructor(opts: ApiServerOptions = {}) {
    this.historyLimit = opts.historyLimit ?? 1000;
    this.bookmarkIntervalMs = opts.bookmarkIntervalMs ?? 1000;
    this.defaultWatchTimeout = opts.defaultWatchTimeoutSeconds ?? 1800;
    this.namespaceDeletionDelayMs = opts.namespaceDeletionDelayMs ?? 200;
    this.tls = opts.tls;
    this.token = opts.token ?? 'bees-test-token';
    this.requireToken = opts.token !== undefined;
    // The https variant of Fastify's instance type differs only in the server class; handlers use the common part.
    this.app = opts.tls
      ? Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024, https: { key: opts.tls.key, cert: opts.tls.cert } })
      : Fastify({ logger: false, bodyLimit: 16 * 1024 * 1024 });
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
    this.app.all('/*', (req, reply) => this.handle(req, reply));
  }

  async start(port = 0): Promise<string> {
    const addr = await this.app.listen({ host: '127.0.0.1', port });
    this.url = addr;
    return addr;
  }

  async stop(): Promise<void> {
    for (const w of this.watchers) w.close();
    await this.app.close();
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Forget all history: every watch from an RV before now answers 410 Expired (forces informers to relist). */
  compact(): void {
    this.history.length = 0;
    this.compactedRv = this.rv;
  }

  setHistoryLimit(n: number): void {
    this.historyLimit = n;
    this.trimHistory();
  }

  /** Stop sending to every open watch without closing it (a half-dead connection); closeWatches() ends them. */
  stallWatches(): void {
    for (const w of this.watchers) w.stalled = true;
  }

  /** End every open watch stream cleanly, as kube-apiserver does at its request timeout. */
  closeWatches(): void {
    for (const w of this.watchers) w.close();
  }

  /** A kubeconfig for this server (HTTP, bearer token), for kubectl and @kubernetes/client-node. */
  kubeconfig(namespace = 'default'): string {
    return YAML.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'bees-test',
          cluster: {
            server: this.url,
            ...(this.tls ? { 'certificate-authority-data': Buffer.from(this.tls.ca).toString('base64') } : {}),
          },
        },
      ],
      users: [{ name: 'bees-test', user: { token: this.token } }],
      contexts: [{ name: 'bees-test', context: { cluster: 'bees-test', user: 'bees-test', namespace } }],
      'current-context': 'bees-test',
      preferences: {},
    });
  }

  async writeKubeconfig(path: string, namespace = 'default'): Promise<void> {
    await writeFile(path, this.kubeconfig(namespace), { mode: 0o600 });
  }

  /**
   * Write what a pod's service account mount holds under `${prefix}/var/run/secrets/kubernetes.io/serviceaccount/`
   * and return the environment the kubelet would set, for client-node's loadFromCluster(prefix). HTTPS only.
   */
  async writeServiceAccount(
    prefix: string,
    namespace = 'default',
  ): Promise<{ KUBERNETES_SERVICE_HOST: string; KUBERNETES_SERVICE_PORT: string }> {
    if (!this.tls) throw new Error('in-cluster config needs the server to run with tls');
    const dir = join(prefix, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'token'), this.token);
    await writeFile(join(dir, 'ca.crt'), this.tls.ca);
    await writeFile(join(dir, 'namespace'), namespace);
    const u = new URL(this.url);
    return { KUBERNETES_SERVICE_HOST: u.hostname, KUBERNETES_SERVICE_PORT: u.port };
  }

  // ---- store API, also used directly by tests and controllers in-process ----

  kindFor(apiVersion: string, kindName: string): Kind {
    const k = kinds.find((x) => apiVersionOf(x) === apiVersion && x.kind === kindName);
    if (!k) throw new StatusError(404, 'NotFound', `the server could not find the requested resource (${apiVersion} ${kindName})`);
    return k;
  }

  get(k: Kind, ns: string | undefined, name: string): KObj {
    const o = this.objects.get(keyOf(k, ns, name));
    if (!o) throw notFound(k, name);
    return clone(o);
  }

  list(k: Kind, ns?: string, labelSelector?: string, fieldSelector?: string): KObj[] {
    const labels = parseLabelSelector(labelSelector);
    const fields = parseFieldSelector(fieldSelector);
    return this.select(k, ns, labels, fields).map(clone);
  }

  private select(k: Kind, ns: string | undefined, labels: Requirement[], fields: FieldRequirement[]): KObj[] {
    const prefix = `${k.group}/${k.plural}/${ns === undefined ? '' : `${ns}/`}`;
    const out: KObj[] = [];
    for (const [key, o] of this.objects) {
      if (key.startsWith(prefix) && matchLabels(labels, o.metadata.labels) && matchFields(fields, o)) out.push(o);
    }
    return out.sort((a, b) =>
      `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(`${b.metadata.namespace ?? ''}/${b.metadata.name}`),
    );
  }

  create(k: Kind, ns: string | undefined, body: Obj, strict = true): KObj {
    const obj = this.admit(k, ns, body, strict) as KObj;
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomUUID().slice(0, 5);
    if (!meta.name)
      throw invalid(k, '', [{ reason: 'FieldValueRequired', message: 'name or generateName is required', field: 'metadata.name' }]);
    if (k.namespaced) {
      const nsObj = this.objects.get(keyOf(namespaceKind, undefined, ns!));
      if (!nsObj) throw new StatusError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
      if (nsObj.metadata.deletionTimestamp) {
        throw new StatusError(
          403,
          'Forbidden',
          `${resourceName(k)} "${meta.name}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`,
        );
      }
    }
    const key = keyOf(k, ns, meta.name);
    if (this.objects.has(key)) {
      throw new StatusError(409, 'AlreadyExists', `${resourceName(k)} "${meta.name}" already exists`, {
        name: meta.name,
        group: k.group,
        kind: k.plural,
      });
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    if (k.status) meta.generation = 1;
    delete meta.deletionTimestamp;
    this.defaults(k, obj);
    return this.commit(k, key, 'ADDED', obj);
  }

  /** PUT: replace, with optimistic concurrency on metadata.resourceVersion. */
  update(
    k: Kind,
    ns: string | undefined,
    name: string,
    body: Obj,
    opts: { subresource?: string | undefined; strict?: boolean } = {},
  ): KObj {
    const cur = this.get(k, ns, name);
    const obj = this.admit(k, ns, body, opts.strict ?? true) as KObj;
    if (obj.metadata.name !== name) {
      throw new StatusError(
        400,
        'BadRequest',
        `the name of the object (${obj.metadata.name}) does not match the name on the URL (${name})`,
      );
    }
    const rv = obj.metadata.resourceVersion;
    if (!rv) {
      throw invalid(k, name, [
        { reason: 'FieldValueInvalid', message: 'Invalid value: 0x0: must be specified for an update', field: 'metadata.resourceVersion' },
      ]);
    }
    if (rv !== cur.metadata.resourceVersion) throw conflict(k, name);
    return this.replace(k, cur, obj, opts.subresource);
  }

  /** PATCH: merge, strategic-merge or apply (server-side apply without field ownership). */
  patch(
    k: Kind,
    ns: string | undefined,
    name: string,
    type: string,
    patch: Obj,
    opts: { subresource?: string | undefined; strict?: boolean } = {},
  ): KObj {
    const key = keyOf(k, ns, name);
    const existing = this.objects.get(key);
    if (type === 'application/apply-patch+yaml') {
      const bad = opts.strict === false ? [] : unknownFields(k, patch);
      if (bad.length > 0) {
        throw new StatusError(
          400,
          'BadRequest',
          `failed to create typed patch object (${ns ? `/${ns}/` : '/'}${name}; ${apiVersionOf(k)}, Kind=${k.kind}): ${bad.map((f) => `.${f}: field not declared in schema`).join(', ')}`,
        );
      }
      if (!existing) return this.create(k, ns, { ...patch, metadata: { ...(patch.metadata as Obj), name } }, opts.strict ?? true);
    }
    if (!existing) throw notFound(k, name);
    const cur = clone(existing);
    let merged: Obj;
    if (type === 'application/merge-patch+json' || type === 'application/json') merged = jsonMergePatch(cur, patch) as Obj;
    else if (type === 'application/strategic-merge-patch+json' || type === 'application/apply-patch+yaml') {
      merged = strategicMergePatch(cur, patch) as Obj;
    } else
      throw new StatusError(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml`,
      );
    const wantRv = (patch.metadata as Meta | undefined)?.resourceVersion;
    if (wantRv !== undefined && wantRv !== cur.metadata.resourceVersion) throw conflict(k, name);
    (merged.metadata as Meta).resourceVersion = cur.metadata.resourceVersion;
    const obj = this.admit(k, ns, merged, opts.strict ?? true) as KObj;
    return this.replace(k, cur, obj, opts.subresource);
  }

  delete(k: Kind, ns: string | undefined, name: string, preconditionRv?: string): KObj {
    const key = keyOf(k, ns, name);
    const cur = this.objects.get(key);
    if (!cur) throw notFound(k, name);
    if (preconditionRv !== undefined && preconditionRv !== cur.metadata.resourceVersion) throw conflict(k, name);
    if (cur.metadata.finalizers?.length) {
      if (cur.metadata.deletionTimestamp) return clone(cur);
      const next = clone(cur);
      next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      return this.commit(k, key, 'MODIFIED', next, cur);
    }
    if (k === namespaceKind) {
      // As with the namespace controller: the namespace turns Terminating at once, its content and then the
      // namespace itself go a little later (after namespaceDeletionDelayMs).
      if (cur.metadata.deletionTimestamp) return clone(cur);
      const next = clone(cur);
      next.metadata.deletionTimestamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
      next.status = { phase: 'Terminating' };
      const out = this.commit(k, key, 'MODIFIED', next, cur);
      const timer = setTimeout(() => this.finishNamespace(name), this.namespaceDeletionDelayMs);
      timer.unref();
      return out;
    }
    this.objects.delete(key);
    return this.record(k, 'DELETED', cur);
  }

  /** POST pods/{name}/binding, as the scheduler does: sets spec.nodeName once. */
  bind(ns: string, name: string, binding: Obj): Obj {
    const k = this.kindFor('v1', 'Pod');
    const pod = this.get(k, ns, name);
    const node = (binding.target as { name?: string } | undefined)?.name;
    if (!node) throw invalid(k, name, [{ reason: 'FieldValueRequired', message: 'Required value', field: 'target.name' }]);
    const assigned = (pod.spec as { nodeName?: string }).nodeName;
    if (assigned)
      throw new StatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is already assigned to node "${assigned}"`,
      );
    if (pod.metadata.deletionTimestamp)
      throw new StatusError(
        409,
        'Conflict',
        `Operation cannot be fulfilled on pods/binding "${name}": pod ${name} is being deleted, cannot be assigned to a host`,
      );
    const key = keyOf(k, ns, name);
    const next = clone(pod);
    (next.spec as Obj).nodeName = node;
    this.commit(k, key, 'MODIFIED', next, pod);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
  }

  // ---- internals ----

  private finishNamespace(name: string): void {
    for (const [okey, o] of [...this.objects]) {
      if (o.metadata.namespace === name) {
        const ok = kinds.find((x) => okey.startsWith(`${x.group}/${x.plural}/`))!;
        this.objects.delete(okey);
        this.record(ok, 'DELETED', o);
      }
    }
    const key = keyOf(namespaceKind, undefined, name);
    const ns = this.objects.get(key);
    if (!ns) return;
    this.objects.delete(key);
    this.record(namespaceKind, 'DELETED', ns);
  }

  /** Decode as kube-apiserver does: kind/apiVersion must match the URL, unknown fields refused when strict, schema checked. */
  private admit(k: Kind, ns: string | undefined, body: Obj, strict: boolean): Obj {
    const obj = clone(body);
    if (obj.kind !== undefined && obj.kind !== k.kind) {
      throw new StatusError(
        400,
        'BadRequest',
        `the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersionOf(k)})`,
      );
    }
    if (strict) {
      const bad = unknownFields(k, obj);
      if (bad.length > 0) {
        throw new StatusError(
          400,
          'BadRequest',
          `${k.kind} in version "${k.version}" cannot be handled as a ${k.kind}: strict decoding error: ${bad.map((f) => `unknown field "${f}"`).join(', ')}`,
        );
      }
    }
    obj.kind = k.kind;
    obj.apiVersion = apiVersionOf(k);
    const meta = (obj.metadata ??= {}) as Meta;
    if (k.namespaced) {
      if (meta.namespace !== undefined && meta.namespace !== ns) {
        throw new StatusError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
      }
      meta.namespace = ns;
    } else delete meta.namespace;
    const causes = schemaErrors(k, obj);
    if (causes.length > 0) throw invalid(k, meta.name ?? '', causes);
    return obj;
  }

  private replace(k: Kind, cur: KObj, next: KObj, subresource?: string): KObj {
    // Fields the client cannot change.
    for (const f of ['uid', 'creationTimestamp', 'deletionTimestamp', 'generation'] as const) {
      if (cur.metadata[f] === undefined) delete next.metadata[f];
      else (next.metadata as Obj)[f] = cur.metadata[f];
    }
    if (subresource === 'status') {
      // /status writes only status.
      next = { ...cur, status: next.status };
    } else if (k.status) {
      next.status = cur.status;
      if (next.status === undefined) delete next.status;
      if (JSON.stringify(next.spec) !== JSON.stringify(cur.spec)) next.metadata.generation = (cur.metadata.generation ?? 0) + 1;
    }
    if (k === namespaceKind) next.metadata.labels = { ...next.metadata.labels, 'kubernetes.io/metadata.name': next.metadata.name };
    const key = keyOf(k, cur.metadata.namespace, cur.metadata.name);
    if (cur.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      // The last finalizer went: the object goes too.
      this.objects.delete(key);
      return this.record(k, 'DELETED', next, cur);
    }
    if (JSON.stringify(stripRv(next)) === JSON.stringify(stripRv(cur))) return cur; // no-op writes do not bump RV
    return this.commit(k, key, 'MODIFIED', next, cur);
  }

  private defaults(k: Kind, obj: KObj): void {
    if (obj.spec === undefined && (k.kind === 'Pod' || k.kind === 'Service')) obj.spec = {};
    const spec = obj.spec as Obj | undefined;
    // Status is the controllers' to write: create drops it, except for Nodes, which the kubelet registers whole.
    if (k.status && k.kind !== 'Node') delete obj.status;
    switch (k.kind) {
      case 'Namespace':
        obj.metadata.labels = { ...obj.metadata.labels, 'kubernetes.io/metadata.name': obj.metadata.name };
        obj.status = { phase: 'Active' };
        break;
      case 'Pod':
        obj.status = { phase: 'Pending' };
        break;
      case 'Service': {
        spec!.type ??= 'ClusterIP';
        spec!.sessionAffinity ??= 'None';
        if (spec!.clusterIP === undefined && spec!.type !== 'ExternalName') {
          const n = this.nextClusterIp++;
          spec!.clusterIP = `10.96.${n >> 8}.${n & 255}`;
          spec!.clusterIPs = [spec!.clusterIP];
        }
        for (const p of (spec!.ports as Obj[] | undefined) ?? []) {
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port;
        }
        obj.status = { loadBalancer: {} };
        break;
      }
    }
  }

  private commit(k: Kind, key: string, type: EventType, obj: KObj, previous?: KObj): KObj {
    this.objects.set(key, obj);
    return this.record(k, type, obj, previous);
  }

  private record(k: Kind, type: EventType, obj: KObj, previous?: KObj): KObj {
    const rv = ++this.rv;
    const object = clone(obj);
    object.metadata.resourceVersion = String(rv);
    if (type !== 'DELETED') this.objects.get(keyOf(k, obj.metadata.namespace, obj.metadata.name))!.metadata.resourceVersion = String(rv);
    const ev: HistoryEvent = { rv, kind: k, type, object, previous: previous ? clone(previous) : undefined };
    this.history.push(ev);
    this.trimHistory();
    for (const w of this.watchers) this.deliver(w, ev);
    return clone(object);
  }

  private trimHistory(): void {
    while (this.history.length > this.historyLimit) this.compactedRv = this.history.shift()!.rv;
  }

  /** What a watcher sees of one event, with the cacher's selector transitions. */
  private deliver(w: Watcher, ev: HistoryEvent): void {
    if (ev.kind !== w.kind || w.stalled) return;
    if (w.namespace !== undefined && ev.object.metadata.namespace !== w.namespace) return;
    const matches = (o: KObj | undefined): boolean =>
      o !== undefined && matchLabels(w.labels, o.metadata.labels) && matchFields(w.fields, o);
    const now = matches(ev.object);
    const before = ev.type === 'ADDED' ? false : ev.previous === undefined ? now : matches(ev.previous);
    let type: string;
    let object: KObj;
    if (ev.type === 'DELETED') {
      if (!now && !before) return;
      type = 'DELETED';
      object = ev.object;
    } else if (now && before) {
      type = ev.type;
      object = ev.object;
    } else if (now) {
      type = 'ADDED';
      object = ev.object;
    } else if (before) {
      // Stopped matching: DELETED with the previous content and this event's RV.
      type = 'DELETED';
      object = clone(ev.previous!);
      object.metadata.resourceVersion = String(ev.rv);
    } else return;
    w.res.write(JSON.stringify({ type, object }) + '\n');
  }

  private async handle(req: FastifyRequest, reply: FastifyReply): Promise<void> {
    const url = new URL(req.url, 'http://x');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    try {
      if (this.requireToken && req.headers.authorization !== `Bearer ${this.token}`) {
        throw new StatusError(401, 'Unauthorized', 'Unauthorized');
      }
      const answer = this.route(req, url, reply);
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

  private route(req: FastifyRequest, url: URL, reply: FastifyReply): { code?: number; body: unknown } | undefined {
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
        if (name !== undefined) return { body: this.get(k, ns, name) };
        if (q.get('watch') === 'true' || q.get('watch') === '1') {
          this.watch(k, ns, q, reply);
          return undefined;
        }
        return { body: this.listResponse(k, ns, q) };
      case 'POST':
        // binding means rest[2] is set, so name is too; Pods are namespaced, and the check above makes ns set with name.
        if (binding) return { code: 201, body: this.bind(ns!, name!, body()) };
        if (name !== undefined) throw methodNotAllowed();
        if (dryRun) return { code: 201, body: this.admit(k, ns, body(), strict) };
        return { code: 201, body: this.create(k, ns, body(), strict) };
      case 'PUT':
        if (name === undefined) throw methodNotAllowed();
        return { body: this.update(k, ns, name, body(), { subresource: sub, strict }) };
      case 'PATCH': {
        if (name === undefined) throw methodNotAllowed();
        const type = String(req.headers['content-type'] ?? '')
          .split(';')[0]!
          .trim(); // split always yields at least one element;
        const existed = this.objects.has(keyOf(k, ns, name));
        const out = this.patch(k, ns, name, type, body(), {
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
        return { body: this.delete(k, ns, name, pre) };
      }
      default:
        throw methodNotAllowed();
    }
  }

  private listResponse(k: Kind, ns: string | undefined, q: URLSearchParams): Obj {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined);
    let items = this.select(k, ns, labels, fields);
    let listRv = this.rv;
    const cont = q.get('continue');
    let start = 0;
    if (cont) {
      const token = JSON.parse(Buffer.from(cont, 'base64url').toString()) as { rv: number; start: number };
      if (token.rv < this.compactedRv) {
        throw new StatusError(
          410,
          'Expired',
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.',
        );
      }
      // No snapshot reads: later pages come from the current state, labelled with the first page's RV.
      listRv = token.rv;
      start = token.start;
    }
    const rvParam = q.get('resourceVersion');
    if (rvParam && q.get('resourceVersionMatch') === 'Exact' && Number(rvParam) !== this.rv) {
      throw new StatusError(410, 'Expired', 'The resourceVersion for the provided list is too old.');
    }
    const limit = Number(q.get('limit') ?? 0);
    const metadata: Obj = { resourceVersion: String(listRv) };
    items = items.slice(start);
    if (limit > 0 && items.length > limit) {
      items = items.slice(0, limit);
      metadata.continue = Buffer.from(JSON.stringify({ rv: listRv, start: start + limit })).toString('base64url');
    }
    return {
      kind: `${k.kind}List`,
      apiVersion: apiVersionOf(k),
      metadata,
      // Real built-in lists leave kind and apiVersion out of the items.
      items: items.map((o) => {
        const { kind: _k, apiVersion: _a, ...rest } = o;
        return clone(rest);
      }),
    };
  }

  private watch(k: Kind, ns: string | undefined, q: URLSearchParams, reply: FastifyReply): void {
    const labels = parseLabelSelector(q.get('labelSelector') ?? undefined);
    const fields = parseFieldSelector(q.get('fieldSelector') ?? undefined);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked', 'Cache-Control': 'no-cache, private' });
    res.flushHeaders();
    const rvParam = q.get('resourceVersion') ?? '';
    let from: number;
    if (rvParam === '' || rvParam === '0') {
      // Synthetic ADDED for every current match, then stream.
      for (const o of this.select(k, ns, labels, fields)) res.write(JSON.stringify({ type: 'ADDED', object: o }) + '\n');
      from = this.rv;
    } else {
      from = Number(rvParam);
      if (!Number.isInteger(from) || from < this.compactedRv) {
        res.end(
          JSON.stringify({
            type: 'ERROR',
            object: new StatusError(410, 'Expired', `too old resource version: ${rvParam} (${this.compactedRv})`).toStatus(),
          }) + '\n',
        );
        return;
      }
    }
    const timeout = Number(q.get('timeoutSeconds') ?? this.defaultWatchTimeout);
    const timer = setTimeout(() => w.close(), timeout * 1000);
    let bookmarks: NodeJS.Timeout | undefined;
    const w: Watcher = {
      kind: k,
      namespace: ns,
      labels,
      fields,
      res,
      stalled: false,
      close: () => {
        if (!this.watchers.delete(w)) return;
        clearTimeout(timer);
        clearInterval(bookmarks);
        res.end();
      },
    };
    for (const ev of this.history) if (ev.rv > from) this.deliver(w, ev);
    this.watchers.add(w);
    res.on('close', () => w.close());
    if (q.get('allowWatchBookmarks') === 'true') {
      bookmarks = setInterval(() => {
        res.write(
          JSON.stringify({
            type: 'BOOKMARK',
            object: { kind: k.kind, apiVersion: apiVersionOf(k), metadata: { resourceVersion: String(this.rv) } },
          }) + '\n',
        );
      }, this.bookmarkIntervalMs);
    }
  }
}

const namespaceKind = kinds.find((k) => k.kind === 'Namespace')!;

function stripRv(o: KObj): KObj {
  return { ...o, metadata: { ...o.metadata, resourceVersion: undefined } };
}

function resourceName(k: Kind): string {
  return k.group === '' ? k.plural : `${k.plural}.${k.group}`;
}

function notFound(k: Kind, name: string): StatusError {
  return new StatusError(404, 'NotFound', `${resourceName(k)} "${name}" not found`, { name, group: k.group, kind: k.plural });
}

function notFoundPath(): StatusError {
  return new StatusError(404, 'NotFound', 'the server could not find the requested resource');
}

function methodNotAllowed(): StatusError {
  return new StatusError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource');
}

function conflict(k: Kind, name: string): StatusError {
  return new StatusError(
    409,
    'Conflict',
    `Operation cannot be fulfilled on ${resourceName(k)} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, group: k.group, kind: k.plural },
  );
}

function invalid(k: Kind, name: string, causes: { reason: string; message: string; field: string }[]): StatusError {
  return new StatusError(422, 'Invalid', `${k.kind} "${name}" is invalid: ${causes.map((c) => `${c.field}: ${c.message}`).join(', ')}`, {
    name,
    group: k.group,
    kind: k.kind,
    causes,
  });
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

// ---- discovery and OpenAPI ----

const groupVersions = (): { group: string; version: string }[] => {
  const seen = new Map<string, { group: string; version: string }>();
  for (const k of kinds) if (k.group !== '') seen.set(`${k.group}/${k.version}`, { group: k.group, version: k.version });
  return [...seen.values()];
};

function apiGroupList(): Obj {
  return {
    kind: 'APIGroupList',
    apiVersion: 'v1',
    groups: groupVersions().map(({ group, version }) => ({
      name: group,
      versions: [{ groupVersion: `${group}/${version}`, version }],
      preferredVersion: { groupVersion: `${group}/${version}`, version },
    })),
  };
}

function apiResourceList(group: string, version: string): Obj {
  const resources: Obj[] = [];
  for (const k of kinds.filter((x) => x.group === group && x.version === version)) {
    resources.push({
      name: k.plural,
      singularName: k.singular,
      namespaced: k.namespaced,
      kind: k.kind,
      verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
      ...(k.shortNames.length ? { shortNames: k.shortNames } : {}),
    });
    if (k.kind === 'Pod') resources.push({ name: 'pods/binding', singularName: '', namespaced: true, kind: 'Binding', verbs: ['create'] });
    if (k.status) {
      resources.push({
        name: `${k.plural}/status`,
        singularName: '',
        namespaced: k.namespaced,
        kind: k.kind,
        verbs: ['get', 'patch', 'update'],
      });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group === '' ? version : `${group}/${version}`, resources };
}

function openapiV3Index(): Obj {
  const paths: Obj = { 'api/v1': { serverRelativeURL: '/openapi/v3/api/v1?hash=bees' } };
  for (const { group, version } of groupVersions()) {
    paths[`apis/${group}/${version}`] = { serverRelativeURL: `/openapi/v3/apis/${group}/${version}?hash=bees` };
  }
  return { paths };
}

/**
 * Per group-version OpenAPI v3: only paths, operations, their GVK and the fieldValidation parameter. That is what
 * kubectl reads to decide that the server validates fields itself (it then sends fieldValidation=Strict). No
 * component schemas on purpose: without them kubectl computes strategic merge patches from its compiled-in Go
 * types, which carry the right merge keys.
 */
function openapiV3Doc(gvPath: string): Obj {
  const segs = gvPath.split('/');
  const group = segs[0] === 'api' ? '' : segs[1];
  const version = segs[0] === 'api' ? segs[1] : segs[2];
  const ks = kinds.filter((k) => k.group === group && k.version === version);
  if (ks.length === 0) throw notFoundPath();
  const base = group === '' ? '/api/v1' : `/apis/${group}/${version}`;
  const paths: Obj = {};
  const params = [
    { name: 'fieldValidation', in: 'query', schema: { type: 'string', uniqueItems: true } },
    { name: 'dryRun', in: 'query', schema: { type: 'string', uniqueItems: true } },
    { name: 'fieldManager', in: 'query', schema: { type: 'string', uniqueItems: true } },
  ];
  for (const k of ks) {
    const gvk = { group, version, kind: k.kind };
    const op = (action: string): Obj => ({
      operationId: `${action}${k.kind}`,
      parameters: params,
      responses: { '200': { description: 'OK' } },
      'x-kubernetes-action': action,
      'x-kubernetes-group-version-kind': gvk,
    });
    const coll = k.namespaced ? `${base}/namespaces/{namespace}/${k.plural}` : `${base}/${k.plural}`;
    paths[coll] = { get: op('list'), post: op('post') };
    paths[`${coll}/{name}`] = { get: op('get'), put: op('put'), patch: op('patch'), delete: op('delete') };
    if (k.status) paths[`${coll}/{name}/status`] = { get: op('get'), put: op('put'), patch: op('patch') };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes (bees test API server)', version: 'v1.32.0' }, paths, components: { schemas: {} } };
}
