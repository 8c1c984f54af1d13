// A round-robin scheduler for the test API server: binds every pod without spec.nodeName to the next schedulable
// Node whose labels satisfy the pod's nodeSelector, through pods/binding as kube-scheduler does. It plays the
// scheduler's part in e2e runs; it knows nothing of resources, taints, affinity or spreading.
import * as k8s from '@kubernetes/client-node';

export class RoundRobinScheduler {
  private readonly core: k8s.CoreV1Api;
  private readonly nodes: k8s.Informer<k8s.V1Node> & k8s.ObjectCache<k8s.V1Node>;
  private readonly pods: k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>;
  private next = 0;
  /** UIDs bound by us whose update the informer may not have delivered yet. */
  private readonly done = new Set<string>();
  private pending: Promise<void> = Promise.resolve();
  /** Pods bound, as "namespace/name node", in order: for tests and logs. */
  readonly bound: string[] = [];
  readonly errors: unknown[] = [];

  constructor(kc: k8s.KubeConfig) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.nodes = k8s.makeInformer(kc, '/api/v1/nodes', () => this.core.listNode());
    this.pods = k8s.makeInformer(kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    // Bindings are serialised so round-robin order is deterministic and a pod is never bound twice at once.
    const kick = (): void => {
      this.pending = this.pending.then(() => this.scheduleAll()).catch((e) => void this.errors.push(e));
    };
    this.pods.on('add', kick);
    this.pods.on('update', kick);
    this.nodes.on('add', kick);
    this.nodes.on('update', kick);
    this.pods.on('error', (e) => this.errors.push(e));
    this.nodes.on('error', (e) => this.errors.push(e));
  }

  async start(): Promise<void> {
    await this.nodes.start();
    await this.pods.start();
  }

  async stop(): Promise<void> {
    await this.pods.stop();
    await this.nodes.stop();
    await this.pending;
  }

  private async scheduleAll(): Promise<void> {
    for (const pod of this.pods.list()) {
      if (pod.spec?.nodeName || pod.metadata?.deletionTimestamp || this.done.has(pod.metadata!.uid!)) continue;
      const node = this.pick(pod);
      if (!node) continue; // unschedulable for now; a Node event retries
      const ns = pod.metadata!.namespace!;
      const name = pod.metadata!.name!;
      try {
        await this.core.createNamespacedPodBinding({
          namespace: ns,
          name,
          body: { metadata: { name, namespace: ns }, target: { apiVersion: 'v1', kind: 'Node', name: node } },
        });
        this.done.add(pod.metadata!.uid!);
        this.bound.push(`${ns}/${name} ${node}`);
      } catch (e) {
        // 409: bound meanwhile (by us from an older event, or by someone else). Anything else is reported.
        if ((e as { code?: number }).code !== 409) this.errors.push(e);
      }
    }
  }

  private pick(pod: k8s.V1Pod): string | undefined {
    const want = pod.spec?.nodeSelector ?? {};
    const candidates = this.nodes
      .list()
      .filter((n) => !n.spec?.unschedulable && Object.entries(want).every(([k, v]) => n.metadata?.labels?.[k] === v))
      .map((n) => n.metadata!.name!)
      .sort();
    if (candidates.length === 0) return undefined;
    return candidates[this.next++ % candidates.length];
  }
}
