// One process owns a store directory at a time: two writers appending to one journal would interleave records
// and each replay a history the other never saw. The owner is named by a lock file holding its pid, so a lock
// left by a crashed process is taken over instead of locking the directory forever.
import { constants as fsc, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pidAlive } from '../../util/pid.js';
import { StoreError } from '../store.js';

const LOCK = 'lock';

/** Directories opened by this process: a second open in the same process is refused like one from another. */
const openDirs = new Set<string>();

/** Claims `dir` (a real path) for this process; the returned function gives it back. */
export async function lockDir(dir: string): Promise<() => Promise<void>> {
  if (openDirs.has(dir)) throw new StoreError('Unavailable', `store directory ${dir} is already open in this process (${process.pid})`);
  openDirs.add(dir);
  try {
    await acquireLock(dir);
  } catch (err) {
    openDirs.delete(dir);
    throw err;
  }
  return async () => {
    await fsp.rm(path.join(dir, LOCK), { force: true });
    openDirs.delete(dir);
  };
}

/** Takes the directory's lock file, taking over one left by a dead process. */
async function acquireLock(dir: string): Promise<void> {
  const lockPath = path.join(dir, LOCK);
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fh = await fsp.open(lockPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StoreError('Unavailable', `cannot create lock ${lockPath}: ${(err as Error).message}`);
      }
    }
    let text = '';
    try {
      text = await fsp.readFile(lockPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
      throw err;
    }
    const pid = Number.parseInt(text.trim(), 10);
    if (Number.isSafeInteger(pid) && pid > 0 && pidAlive(pid)) {
      throw new StoreError('Unavailable', `store directory ${dir} is in use by process ${pid} (lock file ${lockPath})`);
    }
    if (text === '' && attempt === 0) {
      // The owner may be between creating the file and writing its pid: look again shortly.
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    // A lock whose owner is dead: remove it and race for a fresh one (O_EXCL picks one winner).
    await fsp.rm(lockPath, { force: true });
  }
  throw new StoreError('Unavailable', `cannot take the lock ${lockPath}: contended`);
}
