// `npm run bench`: run every area's benchmark in turn and write bench/results.md (and results.json).
// BENCH_SCALE scales the sizes (default 1); BENCH_ONLY=store,ipam (or `npm run bench -- store ipam`) runs a subset
// and keeps the other areas' sections from the previous results, each labelled with when and at what scale it was
// measured.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSection, markdown, type BenchContext, type BenchSection, type StoredSection } from './report.js';

const AREAS = ['store', 'ipam', 'cni', 'overlay', 'docker', 'policy', 'lb', 'k8s', 'scale', 'memory', 'zk-storm'] as const;
/** Areas whose module is not bench/<area>.ts. */
const MODULES: Partial<Record<string, string>> = { scale: './scale/bench.js' };

/** Sections of an earlier run that says which area each came from (older files do not: they are dropped). */
function previousSections(file: string): StoredSection[] {
  if (!existsSync(file)) return [];
  try {
    const old = JSON.parse(readFileSync(file, 'utf8')) as { sections?: Partial<StoredSection>[] };
    return (old.sections ?? []).filter((s): s is StoredSection => typeof s.area === 'string' && typeof s.measuredAt === 'string');
  } catch {
    return [];
  }
}

async function main(): Promise<void> {
  const scale = Number(process.env.BENCH_SCALE ?? '1');
  // `npm run bench -- policy store` is the same as BENCH_ONLY=policy,store.
  const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const only = (args.length ? args.join(',') : process.env.BENCH_ONLY)
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const ctx: BenchContext = { scale, progress: (m) => process.stderr.write(`bench: ${m}\n`) };
  const sections: StoredSection[] = [];
  const failures: string[] = [];
  for (const area of AREAS) {
    if (only && !only.includes(area)) continue;
    ctx.progress(`${area}: starting`);
    try {
      const mod = (await import(MODULES[area] ?? `./${area}.js`)) as { run(ctx: BenchContext): Promise<BenchSection> };
      const section = await mod.run(ctx);
      // A comparison that does not say what it compares, or comes from one round, is not reported as one.
      checkSection(section);
      sections.push({ area, measuredAt: new Date().toISOString(), scale, ...section });
      ctx.progress(`${area}: done`);
    } catch (err) {
      const why = `${area}: ${(err as Error).message.split('\n')[0]}`;
      failures.push(why);
      ctx.progress(`FAILED ${why}`);
    }
  }
  const dir = dirname(fileURLToPath(import.meta.url));
  const all = only ? [...previousSections(join(dir, 'results.json')).filter((s) => !only.includes(s.area)), ...sections] : sections;
  all.sort((a, b) => AREAS.indexOf(a.area as (typeof AREAS)[number]) - AREAS.indexOf(b.area as (typeof AREAS)[number]));
  writeFileSync(join(dir, 'results.md'), markdown(all, failures));
  writeFileSync(join(dir, 'results.json'), JSON.stringify({ at: new Date().toISOString(), sections: all, failures }, null, 2) + '\n');
  ctx.progress(`wrote ${join(dir, 'results.md')}`);
  if (failures.length) process.exitCode = 1;
}

await main();
