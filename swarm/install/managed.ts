// `bees docker plugin build --out DIR`: a managed (v2) Docker plugin made from local files only, for
// `docker plugin create NAME DIR` and `docker plugin enable NAME`: DIR/config.json and DIR/rootfs holding the
// driver compiled by bun into one executable, the shared libraries it links, and busybox for a shell.
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PLUGIN_NAME } from '../driver/daemon.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXE = '/usr/bin/bees-docker-driver';

export interface ManagedBuild {
  out: string;
  /** Host directories bind-mounted into the plugin (the agent's sockets, Docker's netns, the store). */
  beesRunDir: string;
  netnsDir: string;
  stateDir: string;
  /** Store URL inside the plugin (settable with `docker plugin set NAME BEES_STORE=…`). */
  store: string;
  busybox: string;
}

export const MANAGED_DEFAULTS: Omit<ManagedBuild, 'out'> = {
  beesRunDir: '/run/bees',
  netnsDir: '/var/run/docker/netns',
  stateDir: '/var/lib/bees',
  store: 'file:/var/lib/bees/store',
  busybox: '/bin/busybox',
};

export function pluginConfig(b: ManagedBuild): object {
  const bind = (source: string, destination: string, description: string) => ({
    name: destination.split('/').filter(Boolean).join('-'), description, source, destination, type: 'bind', options: ['rbind'],
  });
  return {
    description: 'MidoNet Bees network and IPAM driver',
    documentation: 'https://github.com/midonet-bees/midonet-bees/tree/main/swarm',
    entrypoint: [EXE, '--socket', `/run/docker/plugins/${PLUGIN_NAME}.sock`, '--docker-socket', '', '--state-dir', '/var/lib/bees'],
    workdir: '/',
    env: [
      { name: 'BEES_DOCKER_DRIVER_MAIN', description: 'run the driver', value: '1' },
      { name: 'BEES_STORE', description: 'topology store URL', settable: ['value'], value: b.store },
    ],
    interface: { types: ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0'], socket: `${PLUGIN_NAME}.sock` },
    network: { type: 'host' },
    linux: { capabilities: ['CAP_NET_ADMIN', 'CAP_SYS_ADMIN'] },
    mounts: [
      bind(b.beesRunDir, '/run/bees', "the agent's workload and API sockets"),
      bind(b.netnsDir, '/var/run/docker/netns', "Docker's sandbox namespaces"),
      bind(b.stateDir, '/var/lib/bees', 'host id and file store'),
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

async function copyInto(rootfs: string, file: string): Promise<void> {
  const dest = join(rootfs, file);
  await mkdir(dirname(dest), { recursive: true });
  await copyFile(file, dest);
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
  for (const d of ['usr/bin', 'bin', 'run/docker/plugins', 'run/bees', 'var/run/docker/netns', 'var/lib/bees', 'etc', 'tmp', 'proc', 'sys', 'dev']) {
    await mkdir(join(rootfs, d), { recursive: true });
  }
  const exe = join(rootfs, EXE);
  await run(bunBinary(), ['build', '--compile', '--target=bun', join(ROOT, 'swarm/driver/main.ts'), '--outfile', exe], {
    cwd: ROOT, maxBuffer: 16 << 20,
  });
  await chmod(exe, 0o755);
  for (const lib of await linkedLibraries(exe)) await copyInto(rootfs, lib);
  await copyFile(b.busybox, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
  for (const tool of ['sh', 'ls', 'cat', 'ip', 'ps']) await symlink('busybox', join(rootfs, 'bin', tool));
  await writeFile(join(rootfs, 'etc/hosts'), '127.0.0.1 localhost\n');
  await writeFile(join(out, 'config.json'), `${JSON.stringify(pluginConfig(b), null, 2)}\n`);
  return out;
}
