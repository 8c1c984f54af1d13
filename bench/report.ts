import { cpus, loadavg } from 'node:os';

// Shared shape of every benchmark: each area module (bench/<area>.ts) exports `run(ctx)` that measures a subject
// beside its baseline in the same run and returns a section for bench/results.md. Every comparison says what it
// really compares (`compares`) and comes from interleaved rounds whose per-round ratios are reported, so a reader
// sees the spread of a noisy shared machine instead of one lucky number.

export interface BenchRow {
  /** What was measured, e.g. "CNI ADD serial". */
  name: string;
  /** The subject (column A), e.g. { p50: 12.1, p99: 30.2 } in `unit`. */
  ours: Record<string, number>;
  /** The baseline (column B) measured in the same run, when there is one. */
  reference?: Record<string, number>;
  /** Headline ratio A ÷ B: the median of `roundRatios`. */
  ratio?: number;
  /** A ÷ B in each interleaved round; required with a ratio, at least MIN_ROUNDS of them. */
  roundRatios?: number[];
  /** What the two columns really are, e.g. "bees shim + agent vs bridge + host-local, both exec'd per call". */
  compares?: string;
  unit: string;
  note?: string;
}

export interface BenchSection {
  title: string;
  /** How it was measured: tools, sizes, repetitions, and whether the two sides were interleaved. */
  method: string;
  /** Headings of the two value columns (default: ours, reference). */
  columns?: [string, string];
  rows: BenchRow[];
}

export interface BenchContext {
  /** Scale knob: 1 = the default sizes; CI may pass less. */
  scale: number;
  /** Report progress of a long run to the person watching. */
  progress(message: string): void;
}

/** Fewest interleaved rounds a ratio may come from. */
export const MIN_ROUNDS = 3;

export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

/**
 * The middle value, or the mean of the two middle values of an even count: with the nearest rank, the median of
 * an even number of rounds (2, 4, 10) was the lower of the two, a figure biased towards whichever side is smaller.
 */
export function median(samples: number[]): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Milliseconds elapsed while running `fn`. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * Runs `rounds` rounds of the pair, alternating which side goes first (A B, B A, A B, …) so that drift of a shared
 * machine (load arriving, caches warming) does not always favour the same side. Returns each side's result per round.
 */
export async function interleavedRounds<T>(
  rounds: number,
  a: (round: number) => Promise<T>,
  b: (round: number) => Promise<T>,
): Promise<{ a: T[]; b: T[] }> {
  const out: { a: T[]; b: T[] } = { a: [], b: [] };
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      out.a.push(await a(r));
      out.b.push(await b(r));
    } else {
      out.b.push(await b(r));
      out.a.push(await a(r));
    }
  }
  return out;
}

/** `x` to `digits` decimals: figures as a reader compares them. */
export function roundTo(x: number, digits: number): number {
  return Math.round(x * 10 ** digits) / 10 ** digits;
}

/** p50 and p99 of latency samples to `digits` decimals, and how many samples they come from. */
export function latencyFigures(samples: number[], digits: number): { p50: number; p99: number; n: number } {
  return { p50: roundTo(percentile(samples, 50), digits), p99: roundTo(percentile(samples, 99), digits), n: samples.length };
}

/** The median of per-round figures with the lowest and highest beside it, to `digits` decimals. */
export function roundsSpread(samples: number[], digits: number): { median: number; min: number; max: number } {
  return {
    median: roundTo(median(samples), digits),
    min: roundTo(Math.min(...samples), digits),
    max: roundTo(Math.max(...samples), digits),
  };
}

const round2 = (x: number): number => roundTo(x, 2);

/** The per-round ratios A ÷ B of paired figures, and their median as the headline ratio. */
export function pairedRatio(a: number[], b: number[]): { ratio: number; roundRatios: number[] } {
  if (a.length !== b.length || a.length === 0) throw new Error(`paired ratio needs rounds on both sides (${a.length} vs ${b.length})`);
  const roundRatios = a.map((x, i) => round2(x / b[i]!));
  return { ratio: round2(median(roundRatios)), roundRatios };
}

/** Refuses a section whose comparisons do not say what they compare or do not come from enough rounds. */
export function checkSection(s: BenchSection): void {
  for (const r of s.rows) {
    if (r.ratio === undefined) continue;
    if (!r.compares) throw new Error(`${s.title}: row '${r.name}' has a ratio but does not say what it compares`);
    if (!r.reference) throw new Error(`${s.title}: row '${r.name}' has a ratio but no baseline figures`);
    if ((r.roundRatios?.length ?? 0) < MIN_ROUNDS) {
      throw new Error(
        `${s.title}: row '${r.name}' has a ratio from ${r.roundRatios?.length ?? 0} rounds (at least ${MIN_ROUNDS} interleaved rounds)`,
      );
    }
  }
}

/** "1.36 (1.29–1.62)": the spread of the rounds beside the headline. */
export function spreadOf(r: BenchRow): string {
  if (!r.roundRatios?.length) return '—';
  return `${Math.min(...r.roundRatios).toFixed(2)}–${Math.max(...r.roundRatios).toFixed(2)} (${r.roundRatios.length} rounds)`;
}

/** A section as stored: which area produced it, when, at what scale. */
export interface StoredSection extends BenchSection {
  area: string;
  measuredAt: string;
  scale: number;
}

function fmt(values: Record<string, number> | undefined): string {
  if (!values) return '—';
  return Object.entries(values)
    .map(([k, v]) => `${k} ${Number.isFinite(v) ? +v.toFixed(v < 10 ? 2 : 1) : v}`)
    .join(', ');
}

export function markdown(sections: StoredSection[], failures: string[]): string {
  const lines = [
    '# Benchmark results',
    '',
    `Written ${new Date().toISOString()} by \`npm run bench\` on ${cpus().length} cores (load average at the end ` +
      `${loadavg()
        .map((x) => x.toFixed(1))
        .join(' ')}). Each section says how its two sides were run; every ratio is ` +
      'the median of interleaved rounds (the side going first alternates), with the spread of the rounds beside it, ' +
      'and says what it really compares. Compare ratios, not absolute times (a shared machine).',
    '',
  ];
  for (const s of sections) {
    const [a, b] = s.columns ?? ['ours', 'reference'];
    lines.push(
      `## ${s.title}`,
      '',
      `_Measured ${s.measuredAt}, BENCH_SCALE=${s.scale}._ ${s.method}`,
      '',
      `| measurement | ${a} | ${b} | ratio | rounds (min–max) | unit | what the ratio compares |`,
      '|---|---|---|---|---|---|---|',
    );
    for (const r of s.rows) {
      const what = [r.compares, r.note].filter(Boolean).join('. ');
      lines.push(
        `| ${r.name} | ${fmt(r.ours)} | ${fmt(r.reference)} | ${r.ratio === undefined ? '—' : r.ratio.toFixed(2)} | ${spreadOf(r)} | ${r.unit} | ${what} |`,
      );
    }
    lines.push('');
  }
  if (failures.length) lines.push('## Not measured in this run', '', ...failures.map((f) => `- ${f}`), '');
  return lines.join('\n');
}
