// A harness host's container runtime, as a Kubernetes node has it: a private containerd with the CRI plugin, run
// inside the host's network namespace, reading CNI configs from the node's conf dir and plugins from the node's
// bin dir (where a DaemonSet's install-cni puts them; the reference loopback is there from the start, as a
// node's base CNI install would have it). Until a conflist appears, RunPodSandbox fails with "cni config
// uninitialized", as on a real node. The pause image (busybox-static + /pause) is imported locally.
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Harness, HarnessHost } from '../harness/index.js';
import { startHostContainerd } from '../../testbed/containerd.js';
import { PAUSE_IMAGE, REFERENCE_DIR } from '../../cni/test/helpers.js';
import { CriClient } from '../../cni/test/cri/client.js';

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
  const containerd = await startHostContainerd(h, host, {
    dir,
    binDir,
    confDir,
    sandboxImage: PAUSE_IMAGE,
    pauseArchive: opts.pauseArchive,
  });
  let cri: CriClient;
  try {
    cri = new CriClient(containerd.socket);
  } catch (err) {
    await containerd.close();
    throw err;
  }
  const close = async (): Promise<void> => {
    cri.close();
    await containerd.close();
  };
  return { socket: containerd.socket, cri, close };
}
