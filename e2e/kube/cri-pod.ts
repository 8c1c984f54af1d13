// How kubelet-lite turns a Pod into CRI requests, as kubelet's kuberuntime does for the parts the bees chart uses:
// the sandbox's Linux namespaces (hostNetwork → NODE network, hostPID → NODE pid) and privilege, and per container
// the image, command and args with $(VAR) expanded, the environment (envFrom ConfigMaps, then env with values and
// the downward API), hostPath mounts with their readOnly and mountPropagation, the service account token mount,
// and the security context (privileged, capabilities). Anything else the spec asks for that is not modelled
// (other volume types, subPath, Secrets in env) is refused with an error naming it, never silently dropped.
import type * as k8s from '@kubernetes/client-node';
import type { ContainerConfig, CriMount, MountPropagation, PodSandboxConfig } from '../../testbed/cri.js';

/** Where the service account token, CA and namespace are mounted in every container (automountServiceAccountToken). */
export const SERVICE_ACCOUNT_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface PodContext {
  /** The node's address: status.hostIP, and status.podIP of a hostNetwork pod. */
  hostIp: string;
  /** A hostPath as this node has it on the machine (kubelet-lite's node filesystem). */
  hostPathOf: (path: string) => string;
  /** The pod's log directory on the machine (PodSandboxConfig.log_directory). */
  logDirectory: string;
  /** A directory holding `token`, `ca.crt` and `namespace`: mounted read-only at SERVICE_ACCOUNT_PATH. */
  serviceAccountDir?: string | undefined;
  /** ConfigMaps of the pod's namespace that envFrom names, by name (absent: not found). */
  configMaps: Map<string, Record<string, string>>;
}

const PROPAGATION: Record<string, MountPropagation> = {
  None: 'PROPAGATION_PRIVATE',
  HostToContainer: 'PROPAGATION_HOST_TO_CONTAINER',
  Bidirectional: 'PROPAGATION_BIDIRECTIONAL',
};

export function sandboxConfigOf(pod: k8s.V1Pod, ctx: PodContext): PodSandboxConfig {
  const m = pod.metadata!;
  const spec = pod.spec!;
  const privileged = [...(spec.initContainers ?? []), ...spec.containers].some((c) => c.securityContext?.privileged);
  return {
    metadata: { name: m.name!, uid: m.uid!, namespace: m.namespace!, attempt: 0 },
    // With the node's network (and UTS) namespace the hostname is the node's: kubelet leaves it empty then.
    ...(spec.hostNetwork ? {} : { hostname: m.name! }),
    log_directory: ctx.logDirectory,
    labels: m.labels ?? {},
    annotations: m.annotations ?? {},
    linux: {
      security_context: {
        namespace_options: {
          network: spec.hostNetwork ? 'NODE' : 'POD',
          pid: spec.hostPID ? 'NODE' : 'CONTAINER',
          ipc: spec.hostIPC ? 'NODE' : 'POD',
        },
        privileged,
      },
    },
  };
}

/** The downward API fields (fieldRef) kubelet resolves for env. */
function fieldOf(pod: k8s.V1Pod, path: string, hostIp: string): string {
  switch (path) {
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'spec.serviceAccountName':
      return pod.spec?.serviceAccountName ?? 'default';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'metadata.uid':
      return pod.metadata?.uid ?? '';
    case 'status.hostIP':
      return hostIp;
    case 'status.podIP':
      if (pod.spec?.hostNetwork) return hostIp;
      throw new Error('kubelet-lite: status.podIP of a pod on the pod network is not modelled for containers');
    default:
      throw new Error(`kubelet-lite: downward API field ${path} is not modelled`);
  }
}

/** $(VAR) → its value when defined, $$ → $, as kubelet expands command, args and env values. */
export function expandVars(s: string, env: Map<string, string>): string {
  return s.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, v: string | undefined) => (v === undefined ? '$' : (env.get(v) ?? all)));
}

/** The container's environment in kubelet's order: envFrom sources, then env (later names win). */
export function envOf(pod: k8s.V1Pod, c: k8s.V1Container, ctx: PodContext): Map<string, string> {
  const env = new Map<string, string>();
  for (const src of c.envFrom ?? []) {
    if (src.secretRef) throw new Error(`kubelet-lite: envFrom secretRef (container ${c.name}) is not modelled`);
    const name = src.configMapRef?.name ?? '';
    const data = ctx.configMaps.get(name);
    if (!data) {
      if (src.configMapRef?.optional) continue;
      throw new Error(`configmap "${name}" not found`);
    }
    for (const [k, v] of Object.entries(data)) env.set(`${src.prefix ?? ''}${k}`, v);
  }
  for (const e of c.env ?? []) {
    if (e.valueFrom?.fieldRef) env.set(e.name, fieldOf(pod, e.valueFrom.fieldRef.fieldPath, ctx.hostIp));
    else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      const v = ctx.configMaps.get(ref.name ?? '')?.[ref.key];
      if (v === undefined && !ref.optional)
        throw new Error(`couldn't find key ${ref.key} in ConfigMap ${pod.metadata!.namespace}/${ref.name}`);
      if (v !== undefined) env.set(e.name, v);
    } else if (e.valueFrom)
      throw new Error(`kubelet-lite: env ${e.name} of container ${c.name}: only fieldRef and configMapKeyRef are modelled`);
    else env.set(e.name, expandVars(e.value ?? '', env));
  }
  return env;
}

/** ConfigMap names a container's env refers to (kubelet fetches them before creating it). */
export function configMapsOf(c: k8s.V1Container): string[] {
  return [
    ...(c.envFrom ?? []).flatMap((s) => (s.configMapRef?.name ? [s.configMapRef.name] : [])),
    ...(c.env ?? []).flatMap((e) => (e.valueFrom?.configMapKeyRef?.name ? [e.valueFrom.configMapKeyRef.name] : [])),
  ];
}

export function mountsOf(pod: k8s.V1Pod, c: k8s.V1Container, ctx: PodContext): CriMount[] {
  const out: CriMount[] = [];
  for (const vm of c.volumeMounts ?? []) {
    const v = pod.spec?.volumes?.find((x) => x.name === vm.name);
    if (!v) throw new Error(`kubelet-lite: container ${c.name} mounts volume ${vm.name}, which the pod does not define`);
    if (!v.hostPath) throw new Error(`kubelet-lite: volume ${vm.name} of container ${c.name}: only hostPath volumes are modelled`);
    if (vm.subPath || vm.subPathExpr) throw new Error(`kubelet-lite: volume ${vm.name}: subPath is not modelled`);
    out.push({
      container_path: vm.mountPath,
      host_path: ctx.hostPathOf(v.hostPath.path),
      readonly: !!vm.readOnly,
      propagation: PROPAGATION[vm.mountPropagation ?? 'None'] ?? 'PROPAGATION_PRIVATE',
    });
  }
  if (
    ctx.serviceAccountDir &&
    pod.spec?.automountServiceAccountToken !== false &&
    !out.some((x) => x.container_path === SERVICE_ACCOUNT_PATH)
  )
    out.push({ container_path: SERVICE_ACCOUNT_PATH, host_path: ctx.serviceAccountDir, readonly: true });
  return out;
}

export function containerConfigOf(pod: k8s.V1Pod, c: k8s.V1Container, attempt: number, ctx: PodContext): ContainerConfig {
  if (!c.image) throw new Error(`kubelet-lite: container ${c.name} has no image`);
  const env = envOf(pod, c, ctx);
  const sc = c.securityContext;
  const spec = pod.spec!;
  return {
    metadata: { name: c.name, attempt },
    image: { image: c.image },
    // Empty command/args: the image's Entrypoint/Cmd, as with kubelet.
    command: (c.command ?? []).map((w) => expandVars(w, env)),
    args: (c.args ?? []).map((w) => expandVars(w, env)),
    ...(c.workingDir ? { working_dir: c.workingDir } : {}),
    envs: [...env].map(([key, value]) => ({ key, value })),
    mounts: mountsOf(pod, c, ctx),
    labels: {
      'io.kubernetes.container.name': c.name,
      'io.kubernetes.pod.name': pod.metadata!.name!,
      'io.kubernetes.pod.uid': pod.metadata!.uid!,
    },
    log_path: `${c.name}/${attempt}.log`,
    linux: {
      security_context: {
        privileged: !!sc?.privileged,
        capabilities: { add_capabilities: sc?.capabilities?.add ?? [], drop_capabilities: sc?.capabilities?.drop ?? [] },
        namespace_options: {
          network: spec.hostNetwork ? 'NODE' : 'POD',
          pid: spec.hostPID ? 'NODE' : 'CONTAINER',
          ipc: spec.hostIPC ? 'NODE' : 'POD',
        },
      },
    },
  };
}
