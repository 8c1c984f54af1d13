// The DaemonSet's init container: the shim into the host's CNI bin dir, by copy and rename in that directory, so a
// runtime executing the old binary during an upgrade never runs a half-written one ("text file busy" aside).
import { access, chmod, constants, copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

export async function installShim(binary: string, binDir: string, name = 'midonet'): Promise<string> {
  await access(binary, constants.X_OK).catch(() => {
    throw new Error(`k8s install-cni: ${binary} is not an executable file`);
  });
  await mkdir(binDir, { recursive: true });
  const dest = join(binDir, name);
  const tmp = join(binDir, `.${name}.tmp-${process.pid}`);
  try {
    await copyFile(binary, tmp);
    await chmod(tmp, 0o755);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return dest;
}
