// Shared shape of every benchmark: each area module (bench/<area>.ts) exports `run(ctx)` that measures our
// implementation side by side with the reference in the same run and returns a section for bench/results.md.

export interface BenchRow {
  /** What was measured, e.g. "CNI ADD serial". */
  name: string;
  /** Ours, e.g. { p50: 12.1, p99: 30.2 } in `unit`. */
  ours: Record<string, number>;
  /** The reference measured in the same run, when there is one. */
  reference?: Record<string, number>;
  /** ours / reference for the headline figure (what "better" means is said in `note`). */
  ratio?: number;
  unit: string;
  note?: string;
}

export interface BenchSection {
  title: string;
  /** How it was measured: tools, sizes, repetitions. */
  method: string;
  rows: BenchRow[];
}

export interface BenchContext {
  /** Scale knob: 1 = the default sizes; CI may pass less. */
  scale: number;
  /** Report progress of a long run to the person watching. */
  progress(message: string): void;
}

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function median(samples: number[]): number {
  return percentile(samples, 50);
}

/** Milliseconds elapsed while running `fn`. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}
