// A test double of kube-apiserver: an in-memory store served over HTTP with the list/watch contract of the real
// one (global resourceVersion, history window with 410 Expired, bookmarks, selector transitions), the write verbs
// kubectl and @kubernetes/client-node use, strict field validation, discovery and enough OpenAPI v3 for kubectl to
// apply with validation on. It is NOT a Kubernetes API server: no admission, no RBAC, no field ownership in
// server-side apply, no garbage collector. See e2e/kube/README.md for what it does and does not do.
//
// This file assembles the parts and is the one entry point: apiserver-store.ts (objects, RV, history),
// apiserver-watch.ts, apiserver-list.ts (selectors, paging), apiserver-writes.ts (verbs, patch, defaults),
// apiserver-discovery.ts (discovery, OpenAPI), apiserver-http.ts (routes), apiserver-errors.ts (Status errors).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import YAML from 'yaml';
import type { Kind } from './kinds.js';
import type { TestPki } from './pki.js';
import type { KObj, Obj } from './apiserver-errors.js';
import { kindFor } from './apiserver-discovery.js';
import { createHttp } from './apiserver-http.js';
import { list } from './apiserver-list.js';
import { ObjectStore } from './apiserver-store.js';
import { Watches } from './apiserver-watch.js';
import { Writes } from './apiserver-writes.js';

export { StatusError } from './apiserver-errors.js';
export type { EventType } from './apiserver-store.js';

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

export class ApiServer {
  private readonly app: FastifyInstance;
  private readonly store: ObjectStore;
  private readonly watches: Watches;
  private readonly writes: Writes;
  private readonly tls?: TestPki | undefined;
  private readonly token: string;
  /** Every request as "METHOD path?query", for tests that assert on the wire. */
  readonly requests: string[] = [];
  url = '';

  constructor(opts: ApiServerOptions = {}) {
    this.store = new ObjectStore(opts.historyLimit ?? 1000, (ev) => this.watches.publish(ev));
    this.watches = new Watches(this.store, opts.bookmarkIntervalMs ?? 1000, opts.defaultWatchTimeoutSeconds ?? 1800);
    this.writes = new Writes(this.store, opts.namespaceDeletionDelayMs ?? 200);
    this.tls = opts.tls;
    this.token = opts.token ?? 'bees-test-token';
    this.app = createHttp(
      { store: this.store, writes: this.writes, watches: this.watches, requests: this.requests, requiredToken: opts.token },
      opts.tls,
    );
  }

  /** Listen on `host` (default loopback; e2e runs give the harness's root address so agents on hosts reach it). */
  async start(port = 0, host = '127.0.0.1'): Promise<string> {
    const addr = await this.app.listen({ host, port });
    this.url = addr;
    return addr;
  }

  async stop(): Promise<void> {
    this.watches.closeAll();
    await this.app.close();
  }

  /** The current global resourceVersion. */
  get resourceVersion(): string {
    return String(this.store.rv);
  }

  /** Forget all history: every watch from an RV before now answers 410 Expired (forces informers to relist). */
  compact(): void {
    this.store.compact();
  }

  setHistoryLimit(n: number): void {
    this.store.setHistoryLimit(n);
  }

  /** Stop sending to every open watch without closing it (a half-dead connection); closeWatches() ends them. */
  stallWatches(): void {
    this.watches.stallAll();
  }

  /** End every open watch stream cleanly, as kube-apiserver does at its request timeout. */
  closeWatches(): void {
    this.watches.closeAll();
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
    return kindFor(apiVersion, kindName);
  }

  get(k: Kind, ns: string | undefined, name: string): KObj {
    return this.store.get(k, ns, name);
  }

  list(k: Kind, ns?: string, labelSelector?: string, fieldSelector?: string): KObj[] {
    return list(this.store, k, ns, labelSelector, fieldSelector);
  }

  create(k: Kind, ns: string | undefined, body: Obj, strict = true): KObj {
    return this.writes.create(k, ns, body, strict);
  }

  /** PUT: replace, with optimistic concurrency on metadata.resourceVersion. */
  update(
    k: Kind,
    ns: string | undefined,
    name: string,
    body: Obj,
    opts: { subresource?: string | undefined; strict?: boolean } = {},
  ): KObj {
    return this.writes.update(k, ns, name, body, opts);
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
    return this.writes.patch(k, ns, name, type, patch, opts);
  }

  delete(k: Kind, ns: string | undefined, name: string, preconditionRv?: string): KObj {
    return this.writes.delete(k, ns, name, preconditionRv);
  }

  /** POST pods/{name}/binding, as the scheduler does: sets spec.nodeName once. */
  bind(ns: string, name: string, binding: Obj): Obj {
    return this.writes.bind(ns, name, binding);
  }
}
