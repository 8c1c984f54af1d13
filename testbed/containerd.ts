// A private containerd with its CRI plugin, run inside a harness host: its own root, state and socket under `dir`,
// CNI plugins from `binDir` and configs from `confDir` (the caller fills them), the pause image imported from an
// archive because no registry is reachable here. Its own daemon rather than the machine's, so tests and hosts never
// share or touch one another's containers, and everything it made is unmounted when it stops.
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HarnessHost } from './harness.js';
import { execArgv } from './shell.js';

/** What starting containerd needs of a harness (Harness satisfies it). */
export interface ContainerdHarness {
  exec(target: HarnessHost | string, argv: string[]): Promise<{ code: number | null; stderr: string }>;
  spawn(target: HarnessHost | string, argv: string[], opts?: { logName?: string }): ChildProcess;
}

export interface HostContainerd {
  socket: string;
  /** Stop containerd (SIGTERM, then SIGKILL) and unmount what it left under its directory. */
  close(): Promise<void>;
}

export interface HostContainerdOptions {
  dir: string;
  binDir: string;
  confDir: string;
  /** The CRI's sandbox_image: the name the archive's pause image carries. */
  sandboxImage: string;
  /** A docker-archive holding `sandboxImage`, imported into the CRI's namespace (k8s.io). */
  pauseArchive: string;
}

/** Starts containerd in `host`, waits until it answers, imports the pause image; stopped again if any of it fails. */
export async function startHostContainerd(h: ContainerdHarness, host: HarnessHost, opts: HostContainerdOptions): Promise<HostContainerd> {
  const { dir, binDir, confDir } = opts;
  const socket = join(dir, 'containerd.sock');
  await writeFile(
    join(dir, 'config.toml'),
    `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${opts.sandboxImage}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${binDir}"
    conf_dir = "${confDir}"
    max_conf_num = 1
`,
  );
  const proc = h.spawn(host, ['containerd', '--config', join(dir, 'config.toml')], { logName: 'containerd' });
  const close = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
    await execArgv(['sh', '-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
  };
  try {
    for (const deadline = Date.now() + 30_000; ;) {
      const r = await h.exec(host, ['ctr', '--address', socket, 'version']);
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`containerd on ${host.name} did not start: ${r.stderr}`);
      await new Promise((res) => setTimeout(res, 300));
    }
    const imp = await h.exec(host, ['ctr', '--address', socket, '-n', 'k8s.io', 'images', 'import', opts.pauseArchive]);
    if (imp.code !== 0) throw new Error(`ctr images import: ${imp.stderr}`);
  } catch (err) {
    await close();
    throw err;
  }
  return { socket, close };
}
