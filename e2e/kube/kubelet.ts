// kubelet-lite: a TEST DOUBLE of the kubelet, one per e2e harness host, for the API server double. It is not a
// kubelet: it does what the project's Kubernetes tests need and says where it stands in for the real thing.
//
// - Registers its Node (InternalIP = the host's underlay address; Ready only once the node's CNI conf dir holds a
//   config, as kubelet reports "cni config uninitialized" until then).
// - Watches the pods bound to its node (an informer over all pods, filtered here; kubelet watches with a field
//   selector) and reports their status (phase, hostIP, podIP(s), conditions) through pods/status.
// - Pods on the pod network run through the REAL containerd CRI of the host: RunPodSandbox with the pod's labels
//   and annotations (so the CNI plugin gets `io.kubernetes.cri.pod-annotations`), hence CNI ADD with the node's
//   installed conflist; a deleted pod's sandbox is stopped (CNI DEL) and removed. Only the sandbox runs: the
//   pod's containers are not started (the sandbox holds the pod's network, which is what is tested).
// - hostNetwork pods (the bees DaemonSet) run their containers' own command lines as PROCESSES in the host's
//   network namespace, not as containers: init containers to completion, then the containers, restarted when
//   they exit; SIGTERM then SIGKILL after terminationGracePeriodSeconds on deletion. What a container's
//   filesystem would give is stood in for: hostPath volumes are directories under the node's root (except
//   machine-wide paths such as /run/netns), container paths in the command line are rewritten to them, the
//   image's entry points and environment come from a table, and KUBECONFIG (also given to `--k8s-kubeconfig=in-cluster`) stands for the service account mount.
//   Exec readiness probes run the same way; httpGet readiness probes are curl from the host's namespace.
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { Harness, HarnessHost } from '../harness/index.js';
import type { CriClient } from '../../cni/test/cri/client.js';
import { sandboxNetns } from '../../cni/test/helpers.js';

/** How containers of one image run as processes here. */
export interface ProcessImage {
  /** Executable path in the image → the argv prefix that runs the same program on this machine. */
  entrypoints: Record<string, string[]>;
  /** The image's environment (its ENV); `hostPath` maps a container path through the pod's mounts. */
  env?: (hostPath: (containerPath: string) => string) => Record<string, string>;
}

export interface KubeletLiteOptions {
  /** The kubelet's own access to the API server. */
  kc: k8s.KubeConfig;
  harness: Harness;
  host: HarnessHost;
  nodeName: string;
  /** The host's container runtime (CRI). */
  cri: CriClient;
  /** The node's filesystem: hostPath volumes live under it, except `sharedHostPaths`. */
  nodeRoot: string;
  /** hostPaths that are machine-wide, the same for every harness host (the kernel's and /run/netns). */
  sharedHostPaths?: string[];
  images: Record<string, ProcessImage>;
  /** A kubeconfig file for pods: stands for the service account token mount in process mode. */
  podKubeconfig: string;
  nodeLabels?: Record<string, string>;
}

interface SandboxPod {
  mode: 'sandbox';
  pod: k8s.V1Pod;
  sandboxId: string;
  ips: string[];
  netns: string;
}
interface ProcessPod {
  mode: 'process';
  pod: k8s.V1Pod;
  procs: Map<string, ChildProcess>;
  ready: boolean;
  stopping: boolean;
  /** When the readiness probes are due again (ms since the epoch). */
  nextProbe: number;
}
type Running = SandboxPod | ProcessPod;

const PROCESS_PROBE_TIMEOUT_S = 30;
const DEFAULT_SHARED = ['/run/netns', '/lib/modules', '/run/xtables.lock', '/proc', '/sys'];

export class KubeletLite {
  private readonly core: k8s.CoreV1Api;
  private readonly pods: k8s.Informer<k8s.V1Pod> & k8s.ObjectCache<k8s.V1Pod>;
  private readonly running = new Map<string, Running>();
  private pending: Promise<void> = Promise.resolve();
  private queued = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastNodeReady: boolean | undefined;
  /** Last start error per pod uid (for tests and logs); cleared when the pod runs. */
  readonly startErrors = new Map<string, string>();
  readonly errors: unknown[] = [];

  constructor(private readonly o: KubeletLiteOptions) {
    this.core = o.kc.makeApiClient(k8s.CoreV1Api);
    this.pods = k8s.makeInformer(o.kc, '/api/v1/pods', () => this.core.listPodForAllNamespaces());
    for (const verb of ['add', 'update', 'delete'] as const) this.pods.on(verb, () => this.kick());
    // Like kubelet's reflector: a broken watch is restarted (and relists on 410).
    this.pods.on('error', (e) => {
      this.errors.push(e);
      if (!this.stopped) setTimeout(() => void this.pods.start().catch((x) => this.errors.push(x)), 500);
    });
  }

  get confDir(): string {
    return this.hostPathOf('/etc/cni/net.d');
  }

  /** Where a hostPath of this node is on the machine. */
  hostPathOf(path: string): string {
    const shared = this.o.sharedHostPaths ?? DEFAULT_SHARED;
    return shared.some((s) => path === s || path.startsWith(`${s}/`)) ? path : join(this.o.nodeRoot, path);
  }

  async start(): Promise<void> {
    await mkdir(this.confDir, { recursive: true });
    await this.register();
    await this.pods.start();
    this.timer = setInterval(() => this.kick(), 1000);
  }

  /** Stop watching; with `pods`, also stop every pod it runs (sandboxes removed, processes terminated). */
  async stop(opts: { pods?: boolean } = {}): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.pods.stop();
    await this.pending;
    // Sandboxes first: their CNI DEL needs the node's agent, which may be one of the process pods.
    const order = [...this.running.values()].sort((a, b) => (a.mode === b.mode ? 0 : a.mode === 'sandbox' ? -1 : 1));
    if (opts.pods) for (const r of order) await this.stopPod(r).catch((e) => this.errors.push(e));
  }

  /** The network namespace of a running pod on the pod network (for tests that send traffic from it). */
  netnsOf(namespace: string, name: string): string | undefined {
    for (const r of this.running.values())
      if (r.mode === 'sandbox' && r.pod.metadata?.namespace === namespace && r.pod.metadata?.name === name) return r.netns;
    return undefined;
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

  private async register(): Promise<void> {
    const { nodeName, host } = this.o;
    try {
      await this.core.createNode({
        body: {
          metadata: {
            name: nodeName,
            labels: {
              'kubernetes.io/hostname': nodeName,
              'kubernetes.io/os': 'linux',
              'kubernetes.io/arch': 'amd64',
              ...this.o.nodeLabels,
            },
          },
          status: {
            addresses: [
              { type: 'InternalIP', address: host.underlayIp },
              { type: 'Hostname', address: nodeName },
            ],
            conditions: [this.readyCondition(false)],
          },
        },
      });
    } catch (e) {
      if ((e as { code?: number }).code !== 409) throw e;
    }
    this.lastNodeReady = false;
  }

  private readyCondition(ready: boolean): k8s.V1NodeCondition {
    const now = new Date();
    return ready
      ? {
          type: 'Ready',
          status: 'True',
          reason: 'KubeletReady',
          message: 'kubelet-lite is posting ready status',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        }
      : {
          type: 'Ready',
          status: 'False',
          reason: 'KubeletNotReady',
          message: 'container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:cni config uninitialized',
          lastHeartbeatTime: now,
          lastTransitionTime: now,
        };
  }

  private async syncNode(): Promise<void> {
    const dir = this.confDir;
    const ready = existsSync(dir) && readdirSync(dir).some((f) => /\.(conflist|conf|json)$/.test(f));
    if (ready === this.lastNodeReady) return;
    await this.core.patchNodeStatus(
      { name: this.o.nodeName, body: { status: { conditions: [this.readyCondition(ready)] } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch),
    );
    this.lastNodeReady = ready;
  }

  private async sync(): Promise<void> {
    await this.syncNode().catch((e) => this.errors.push(e));
    const mine = this.pods.list().filter((p) => p.spec?.nodeName === this.o.nodeName);
    const wanted = new Map(mine.filter((p) => !p.metadata?.deletionTimestamp).map((p) => [p.metadata!.uid!, p]));
    for (const [uid, r] of [...this.running]) if (!wanted.has(uid)) await this.stopPod(r).catch((e) => this.errors.push(e));
    for (const [uid, pod] of wanted) {
      const r = this.running.get(uid);
      try {
        if (!r) await this.startPod(pod);
        else if (r.mode === 'process') await this.tendProcesses(r);
        this.startErrors.delete(uid);
      } catch (e) {
        this.startErrors.set(uid, (e as Error).message);
      }
      await this.reportStatus(uid).catch((e) => this.errors.push(e));
    }
  }

  // ---- pods on the pod network: the CRI ----

  private async startPod(pod: k8s.V1Pod): Promise<void> {
    if (pod.spec?.hostNetwork) return this.startProcessPod(pod);
    const m = pod.metadata!;
    const id = await this.o.cri.runPodSandbox({
      metadata: { name: m.name!, uid: m.uid!, namespace: m.namespace!, attempt: 0 },
      hostname: m.name!,
      labels: m.labels ?? {},
      annotations: m.annotations ?? {},
    });
    const { status, info } = await this.o.cri.podSandboxStatus(id);
    const ips = [
      status.network?.ip,
      ...((status.network as { additional_ips?: { ip: string }[] } | undefined)?.additional_ips ?? []).map((x) => x.ip),
    ];
    this.running.set(m.uid!, { mode: 'sandbox', pod, sandboxId: id, ips: ips.filter((x): x is string => !!x), netns: sandboxNetns(info) });
  }

  private async stopPod(r: Running): Promise<void> {
    const uid = r.pod.metadata!.uid!;
    if (r.mode === 'sandbox') {
      await this.o.cri.stopPodSandbox(r.sandboxId); // CNI DEL
      await this.o.cri.removePodSandbox(r.sandboxId);
    } else {
      r.stopping = true;
      const grace = Math.min(r.pod.spec?.terminationGracePeriodSeconds ?? 30, 30) * 1000;
      await Promise.all([...r.procs.values()].map((p) => terminate(p, grace)));
    }
    this.running.delete(uid);
  }

  // ---- hostNetwork pods: the containers' command lines as processes ----

  private async startProcessPod(pod: k8s.V1Pod): Promise<void> {
    const r: ProcessPod = { mode: 'process', pod, procs: new Map(), ready: false, stopping: false, nextProbe: 0 };
    for (const c of pod.spec?.initContainers ?? []) {
      const child = this.spawnContainer(pod, c, true);
      const code = await new Promise<number | null>((res) => child.once('exit', (x) => res(x)));
      if (code !== 0) throw new Error(`init container ${c.name} of ${pod.metadata!.namespace}/${pod.metadata!.name} exited with ${code}`);
    }
    this.running.set(pod.metadata!.uid!, r);
    await this.tendProcesses(r);
  }

  /** Start containers that are not running (restartPolicy Always), and run the readiness probes. */
  private async tendProcesses(r: ProcessPod): Promise<void> {
    if (r.stopping) return;
    for (const c of r.pod.spec?.containers ?? []) {
      const p = r.procs.get(c.name);
      if (!p || p.exitCode !== null || p.signalCode !== null) r.procs.set(c.name, this.spawnContainer(r.pod, c, false));
    }
    if (Date.now() < r.nextProbe) return;
    let ready = true;
    let period = 10;
    for (const c of r.pod.spec?.containers ?? []) {
      const rp = c.readinessProbe;
      if (!rp?.exec?.command && !rp?.httpGet) continue;
      period = Math.min(period, rp.periodSeconds ?? 10);
      if (rp.httpGet) {
        // hostNetwork: the pod's address is the host's; curl from the host's namespace stands for the kubelet's GET.
        const g = rp.httpGet;
        const port = typeof g.port === 'number' ? g.port : Number(c.ports?.find((p) => p.name === g.port)?.containerPort ?? g.port);
        const url = `${(g.scheme ?? 'HTTP').toLowerCase()}://${g.host ?? this.o.host.underlayIp}:${port}${g.path ?? '/'}`;
        const timeout = rp.timeoutSeconds ?? 1;
        ready &&= await this.probe(
          ['curl', '-fsS', '-o', '/dev/null', '-m', String(timeout), url],
          { PATH: process.env.PATH },
          (timeout + 5) * 1000,
        );
        continue;
      }
      const argv = this.containerArgv(r.pod, c, rp.exec!.command!, []);
      // A probe here is a fresh `node --import tsx` process on a loaded machine, not an exec into a running
      // container: it gets at least PROCESS_PROBE_TIMEOUT_S.
      const timeout = Math.max(rp.timeoutSeconds ?? 1, PROCESS_PROBE_TIMEOUT_S) * 1000;
      ready &&= await this.probe(argv.argv, argv.env, timeout);
    }
    r.ready = ready;
    // Probe again after the period; until ready, sooner (a rolling update waits on it).
    r.nextProbe = Date.now() + (ready ? period : 1) * 1000;
  }

  private spawnContainer(pod: k8s.V1Pod, c: k8s.V1Container, init: boolean): ChildProcess {
    const { argv, env } = this.containerArgv(pod, c, c.command ?? [], c.args ?? []);
    return this.o.harness.spawn(this.o.host, argv, { logName: `${pod.metadata!.name}-${init ? 'init-' : ''}${c.name}`, env });
  }

  /** A container's argv and environment as a process here: $(VAR) expanded, entry point and paths mapped. */
  private containerArgv(pod: k8s.V1Pod, c: k8s.V1Container, command: string[], args: string[]): { argv: string[]; env: NodeJS.ProcessEnv } {
    const image = this.o.images[c.image ?? ''];
    if (!image) throw new Error(`kubelet-lite: no process mapping for image ${c.image} (container ${c.name})`);
    const mounts = this.mounts(pod, c);
    const mapPath = (p: string): string => {
      for (const m of mounts) if (p === m.mountPath || p.startsWith(`${m.mountPath}/`)) return m.hostPath + p.slice(m.mountPath.length);
      return p;
    };
    const own: Record<string, string> = {};
    for (const e of c.env ?? []) own[e.name] = e.value ?? fieldOf(pod, e.valueFrom?.fieldRef?.fieldPath, this.o.host.underlayIp);
    const expand = (s: string): string => s.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (all, v: string) => own[v] ?? all);
    const words = [...command, ...args].map(expand).map((w) => {
      // The service account mount is stood in for by a kubeconfig file: "in-cluster" names it instead.
      if (/^--(k8s-)?kubeconfig=in-cluster$/.test(w)) return w.replace(/in-cluster$/, this.o.podKubeconfig);
      const eq = w.indexOf('=');
      if (w.startsWith('/')) return mapPath(w);
      if (eq > 0 && w[eq + 1] === '/') return w.slice(0, eq + 1) + mapPath(w.slice(eq + 1));
      return w;
    });
    const entry = image.entrypoints[words[0] ?? ''];
    if (!entry) throw new Error(`kubelet-lite: image ${c.image} has no entry point ${words[0]}`);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: '/root',
      NODE_OPTIONS: '',
      ...image.env?.(mapPath),
      ...own,
      KUBECONFIG: this.o.podKubeconfig,
    };
    return { argv: [...entry, ...words.slice(1)], env };
  }

  private mounts(pod: k8s.V1Pod, c: k8s.V1Container): { mountPath: string; hostPath: string }[] {
    const out: { mountPath: string; hostPath: string }[] = [];
    for (const vm of c.volumeMounts ?? []) {
      const v = pod.spec?.volumes?.find((x) => x.name === vm.name);
      if (!v?.hostPath) continue; // only hostPath volumes are stood in for
      const hostPath = this.hostPathOf(v.hostPath.path);
      if (hostPath !== v.hostPath.path) {
        // DirectoryOrCreate / FileOrCreate, under the node's root only.
        if (v.hostPath.type === 'FileOrCreate') {
          mkdirSync(dirname(hostPath), { recursive: true });
          writeFileSync(hostPath, '', { flag: 'a' });
        } else mkdirSync(hostPath, { recursive: true });
      }
      out.push({ mountPath: vm.mountPath, hostPath });
    }
    return out.sort((a, b) => b.mountPath.length - a.mountPath.length);
  }

  private probe(argv: string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<boolean> {
    return new Promise((res) => {
      execFile('nsenter', [`--net=${this.o.host.netns}`, ...argv], { env, timeout: timeoutMs }, (err) => res(!err));
    });
  }

  // ---- status ----

  private async reportStatus(uid: string): Promise<void> {
    const r = this.running.get(uid);
    const pod = this.pods.list().find((p) => p.metadata?.uid === uid);
    if (!pod) return;
    const now = new Date();
    const err = this.startErrors.get(uid);
    const cond = (type: string, ok: boolean): k8s.V1PodCondition => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: now });
    const ready = r ? (r.mode === 'sandbox' ? true : r.ready) : false;
    const ips = r ? (r.mode === 'sandbox' ? r.ips : [this.o.host.underlayIp]) : [];
    const status: k8s.V1PodStatus = {
      phase: r ? 'Running' : 'Pending',
      hostIP: this.o.host.underlayIp,
      hostIPs: [{ ip: this.o.host.underlayIp }],
      ...(ips.length ? { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) } : {}),
      conditions: [cond('PodScheduled', true), cond('Initialized', !!r), cond('ContainersReady', ready), cond('Ready', ready)],
      ...(err !== undefined ? { message: err, reason: 'KubeletLiteStartError' } : {}),
    };
    const cur = pod.status ?? {};
    const same =
      cur.phase === status.phase &&
      cur.podIP === status.podIP &&
      cur.message === status.message &&
      JSON.stringify((cur.conditions ?? []).map((c) => [c.type, c.status])) ===
        JSON.stringify(status.conditions!.map((c) => [c.type, c.status]));
    if (same) return;
    status.startTime = cur.startTime ?? now;
    await this.core.patchNamespacedPodStatus(
      { namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, body: { status } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
  }
}

/** The downward API fields the tests' pods use. */
function fieldOf(pod: k8s.V1Pod, path: string | undefined, hostIp: string): string {
  switch (path) {
    case 'spec.nodeName':
      return pod.spec?.nodeName ?? '';
    case 'metadata.namespace':
      return pod.metadata?.namespace ?? '';
    case 'metadata.name':
      return pod.metadata?.name ?? '';
    case 'status.hostIP':
    case 'status.podIP':
      return hostIp;
    default:
      return '';
  }
}

/** SIGTERM to the process group, SIGKILL after `graceMs`. */
async function terminate(p: ChildProcess, graceMs: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((r) => p.once('exit', r));
  const signal = (s: NodeJS.Signals): void => {
    try {
      process.kill(-p.pid!, s);
    } catch {
      p.kill(s);
    }
  };
  signal('SIGTERM');
  await Promise.race([gone, new Promise((r) => setTimeout(r, graceMs))]);
  if (p.exitCode === null && p.signalCode === null) {
    signal('SIGKILL');
    await gone;
  }
}
