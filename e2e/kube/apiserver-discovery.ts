// Discovery and OpenAPI v3 of the API server double: what kubectl reads before it writes (group versions,
// resources with shortNames and subresources) and just enough OpenAPI v3 for it to validate server-side.
import { apiVersionOf, kinds, type Kind } from './kinds.js';
import { notFoundPath, StatusError, type Obj } from './apiserver-errors.js';

export function kindFor(apiVersion: string, kindName: string): Kind {
  const k = kinds.find((x) => apiVersionOf(x) === apiVersion && x.kind === kindName);
  if (!k) throw new StatusError(404, 'NotFound', `the server could not find the requested resource (${apiVersion} ${kindName})`);
  return k;
}

const groupVersions = (): { group: string; version: string }[] => {
  const seen = new Map<string, { group: string; version: string }>();
  for (const k of kinds) if (k.group !== '') seen.set(`${k.group}/${k.version}`, { group: k.group, version: k.version });
  return [...seen.values()];
};

export function apiGroupList(): Obj {
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

export function apiResourceList(group: string, version: string): Obj {
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

export function openapiV3Index(): Obj {
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
export function openapiV3Doc(gvPath: string): Obj {
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
