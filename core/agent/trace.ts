// Phase timing of workload attach and detach, for finding where their latency goes. Off unless BEES_TRACE=1 is
// in the agent's environment; then each operation logs one line to stderr: its total and each phase's duration.
import { performance } from 'node:perf_hooks';

const ENABLED = process.env.BEES_TRACE === '1';

export interface Trace {
  /** Time `fn` as phase `name` (phases may overlap when run concurrently). */
  phase<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Record a duration measured elsewhere (e.g. a lock wait). */
  mark(name: string, ms: number): void;
  /** Log the line (once). */
  end(outcome?: string): void;
}

/** One free-form trace line (e.g. a reconcile step's duration); nothing unless tracing. */
export function traceLine(msg: string): void {
  if (ENABLED) process.stderr.write(`trace ${msg}\n`);
}

const NOOP: Trace = { phase: (_n, fn) => fn(), mark: () => undefined, end: () => undefined };

export function startTrace(what: string): Trace {
  if (!ENABLED) return NOOP;
  const t0 = performance.now();
  const parts: string[] = [];
  let done = false;
  return {
    async phase(name, fn) {
      const s = performance.now();
      try {
        return await fn();
      } finally {
        parts.push(`${name}=${(performance.now() - s).toFixed(1)}@${(s - t0).toFixed(1)}`);
      }
    },
    mark(name, ms) {
      parts.push(`${name}=${ms.toFixed(1)}`);
    },
    end(outcome = 'ok') {
      if (done) return;
      done = true;
      process.stderr.write(`trace ${what} ${outcome} total=${(performance.now() - t0).toFixed(1)} ${parts.join(' ')}\n`);
    },
  };
}
