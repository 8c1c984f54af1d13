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
// - hostNetwork pods (the bees DaemonSet, the controller) run as REAL CONTAINERS through the same CRI (`hostNetwork:
//   'cri'`, the default): a sandbox with the NODE network namespace (containerd runs in the harness host's, so
//   that is the node's network) and NODE pid namespace for hostPID, the pod's images as imported into the node's
//   containerd, init containers to completion, then the containers with their own command, args and env
//   (cri-pod.ts), hostPath mounts with their propagation, privileged and capabilities from the security context,
//   the service account token mounted at its in-cluster path; restarted when they exit (restartPolicy Always) or
//   when their liveness probe fails; exec probes through ExecSync, httpGet probes as curl from the node's network
//   namespace; StopContainer with terminationGracePeriodSeconds on deletion. hostPath volumes are directories under
//   the node's root (kubelet-lite's stand-in for a machine of the node's own) except machine-wide ones (/run/netns,
//   /lib/modules, /proc, /sys, /run/xtables.lock).
// - The named fallback, `hostNetwork: 'process'`: the containers' command lines run as PROCESSES in the host's
//   network namespace (no image needed): container paths in the command line are rewritten to the node's hostPath
//   directories, the image's entry points and environment come from a table, and KUBECONFIG (also given to
//   `--k8s-kubeconfig=in-cluster`) stands for the service account mount.
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import type { Harness, HarnessHost } from '../harness/index.js';
import { sandboxNetns } from '../../cni/test/helpers.js';
import type { CriRuntime, PodSandboxConfig } from '../../testbed/cri.js';
import { configMapsOf, containerConfigOf, sandboxConfigOf, type PodContext } from './cri-pod.js';

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
  cri: CriRuntime;
  /** How hostNetwork pods run: as containers through the CRI (default), or as processes (the fallback). */
  hostNetwork?: 'cri' | 'process';
  /** hostNetwork containers: a directory with the service account's `token`, `ca.crt` and `namespace`, mounted
   *  read-only at /var/run/secrets/kubernetes.io/serviceaccount (the in-cluster config). */
  serviceAccountDir?: string;
  /** The node's filesystem: hostPath volumes live under it, except `sharedHostPaths`. */
  nodeRoot: string;
  /** hostPaths that are machine-wide, the same for every harness host (the kernel's and /run/netns). */
  sharedHostPaths?: string[];
  /** Process mode: how each image's programs run here. */
  images?: Record<string, ProcessImage>;
  /** Process mode: a kubeconfig file for pods, standing for the service account token mount. */
  podKubeconfig?: string;
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
/** A probe's schedule and counts (kubelet's prober worker, one per probe). */
interface ProbeState {
  nextAt: number;
  failures: number;
}
interface RunningContainer {
  id: string;
  attempt: number;
  /** Startup probe passed (or none): liveness and readiness run only after it. */
  started: boolean;
  ready: boolean;
  probes: Record<'startup' | 'liveness' | 'readiness', ProbeState>;
}
interface ContainerPod {
  mode: 'containers';
  pod: k8s.V1Pod;
  sandboxId: string;
  sandboxConfig: PodSandboxConfig;
  containers: Map<string, RunningContainer>;
  ready: boolean;
  stopping: boolean;
}
type Running = SandboxPod | ProcessPod | ContainerPod;

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
    const order = [...this.running.values()].sort((a, b) => Number(a.mode !== 'sandbox') - Number(b.mode !== 'sandbox'));
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
        else if (r.mode === 'containers') await this.tendContainers(r);
        this.startErrors.delete(uid);
      } catch (e) {
        this.startErrors.set(uid, (e as Error).message);
      }
      await this.reportStatus(uid).catch((e) => this.errors.push(e));
    }
  }

  // ---- pods on the pod network: the CRI ----

  private async startPod(pod: k8s.V1Pod): Promise<void> {
    if (pod.spec?.hostNetwork) return this.o.hostNetwork === 'process' ? this.startProcessPod(pod) : this.startContainerPod(pod);
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
    } else if (r.mode === 'containers') {
      r.stopping = true;
      const grace = Math.min(r.pod.spec?.terminationGracePeriodSeconds ?? 30, 30);
      await Promise.all([...r.containers.values()].map((c) => this.o.cri.stopContainer(c.id, grace).catch((e) => this.errors.push(e))));
      await this.o.cri.stopPodSandbox(r.sandboxId);
      await this.o.cri.removePodSandbox(r.sandboxId);
    } else {
      r.stopping = true;
      const grace = Math.min(r.pod.spec?.terminationGracePeriodSeconds ?? 30, 30) * 1000;
      await Promise.all([...r.procs.values()].map((p) => terminate(p, grace)));
    }
    this.running.delete(uid);
  }

  // ---- hostNetwork pods: containers through the CRI ----

  /** What building the pod's CRI requests needs from this node; fetches the ConfigMaps its env names. */
  private async podContext(pod: k8s.V1Pod): Promise<PodContext> {
    const m = pod.metadata!;
    const configMaps = new Map<string, Record<string, string>>();
    for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])])
      for (const name of configMapsOf(c))
        if (!configMaps.has(name)) {
          const cm = await this.core.readNamespacedConfigMap({ namespace: m.namespace!, name }).catch(() => undefined);
          if (cm) configMaps.set(name, cm.data ?? {});
        }
    const logDirectory = join(this.o.host.stateDir, 'pods', `${m.namespace}_${m.name}_${m.uid}`);
    await mkdir(logDirectory, { recursive: true });
    this.ensureHostPaths(pod);
    return {
      hostIp: this.o.host.underlayIp,
      hostPathOf: (p) => this.hostPathOf(p),
      logDirectory,
      serviceAccountDir: this.o.serviceAccountDir,
      configMaps,
    };
  }

  /** hostPath types DirectoryOrCreate and FileOrCreate: made before the mount, as kubelet does. */
  private ensureHostPaths(pod: k8s.V1Pod): void {
    for (const v of pod.spec?.volumes ?? []) {
      if (!v.hostPath) continue;
      const path = this.hostPathOf(v.hostPath.path);
      if (v.hostPath.type === 'DirectoryOrCreate') mkdirSync(path, { recursive: true });
      else if (v.hostPath.type === 'FileOrCreate' && !existsSync(path)) {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, '', { flag: 'a' });
      }
    }
  }

  private async startContainerPod(pod: k8s.V1Pod): Promise<void> {
    const ctx = await this.podContext(pod);
    const sandboxConfig = sandboxConfigOf(pod, ctx);
    const cri = this.o.cri;
    const sandboxId = await cri.runPodSandbox(sandboxConfig);
    const r: ContainerPod = { mode: 'containers', pod, sandboxId, sandboxConfig, containers: new Map(), ready: false, stopping: false };
    try {
      for (const c of pod.spec?.initContainers ?? []) {
        const id = await cri.createContainer(sandboxId, containerConfigOf(pod, c, 0, ctx), sandboxConfig);
        await cri.startContainer(id);
        const st = await until(async () => {
          const x = await cri.containerStatus(id);
          return x.state === 'CONTAINER_EXITED' || x.state === 'CONTAINER_UNKNOWN' ? x : undefined;
        }, 300_000);
        if (st.exit_code !== 0)
          throw new Error(
            `init container ${c.name} of ${pod.metadata!.namespace}/${pod.metadata!.name} exited with ${st.exit_code} (${st.reason}${st.message ? `: ${st.message}` : ''}); log ${join(ctx.logDirectory, st.log_path)}`,
          );
      }
      for (const c of pod.spec?.containers ?? []) r.containers.set(c.name, await this.runContainer(r, c, 0, ctx));
    } catch (err) {
      await cri.stopPodSandbox(sandboxId).catch(() => undefined);
      await cri.removePodSandbox(sandboxId).catch(() => undefined);
      throw err;
    }
    this.running.set(pod.metadata!.uid!, r);
    await this.tendContainers(r);
  }

  private async runContainer(r: ContainerPod, c: k8s.V1Container, attempt: number, ctx?: PodContext): Promise<RunningContainer> {
    const config = containerConfigOf(r.pod, c, attempt, ctx ?? (await this.podContext(r.pod)));
    const id = await this.o.cri.createContainer(r.sandboxId, config, r.sandboxConfig);
    await this.o.cri.startContainer(id);
    const now = Date.now();
    const at = (p: k8s.V1Probe | undefined): ProbeState => ({ nextAt: now + (p?.initialDelaySeconds ?? 0) * 1000, failures: 0 });
    return {
      id,
      attempt,
      started: !c.startupProbe,
      ready: false,
      probes: { startup: at(c.startupProbe), liveness: at(c.livenessProbe), readiness: at(c.readinessProbe) },
    };
  }

  /** Restart exited containers (restartPolicy Always) and run the probes that are due, as kubelet's prober. */
  private async tendContainers(r: ContainerPod): Promise<void> {
    if (r.stopping) return;
    const cri = this.o.cri;
    for (const c of r.pod.spec?.containers ?? []) {
      let rc = r.containers.get(c.name)!;
      const st = await cri.containerStatus(rc.id);
      if (st.state !== 'CONTAINER_RUNNING') {
        this.errors.push(new Error(`${r.pod.metadata!.name}/${c.name} exited (${st.exit_code} ${st.reason}); restarting`));
        await cri.removeContainer(rc.id).catch(() => undefined);
        rc = await this.runContainer(r, c, rc.attempt + 1);
        r.containers.set(c.name, rc);
        continue;
      }
      const now = Date.now();
      const due = (kind: 'startup' | 'liveness' | 'readiness'): boolean => now >= rc.probes[kind].nextAt;
      if (!rc.started) {
        if (!due('startup')) continue;
        const ok = await this.runProbe(rc, c, c.startupProbe!);
        if (ok) rc.started = true;
        if (await this.counted(r, c, rc, 'startup', c.startupProbe!, ok)) continue;
        if (!ok) continue;
      }
      if (c.livenessProbe && due('liveness')) {
        const ok = await this.runProbe(rc, c, c.livenessProbe);
        if (await this.counted(r, c, rc, 'liveness', c.livenessProbe, ok)) continue;
      }
      if (!c.readinessProbe) rc.ready = true;
      else if (due('readiness')) {
        const ok = await this.runProbe(rc, c, c.readinessProbe);
        const p = rc.probes.readiness;
        p.failures = ok ? 0 : p.failures + 1;
        // Ready on one success; unready after failureThreshold failures in a row (kubelet's thresholds).
        if (ok && p.failures === 0) rc.ready = true;
        if (!ok && p.failures >= (c.readinessProbe.failureThreshold ?? 3)) rc.ready = false;
        p.nextAt = Date.now() + (c.readinessProbe.periodSeconds ?? 10) * 1000;
      }
    }
    r.ready = (r.pod.spec?.containers ?? []).every((c) => r.containers.get(c.name)?.ready);
  }

  /** Counts a startup or liveness result; past failureThreshold the container is killed and started again
   *  (returns true then). */
  private async counted(
    r: ContainerPod,
    c: k8s.V1Container,
    rc: RunningContainer,
    kind: 'startup' | 'liveness',
    probe: k8s.V1Probe,
    ok: boolean,
  ): Promise<boolean> {
    const p = rc.probes[kind];
    p.failures = ok ? 0 : p.failures + 1;
    p.nextAt = Date.now() + (probe.periodSeconds ?? 10) * 1000;
    if (p.failures < (probe.failureThreshold ?? 3)) return false;
    this.errors.push(new Error(`${r.pod.metadata!.name}/${c.name}: ${kind} probe failed ${p.failures} times; restarting`));
    const grace = Math.min(r.pod.spec?.terminationGracePeriodSeconds ?? 30, 30);
    await this.o.cri.stopContainer(rc.id, grace);
    await this.o.cri.removeContainer(rc.id);
    r.containers.set(c.name, await this.runContainer(r, c, rc.attempt + 1));
    return true;
  }

  private async runProbe(rc: RunningContainer, c: k8s.V1Container, probe: k8s.V1Probe): Promise<boolean> {
    // A loaded test machine is slower than a node: every probe gets at least PROCESS_PROBE_TIMEOUT_S.
    const timeout = Math.max(probe.timeoutSeconds ?? 1, PROCESS_PROBE_TIMEOUT_S);
    if (probe.exec?.command) {
      const res = await this.o.cri.execSync(rc.id, probe.exec.command, timeout).catch((e: Error) => ({ exitCode: -1, stderr: e.message }));
      return res.exitCode === 0;
    }
    if (probe.httpGet) return this.httpProbe(c, probe.httpGet, timeout);
    throw new Error(`kubelet-lite: container ${c.name}: only exec and httpGet probes are modelled`);
  }

  /** hostNetwork: the pod's address is the node's; curl from the node's namespace stands for the kubelet's GET. */
  private httpProbe(c: k8s.V1Container, g: k8s.V1HTTPGetAction, timeout: number): Promise<boolean> {
    const port = typeof g.port === 'number' ? g.port : Number(c.ports?.find((p) => p.name === g.port)?.containerPort ?? g.port);
    const url = `${(g.scheme ?? 'HTTP').toLowerCase()}://${g.host ?? this.o.host.underlayIp}:${port}${g.path ?? '/'}`;
    return this.probe(['curl', '-fsS', '-o', '/dev/null', '-m', String(timeout), url], { PATH: process.env.PATH }, (timeout + 5) * 1000);
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
        ready &&= await this.httpProbe(c, rp.httpGet, rp.timeoutSeconds ?? 1);
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
    const image = this.o.images?.[c.image ?? ''];
    const podKubeconfig = this.o.podKubeconfig;
    if (!podKubeconfig) throw new Error('kubelet-lite: process mode needs podKubeconfig');
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
      if (/^--(k8s-)?kubeconfig=in-cluster$/.test(w)) return w.replace(/in-cluster$/, podKubeconfig);
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
      KUBECONFIG: podKubeconfig,
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

/** Polls `fn` every 250 ms until it returns a value, or fails after `withinMs`. */
async function until<T>(fn: () => Promise<T | undefined>, withinMs: number): Promise<T> {
  for (const deadline = Date.now() + withinMs; ;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`kubelet-lite: timed out after ${withinMs} ms`);
    await new Promise((res) => setTimeout(res, 250));
  }
}

/** The downward API fields the tests' pods use (process mode). */
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
