// A harness host's container runtime, as a Kubernetes node has it: a private containerd with the CRI plugin, run
// inside the host's network namespace, reading CNI configs from the node's conf dir and plugins from the node's
// bin dir (where a DaemonSet's install-cni puts them; the reference loopback is there from the start, as a
// node's base CNI install would have it). Until a conflist appears, RunPodSandbox fails with "cni config
// uninitialized", as on a real node. The pause image (busybox-static + /pause) is imported locally.
//
// The node's filesystem: containerd runs in a mount namespace of its own where the node's private directories
// (`binds`, e.g. <nodeRoot>/run/bees at /run/bees) are bind-mounted at their real paths, so what containerd runs
// (the CNI plugin it execs, reading `agentSocket: /run/bees/workload.sock` from the conflist an agent container
// wrote) sees this node's files, as on a machine of its own. The binds are made on a mount that does not
// propagate back, so the machine's /run/bees is untouched; /run/netns stays shared with the machine, so pod and
// router namespaces made by containerd or by containers (Bidirectional) are the machine's, as the harness expects.
import type { ChildProcess } from 'node:child_process';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Harness, HarnessHost } from '../harness/index.js';
import { startHostContainerd, type ContainerdHarness } from '../../testbed/containerd.js';
import { execArgv } from '../../testbed/shell.js';
import { PAUSE_IMAGE, REFERENCE_DIR } from '../../cni/test/helpers.js';
import { CriRuntime } from '../../testbed/cri.js';

export interface NodeRuntime {
  socket: string;
  cri: CriRuntime;
  /** `ctr -n k8s.io images import` of an image archive (OCI or docker), as `bees image build`'s README says. */
  importImage(archive: string): Promise<void>;
  /** `ctr -n k8s.io images tag`: one more name for an imported image. */
  tagImage(source: string, target: string): Promise<void>;
  /** Stop containerd (SIGTERM, then SIGKILL) and unmount what it left under its directory. */
  close(): Promise<void>;
}

/** The script that makes the node's mount namespace, then execs "$@" (containerd) in it. */
function mountNamespaceScript(binds: Record<string, string>): string {
  const lines = ['set -e'];
  for (const [target, source] of Object.entries(binds)) {
    const [t, s] = [JSON.stringify(target), JSON.stringify(source)];
    // Bees' own directories (/run/bees, /var/lib/bees) as mount points; the mount holding them stops propagating
    // to the machine (it may be shared, as systemd makes /), while the mounts below it (/run/netns) keep theirs.
    lines.push(`mkdir -p ${t} ${s}`, `mount --make-slave "$(findmnt -n -o TARGET -T ${t})"`, `mount --bind ${s} ${t}`);
  }
  lines.push('exec "$@"');
  return lines.join('\n');
}

export async function startNodeRuntime(
  h: Harness,
  host: HarnessHost,
  opts: { dir: string; binDir: string; confDir: string; pauseArchive: string; binds?: Record<string, string> },
): Promise<NodeRuntime> {
  const { dir, binDir, confDir } = opts;
  await mkdir(dir, { recursive: true });
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir, { recursive: true });
  await symlink(`${REFERENCE_DIR}/loopback`, join(binDir, 'loopback')).catch(() => undefined);
  const script = mountNamespaceScript(opts.binds ?? {});
  // containerd (and so its shims and the containers) in the node's mount namespace; ctr needs only the socket.
  const inNode: ContainerdHarness = {
    exec: (target, argv) => h.exec(target, argv),
    spawn: (target, argv, o): ChildProcess =>
      h.spawn(target, ['unshare', '--mount', '--propagation', 'unchanged', 'sh', '-c', script, 'sh', ...argv], o),
  };
  const containerd = await startHostContainerd(inNode, host, {
    dir,
    binDir,
    confDir,
    sandboxImage: PAUSE_IMAGE,
    pauseArchive: opts.pauseArchive,
  });
  let cri: CriRuntime;
  try {
    cri = new CriRuntime(containerd.socket);
  } catch (err) {
    await containerd.close();
    throw err;
  }
  // ctr needs only the socket; an image import (unpacking some 50 MB) takes minutes on a loaded machine.
  const ctr = async (...args: string[]): Promise<void> => {
    const r = await execArgv(['ctr', '--address', containerd.socket, '-n', 'k8s.io', ...args], undefined, 600_000);
    if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  };
  const close = async (): Promise<void> => {
    cri.close();
    await containerd.close();
  };
  return {
    socket: containerd.socket,
    cri,
    importImage: (archive) => ctr('images', 'import', archive),
    tagImage: (source, target) => ctr('images', 'tag', '--force', source, target),
    close,
  };
}
