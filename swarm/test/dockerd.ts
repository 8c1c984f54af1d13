// Test fixture: a dockerd of the test's own (own data root, exec root, socket, pidfile; vfs storage), never the
// machine's default daemon, with a busybox image imported from busybox-static (no registry here).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, symlink, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface Dockerd {
  dir: string;
  host: string;
  socket: string;
  /** Run the docker CLI against this daemon; rejects with stderr on failure. */
  docker(args: string[], timeoutMs?: number): Promise<string>;
  /** Stop the daemon (containers left as they are: with --live-restore they keep running) and start it again. */
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** The daemon's last log lines, for failure messages. */
  log(): string;
}

export const BUSYBOX_IMAGE = 'bb:latest';

export interface DockerdOptions {
  extraArgs?: string[];
  netns?: string;
  socket?: string;
  /**
   * Docker's own networking as shipped (docker0, iptables and ip6tables chains, FORWARD policy DROP when it turns
   * forwarding on, userland proxy) instead of none of it: for tests of bees on a host Docker firewalls.
   */
  stock?: boolean;
}

export async function startDockerd(opts: DockerdOptions = {}): Promise<Dockerd> {
  // Short paths: unix socket paths are limited to 108 bytes and containerd nests sockets under exec-root.
  const dir = await mkdtemp(join(tmpdir(), 'bd-'));
  const socket = opts.socket ?? join(dir, 'd.sock');
  const host = `unix://${socket}`;
  const args = [
    '--data-root',
    join(dir, 'data'),
    '--exec-root',
    join(dir, 'x'),
    '-H',
    host,
    '--pidfile',
    join(dir, 'pid'),
    '--storage-driver',
    'vfs',
    ...(opts.stock ? [] : ['--bridge', 'none', '--iptables=false', '--ip-masq=false', '--ip6tables=false', '--userland-proxy=false']),
    ...(opts.extraArgs ?? []),
  ];
  // nsenter, not `ip netns exec`: the latter remounts /sys, which hides the cgroup mounts dockerd needs.
  const cmd = opts.netns ? 'nsenter' : 'dockerd';
  const argv = opts.netns ? [`--net=/run/netns/${opts.netns}`, 'dockerd', ...args] : args;
  let log = '';
  const launch = (): ChildProcess => {
    const c = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], detached: false });
    c.stderr.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-20000);
    });
    return c;
  };
  let child = launch();
  const terminate = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 20_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  };
  const docker = async (a: string[], timeoutMs = 120_000): Promise<string> => {
    try {
      const { stdout } = await exec('docker', ['-H', host, ...a], { timeout: timeoutMs, maxBuffer: 8 << 20 });
      return stdout.trim();
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`docker ${a.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  };
  const stop = async () => {
    let plugins: string[] = [];
    if (child.exitCode === null) {
      // Containers first, so their namespaces and veths go with them.
      await docker(['ps', '-aq'])
        .then((ids) => (ids ? docker(['rm', '-f', ...ids.split('\n')]) : ''))
        .catch(() => undefined);
      plugins = await docker(['plugin', 'ls', '-q', '--no-trunc']).then(
        (ids) => ids.split('\n').filter(Boolean),
        () => [],
      );
      await terminate();
    }
    // Managed plugins' sockets live in /run/docker/plugins/<id>, outside the daemon's own roots.
    for (const id of plugins) await rm(join('/run/docker/plugins', id), { recursive: true, force: true });
    // vfs layers and netns mounts may remain mounted under the roots.
    await exec('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  };
  const answering = async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dockerd exited ${child.exitCode}: ${log.slice(-3000)}`);
      if (
        await docker(['version', '--format', '{{.Server.Version}}'], 5000).then(
          () => true,
          () => false,
        )
      )
        return;
      if (Date.now() > deadline) throw new Error(`dockerd did not answer within 60 s: ${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const restart = async () => {
    await terminate();
    child = launch();
    await answering();
  };
  try {
    await answering();
    await importBusybox(dir, docker);
  } catch (err) {
    await stop();
    throw err;
  }
  return { dir, host, socket, docker, restart, stop, log: () => log };
}

async function importBusybox(dir: string, docker: Dockerd['docker']): Promise<void> {
  const root = join(dir, 'bbroot');
  await mkdir(join(root, 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin/busybox'));
  const { stdout } = await exec('/bin/busybox', ['--list']);
  for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
    await symlink('busybox', join(root, 'bin', applet)).catch(() => undefined);
  }
  for (const d of ['etc', 'proc', 'sys', 'dev', 'tmp']) await mkdir(join(root, d), { recursive: true });
  const tar = join(dir, 'bb.tar');
  await exec('tar', ['-C', root, '-cf', tar, '.']);
  await docker(['import', tar, BUSYBOX_IMAGE]);
  await rm(root, { recursive: true, force: true });
  await rm(tar, { force: true });
  void readdir;
}
