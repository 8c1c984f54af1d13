// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it: the holder renews
// `renewTime` every retry period; a candidate takes the lease over only once it has seen the same record (holder,
// renew time, resourceVersion) unchanged for a whole lease duration on its own clock (no trust in the holder's
// clock); every write is a PUT with the resourceVersion read, so two candidates never both win (409 Conflict).
// A leader that cannot renew within `renewDeadlineMs` stops leading before anyone else may start.
import * as k8s from '@kubernetes/client-node';

export interface LeaderOptions {
  namespace: string;
  name: string;
  identity: string;
  leaseDurationS?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  log?: (line: string) => void;
}

const codeOf = (e: unknown): number | undefined => (e as { code?: number }).code;

export class LeaderElector {
  private readonly api: k8s.CoordinationV1Api;
  private leading = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = true;
  private observed: { key: string; at: number } | undefined;
  private lastRenew = 0;
  private loop: Promise<void> = Promise.resolve();
  readonly durationS: number;
  readonly renewDeadlineMs: number;
  readonly retryMs: number;

  constructor(
    kc: k8s.KubeConfig,
    private readonly o: LeaderOptions,
  ) {
    this.api = kc.makeApiClient(k8s.CoordinationV1Api);
    this.durationS = o.leaseDurationS ?? 15;
    this.renewDeadlineMs = o.renewDeadlineMs ?? Math.floor(this.durationS * 1000 * (2 / 3));
    this.retryMs = o.retryPeriodMs ?? Math.max(100, Math.floor(this.renewDeadlineMs / 5));
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.tick();
  }

  /** Stops campaigning; a leader gives the lease up (holder cleared) so a standby need not wait it out. */
  async stop(release = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.loop;
    if (this.leading) {
      this.setLeading(false);
      if (release) await this.release().catch(() => undefined);
    }
  }

  private tick(): void {
    this.loop = this.loop.then(async () => {
      if (this.stopped) return;
      let ok = false;
      try {
        ok = await this.tryAcquireOrRenew();
      } catch (e) {
        this.o.log?.(`leader election: ${(e as Error).message}`);
      }
      if (ok) {
        this.lastRenew = Date.now();
        if (!this.leading) this.setLeading(true);
      } else if (this.leading && Date.now() - this.lastRenew > this.renewDeadlineMs) {
        this.setLeading(false);
      }
      if (!this.stopped) this.timer = setTimeout(() => this.tick(), this.retryMs);
    });
  }

  private setLeading(on: boolean): void {
    this.leading = on;
    this.o.log?.(
      `leader election: ${this.o.identity} ${on ? 'is now the leader' : 'stopped leading'} (${this.o.namespace}/${this.o.name})`,
    );
    if (on) this.o.onStartedLeading();
    else this.o.onStoppedLeading();
  }

  private async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, name, identity } = this.o;
    const now = new k8s.V1MicroTime();
    let lease: k8s.V1Lease;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (e) {
      if (codeOf(e) !== 404) throw e;
      const body: k8s.V1Lease = {
        metadata: { name, namespace },
        spec: { holderIdentity: identity, leaseDurationSeconds: this.durationS, acquireTime: now, renewTime: now, leaseTransitions: 0 },
      };
      try {
        await this.api.createNamespacedLease({ namespace, body });
        return true;
      } catch (err) {
        if (codeOf(err) === 409) return false;
        throw err;
      }
    }
    const spec = lease.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const key = `${holder}|${String(spec.renewTime?.toISOString?.() ?? spec.renewTime)}|${lease.metadata?.resourceVersion}`;
    if (this.observed?.key !== key) this.observed = { key, at: Date.now() };
    const duration = (spec.leaseDurationSeconds ?? this.durationS) * 1000;
    if (holder !== '' && holder !== identity && Date.now() - this.observed.at < duration) return false;
    const takeover = holder !== identity;
    lease.spec = {
      ...spec,
      holderIdentity: identity,
      leaseDurationSeconds: this.durationS,
      renewTime: now,
      ...(takeover ? { acquireTime: now, leaseTransitions: (spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1) } : {}),
    };
    try {
      await this.api.replaceNamespacedLease({ name, namespace, body: lease });
      return true;
    } catch (e) {
      if (codeOf(e) === 409) return false;
      throw e;
    }
  }

  private async release(): Promise<void> {
    const { namespace, name, identity } = this.o;
    const lease = await this.api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    lease.spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1 };
    await this.api.replaceNamespacedLease({ name, namespace, body: lease });
  }
}
