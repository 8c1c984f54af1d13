// How the testbed starts agents, from both layouts: under tsx it runs the source entry (app/main.ts), from a build
// the compiled one. `./bees demo` runs from dist/, where agents used to look for a .ts entry that is not there.
// The dist layout is made here as the build makes it (each source file emitted as .js beside the others), then the
// built testbed's own argv is run: `bees agent --help` must answer from the built entry.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { beesArgv } from '../bees-entry.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

test('from the sources: tsx and app/main.ts, which exists', (t) => {
  const argv = beesArgv();
  t.deepEqual(argv.slice(0, 3), [process.execPath, '--import', 'tsx']);
  t.is(argv[3], join(ROOT, 'app/main.ts'));
  t.true(existsSync(argv[3]!));
});

test('a missing entry is named, with how to build it', (t) => {
  const nowhere = pathToFileURL('/nonexistent/dist/testbed/bees-entry.js').href;
  t.throws(() => beesArgv(nowhere), { message: /\/nonexistent\/dist\/app\/main\.js does not exist \(run the build/ });
});

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory() && e.name !== 'test' && e.name !== 'node_modules') out.push(...(await sources(p)));
    else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

test('from a build: the built testbed runs the built entry, and bees agent --help answers from it', async (t) => {
  const tmp = await mkdtemp(join(ROOT, '.bees-entry-test-'));
  t.teardown(() => rm(tmp, { recursive: true, force: true }));
  const dist = join(tmp, 'dist');
  // Emit as tsc does with rootDir "." and outDir "dist" (no type check: tsc -p checks the same files anyway).
  for (const file of (await Promise.all(['app', 'core', 'cni', 'swarm', 'mesos', 'kubernetes', 'testbed'].map(sources))).flat()) {
    const out = join(dist, file.replace(/\.ts$/, '.js'));
    const js = ts.transpileModule(await readFile(join(ROOT, file), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
      fileName: file,
    });
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, js.outputText);
  }
  await writeFile(join(dist, 'package.json'), '{"type":"module"}\n');
  await symlink(join(ROOT, 'node_modules'), join(tmp, 'node_modules'));

  // The argv the built testbed (what `./bees demo` runs) spawns agents with.
  const { stdout } = await run(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { beesArgv } from ${JSON.stringify(pathToFileURL(join(dist, 'testbed/bees-entry.js')).href)}; console.log(JSON.stringify(beesArgv()));`,
    ],
    { env: { ...process.env, NODE_OPTIONS: '' } },
  );
  const argv = JSON.parse(stdout) as string[];
  t.deepEqual(argv, [process.execPath, join(dist, 'app/main.js')], `relative to the build: ${relative(tmp, argv.at(-1) ?? '')}`);
  const help = await run(argv[0]!, [...argv.slice(1), 'agent', '--help'], { env: { ...process.env, NODE_OPTIONS: '' } });
  t.regex(help.stdout, /^usage: bees agent --store URL/);
});
