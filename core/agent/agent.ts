// The per-host agent: registers its Host, keeps a liveness record, serves the REST API and the workload API, and
// reconciles the kernel to the part of the topology this host needs.
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { pinoLineAsText } from './log-text.js';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Host } from '../model/types.js';
import { DEFAULT_TUNNEL_PORT } from '../model/defaults.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { Topology } from '../topology/service.js';
import { TopologyError } from '../topology/errors.js';
import { Ipam } from '../ipam/ipam.js';
import { LinuxDatapath } from '../datapath/linux-datapath.js';
import { detectUnderlay } from '../datapath/underlay.js';
import { buildApi, listen } from '../api/server.js';
import { HOST_LIVENESS_PREFIX } from '../api/paths.js';
import { claimHostId } from './host-claim.js';
import { INVENTORY_FILE, LocalInventory, OwnedDatapath } from './inventory.js';
import { TopologyCache } from './cache.js';
import { defaultHostName, loadOrCreateHostId, underlayOfAddress } from './identity.js';
import { Reconciler } from './reconciler.js';
import { LbHealth } from './lb-health.js';
import { NETNS_DIR } from '../datapath/router.js';
import { routerNsName } from '../datapath/names.js';
import { Workloads } from './workloads.js';
import { AgentMetrics } from './metrics.js';
import { startMetricsListener, type MetricsListener } from './metrics-listener.js';
import { currentOperation, logOperations } from './operation-log.js';
import { fastPathSummary, problemsOf, RecentErrors, STUCK_LAG_MS, type AdapterStatus, type AgentStatus } from './agent-status.js';
import type { FastPathStatus } from '../datapath/types.js';
import { buildWorkloadServer, type WorkloadRoutes } from './workload-server.js';
import { FlowLog } from '../datapath/flow-log.js';
import { libc } from '../datapath/netlink/libc.js';
import { ruleCounters } from '../datapath/nft/policy.js';
import { DEFAULT_DROP_LOG } from '../policy/compile.js';
import { findWorkloadNetns, Prober } from './probe.js';
import type { PortGroupResolver } from './port-groups.js';
import type { WorkloadNetworkResolver } from './workload-network.js';
import { withNetlink } from '../datapath/netlink/netns.js';
import { linkStats } from '../datapath/netlink/link-stats.js';
import { traceLine } from './trace.js';

/** A line of the agent's log; a level other than info marks what a collector should surface. */
export type AgentLog = (msg: string, level?: LogLevel) => void;
export type LogLevel = 'info' | 'warn' | 'error';

const PINO_LEVEL: Record<LogLevel, number> = { info: 30, warn: 40, error: 50 };

/** One line in the shape fastify's logger (pino) writes the workload operations in, so both kinds parse alike. */
function jsonLogLine(msg: string, level: LogLevel): string {
  return JSON.stringify({ level: PINO_LEVEL[level], time: Date.now(), pid: process.pid, hostname: hostname(), name: 'bees-agent', msg });
}

export const DEFAULT_STATE_DIR = '/var/lib/bees';
export const DEFAULT_RUN_DIR = '/run/bees';
export const DEFAULT_TUNNEL_ZONE = 'default';

export interface AgentOptions {
  store: string;
  hostId?: string;
  hostName?: string;
  underlayIp?: string;
  tunnelPort?: number;
  /** REST API endpoint (unix:PATH or tcp://HOST:PORT); default unix:<runDir>/api.sock. */
  listen?: string;
  /** Workload API socket; default <runDir>/workload.sock. */
  workloadSocket?: string;
  token?: string;
  /** REST API: a token that may only read (GETs, /metrics); TLS certificate and key (PEM). */
  readToken?: string;
  tls?: { cert: string | Buffer; key: string | Buffer };
  stateDir?: string;
  runDir?: string;
  /** Periodic full reconcile, milliseconds. */
  resyncMs?: number;
  /** An orchestrator's policy: port groups a new workload port joins before its attach returns (port-groups.ts). */
  portGroups?: PortGroupResolver;
  /** An orchestrator's placement of a new workload on another network than the named one (workload-network.ts). */
  networkOf?: WorkloadNetworkResolver;
  /** Period of the IPAM block reclaim of dead hosts, milliseconds. */
  reclaimMs?: number;
  /**
   * Log the first packet of each new connection accepted by a rule (flow logs, `bees flows`), rate-limited per
   * rule. Off by default: every packet through an accept rule then also meets a conntrack match and a log rule.
   */
  flowLog?: boolean;
  /** The datapath's tc-BPF fast path; default on (core/datapath/README.md, "The fast path"). */
  fastPath?: boolean;
  /**
   * How long a network's bridge and router stay on this host after its last local port left, while the network
   * exists (the next workload then does not rebuild them). Default 60 s; 0 removes them with the last port.
   */
  networkLingerMs?: number;
  /** Router namespace prefix: several agents on one machine (test hosts) need distinct ones. */
  routerNsPrefix?: string;
  /** How long a liveness record of this host id from another machine may take to expire before start is refused. */
  hostClaimWaitMs?: number;
  /**
   * Services hosted in the agent process (the Docker plugin), started before its APIs answer: they share the
   * agent's store client, topology view and workload logic instead of opening a store of their own. Closed first
   * on stop.
   */
  extraServices?: ((agent: Agent) => Promise<AgentService>)[];
  /** What the port groups come from (e.g. "kubernetes"), named in `bees status`. */
  portGroupsSource?: string;
  /** Routes adapters add to the workload server (the CNI shim's call), given the in-process workload API. */
  workloadRoutes?: WorkloadRoutes[];
  log?: (msg: string) => void;
  /**
   * `text` (default): the agent's lines as `bees-agent: …`, workload operations as JSON lines. `json`: every line
   * a JSON object in fastify's (pino's) shape, with a level, for log collectors.
   */
  logFormat?: 'text' | 'json';
  /** Also serve GET /metrics alone on this TCP address (HOST:PORT), for Prometheus (metrics-listener.ts). */
  metricsListen?: string;
  /** The bearer token the metrics listener demands (none: it serves anyone who reaches it). */
  metricsToken?: string;
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}

export interface AgentService {
  close(): Promise<void>;
  /** How the service is doing, for `bees status` (a service without it is not listed). */
  describe?(): AdapterStatus;
}

export class Agent {
  store!: Store;
  topology!: Topology;
  cache!: TopologyCache;
  reconciler!: Reconciler;
  lbHealth: LbHealth | undefined;
  workloads!: Workloads;
  metrics!: AgentMetrics;
  ipam!: Ipam;
  hostId!: string;
  apiEndpoint = '';
  workloadEndpoint = '';
  /** The metrics listener's address (tcp://HOST:PORT), when --metrics-listen asked for one. */
  metricsEndpoint = '';
  private metricsListener: MetricsListener | undefined;
  private api: FastifyInstance | undefined;
  private workloadApi: FastifyInstance | undefined;
  private resync: NodeJS.Timeout | undefined;
  private reclaim: NodeJS.Timeout | undefined;
  private trim: NodeJS.Timeout | undefined;
  private readonly services: AgentService[] = [];
  private stopHealth: (() => void) | undefined;
  /** Drops logged by the compiled rules (NFLOG), per port; undefined when NFLOG could not be bound. */
  flowLog: FlowLog | undefined;
  /** The datapath's fast path as it stands (undefined before start or with a datapath that has none). */
  private fastPathStatus?: () => FastPathStatus;
  /** Probes hold their packets' MACs off the fast path (probe.ts). */
  private fastPathHolds?: { hold(macs: string[]): void; release(macs: string[]): Promise<void> };
  private prober: Prober | undefined;
  /** The store sequence the last completed reconcile pass had seen (metrics: reconcile lag). */
  appliedSeq = 0;
  private readonly log: AgentLog;
  /** For `bees status`: the last errors, when the last reconcile pass ended and took, the port groups' last call. */
  readonly recentErrors = new RecentErrors();
  private readonly startedAt = Date.now();
  private lastPass: { at: number; ms: number } | undefined;
  private portGroupsError: string | undefined;
  /** Routes adapters put on the workload socket (e.g. POST /v1/cni), as registered. */
  private readonly workloadRoutes: string[] = [];

  /** Where the agent's lines go outside any workload operation. */
  private readonly plainLog: AgentLog;

  constructor(private readonly opts: AgentOptions) {
    const text = opts.log ?? ((m: string) => process.stderr.write(`bees-agent: ${m}\n`));
    const write = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    this.plainLog = opts.logFormat === 'json' ? (m, level = 'info') => write(jsonLogLine(m, level)) : (m) => text(m);
    // A line written while a workload operation runs is one of its lines: it goes out with the operation's id.
    this.log = (m, level = 'info') => {
      const op = currentOperation();
      if (op) op.log[level](m);
      else this.plainLog(m, level);
    };
  }

  async start(): Promise<void> {
    const o = this.opts;
    const stateDir = o.stateDir ?? DEFAULT_STATE_DIR;
    const runDir = o.runDir ?? DEFAULT_RUN_DIR;
    mkdirSync(runDir, { recursive: true });
    this.hostId = loadOrCreateHostId(stateDir, o.hostId);
    const underlay = o.underlayIp ? underlayOfAddress(o.underlayIp) : await detectUnderlay();
    const tunnelPort = o.tunnelPort ?? DEFAULT_TUNNEL_PORT;
    this.log(`host ${this.hostId} underlay ${underlay.ip} (${underlay.ifname}, mtu ${underlay.mtu}) store ${o.store}`);

    this.store = await openStore(o.store);
    traceLine('start: store opened');
    // Made first so the store's and the datapath's calls are timed from the start; its sources are read at scrape.
    this.metrics = new AgentMetrics(
      {
        localPorts: () => this.cache.list('Port').filter((p) => p.hostId === this.hostId).length,
        storeUp: () => (this.store.health().up ? 1 : 0),
        storeConnectionResets: () => (this.store as { connectionResets?: number }).connectionResets,
      },
      {
        localPorts: () =>
          (this.cache?.list('Port') ?? [])
            .filter((p) => p.hostId === this.hostId && p.interfaceName)
            .map((p) => ({ portId: p.id, ifname: p.interfaceName! })),
        linkStats: () => withNetlink(undefined, linkStats),
        fastPath: () => this.fastPathStatus?.(),
        dropRuleIds: () =>
          new Set((this.cache?.list('Rule') ?? []).filter((r) => r.action === 'drop' || r.action === 'reject').map((r) => r.id)),
        ruleCounters: () => ruleCounters(undefined),
        storeSeq: () => this.store.lastSeq(),
        appliedSeq: () => this.appliedSeq,
        lbMembers: () =>
          (this.lbHealth?.verdicts() ?? []).flatMap((v) => {
            const member = this.cache?.get('PoolMember', v.memberId);
            return member ? [{ poolId: member.poolId, memberId: v.memberId, healthy: v.status === 'up' }] : [];
          }),
      },
    );
    this.metrics.instrumentStore(this.store);
    this.topology = new Topology(this.store);
    // Before anything is written: a second agent with this host id (a cloned machine) must change nothing.
    try {
      await claimHostId(this.store, this.hostId, {
        log: this.log,
        stateDir,
        ...(o.hostClaimWaitMs !== undefined ? { waitMs: o.hostClaimWaitMs } : {}),
      });
    } catch (e) {
      await this.store.close().catch(() => undefined);
      throw e;
    }
    traceLine('start: host claimed');
    // A store that does not know this host (first start, a wiped store) cannot vouch for anything made earlier.
    const inventory = new LocalInventory(join(stateDir, INVENTORY_FILE), { host: this.hostId, store: this.store.url });
    if (!(await this.store.get('Host', this.hostId))) {
      const n = inventory.quarantine(`made before ${new Date().toISOString()}, when the store did not know this host`);
      if (n > 0)
        this.log(
          `the store ${this.store.url} does not know host ${this.hostId} (first start, or an empty or wrong store): ${n} datapath object(s) of earlier runs will NOT be swept`,
        );
    }
    await this.register(underlay.ip, underlay.mtu, tunnelPort, o.hostName ?? defaultHostName());
    traceLine('start: registered');

    this.cache = new TopologyCache(this.store);
    await this.cache.start();
    traceLine('start: cache started');
    // The datapath sweeps only what this agent recorded making, for this host and this store.
    const linux = new LinuxDatapath({
      underlayIp: underlay.ip,
      tunnelPort,
      underlayMtu: underlay.mtu,
      ...(o.routerNsPrefix ? { routerNsPrefix: o.routerNsPrefix } : {}),
      ...(o.fastPath === false ? { fastPath: false } : {}),
      log: (msg, level) => this.log(msg, level),
    });
    // Loaded beside the rest of the start (its failure only turns it off, and is logged).
    void linux.prepareFastPath();
    this.fastPathHolds = { hold: (macs) => linux.holdFastPath(macs), release: (macs) => linux.releaseFastPath(macs) };
    const datapath = new OwnedDatapath(linux, inventory, this.log);
    this.metrics.instrumentDatapath(datapath);
    if (datapath.fastPathStatus) this.fastPathStatus = datapath.fastPathStatus;
    this.reconciler = new Reconciler(this.hostId, this.cache, datapath, underlay.mtu, this.log);
    if (o.networkLingerMs !== undefined) this.reconciler.lingerMs = o.networkLingerMs;
    // Health monitors of the members bound here follow each pass's load balancer plan (lb-health.ts).
    const lbHealth = new LbHealth(
      this.topology,
      (routerId) => `${NETNS_DIR}/${routerNsName(o.routerNsPrefix ?? 'br-', routerId)}`,
      this.log,
    );
    this.lbHealth = lbHealth;
    this.reconciler.onLbPlan = (lb) => lbHealth.update(lb.health);
    this.trackAppliedSeq(this.reconciler, this.cache);
    if (o.flowLog) this.reconciler.acceptLog = DEFAULT_DROP_LOG;
    this.cache.on('changed', (c: { kind?: string }) => this.reconciler.changed(c.kind));
    // The first pass converges what a previous run left: healthy state is kept as it is.
    await this.reconciler.runOnce();
    traceLine('start: first pass done');
    this.resync = setInterval(() => this.reconciler.trigger(0, true), o.resyncMs ?? 30_000);
    this.resync.unref();
    // glibc keeps what the attach path frees natively (main thread and pool threads) in its arenas: after 1,000
    // attaches 21 MiB of them were free against 5 MiB in use, and RSS grew 10-15 MiB in steps (issue 12,
    // core/README.md "Memory"). Trimming hands the free pages back; cheap (the arenas are small) and harmless when
    // nothing is free, so on a timer rather than after each burst.
    this.trim = setInterval(() => {
      try {
        libc().mallocTrim(0);
      } catch {
        // libc not loadable through koffi (the datapath then says why): nothing to trim.
      }
    }, 10_000);
    this.trim.unref();

    const ipam = new Ipam(this.store, this.hostId);
    this.ipam = ipam;
    this.reclaim = setInterval(() => void this.reclaimBlocks(ipam), o.reclaimMs ?? 300_000);
    this.reclaim.unref();
    this.workloads = new Workloads({
      hostId: this.hostId,
      topology: this.topology,
      ipam,
      cache: this.cache,
      reconciler: this.reconciler,
      storeUrl: this.store.url,
      ...(o.portGroups ? { portGroups: this.watchPortGroups(o.portGroups) } : {}),
      ...(o.networkOf ? { networkOf: o.networkOf } : {}),
      ready: () => {
        const h = this.store.health();
        return h.up ? { ready: true } : { ready: false, reason: h.reason ?? 'the store is not reachable' };
      },
    });
    this.stopHealth = this.store.onHealth((h) => {
      this.log(h.up ? 'store reachable again' : `store unreachable: ${h.reason ?? 'no reason given'}`, h.up ? 'info' : 'warn');
      if (!h.up) this.recentErrors.note('store', `unreachable: ${h.reason ?? 'no reason given'}`);
      if (h.up) void this.workloads.flushPending();
    });
    this.metrics.instrument(this.workloads);
    // fastify's logger (JSON lines, with the request id of each workload operation) writes where the agent's lines
    // go: as they are with --log-format json, as plain lines otherwise.
    const sink = o.log;
    const json = o.logFormat === 'json';
    const emit = (line: string): void => {
      if (json) return void (sink ? sink(line.trimEnd()) : process.stderr.write(line));
      const text = pinoLineAsText(line);
      if (text !== undefined) this.plainLog(text);
    };
    this.workloadApi = buildWorkloadServer(this.workloads, o.workloadRoutes, {
      logger: { level: 'info', name: 'bees-agent', stream: { write: emit } },
    });
    logOperations(this.workloads, this.workloadApi.log, (op, reqId, message) =>
      this.recentErrors.note(op, `${message} (request id ${reqId})`),
    );
    const core = new Set(['/v1/attach', '/v1/detach', '/v1/check', '/v1/gc', '/v1/status']);
    this.workloadApi.addHook('onRoute', (r) => {
      if (!core.has(r.url) && r.method !== 'HEAD') this.workloadRoutes.push(`${String(r.method)} ${r.url}`);
    });
    // Before the workload API answers: its readiness then covers the hosted services too.
    for (const start of o.extraServices ?? []) this.services.push(await start(this));
    traceLine('start: services');
    this.workloadEndpoint = await listen(this.workloadApi, `unix:${o.workloadSocket ?? join(runDir, 'workload.sock')}`);
    const metrics = this.metrics;
    const flowLog = new FlowLog({ log: this.log });
    try {
      flowLog.start();
      this.flowLog = flowLog;
    } catch (e) {
      this.log(`drop log unavailable (NFLOG group ${flowLog.group}): ${(e as Error).message}`, 'warn');
    }
    const prober = new Prober(this.hostId, this.store, this.log, this.fastPathHolds);
    await prober.start().catch((e: Error) => this.log(`probes from other hosts will not be observed: ${e.message}`, 'warn'));
    this.prober = prober;
    traceLine('start: prober');
    this.api = buildApi({
      prober: {
        hostId: this.hostId,
        async probe(ifname, spec) {
          const netns = await findWorkloadNetns(ifname, spec.srcMac);
          if (!netns)
            throw new TopologyError(
              'conflict',
              `the namespace of the workload interface ${ifname} (${spec.srcMac}) was not found on this host`,
              'src',
            );
          return prober.probe(netns, spec);
        },
      },
      attribution: {
        hostId: this.hostId,
        ruleCounters: () => ruleCounters(undefined),
        flowRecords: (ifname, since) => this.flowLog?.records(ifname, since) ?? [],
        recentFlowRecords: (since) => this.flowLog?.recent(since) ?? [],
        flowLogAccepts: o.flowLog === true,
        flowLogState: () => ({ running: this.flowLog !== undefined, lost: this.flowLog?.lost ?? 0, group: flowLog.group }),
      },
      topology: this.topology,
      store: this.store,
      ...(o.token ? { token: o.token } : {}),
      ...(o.readToken ? { readToken: o.readToken } : {}),
      ...(o.tls ? { tls: o.tls } : {}),
      extraRoutes: (app) => {
        app.get('/metrics', async (_req, reply) => reply.type(metrics.contentType).send(await metrics.text()));
        app.get('/v1/agent/status', async () => this.status());
      },
    });
    this.apiEndpoint = await listen(this.api, o.listen ?? `unix:${join(runDir, 'api.sock')}`);
    if (o.metricsListen) {
      this.metricsListener = await startMetricsListener(metrics, o.metricsListen, {
        ...(o.metricsToken ? { token: o.metricsToken } : {}),
        log: this.log,
      });
      this.metricsEndpoint = this.metricsListener.endpoint;
      this.log(`metrics on ${this.metricsEndpoint}/metrics${o.metricsToken ? ' (bearer token)' : ''}`);
    }
    this.log(`ready: api ${this.apiEndpoint}, workloads ${this.workloadEndpoint}`);
  }

  /**
   * The sequence a reconcile pass converged to: the cache's when the pass began (changes arriving during it trigger
   * another). Wrapped in place so the reconciler's own triggers are seen too.
   */
  private trackAppliedSeq(reconciler: Reconciler, cache: TopologyCache): void {
    const runOnce = reconciler.runOnce.bind(reconciler);
    reconciler.runOnce = async () => {
      const seq = cache.seq;
      const started = Date.now();
      await runOnce();
      this.appliedSeq = Math.max(this.appliedSeq, seq);
      this.lastPass = { at: Date.now(), ms: Date.now() - started };
      if (reconciler.lastError) this.recentErrors.note('reconcile', reconciler.lastError);
    };
    // A fast-lane pass (policy and load balancer changes) counts only when it covered every change before it.
    const runFast = reconciler.runFast.bind(reconciler);
    reconciler.runFast = async () => {
      const seq = cache.seq;
      const covered = await runFast();
      if (covered) this.appliedSeq = Math.max(this.appliedSeq, seq);
      return covered;
    };
  }

  /** The orchestrator's port groups, their last failure kept for `bees status`. */
  private watchPortGroups(resolve: PortGroupResolver): PortGroupResolver {
    return async (req) => {
      try {
        const groups = await resolve(req);
        this.portGroupsError = undefined;
        return groups;
      } catch (e) {
        this.portGroupsError = (e as Error).message;
        this.recentErrors.note(`${this.opts.portGroupsSource ?? 'port groups'}`, this.portGroupsError);
        throw e;
      }
    };
  }

  /** This agent's health (GET /v1/agent/status, `bees status`). */
  async status(): Promise<AgentStatus> {
    const o = this.opts;
    const health = this.store.health();
    const storeSeq = health.up ? await withTimeout(this.store.lastSeq(), 3000).catch(() => undefined) : undefined;
    const session = (this.store as { sessionId?: () => string }).sessionId?.();
    const resets = (this.store as { connectionResets?: number }).connectionResets;
    const adapters: AdapterStatus[] = [
      {
        name: 'workload socket',
        ok: this.workloadApi?.server.listening === true,
        detail: `${this.workloadEndpoint}${this.workloadRoutes.length ? ` (+ ${this.workloadRoutes.join(', ')})` : ''}`,
      },
      ...this.services.flatMap((sv) => (sv.describe ? [sv.describe()] : [])),
    ];
    if (o.portGroups)
      adapters.push({
        name: o.portGroupsSource ?? 'port groups',
        ok: this.portGroupsError === undefined,
        detail: this.portGroupsError ? `last call failed: ${this.portGroupsError}` : 'policy groups of new ports at attach',
      });
    if (this.metricsEndpoint) adapters.push({ name: 'metrics', ok: true, detail: `${this.metricsEndpoint}/metrics` });
    const parts: Omit<AgentStatus, 'healthy' | 'problems'> = {
      host: { id: this.hostId },
      startedAt: new Date(this.startedAt).toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      store: {
        url: this.store.url,
        up: health.up,
        ...(health.reason && !health.up ? { reason: health.reason } : {}),
        ...(session ? { session } : {}),
        ...(resets !== undefined ? { connectionResets: resets } : {}),
      },
      reconcile: {
        passes: this.reconciler.passes,
        ...(this.lastPass ? { lastPassAt: new Date(this.lastPass.at).toISOString(), lastPassMs: this.lastPass.ms } : {}),
        ...(this.reconciler.lastError ? { lastError: this.reconciler.lastError } : {}),
        appliedSeq: this.appliedSeq,
        ...(storeSeq !== undefined ? { storeSeq, lag: Math.max(0, storeSeq - this.appliedSeq) } : {}),
      },
      datapath: {
        flowLog: { running: this.flowLog !== undefined, lost: this.flowLog?.lost ?? 0 },
        ...(this.fastPathStatus ? { fastPath: fastPathSummary(this.fastPathStatus()) } : {}),
      },
      adapters,
      ports: { local: this.cache.list('Port').filter((p) => p.hostId === this.hostId).length },
      lastErrors: this.recentErrors.list(),
    };
    // Passes run at least every resync period: a lag older than two of them is not an agent busy applying.
    const stuckAfter = Math.max(STUCK_LAG_MS, 2 * (o.resyncMs ?? 30_000));
    const problems = problemsOf(parts, this.lastPass?.at ?? this.startedAt, stuckAfter);
    return { healthy: problems.length === 0, problems, ...parts };
  }

  /** Create or refresh this host's Host object and its tunnel-zone membership. */
  private async register(ip: string, mtu: number, tunnelPort: number, name: string): Promise<void> {
    let zone = (await this.topology.list('TunnelZone', { name: DEFAULT_TUNNEL_ZONE }))[0];
    if (!zone) {
      try {
        zone = await this.topology.create('TunnelZone', { name: DEFAULT_TUNNEL_ZONE, type: 'vxlan' });
      } catch (e) {
        if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
        zone = (await this.topology.list('TunnelZone', { name: DEFAULT_TUNNEL_ZONE }))[0];
      }
    }
    const desired: Omit<Host, 'id'> = {
      name,
      addresses: [ip],
      tunnelZones: zone ? [{ zoneId: zone.id, ip }] : [],
      tunnelPort,
      underlayMtu: mtu,
    };
    try {
      const current = await this.topology.get('Host', this.hostId);
      if (JSON.stringify({ ...current, id: undefined }) !== JSON.stringify({ ...desired, id: undefined })) {
        await this.topology.update('Host', this.hostId, desired);
      }
    } catch (e) {
      if (!(e instanceof TopologyError && e.code === 'not_found')) throw e;
      await this.topology.create('Host', { id: this.hostId, ...desired });
    }
  }

  /**
   * Blocks of hosts that are gone go back to the pool (empty ones are deleted, others lose their affinity; their
   * addresses stay until a gc proves them unowned). One agent does it: the live host with the lowest id.
   */
  async reclaimBlocks(ipam: Ipam): Promise<void> {
    try {
      const live = new Set(
        Object.keys(await this.store.listEphemeral(HOST_LIVENESS_PREFIX)).map((k) => k.slice(HOST_LIVENESS_PREFIX.length)),
      );
      if ([...live].sort()[0] !== this.hostId) return;
      const reclaimed = await ipam.reclaimBlocks(live);
      if (reclaimed.length) this.log(`reclaimed ${reclaimed.length} IPAM block(s) of hosts that are gone`);
    } catch (e) {
      this.log(`block reclaim: ${(e as Error).message}`, 'warn');
    }
  }

  async stop(): Promise<void> {
    if (this.resync) clearInterval(this.resync);
    if (this.reclaim) clearInterval(this.reclaim);
    if (this.trim) clearInterval(this.trim);
    for (const s of this.services.splice(0).reverse()) await s.close().catch(() => undefined);
    this.stopHealth?.();
    this.flowLog?.stop();
    this.prober?.stop();
    this.workloads?.stop();
    this.lbHealth?.stop();
    this.reconciler?.stop();
    this.cache?.stop();
    await this.metricsListener?.close().catch(() => undefined);
    await this.api?.close().catch(() => undefined);
    await this.workloadApi?.close().catch(() => undefined);
    await this.store?.close().catch(() => undefined);
  }
}
