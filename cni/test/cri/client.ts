// A minimal CRI RuntimeService client (what kubelet calls for pod networking), over containerd's unix socket.
import * as grpc from '@grpc/grpc-js';
import * as loader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

const PROTO = fileURLToPath(new URL('./runtime.proto', import.meta.url));

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  port_mappings?: { protocol?: 'TCP' | 'UDP' | 'SCTP'; container_port: number; host_port: number }[];
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface PodSandboxStatus {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  network?: { ip: string };
}

// grpc-js builds service clients at run time from the proto: their methods are not typed statically.
type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

export class CriClient {
  private readonly raw: grpc.Client & Record<string, Unary>;

  constructor(socket: string) {
    const def = loader.loadSync(PROTO, { keepCase: true, longs: Number, enums: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor } } };
    this.raw = new pkg.runtime.v1.RuntimeService(`unix://${socket}`, grpc.credentials.createInsecure()) as grpc.Client &
      Record<string, Unary>;
  }

  private call<T>(method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      this.raw[method]!.call(this.raw, req, (err, res) =>
        err ? reject(new Error(`CRI ${method}: ${err.details || err.message}`)) : resolve(res as T),
      );
    });
  }

  version(): Promise<{ runtime_name: string; runtime_api_version: string }> {
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
  close(): void {
    this.raw.close();
  }
}
