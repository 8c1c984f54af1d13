// The agent's Prometheus metrics, served as text at GET /metrics on its REST API (unix socket, or TCP with the
// bearer token Prometheus can send). One registry per agent, so several agents in one process stay apart.
// What an operator watches: how many attaches/detaches/checks/gcs succeed or fail and how long they take, how many
// workloads this host carries, whether the store is reachable and how often its connection had to be reset, and
// the Node process itself (CPU, memory, event-loop lag).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { FastPathStatus } from '../datapath/types.js';
import type { Workloads } from './workloads.js';
import type { LinkStats } from '../datapath/netlink/link-stats.js';

export type WorkloadOperation = 'attach' | 'detach' | 'check' | 'gc';

export interface MetricSources {
  /** Ports bound to this host, as the agent's topology cache knows them. */
  localPorts(): number;
  /** 1 when the store answers, 0 when not. */
  storeUp(): number;
  /** Connections to the store reset by its watchdog (ZooKeeper only; undefined otherwise). */
  storeConnectionResets(): number | undefined;
}

/** What the host's kernel and the agent's progress say, read at scrape time (core/agent/agent.ts gives them). */
export interface HostMetricSources {
  /** This host's workload ports: id and host-side veth name. Local ports only: the label set stays bounded. */
  localPorts(): { portId: string; ifname: string }[];
  /** Counters of every link of the agent's namespace, by name: one netlink dump. */
  linkStats(): Promise<Map<string, LinkStats>>;
  /** Ids of the drop and reject rules of the topology (the rules a drop counter is kept for). */
  dropRuleIds(): Set<string>;
  /** Per-rule counters of the host's compiled chains: one nft listing. */
  ruleCounters(): Promise<{ chainId: string; ruleId: string; packets: number; bytes: number }[]>;
  /** The store's newest sequence number, and the one the agent's last completed reconcile pass had seen. */
  storeSeq(): Promise<number>;
  appliedSeq(): number;
  /**
   * Verdicts of the health monitors run on this host (lb-health.ts), per pool member: only members whose port is
   * bound here, and only once a first verdict exists (a member still being probed has no series yet).
   */
  lbMembers?(): { poolId: string; memberId: string; healthy: boolean }[];
  /** The datapath's fast path: frames it carried (per outcome, per port), read from its BPF maps. */
  fastPath?(): FastPathStatus | undefined;
}

/** Datapath operations timed, by the method of the Datapath interface that does them. */
const DATAPATH_OPERATIONS = {
  plug: 'plug',
  unplug: 'unplug',
  applyPolicy: 'nft_apply',
  ensureBridge: 'ensure_bridge',
  ensureRouter: 'ensure_router',
  sweep: 'sweep',
} as const;

/** Store calls timed; watches and health are not calls with a duration. */
const STORE_OPERATIONS = [
  'get',
  'list',
  'commit',
  'create',
  'update',
  'delete',
  'lastSeq',
  'putEphemeral',
  'removeEphemeral',
  'listEphemeral',
] as const;

/**
 * Reads shared by several metrics of one scrape (prom-client collects each metric on its own): the first metric to
 * ask starts the read, the others of the same scrape reuse it.
 */
function sharedRead<T>(read: () => Promise<T>, fresh = 500): () => Promise<T> {
  let at = 0;
  let last: Promise<T> | undefined;
  return () => {
    if (!last || Date.now() - at > fresh) {
      at = Date.now();
      last = read();
    }
    return last;
  };
}

/** Set a counter read from elsewhere (the kernel's): forget the old label sets, then add the values read. */
function setCounter<L extends string>(c: Counter<L>, values: [Partial<Record<L, string>>, number][]): void {
  c.reset();
  for (const [labels, v] of values) c.inc(labels, v);
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly operations: Counter<'operation' | 'outcome'>;
  private readonly durations: Histogram<'operation'>;

  private readonly datapathDurations: Histogram<'operation' | 'outcome'>;
  private readonly storeDurations: Histogram<'operation' | 'outcome'>;

  constructor(sources: MetricSources, host?: HostMetricSources) {
    const registers = [this.registry];
    this.datapathDurations = new Histogram({
      name: 'bees_datapath_operation_duration_seconds',
      help: 'Duration of datapath operations (plug, unplug, nft_apply, ensure_bridge, ensure_router, sweep) by outcome.',
      labelNames: ['operation', 'outcome'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.storeDurations = new Histogram({
      name: 'bees_store_operation_duration_seconds',
      help: 'Duration of store calls by operation and outcome.',
      labelNames: ['operation', 'outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    if (host) this.hostMetrics(host);
    this.operations = new Counter({
      name: 'bees_workload_operations_total',
      help: 'Workload API operations by outcome (ok or error).',
      labelNames: ['operation', 'outcome'],
      registers,
    });
    this.durations = new Histogram({
      name: 'bees_workload_operation_duration_seconds',
      help: 'Duration of workload API operations, whatever their outcome.',
      labelNames: ['operation'],
      // Attaches take milliseconds; a stalled store shows up in the tail.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: 'bees_local_ports',
      help: 'Ports bound to this host.',
      registers,
      collect() {
        this.set(sources.localPorts());
      },
    });
    new Gauge({
      name: 'bees_store_up',
      help: '1 when the store is reachable, 0 when not.',
      registers,
      collect() {
        this.set(sources.storeUp());
      },
    });
    new Gauge({
      name: 'bees_store_connection_resets',
      help: 'Store connections reset because the server did not answer (ZooKeeper handshake or silence); cumulative.',
      registers,
      collect() {
        this.set(sources.storeConnectionResets() ?? 0);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'bees_agent_' });
  }

  private hostMetrics(host: HostMetricSources): void {
    const registers = [this.registry];
    const links = sharedRead(() => host.linkStats());
    const portCounter = (name: string, help: string, field: keyof LinkStats) =>
      new Counter({
        name,
        help,
        labelNames: ['port'],
        registers,
        async collect() {
          const stats = await links().catch(() => new Map<string, LinkStats>());
          // Frames the fast path delivered into the workload's namespace never cross the host-side veth's transmit.
          const fast = field === 'txBytes' || field === 'txPackets' ? host.fastPath?.()?.counts : undefined;
          const extra = (ifname: string): number => {
            const c = fast?.[ifname];
            return c ? (field === 'txBytes' ? c.rxBytes : c.rxPackets) : 0;
          };
          setCounter(
            this,
            host
              .localPorts()
              .filter((p) => stats.has(p.ifname))
              .map((p) => [{ port: p.portId }, stats.get(p.ifname)![field] + extra(p.ifname)]),
          );
        },
      });
    // The host side of a workload's veth: what it receives the workload sent, what it transmits the workload gets.
    portCounter('bees_port_rx_bytes_total', "Bytes received by a local port's host-side veth (sent by the workload).", 'rxBytes');
    portCounter('bees_port_rx_packets_total', "Packets received by a local port's host-side veth (sent by the workload).", 'rxPackets');
    portCounter('bees_port_tx_bytes_total', "Bytes sent by a local port's host-side veth (to the workload).", 'txBytes');
    portCounter('bees_port_tx_packets_total', "Packets sent by a local port's host-side veth (to the workload).", 'txPackets');
    const rules = sharedRead(() => host.ruleCounters());
    const dropCounter = (name: string, help: string, field: 'packets' | 'bytes') =>
      new Counter({
        name,
        help,
        labelNames: ['rule', 'chain'],
        registers,
        async collect() {
          const drops = host.dropRuleIds();
          const counters = await rules().catch(() => []);
          setCounter(
            this,
            counters.filter((c) => drops.has(c.ruleId)).map((c) => [{ rule: c.ruleId, chain: c.chainId }, c[field]]),
          );
        },
      });
    dropCounter('bees_rule_drop_packets_total', "Packets dropped or rejected by a rule in this host's kernel (nft counter).", 'packets');
    dropCounter('bees_rule_drop_bytes_total', "Bytes dropped or rejected by a rule in this host's kernel (nft counter).", 'bytes');
    new Counter({
      name: 'bees_fastpath_frames_total',
      help: 'Frames seen by the tc-BPF fast path by outcome: tx_fast/rx_fast carried, tx_bridge/rx_bridge/rx_nat/tx_spoof left to the bridge.',
      labelNames: ['outcome'],
      registers,
      collect() {
        setCounter(
          this,
          Object.entries(host.fastPath?.()?.outcomes ?? {}).map(([outcome, n]) => [{ outcome }, n]),
        );
      },
    });
    new Gauge({
      name: 'bees_fastpath_ports',
      help: 'Local ports the fast path carries (no filter bound, unshaped).',
      registers,
      collect() {
        this.set(host.fastPath?.()?.ports.length ?? 0);
      },
    });
    new Gauge({
      name: 'bees_store_sequence',
      help: "The store's newest change sequence number.",
      registers,
      async collect() {
        this.set(await host.storeSeq().catch(() => NaN));
      },
    });
    new Gauge({
      name: 'bees_applied_sequence',
      help: 'The store sequence number the last completed reconcile pass of this agent had seen.',
      registers,
      collect() {
        this.set(host.appliedSeq());
      },
    });
    new Gauge({
      name: 'bees_reconcile_lag',
      help: 'Store changes this host has not reconciled yet (store sequence minus applied sequence).',
      registers,
      async collect() {
        const seq = await host.storeSeq().catch(() => NaN);
        this.set(Math.max(0, seq - host.appliedSeq()));
      },
    });
    new Gauge({
      name: 'bees_lb_member_healthy',
      help: "1 when this host's health monitor finds a load balancer pool member up, 0 when down (members bound here).",
      labelNames: ['pool', 'member'],
      registers,
      collect() {
        // Members leave with their pool or port: forget old label sets, as for the kernel's counters.
        this.reset();
        for (const m of host.lbMembers?.() ?? []) this.set({ pool: m.poolId, member: m.memberId }, m.healthy ? 1 : 0);
      },
    });
  }

  /** Time the datapath's operations (plug, unplug, nft apply...), wrapped in place like `instrument`. */
  instrumentDatapath(datapath: object): void {
    this.wrap(datapath, Object.entries(DATAPATH_OPERATIONS), this.datapathDurations);
  }

  /** Time the store's calls, wrapped in place: every user of this store client is measured. */
  instrumentStore(store: object): void {
    this.wrap(
      store,
      STORE_OPERATIONS.map((op) => [op, op]),
      this.storeDurations,
    );
  }

  private wrap(target: object, methods: [string, string][], histogram: Histogram<'operation' | 'outcome'>): void {
    // Methods are looked up by name on an object of any class; the wrapper keeps each one's signature.
    const o = target as Record<string, unknown>;
    for (const [method, operation] of methods) {
      const original = o[method];
      if (typeof original !== 'function') continue;
      const bound = (original as (...args: unknown[]) => Promise<unknown>).bind(target);
      o[method] = async (...args: unknown[]) => {
        const end = histogram.startTimer({ operation });
        try {
          const r = await bound(...args);
          end({ outcome: 'ok' });
          return r;
        } catch (e) {
          end({ outcome: 'error' });
          throw e;
        }
      };
    }
  }

  /** Run one operation, counting its outcome and timing it. */
  async observe<T>(operation: WorkloadOperation, run: () => Promise<T>): Promise<T> {
    const end = this.durations.startTimer({ operation });
    try {
      const result = await run();
      this.operations.inc({ operation, outcome: 'ok' });
      return result;
    } catch (e) {
      this.operations.inc({ operation, outcome: 'error' });
      throw e;
    } finally {
      end();
    }
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /**
   * Count and time every operation of `workloads`, whoever calls it (the HTTP workload API, the in-process CNI
   * and Docker adapters): the instance's methods are wrapped in place.
   */
  instrument(workloads: Workloads): void {
    // One line per operation: each wrapper keeps its method's own request and result types.
    const { attach, detach, check, gc } = {
      attach: workloads.attach.bind(workloads),
      detach: workloads.detach.bind(workloads),
      check: workloads.check.bind(workloads),
      gc: workloads.gc.bind(workloads),
    };
    workloads.attach = (req) => this.observe('attach', () => attach(req));
    workloads.detach = (req) => this.observe('detach', () => detach(req));
    workloads.check = (req) => this.observe('check', () => check(req));
    workloads.gc = (req) => this.observe('gc', () => gc(req));
  }
}
