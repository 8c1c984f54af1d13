// Test doubles of the DaemonSet and Deployment controllers (and of the garbage collector's part for their pods),
// for the API server double. They play kube-controller-manager's part in e2e runs, level-triggered from
// client-node informers, and know only what the tests need:
// - DaemonSet: one pod per Node matching spec.template.spec.nodeSelector (taints and tolerations ignored), bound
//   directly (spec.nodeName); pods carry `controller-revision-hash` of their template; RollingUpdate replaces
//   pods of an old template one node at a time (maxUnavailable 1: the next only once every pod is Ready);
//   pods of a deleted DaemonSet are deleted after it (as the garbage collector does with ownerReferences).
// - Deployment: spec.replicas pods from the template, left to the scheduler; no ReplicaSets; a template change
//   replaces pods one at a time once every pod is Ready (maxSurge 0, maxUnavailable 1; no history, no pause).
// Status: DaemonSet desired/current/ready/updated counts and Deployment replicas/readyReplicas, through /status.
import { createHash, randomBytes } from 'node:crypto';
import * as k8s from '@kubernetes/client-node';

const HASH_LABEL = 'controller-revision-hash';

type Cache<T extends k8s.KubernetesObject> = k8s.Informer<T> & k8s.ObjectCache<T>;

const isReady = (p: k8s.V1Pod): boolean => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
const owned = (p: k8s.V1Pod, uid: string | undefined): boolean => p.metadata?.ownerReferences?.some((o) => o.uid === uid) ?? false;

function templateHash(t: k8s.V1PodTemplateSpec | undefined): string {
  return createHash('sha256')
    .update(JSON.stringify(t ?? {}))
    .digest('hex')
    .slice(0, 10);
}

export class WorkloadControllers {
  private readonly core: k8s.CoreV1Api;
  private readonly apps: k8s.AppsV1Api;
  private readonly nodes: Cache<k8s.V1Node>;
  private readonly pods: Cache<k8s.V1Pod>;
  private readonly daemonSets: Cache<k8s.V1DaemonSet>;
  private readonly deployments: Cache<k8s.V1Deployment>;
  /** Owners seen, by uid, so their pods can be collected once they are gone. */
  private readonly owners = new Map<string, 'DaemonSet' | 'Deployment'>();
  /** Pods this controller created whose ADDED event the informer has not delivered yet (no double creates). */
  private readonly inflight = new Map<string, number>();
  private pending: Promise<void> = Promise.resolve();
  private queued = false;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  readonly errors: unknown[] = [];

  constructor(kc: k8s.KubeConfig) {
    this.core = kc.makeApiClient(k8s.CoreV1Api);
    this.apps = kc.makeApiClient(k8s.AppsV1Api);
    this.nodes = k8s.makeInformer(kc, '/api/v1/nodes', () => this.core.listNode());
    this.pods = k8s.makeInformer(kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    this.daemonSets = k8s.makeInformer(kc, '/apis/apps/v1/daemonsets', () => this.apps.listDaemonSetForAllNamespaces());
    this.deployments = k8s.makeInformer(kc, '/apis/apps/v1/deployments', () => this.apps.listDeploymentForAllNamespaces());
    for (const inf of [this.nodes, this.pods, this.daemonSets, this.deployments] as Cache<k8s.KubernetesObject>[]) {
      for (const verb of ['add', 'update', 'delete'] as const) inf.on(verb, () => this.kick());
      inf.on('error', (e) => this.errors.push(e));
    }
  }

  async start(): Promise<void> {
    await Promise.all([this.nodes.start(), this.pods.start(), this.daemonSets.start(), this.deployments.start()]);
    // Also on a tick: a rolling update waits on pods turning Ready, and informer events can be coalesced.
    this.timer = setInterval(() => this.kick(), 500);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await Promise.all([this.nodes.stop(), this.pods.stop(), this.daemonSets.stop(), this.deployments.stop()]);
    await this.pending;
  }

  /** Queue one sync; kicks while one is queued coalesce into it (a slow sync must not pile up work). */
  private kick(): void {
    if (this.stopped || this.queued) return;
    this.queued = true;
    this.pending = this.pending
      .then(() => {
        this.queued = false;
        return this.stopped ? undefined : this.sync();
      })
      .catch((e) => void this.errors.push(e));
  }

  private async sync(): Promise<void> {
    const pods = this.pods.list().filter((p) => !p.metadata?.deletionTimestamp);
    const live = new Set<string>();
    for (const ds of this.daemonSets.list()) {
      live.add(ds.metadata!.uid!);
      this.owners.set(ds.metadata!.uid!, 'DaemonSet');
      await this.syncDaemonSet(
        ds,
        pods.filter((p) => owned(p, ds.metadata!.uid)),
      );
    }
    for (const d of this.deployments.list()) {
      live.add(d.metadata!.uid!);
      this.owners.set(d.metadata!.uid!, 'Deployment');
      await this.syncDeployment(
        d,
        pods.filter((p) => owned(p, d.metadata!.uid)),
      );
    }
    // The garbage collector's part: pods whose owner is gone go too.
    for (const [uid] of this.owners) {
      if (live.has(uid)) continue;
      const orphans = pods.filter((p) => owned(p, uid));
      for (const p of orphans) await this.deletePod(p);
      if (orphans.length === 0) this.owners.delete(uid);
    }
  }

  private async syncDaemonSet(ds: k8s.V1DaemonSet, pods: k8s.V1Pod[]): Promise<void> {
    const ns = ds.metadata!.namespace!;
    const hash = templateHash(ds.spec?.template);
    const want = ds.spec?.template.spec?.nodeSelector ?? {};
    const nodes = this.nodes
      .list()
      .filter((n) => Object.entries(want).every(([k, v]) => n.metadata?.labels?.[k] === v))
      .map((n) => n.metadata!.name!)
      .sort();
    for (const node of nodes) {
      const here = pods.filter((p) => p.spec?.nodeName === node);
      if (here.length === 0 && !this.creating(ds, node)) await this.createPod(ds, 'DaemonSet', ns, hash, node);
    }
    // RollingUpdate, maxUnavailable 1: replace one outdated pod once every pod of the DaemonSet is Ready.
    const rolling = (ds.spec?.updateStrategy?.type ?? 'RollingUpdate') === 'RollingUpdate';
    const outdated = pods.filter((p) => p.metadata?.labels?.[HASH_LABEL] !== hash);
    if (rolling && outdated.length > 0 && pods.length >= nodes.length && pods.every(isReady)) await this.deletePod(outdated[0]!);
    for (const p of pods.filter((x) => !nodes.includes(x.spec?.nodeName ?? ''))) await this.deletePod(p);
    const status: k8s.V1DaemonSetStatus = {
      desiredNumberScheduled: nodes.length,
      currentNumberScheduled: pods.length,
      numberReady: pods.filter(isReady).length,
      updatedNumberScheduled: pods.length - outdated.length,
      numberAvailable: pods.filter(isReady).length,
      numberMisscheduled: 0,
      observedGeneration: ds.metadata?.generation ?? 0,
    };
    await this.writeStatus(ds.status, status, () =>
      this.apps.replaceNamespacedDaemonSetStatus({ namespace: ns, name: ds.metadata!.name!, body: { ...ds, status } }),
    );
  }

  private async syncDeployment(d: k8s.V1Deployment, pods: k8s.V1Pod[]): Promise<void> {
    const ns = d.metadata!.namespace!;
    const replicas = d.spec?.replicas ?? 1;
    const hash = templateHash(d.spec?.template);
    const inflight = this.inflight.get(`${d.metadata!.uid}/`) ?? 0;
    for (let i = pods.length + inflight; i < replicas; i++) await this.createPod(d, 'Deployment', ns, hash, undefined);
    for (const p of pods.slice(replicas)) await this.deletePod(p);
    // A new template (an upgrade) replaces one outdated pod at a time, once every pod is Ready.
    const outdated = pods.filter((p) => p.metadata?.labels?.[HASH_LABEL] !== hash);
    if (outdated.length > 0 && pods.length >= replicas && pods.every(isReady)) await this.deletePod(outdated[0]!);
    const status: k8s.V1DeploymentStatus = {
      replicas: pods.length,
      readyReplicas: pods.filter(isReady).length,
      availableReplicas: pods.filter(isReady).length,
      updatedReplicas: pods.length - outdated.length,
      observedGeneration: d.metadata?.generation ?? 0,
    };
    await this.writeStatus(d.status, status, () =>
      this.apps.replaceNamespacedDeploymentStatus({ namespace: ns, name: d.metadata!.name!, body: { ...d, status } }),
    );
  }

  private creating(owner: k8s.V1DaemonSet, node: string): boolean {
    return (this.inflight.get(`${owner.metadata!.uid}/${node}`) ?? 0) > 0;
  }

  private async createPod(
    owner: k8s.V1DaemonSet | k8s.V1Deployment,
    kind: 'DaemonSet' | 'Deployment',
    ns: string,
    hash: string,
    node: string | undefined,
  ): Promise<void> {
    const name = `${owner.metadata!.name}-${randomBytes(3).toString('hex')}`;
    const tpl = owner.spec!.template;
    const key = `${owner.metadata!.uid}/${node ?? ''}`;
    this.inflight.set(key, (this.inflight.get(key) ?? 0) + 1);
    try {
      await this.core.createNamespacedPod({
        namespace: ns,
        body: {
          metadata: {
            ...tpl.metadata,
            name,
            namespace: ns,
            labels: { ...tpl.metadata?.labels, [HASH_LABEL]: hash },
            ownerReferences: [
              {
                apiVersion: 'apps/v1',
                kind,
                name: owner.metadata!.name!,
                uid: owner.metadata!.uid!,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          spec: { ...tpl.spec!, ...(node ? { nodeName: node } : {}) },
        },
      });
      // Wait for the informer to see it, so the next sync does not create another.
      for (const end = Date.now() + 5000; Date.now() < end && !this.pods.get(name, ns);) await new Promise((r) => setTimeout(r, 20));
    } finally {
      this.inflight.set(key, (this.inflight.get(key) ?? 1) - 1);
    }
  }

  private async deletePod(p: k8s.V1Pod): Promise<void> {
    try {
      await this.core.deleteNamespacedPod({ namespace: p.metadata!.namespace!, name: p.metadata!.name! });
    } catch (e) {
      if ((e as { code?: number }).code !== 404) throw e;
    }
    for (const end = Date.now() + 5000; Date.now() < end && this.pods.get(p.metadata!.name!, p.metadata!.namespace);)
      await new Promise((r) => setTimeout(r, 20));
  }

  private async writeStatus<S>(cur: S | undefined, next: S, write: () => Promise<unknown>): Promise<void> {
    const same = Object.entries(next as object).every(([k, v]) => (cur as Record<string, unknown> | undefined)?.[k] === v);
    if (same) return;
    try {
      await write();
    } catch (e) {
      if ((e as { code?: number }).code !== 409 && (e as { code?: number }).code !== 404) throw e;
    }
  }
}
