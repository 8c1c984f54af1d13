// The write verbs of the API server double: create, update (PUT, optimistic concurrency), patch (merge,
// strategic-merge, server-side apply without field ownership), delete (finalizers, Terminating namespaces),
// pods/binding; and what kube-apiserver does on every write: decode strictly, validate against the schema,
// default, keep status to the /status subresource, bump generation on spec changes, skip no-op writes.
import { randomUUID } from 'node:crypto';
import { apiVersionOf, kinds, schemaErrors, unknownFields, type Kind } from './kinds.js';
import { jsonMergePatch, strategicMergePatch } from './merge.js';
import {
  clone,
  conflict,
  invalid,
  keyOf,
  namespaceKind,
  notFound,
  resourceName,
  StatusError,
  type KObj,
  type Meta,
  type Obj,
} from './apiserver-errors.js';
import type { ObjectStore } from './apiserver-store.js';

const now = (): string => new Date().toISOString().replace(/\.\d+Z$/, 'Z');

export class Writes {
  private nextClusterIp = 1;

  constructor(
    private readonly store: ObjectStore,
    /** A deleted namespace stays Terminating this long before it and its content go. */
    private readonly namespaceDeletionDelayMs: number,
  ) {}

  create(k: Kind, ns: string | undefined, body: Obj, strict = true): KObj {
    const obj = this.admit(k, ns, body, strict) as KObj;
    const meta = obj.metadata;
    if (!meta.name && meta.generateName) meta.name = meta.generateName + randomUUID().slice(0, 5);
    if (!meta.name)
      throw invalid(k, '', [{ reason: 'FieldValueRequired', message: 'name or generateName is required', field: 'metadata.name' }]);
    if (k.namespaced) {
      const nsObj = this.store.objects.get(keyOf(namespaceKind, undefined, ns!));
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
    if (this.store.objects.has(key)) {
      throw new StatusError(409, 'AlreadyExists', `${resourceName(k)} "${meta.name}" already exists`, {
        name: meta.name,
        group: k.group,
        kind: k.plural,
      });
    }
    meta.uid = randomUUID();
    meta.creationTimestamp = now();
    if (k.status) meta.generation = 1;
    delete meta.deletionTimestamp;
    this.defaults(k, obj);
    return this.store.commit(k, key, 'ADDED', obj);
  }

  /** PUT: replace, with optimistic concurrency on metadata.resourceVersion. */
  update(
    k: Kind,
    ns: string | undefined,
    name: string,
    body: Obj,
    opts: { subresource?: string | undefined; strict?: boolean } = {},
  ): KObj {
    const cur = this.store.get(k, ns, name);
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
    const existing = this.store.objects.get(key);
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
    const cur = this.store.objects.get(key);
    if (!cur) throw notFound(k, name);
    if (preconditionRv !== undefined && preconditionRv !== cur.metadata.resourceVersion) throw conflict(k, name);
    if (cur.metadata.finalizers?.length) {
      if (cur.metadata.deletionTimestamp) return clone(cur);
      const next = clone(cur);
      next.metadata.deletionTimestamp = now();
      return this.store.commit(k, key, 'MODIFIED', next, cur);
    }
    if (k === namespaceKind) {
      // As with the namespace controller: the namespace turns Terminating at once, its content and then the
      // namespace itself go a little later (after namespaceDeletionDelayMs).
      if (cur.metadata.deletionTimestamp) return clone(cur);
      const next = clone(cur);
      next.metadata.deletionTimestamp = now();
      next.status = { phase: 'Terminating' };
      const out = this.store.commit(k, key, 'MODIFIED', next, cur);
      const timer = setTimeout(() => this.finishNamespace(name), this.namespaceDeletionDelayMs);
      timer.unref();
      return out;
    }
    this.store.objects.delete(key);
    return this.store.record(k, 'DELETED', cur);
  }

  /** POST pods/{name}/binding, as the scheduler does: sets spec.nodeName once. */
  bind(ns: string, name: string, binding: Obj): Obj {
    const k = podKind;
    const pod = this.store.get(k, ns, name);
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
    this.store.commit(k, key, 'MODIFIED', next, pod);
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', code: 201 };
  }

  /** Decode as kube-apiserver does: kind/apiVersion must match the URL, unknown fields refused when strict, schema checked. */
  admit(k: Kind, ns: string | undefined, body: Obj, strict: boolean): Obj {
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

  private finishNamespace(name: string): void {
    for (const [okey, o] of [...this.store.objects]) {
      if (o.metadata.namespace === name) {
        const ok = kinds.find((x) => okey.startsWith(`${x.group}/${x.plural}/`))!;
        this.store.objects.delete(okey);
        this.store.record(ok, 'DELETED', o);
      }
    }
    const key = keyOf(namespaceKind, undefined, name);
    const ns = this.store.objects.get(key);
    if (!ns) return;
    this.store.objects.delete(key);
    this.store.record(namespaceKind, 'DELETED', ns);
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
    if (k.kind === 'Service' && subresource !== 'status' && next.spec) {
      // As the registry does on update: allocated addresses carry over when the update leaves them out, and a
      // change of ipFamilyPolicy allocates (or releases) the secondary family's ClusterIP.
      const was = cur.spec as Obj;
      const spec = next.spec as Obj;
      if ((spec.clusterIP === undefined || spec.clusterIP === '') && was.clusterIP !== undefined) {
        spec.clusterIP = was.clusterIP;
        if (spec.clusterIPs === undefined) spec.clusterIPs = was.clusterIPs;
      }
      this.serviceFamilies(spec);
    }
    const key = keyOf(k, cur.metadata.namespace, cur.metadata.name);
    if (cur.metadata.deletionTimestamp && (next.metadata.finalizers ?? []).length === 0) {
      // The last finalizer went: the object goes too.
      this.store.objects.delete(key);
      return this.store.record(k, 'DELETED', next, cur);
    }
    if (JSON.stringify(stripRv(next)) === JSON.stringify(stripRv(cur))) return cur; // no-op writes do not bump RV
    return this.store.commit(k, key, 'MODIFIED', next, cur);
  }

  /** A ClusterIP from 10.96.0.0/12 (IPv4) or fd00:10:96::/112 (IPv6), the kubeadm defaults. */
  private allocateClusterIp(family: 4 | 6): string {
    const n = this.nextClusterIp++;
    return family === 4 ? `10.96.${n >> 8}.${n & 255}` : `fd00:10:96::${n.toString(16)}`;
  }

  /**
   * A Service's `ipFamilyPolicy` (default SingleStack), its `clusterIPs` (a dual-stack policy gets one of the
   * other family next to the primary; SingleStack keeps only the primary) and `ipFamilies` to match. This double
   * is a dual-stack cluster with IPv4 primary. Headless and ExternalName Services are left as they are.
   */
  private serviceFamilies(spec: Obj): void {
    const primary = spec.clusterIP as string | undefined;
    if (primary === undefined || primary === 'None' || spec.type === 'ExternalName') return;
    spec.ipFamilyPolicy ??= 'SingleStack';
    const ips = ((spec.clusterIPs as string[] | undefined) ?? [primary]).filter((ip) => ip !== '');
    if (ips[0] !== primary) ips.unshift(primary);
    if (isDual(spec.ipFamilyPolicy) && ips.length === 1) ips.push(this.allocateClusterIp(primary.includes(':') ? 4 : 6));
    if (!isDual(spec.ipFamilyPolicy)) ips.splice(1);
    spec.clusterIPs = ips;
    spec.ipFamilies = ips.map((ip) => (ip.includes(':') ? 'IPv6' : 'IPv4'));
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
          spec!.clusterIP = this.allocateClusterIp(4);
          spec!.clusterIPs = [spec!.clusterIP];
        }
        this.serviceFamilies(spec!);
        for (const p of (spec!.ports as Obj[] | undefined) ?? []) {
          p.protocol ??= 'TCP';
          p.targetPort ??= p.port;
        }
        obj.status = { loadBalancer: {} };
        break;
      }
    }
  }
}

const isDual = (policy: unknown): boolean => policy === 'PreferDualStack' || policy === 'RequireDualStack';

const podKind = kinds.find((k) => k.kind === 'Pod')!;

function stripRv(o: KObj): KObj {
  return { ...o, metadata: { ...o.metadata, resourceVersion: undefined } };
}
