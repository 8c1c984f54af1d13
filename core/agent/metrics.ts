// The agent's Prometheus metrics, served as text at GET /metrics on its REST API (unix socket, or TCP with the
// bearer token Prometheus can send). One registry per agent, so several agents in one process stay apart.
// What an operator watches: how many attaches/detaches/checks/gcs succeed or fail and how long they take, how many
// workloads this host carries, whether the store is reachable and how often its connection had to be reset, and
// the Node process itself (CPU, memory, event-loop lag).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Workloads } from './workloads.js';

export type WorkloadOperation = 'attach' | 'detach' | 'check' | 'gc';

export interface MetricSources {
  /** Ports bound to this host, as the agent's topology cache knows them. */
  localPorts(): number;
  /** 1 when the store answers, 0 when not. */
  storeUp(): number;
  /** Connections to the store reset by its watchdog (ZooKeeper only; undefined otherwise). */
  storeConnectionResets(): number | undefined;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly operations: Counter<'operation' | 'outcome'>;
  private readonly durations: Histogram<'operation'>;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
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
