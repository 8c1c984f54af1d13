// The bees image for kubelet-lite's nodes, made as `bees image build` makes it (kubernetes/image/build.ts) from this
// checkout: the project's TypeScript turned into dist/ JavaScript, the static CNI shim, one OCI tarball that
// `ctr -n k8s.io images import` loads into each node's containerd.
//
// dist/ here is each file transpiled on its own with TypeScript's transpileModule (what tsc emits, without the
// type check: `npx tsc --noEmit` is the type check, and a full `tsc` emit took over ten minutes on the loaded test
// machine). BEES_TEST_IMAGE=<tarball> uses an image built beforehand (`npm run build && npm run build:cni &&
// bees image build --out …`) instead.
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';
import { buildShim } from '../../cni/shim/build.js';
import { buildImage, projectRoot } from '../../kubernetes/image/build.js';

/** The project's program sources (what `npm run build` compiles into the image), tests left out. */
const SOURCE_DIRS = ['app', 'core', 'cni', 'kubernetes', 'swarm', 'mesos', 'testbed'];

async function sourcesUnder(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(join(root, dir), { withFileTypes: true, recursive: true })) {
    if (!e.isFile() || !e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) continue;
    const path = relative(root, join(e.parentPath, e.name));
    if (!/(^|\/)test\//.test(path) && !path.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

/** root/<dir>/**.ts → dist/<dir>/**.js, ES modules as tsc emits them for this package (type: module). */
export async function transpileProject(root: string, dist: string): Promise<number> {
  const files = (await Promise.all(SOURCE_DIRS.map((d) => sourcesUnder(root, d)))).flat();
  const compilerOptions: ts.CompilerOptions = {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    esModuleInterop: true,
    sourceMap: false,
  };
  for (const f of files) {
    const { outputText } = ts.transpileModule(await readFile(join(root, f), 'utf8'), { compilerOptions, fileName: f });
    const out = join(dist, f.replace(/\.ts$/, '.js'));
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, outputText);
  }
  // As `npm run build`: the UI's static files beside the compiled code.
  await cp(join(root, 'core/ui/static'), join(dist, 'core/ui/static'), { recursive: true }).catch(() => undefined);
  return files.length;
}

/** An image archive named `ref`: BEES_TEST_IMAGE when set, else built into `dir`. */
export async function beesImageArchive(dir: string, ref: string): Promise<string> {
  if (process.env.BEES_TEST_IMAGE) return process.env.BEES_TEST_IMAGE;
  const root = projectRoot();
  const dist = join(dir, 'dist');
  // The suite's type check has compiled the project already (testbed/suite.ts names its output BEES_TEST_DIST).
  const prebuilt = process.env.BEES_TEST_DIST;
  if (prebuilt && existsSync(join(prebuilt, 'app', 'main.js'))) await cp(prebuilt, dist, { recursive: true });
  else await transpileProject(root, dist);
  // main.js runs through its `#!/usr/bin/env -S … node …` line, which both keep.
  await buildShim(join(dist, 'cni/midonet'));
  const out = join(dir, 'bees-image.tar');
  await buildImage({ root, dist, ref, out });
  return out;
}
