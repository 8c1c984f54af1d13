// A harness host's container runtime, as a Kubernetes node has it: a private containerd with the CRI plugin, run
// inside the host's network namespace, reading CNI configs from the node's conf dir and plugins from the node's
// bin dir (where a DaemonSet's install-cni puts them; the reference loopback is there from the start, as a
// node's base CNI install would have it). Until a conflist appears, RunPodSandbox fails with "cni config
// uninitialized", as on a real node. The pause image (busybox-static + /pause) is imported locally.
import { execFile } from 'node:child_process';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Harness, HarnessHost } from '../harness/index.js';
import { PAUSE_IMAGE, REFERENCE_DIR } from '../../cni/test/helpers.js';
import { CriClient } from '../../cni/test/cri/client.js';

const run = promisify(execFile);

export interface NodeRuntime {
  socket: string;
  cri: CriClient;
  /** Stop containerd (SIGTERM, then SIGKILL) and unmount what it left under its directory. */
  close(): Promise<void>;
}

export async function startNodeRuntime(
  h: Harness,
  host: HarnessHost,
  opts: { dir: string; binDir: string; confDir: string; pauseArchive: string },
): Promise<NodeRuntime> {
  const { dir, binDir, confDir } = opts;
  await mkdir(dir, { recursive: true });
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir, { recursive: true });
  await symlink(`${REFERENCE_DIR}/loopback`, join(binDir, 'loopback')).catch(() => undefined);
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
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${binDir}"
    conf_dir = "${confDir}"
    max_conf_num = 1
`,
  );
  const proc = h.spawn(host, ['containerd', '--config', join(dir, 'config.toml')], { logName: 'containerd' });
  let cri: CriClient | undefined;
  const close = async (): Promise<void> => {
    cri?.close();
    if (proc.exitCode === null && proc.signalCode === null) {
      const gone = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }
    await run('sh', ['-c', `grep -o " ${dir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`]).catch(() => undefined);
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
    cri = new CriClient(socket);
  } catch (err) {
    await close();
    throw err;
  }
  return { socket, cri, close };
}
