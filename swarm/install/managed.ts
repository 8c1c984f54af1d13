// `bees docker plugin build --out DIR`: a managed (v2) Docker plugin made from local files only, for
// `docker plugin create NAME DIR` and `docker plugin enable NAME`. Its rootfs holds one program, a socket proxy
// (plugin-proxy.ts compiled by bun, plus the shared libraries it links) forwarding dockerd's calls to the agent's
// plugin socket through a bind mount of the directory holding that socket alone. The plugin itself holds no state.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AGENT_PLUGIN_SOCKET_DIR, AGENT_PLUGIN_SOCKET_NAME, PLUGIN_NAME } from '../driver/plugin-name.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXE = '/usr/bin/bees-plugin-proxy';
/** Name of the mount of the agent's plugin-socket directory: `docker plugin set NAME bees-run.source=/other/run/docker-plugin`. */
export const RUN_MOUNT = 'bees-run';

export interface ManagedBuild {
  out: string;
  /** The agent's run directory on the host (it serves its plugin socket there with --docker-plugin unix:docker-plugin/agent.sock). */
  beesRunDir: string;
}

export const MANAGED_DEFAULTS: Omit<ManagedBuild, 'out'> = { beesRunDir: '/run/bees' };

export function pluginConfig(b: ManagedBuild): object {
  return {
    description: 'MidoNet Bees network and IPAM driver (forwards to the bees agent)',
    documentation: 'https://github.com/midonet-bees/midonet-bees/tree/main/swarm',
    entrypoint: [EXE],
    workdir: '/',
    env: [
      { name: 'BEES_PLUGIN_SOCKET', description: 'where dockerd calls the plugin', value: `/run/docker/plugins/${PLUGIN_NAME}.sock` },
      { name: 'BEES_AGENT_SOCKET', description: "the agent's plugin socket", value: `/run/bees/${basename(AGENT_PLUGIN_SOCKET_NAME)}` },
    ],
    interface: { types: ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0'], socket: `${PLUGIN_NAME}.sock` },
    // Only unix sockets cross the plugin's boundary: no network, no capabilities.
    network: { type: 'none' },
    linux: { capabilities: [] },
    // The directory of the agent's plugin socket only, not the run directory: the REST and workload sockets there
    // would let the plugin change the topology and attach workloads.
    mounts: [
      {
        name: RUN_MOUNT,
        description: "the directory of the bees agent's plugin socket",
        source: join(b.beesRunDir, AGENT_PLUGIN_SOCKET_DIR),
        destination: '/run/bees',
        type: 'bind',
        options: ['rbind'],
        settable: ['source'],
      },
    ],
  };
}

/** Shared libraries an executable links (absolute paths, from ldd). */
async function linkedLibraries(exe: string): Promise<string[]> {
  const { stdout } = await run('ldd', [exe]).catch(() => ({ stdout: '' }));
  const libs = new Set<string>();
  for (const m of stdout.matchAll(/(\/[^\s)]+)/g)) libs.add(m[1]!);
  return [...libs];
}

function bunBinary(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve('bun/package.json')), 'bin', 'bun.exe');
}

export async function buildManagedPlugin(partial: Partial<ManagedBuild> & { out: string }): Promise<string> {
  const b: ManagedBuild = { ...MANAGED_DEFAULTS, ...partial };
  const out = resolve(b.out);
  const rootfs = join(out, 'rootfs');
  await rm(rootfs, { recursive: true, force: true });
  for (const d of ['usr/bin', 'run/docker/plugins', 'run/bees', 'etc', 'tmp', 'proc', 'sys', 'dev']) {
    await mkdir(join(rootfs, d), { recursive: true });
  }
  const exe = join(rootfs, EXE);
  await run(bunBinary(), ['build', '--compile', '--target=bun', join(ROOT, 'swarm/install/plugin-proxy.ts'), '--outfile', exe], {
    cwd: ROOT,
    maxBuffer: 16 << 20,
  });
  await chmod(exe, 0o755);
  for (const lib of await linkedLibraries(exe)) {
    await mkdir(dirname(join(rootfs, lib)), { recursive: true });
    await copyFile(lib, join(rootfs, lib));
  }
  await writeFile(join(out, 'config.json'), `${JSON.stringify(pluginConfig(b), null, 2)}\n`);
  return out;
}
