// The local agent's health on one page (GET /v1/agent/status on its REST API, shown by `bees status`): the store
// connection, the datapath's reconcile passes and their lag behind the store, what serves workloads (the workload
// socket and the routes adapters put on it, hosted services such as the Docker plugin, the orchestrator's policy
// groups, the metrics listener), the local ports, and the last errors. `healthy` is false, with the reasons in
// `problems`, when something an operator must act on is wrong.

import type { FastPathStatus } from '../datapath/types.js';

/** One thing that serves workloads or operators on this host, as the agent sees it. */
export interface AdapterStatus {
  name: string;
  ok: boolean;
  detail: string;
}

export interface AgentStatus {
  healthy: boolean;
  /** Why not healthy, one line each; empty when healthy. */
  problems: string[];
  host: { id: string };
  startedAt: string;
  uptimeSeconds: number;
  store: {
    url: string;
    up: boolean;
    reason?: string;
    /** ZooKeeper's session id (hex), when the store has sessions. */
    session?: string;
    connectionResets?: number;
  };
  reconcile: {
    passes: number;
    lastPassAt?: string;
    lastPassMs?: number;
    /** Errors of the last pass (none: it converged). */
    lastError?: string;
    storeSeq?: number;
    appliedSeq: number;
    /** Store changes not applied yet (storeSeq - appliedSeq). */
    lag?: number;
  };
  datapath: {
    flowLog: { running: boolean; lost: number };
    /** The tc-BPF fast path (core/datapath/README.md, "The fast path"): whether it runs and what it carried. */
    fastPath?: { state: 'on' | 'off' | 'unavailable'; reason?: string; ports: number; outcomes: Record<string, number> };
  };
  adapters: AdapterStatus[];
  ports: { local: number };
  lastErrors: RecentError[];
}

export interface RecentError {
  at: string;
  source: string;
  message: string;
  /** Times in a row the same error came back. */
  count: number;
}

/** The last errors of the agent, newest last, repeats folded into a count: what `bees status` shows. */
export class RecentErrors {
  private readonly items: RecentError[] = [];

  constructor(private readonly max = 20) {}

  note(source: string, message: string): void {
    const last = this.items[this.items.length - 1];
    const at = new Date().toISOString();
    if (last && last.source === source && last.message === message) {
      last.count++;
      last.at = at;
      return;
    }
    this.items.push({ at, source, message, count: 1 });
    if (this.items.length > this.max) this.items.shift();
  }

  list(): RecentError[] {
    return this.items.map((e) => ({ ...e }));
  }
}

/** A lag with no pass ended for this long is a stuck agent, not one busy applying. */
export const STUCK_LAG_MS = 60_000;

/**
 * The verdict: what makes the agent unhealthy, from the parts gathered. `lastPassAt`: when a reconcile pass last
 * ended (epoch ms); a lag with no pass for `stuckAfterMs` is a stuck agent.
 */
export function problemsOf(
  s: Omit<AgentStatus, 'healthy' | 'problems'>,
  lastPassAt: number,
  stuckAfterMs = STUCK_LAG_MS,
  now = Date.now(),
): string[] {
  const problems: string[] = [];
  if (!s.store.up) problems.push(`store ${s.store.url} unreachable: ${s.store.reason ?? 'no reason given'}`);
  if (s.reconcile.lastError) problems.push(`last reconcile pass failed: ${s.reconcile.lastError}`);
  if ((s.reconcile.lag ?? 0) > 0 && now - lastPassAt > stuckAfterMs)
    problems.push(`${s.reconcile.lag} store change(s) not applied; no reconcile pass ended for ${Math.round((now - lastPassAt) / 1000)} s`);
  for (const a of s.adapters) if (!a.ok) problems.push(`${a.name}: ${a.detail}`);
  return problems;
}

/** The status page's view of the fast path: counts, not the per-port table (that is in the metrics). */
export function fastPathSummary(s: FastPathStatus): NonNullable<AgentStatus['datapath']['fastPath']> {
  return { state: s.state, ...(s.reason ? { reason: s.reason } : {}), ports: s.ports.length, outcomes: s.outcomes };
}
