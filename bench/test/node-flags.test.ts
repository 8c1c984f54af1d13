// The node flags production runs the agent under, and the variants the memory and scale benches compare. The flags
// are written twice (app/main.ts's first line, which the installed `bees`, the image and the chart run; the ./bees
// launcher, which runs node on dist/ itself): a change to one must not leave the other behind.
import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseLaunch, productionLaunch, withNodeFlags } from '../../testbed/bees-entry.js';
import { flagVariants, interleavedOrder, launchName } from '../node-flags.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test("production's flags come from app/main.ts's first line: environment, then node flags", (t) => {
  const l = productionLaunch('#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --stack-size=900');
  t.deepEqual(l, { env: { MALLOC_ARENA_MAX: '2' }, nodeArgs: ['--max-semi-space-size=4', '--stack-size=900'] });
  t.throws(() => productionLaunch('#!/usr/bin/env node'), { message: /does not start with a '#!\/usr\/bin\/env -S' line/ });
  t.deepEqual(withNodeFlags(['/bin/node', '--import', 'tsx', 'main.ts'], l), [
    '/bin/node',
    '--max-semi-space-size=4',
    '--stack-size=900',
    '--import',
    'tsx',
    'main.ts',
  ]);
});

test('the ./bees launcher runs the flags and environment of app/main.ts', (t) => {
  const line = readFileSync(`${ROOT}/bees`, 'utf8')
    .split('\n')
    .find((l) => /\bexec node .* dist\/app\/main\.js/.test(l));
  if (!line) return t.fail('./bees has no `exec node … dist/app/main.js` line');
  const words = line.trim().split(/\s+/);
  const launcher = parseLaunch(
    words.slice(0, words.indexOf('exec')).concat(words.slice(words.indexOf('node') + 1, words.indexOf('dist/app/main.js'))),
  );
  t.deepEqual(launcher, productionLaunch());
});

test('variants: production, defaults and flag sets, named by their words; duplicates and stray words refused', (t) => {
  const v = flagVariants('production; defaults ;MALLOC_ARENA_MAX=2 --max-semi-space-size=8;');
  t.deepEqual(
    v.map((x) => x.name),
    [launchName(productionLaunch()), 'defaults', 'MALLOC_ARENA_MAX=2 --max-semi-space-size=8'],
  );
  t.deepEqual(v[2]!.launch, { env: { MALLOC_ARENA_MAX: '2' }, nodeArgs: ['--max-semi-space-size=8'] });
  t.deepEqual(
    flagVariants(undefined).map((x) => x.launch),
    [productionLaunch()],
  );
  t.throws(() => flagVariants('defaults; defaults'), { message: /given twice/ });
  t.throws(() => flagVariants('node --max-semi-space-size=2'), { message: /'node' is neither VAR=value nor a node flag/ });
});

test('interleaved order: forward on even rounds, backward on odd ones', (t) => {
  t.deepEqual(interleavedOrder(3, 0), [0, 1, 2]);
  t.deepEqual(interleavedOrder(3, 1), [2, 1, 0]);
  t.deepEqual(interleavedOrder(3, 2), [0, 1, 2]);
});
