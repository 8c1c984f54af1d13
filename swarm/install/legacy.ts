// `bees docker install`: make dockerd find the driver as a legacy (v1) plugin. dockerd looks for
// /run/docker/plugins/<name>.sock, then <name>.spec/<name>.json in /etc/docker/plugins and /usr/lib/docker/plugins.
// When the driver listens elsewhere, a spec file holding its unix:// address points dockerd at it.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULT_PLUGIN_SOCKET, PLUGIN_NAME } from '../driver/plugin-name.js';

export interface LegacyInstall {
  /** Socket the driver listens on. */
  socket: string;
  /** Where the spec file goes. */
  specDir: string;
  name: string;
}

export const LEGACY_DEFAULTS: LegacyInstall = { socket: DEFAULT_PLUGIN_SOCKET, specDir: '/etc/docker/plugins', name: PLUGIN_NAME };

export function specPath(i: LegacyInstall): string {
  return join(i.specDir, `${i.name}.spec`);
}

/** Writes the spec file unless the socket is already where dockerd looks; returns the file written, if any. */
export async function installLegacy(partial: Partial<LegacyInstall> = {}): Promise<string | undefined> {
  const i = { ...LEGACY_DEFAULTS, ...partial };
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(i.name)) throw new Error(`plugin name ${JSON.stringify(i.name)}: lower-case letters, digits, . _ -`);
  const socket = resolve(i.socket);
  if (socket === `/run/docker/plugins/${i.name}.sock` || socket === `/var/run/docker/plugins/${i.name}.sock`) return undefined;
  await mkdir(i.specDir, { recursive: true });
  const file = specPath(i);
  await writeFile(file, `unix://${socket}\n`, { mode: 0o644 });
  return file;
}

/** Removes the spec file written by installLegacy (only if it is ours). */
export async function uninstallLegacy(partial: Partial<LegacyInstall> = {}): Promise<boolean> {
  const i = { ...LEGACY_DEFAULTS, ...partial };
  const file = specPath(i);
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined || !text.startsWith('unix://')) return false;
  await rm(file, { force: true });
  return true;
}
