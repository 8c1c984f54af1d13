// The kinds the test API server serves, and how it validates them.
//
// Two checks stand in for kube-apiserver's decoding and validation:
// - unknown fields (fieldValidation=Strict), by walking the object along the attribute tables that
//   @kubernetes/client-node generates from the Kubernetes v1.34 OpenAPI spec;
// - required fields, types and enums, with kubernetes-models' ajv validators (which ignore unknown fields).
import * as k8s from '@kubernetes/client-node';
import * as core from 'kubernetes-models/v1';
import * as apps from 'kubernetes-models/apps/v1';
import * as discovery from 'kubernetes-models/discovery.k8s.io/v1';
import * as networking from 'kubernetes-models/networking.k8s.io/v1';
import * as coordination from 'kubernetes-models/coordination.k8s.io/v1';
import * as rbac from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import * as batch from 'kubernetes-models/batch/v1';
import * as policy from 'kubernetes-models/policy/v1';
import * as scheduling from 'kubernetes-models/scheduling.k8s.io/v1';

/** A kubernetes-models class: constructed from a plain object, validate() throws on schema errors. */
type ModelClass = new (data: Record<string, unknown>) => { validate(): void };

export interface Kind {
  group: string; // '' for the core group
  version: string;
  kind: string;
  plural: string;
  singular: string;
  namespaced: boolean;
  shortNames: string[];
  /** Has a /status subresource: the main resource ignores status writes, /status writes only status. */
  status: boolean;
  /** Name of the generated model class in @kubernetes/client-node, for the unknown-field walk. */
  clientModel: string;
  model: ModelClass;
}

function kind(
  group: string,
  version: string,
  name: string,
  plural: string,
  namespaced: boolean,
  shortNames: string[],
  status: boolean,
  model: unknown,
  clientModel = `V1${name}`,
): Kind {
  return {
    group,
    version,
    kind: name,
    plural,
    singular: name.toLowerCase(),
    namespaced,
    shortNames,
    status,
    clientModel,
    model: model as ModelClass,
  };
}

export const kinds: Kind[] = [
  kind('', 'v1', 'Namespace', 'namespaces', false, ['ns'], true, core.Namespace),
  kind('', 'v1', 'Node', 'nodes', false, ['no'], true, core.Node),
  kind('', 'v1', 'Pod', 'pods', true, ['po'], true, core.Pod),
  kind('', 'v1', 'Service', 'services', true, ['svc'], true, core.Service),
  kind('', 'v1', 'ServiceAccount', 'serviceaccounts', true, ['sa'], false, core.ServiceAccount),
  kind('', 'v1', 'ConfigMap', 'configmaps', true, ['cm'], false, core.ConfigMap),
  kind('', 'v1', 'Secret', 'secrets', true, [], false, core.Secret),
  kind('', 'v1', 'Endpoints', 'endpoints', true, ['ep'], false, core.Endpoints),
  kind('', 'v1', 'Event', 'events', true, ['ev'], false, core.Event, 'CoreV1Event'),
  kind('', 'v1', 'PersistentVolumeClaim', 'persistentvolumeclaims', true, ['pvc'], true, core.PersistentVolumeClaim),
  kind('apps', 'v1', 'DaemonSet', 'daemonsets', true, ['ds'], true, apps.DaemonSet),
  kind('apps', 'v1', 'Deployment', 'deployments', true, ['deploy'], true, apps.Deployment),
  kind('apps', 'v1', 'StatefulSet', 'statefulsets', true, ['sts'], true, apps.StatefulSet),
  kind('batch', 'v1', 'Job', 'jobs', true, [], true, batch.Job),
  kind('policy', 'v1', 'PodDisruptionBudget', 'poddisruptionbudgets', true, ['pdb'], true, policy.PodDisruptionBudget),
  kind('scheduling.k8s.io', 'v1', 'PriorityClass', 'priorityclasses', false, ['pc'], false, scheduling.PriorityClass),
  kind('discovery.k8s.io', 'v1', 'EndpointSlice', 'endpointslices', true, [], false, discovery.EndpointSlice),
  kind('networking.k8s.io', 'v1', 'NetworkPolicy', 'networkpolicies', true, ['netpol'], false, networking.NetworkPolicy),
  kind('coordination.k8s.io', 'v1', 'Lease', 'leases', true, [], false, coordination.Lease),
  kind('rbac.authorization.k8s.io', 'v1', 'ClusterRole', 'clusterroles', false, [], false, rbac.ClusterRole),
  kind('rbac.authorization.k8s.io', 'v1', 'ClusterRoleBinding', 'clusterrolebindings', false, [], false, rbac.ClusterRoleBinding),
  kind('rbac.authorization.k8s.io', 'v1', 'Role', 'roles', true, [], false, rbac.Role),
  kind('rbac.authorization.k8s.io', 'v1', 'RoleBinding', 'rolebindings', true, [], false, rbac.RoleBinding),
];

export const apiVersionOf = (k: Kind): string => (k.group === '' ? k.version : `${k.group}/${k.version}`);

interface Attribute {
  baseName: string;
  type: string;
}

function attributesOf(model: string): Attribute[] | undefined {
  // The generated classes are exported by name from the package; look them up dynamically.
  const cls = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>)[model];
  return cls?.getAttributeTypeMap?.();
}

/** Dotted paths of fields the schema does not declare, in kube-apiserver's wording ("spec.foo", "spec.containers[0].x"). */
export function unknownFields(k: Kind, obj: unknown): string[] {
  const out: string[] = [];
  walk(k.clientModel, obj, '', out);
  return out;
}

function walk(type: string, value: unknown, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const arr = /^Array<(.*)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => walk(arr[1]!, v, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.*); \}$/.exec(type);
  if (map) {
    if (typeof value === 'object') {
      for (const [key, v] of Object.entries(value)) walk(map[1]!, v, path === '' ? key : `${path}.${key}`, out);
    }
    return;
  }
  const attrs = attributesOf(type);
  if (!attrs || typeof value !== 'object' || Array.isArray(value)) return;
  const byName = new Map(attrs.map((a) => [a.baseName, a.type]));
  for (const [key, v] of Object.entries(value)) {
    const p = path === '' ? key : `${path}.${key}`;
    const t = byName.get(key);
    if (t === undefined) out.push(p);
    else walk(t, v, p, out);
  }
}

export interface Cause {
  reason: string;
  message: string;
  field: string;
}

/** Schema errors (missing required fields, wrong types, bad enums) as Status causes, or [] when valid. */
export function schemaErrors(k: Kind, obj: Record<string, unknown>): Cause[] {
  try {
    new k.model(obj).validate();
    return [];
  } catch (e) {
    const errors = (e as { errors?: { instancePath: string; message?: string; params?: Record<string, unknown> }[] }).errors;
    if (!errors) return [{ reason: 'FieldValueInvalid', message: String(e), field: '' }];
    return errors.map((err) => {
      const field = err.instancePath
        .replace(/^\//, '')
        .replace(/\/(\d+)(?=\/|$)/g, '[$1]')
        .replaceAll('/', '.');
      const missing = err.params?.missingProperty;
      return typeof missing === 'string'
        ? { reason: 'FieldValueRequired', message: 'Required value', field: field === '' ? missing : `${field}.${missing}` }
        : { reason: 'FieldValueInvalid', message: `Invalid value: ${err.message ?? 'invalid'}`, field };
    });
  }
}
