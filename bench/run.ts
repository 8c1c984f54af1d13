// `npm run bench`: run every area's benchmark in turn and write bench/results.md (and results.json).
// BENCH_SCALE scales the sizes (default 1); BENCH_ONLY=store,ipam runs a subset.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';
import type { BenchContext, BenchSection } from './report.js';

const AREAS = ['store', 'ipam', 'cni', 'overlay', 'docker'] as const;

function fmt(values: Record<string, number> | undefined): string {
  if (!values) return '—';
  return Object.entries(values).map(([k, v]) => `${k} ${Number.isFinite(v) ? +v.toFixed(v < 10 ? 2 : 1) : v}`).join(', ');
}

function markdown(sections: BenchSection[], failures: string[]): string {
  const lines = [
    '# Benchmark results',
    '',
    `Measured ${new Date().toISOString()} by \`npm run bench\` on ${cpus().length} cores (load average at the end ` +
      `${loadavg().map((x) => x.toFixed(1)).join(' ')}). Ours and the reference run in the same process, interleaved; ` +
      'compare ratios, not absolute times (a shared machine).',
    '',
  ];
  for (const s of sections) {
    lines.push(`## ${s.title}`, '', s.method, '', '| measurement | ours | reference | ratio | unit | note |', '|---|---|---|---|---|---|');
    for (const r of s.rows) {
      lines.push(`| ${r.name} | ${fmt(r.ours)} | ${fmt(r.reference)} | ${r.ratio === undefined ? '—' : r.ratio.toFixed(2)} | ${r.unit} | ${r.note ?? ''} |`);
    }
    lines.push('');
  }
  if (failures.length) lines.push('## Not measured in this run', '', ...failures.map((f) => `- ${f}`), '');
  return lines.join('\n');
}

async function main(): Promise<void> {
  const scale = Number(process.env.BENCH_SCALE ?? '1');
  const only = process.env.BENCH_ONLY?.split(',').map((s) => s.trim()).filter(Boolean);
  const ctx: BenchContext = { scale, progress: (m) => process.stderr.write(`bench: ${m}\n`) };
  const sections: BenchSection[] = [];
  const failures: string[] = [];
  for (const area of AREAS) {
    if (only && !only.includes(area)) continue;
    ctx.progress(`${area}: starting`);
    try {
      const mod = (await import(`./${area}.js`)) as { run(ctx: BenchContext): Promise<BenchSection> };
      sections.push(await mod.run(ctx));
      ctx.progress(`${area}: done`);
    } catch (err) {
      const why = `${area}: ${(err as Error).message.split('\n')[0]}`;
      failures.push(why);
      ctx.progress(`FAILED ${why}`);
    }
  }
  const dir = dirname(fileURLToPath(import.meta.url));
  writeFileSync(join(dir, 'results.md'), markdown(sections, failures));
  writeFileSync(join(dir, 'results.json'), JSON.stringify({ at: new Date().toISOString(), scale, sections, failures }, null, 2) + '\n');
  ctx.progress(`wrote ${join(dir, 'results.md')}`);
  if (failures.length) process.exitCode = 1;
}

await main();
