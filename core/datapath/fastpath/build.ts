// The fast path's BPF object, compiled from fastpath.bpf.c with clang (Debian: clang + libbpf-dev), once per
// source: the object lands in a cache directory under a name made of the source's hash, so a changed source builds
// a new one, a running agent's object is never overwritten under it, and a machine without clang (the node image,
// kubernetes/image) runs an object built elsewhere from the same source. `./bees` builds it with the rest
// (ensure_build); an agent started from the source tree builds it at its first bridge (about a second).
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));

/** The C source: next to this module (the builds copy it into dist/); from a dist/ without it, the tree's copy. */
export const SOURCE =
  [join(here, 'fastpath.bpf.c'), join(here, '../../../../core/datapath/fastpath/fastpath.bpf.c')].find((p) => existsSync(p)) ??
  join(here, 'fastpath.bpf.c');
const DEFAULT_CACHE = '/var/cache/bees/bpf';

/** Debian puts <asm/types.h> (which <linux/bpf.h> needs) under the target triple's include directory. */
const multiarch = (): string => ({ x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' })[arch()] ?? `${arch()}-linux-gnu`;

async function clangVersion(clang: string): Promise<void> {
  try {
    await run(clang, ['--version']);
  } catch {
    throw new Error(`${clang} not found: the fast path needs clang and libbpf-dev (apt-get install clang libbpf-dev)`);
  }
}

/** The cached object's file name: the source's hash. */
export function objectName(): string {
  return `fastpath-${createHash('sha256').update(readFileSync(SOURCE)).digest('hex').slice(0, 16)}.o`;
}

/** Where agents look for the object by default. */
export const CACHE_DIR = DEFAULT_CACHE;

/**
 * The object's path, compiled first if the cache lacks it. Throws with what is missing (clang, headers) or clang's
 * complaint.
 */
export async function fastPathObject(opts: { cacheDir?: string; clang?: string } = {}): Promise<string> {
  const clang = opts.clang ?? process.env.BEES_CLANG ?? 'clang';
  const dir = opts.cacheDir ?? process.env.BEES_BPF_CACHE ?? DEFAULT_CACHE;
  const out = join(dir, objectName());
  if (existsSync(out)) return out;
  await clangVersion(clang);
  mkdirSync(dir, { recursive: true });
  // Written aside and renamed: two agents (or the build and an agent) compiling at once never see half an object.
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    await run(clang, ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${multiarch()}`, '-c', SOURCE, '-o', tmp]);
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    const why = (err.stderr ?? err.message).trim().split('\n').slice(0, 4).join(' | ');
    throw new Error(`could not compile ${SOURCE}: ${why}${/bpf_helpers\.h/.test(why) ? ' (apt-get install libbpf-dev)' : ''}`);
  }
  renameSync(tmp, out);
  return out;
}

// `npm run build:bpf`: build into the cache now, so the agent's first bridge does not wait for clang.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  fastPathObject().then(
    (path) => console.log(path),
    (e: Error) => {
      console.error(e.message);
      process.exitCode = 1;
    },
  );
}
