// A client-node 1.4.0 ListWatch made to keep going (kubernetes.md §3.5): its informer relists by itself after a 410
// (ERROR event, then the server closes the watch), but stops for good on any other error (a failed list, a refused
// watch, the API server gone), so it is restarted here with a backoff of 1 s doubling to 30 s. It has no watchdog
// for a half-dead connection either, so it is also relisted every `relistMs` (a relist turns whatever the watch
// missed into add/update/delete events). Objects are handed out in their wire form (objects.ts `wire`).
import * as k8s from '@kubernetes/client-node';
import { wire, type K8sObject } from './objects.js';

export interface WatchedOptions {
  /** Full relist period (default 5 minutes; 0: never). */
  relistMs?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  log?: (line: string) => void;
}

export class Watched<T extends K8sObject> {
  private readonly informer: k8s.Informer<k8s.KubernetesObject> & k8s.ObjectCache<k8s.KubernetesObject>;
  private stopped = true;
  private backoff: number;
  private retry: NodeJS.Timeout | undefined;
  private relist: NodeJS.Timeout | undefined;
  private synced = false;
  /** Errors seen (the last few), for tests and logs. */
  readonly errors: string[] = [];
  restarts = 0;

  constructor(
    kc: k8s.KubeConfig,
    readonly path: string,
    list: () => Promise<k8s.KubernetesListObject<k8s.KubernetesObject>>,
    private readonly onChange: () => void,
    private readonly o: WatchedOptions = {},
  ) {
    this.backoff = o.backoffMinMs ?? 1000;
    this.informer = k8s.makeInformer(kc, path, list);
    for (const ev of ['add', 'update', 'delete'] as const) this.informer.on(ev, () => this.onChange());
    this.informer.on('connect', () => {
      this.backoff = this.o.backoffMinMs ?? 1000;
    });
    this.informer.on('error', (err) => {
      const msg = `${path}: ${(err as Error)?.message ?? String(err)}`;
      this.errors.push(msg);
      if (this.errors.length > 20) this.errors.shift();
      this.o.log?.(`informer ${msg}; restarting in ${this.backoff} ms`);
      this.scheduleRestart();
    });
  }

  get hasSynced(): boolean {
    return this.synced;
  }

  async start(): Promise<void> {
    this.stopped = false;
    try {
      await this.informer.start();
      this.synced = true;
      this.onChange();
    } catch (e) {
      // The informer reported it through 'error' too (and a restart is scheduled); the first list failing is not
      // fatal to the controller: it starts once the API server answers.
      this.o.log?.(`informer ${this.path}: start failed: ${(e as Error).message}`);
      this.scheduleRestart();
    }
    this.armRelist();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.relist) clearTimeout(this.relist);
    await this.informer.stop();
  }

  list(): T[] {
    return this.informer.list().map((o) => wire(o) as unknown as T);
  }

  get(name: string, namespace?: string): T | undefined {
    const o = this.informer.get(name, namespace);
    return o ? (wire(o) as unknown as T) : undefined;
  }

  private scheduleRestart(): void {
    if (this.stopped || this.retry) return;
    const wait = this.backoff;
    this.backoff = Math.min(this.backoff * 2, this.o.backoffMaxMs ?? 30_000);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      if (this.stopped) return;
      this.restarts++;
      this.informer
        .start()
        .then(() => {
          this.synced = true;
          this.onChange();
        })
        .catch(() => this.scheduleRestart());
    }, wait);
  }

  private armRelist(): void {
    const every = this.o.relistMs ?? 300_000;
    if (!every || this.stopped) return;
    if (this.relist) clearTimeout(this.relist);
    this.relist = setTimeout(() => {
      if (this.stopped) return;
      void this.informer
        .stop()
        .then(() => this.informer.start())
        .then(() => this.onChange())
        .catch(() => this.scheduleRestart())
        .finally(() => this.armRelist());
    }, every);
  }
}
