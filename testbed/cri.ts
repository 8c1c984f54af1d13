// The tests' CRI client (kubelet-lite, the CNI containerd and cross-orchestrator tests): the RuntimeService calls a kubelet makes for a pod (sandbox, containers, exec probes),
// over a containerd's unix socket, with the messages of cri.proto (upstream field numbers).
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('./cri.proto', import.meta.url));

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE';
export type MountPropagation = 'PROPAGATION_PRIVATE' | 'PROPAGATION_HOST_TO_CONTAINER' | 'PROPAGATION_BIDIRECTIONAL';

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  port_mappings?: { protocol?: 'TCP' | 'UDP' | 'SCTP'; container_port: number; host_port: number }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  linux?: { security_context?: { namespace_options?: NamespaceOption; privileged?: boolean } };
}

export interface CriMount {
  container_path: string;
  host_path: string;
  readonly?: boolean;
  propagation?: MountPropagation;
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: { key: string; value: string }[];
  mounts?: CriMount[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  log_path?: string;
  linux?: {
    security_context?: {
      privileged?: boolean;
      capabilities?: { add_capabilities?: string[]; drop_capabilities?: string[] };
      namespace_options?: NamespaceOption;
    };
  };
}

export interface PodSandboxStatus {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  network?: { ip: string; additional_ips?: { ip: string }[] };
}

export interface ContainerStatus {
  id: string;
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
  exit_code: number;
  reason: string;
  message: string;
  log_path: string;
}

// grpc-js builds service clients at run time from the proto: their methods are not typed statically.
type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export class CriRuntime {
  private readonly raw: grpc.Client & Record<string, Unary>;

  constructor(readonly socket: string) {
    const def = loader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
    this.raw = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, Unary>;
  }

  /** One call; `deadlineMs` bounds it (a hung runtime must not hang the kubelet's sync loop forever). */
  private call<T>(method: string, req: unknown, deadlineMs = 120_000): Promise<T> {
    return new Promise((resolve, reject) => {
      this.raw[method]!.call(this.raw, req, { deadline: Date.now() + deadlineMs }, (err, res) =>
        err ? reject(new Error(`CRI ${method}: ${err.details || err.message}`)) : resolve(res as T),
      );
    });
  }

  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }> {
    return this.call('Version', { version: 'v1' });
  }
  async runPodSandbox(config: PodSandboxConfig): Promise<string> {
    return (await this.call<{ pod_sandbox_id: string }>('RunPodSandbox', { config })).pod_sandbox_id;
  }
  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { pod_sandbox_id: id });
  }
  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { pod_sandbox_id: id });
  }
  podSandboxStatus(id: string): Promise<{ status: PodSandboxStatus; info: Record<string, string> }> {
    return this.call('PodSandboxStatus', { pod_sandbox_id: id, verbose: true });
  }
  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ container_id: string }>('CreateContainer', {
      pod_sandbox_id: podSandboxId,
      config,
      sandbox_config: sandboxConfig,
    });
    return r.container_id;
  }
  async startContainer(id: string): Promise<void> {
    await this.call('StartContainer', { container_id: id });
  }
  /** SIGTERM, SIGKILL after `timeoutS` (the pod's grace period), as kubelet's StopContainer. */
  async stopContainer(id: string, timeoutS: number): Promise<void> {
    await this.call('StopContainer', { container_id: id, timeout: timeoutS }, (timeoutS + 60) * 1000);
  }
  async removeContainer(id: string): Promise<void> {
    await this.call('RemoveContainer', { container_id: id });
  }
  async containerStatus(id: string): Promise<ContainerStatus> {
    return (await this.call<{ status: ContainerStatus }>('ContainerStatus', { container_id: id })).status;
  }
  /** An exec probe: the command inside the running container, killed after `timeoutS`. */
  async execSync(id: string, cmd: string[], timeoutS: number): Promise<{ exitCode: number; stdout: string; stderr: string }> {
    const r = await this.call<{ stdout: Buffer; stderr: Buffer; exit_code: number }>(
      'ExecSync',
      { container_id: id, cmd, timeout: timeoutS },
      (timeoutS + 30) * 1000,
    );
    return { exitCode: r.exit_code, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  }
  close(): void {
    this.raw.close();
  }
}
