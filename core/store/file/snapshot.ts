// The snapshot: the whole state after change N, {"seq": N, "objects": {Kind: {id: [version, json]}}}. Writing one
// lets the journal be emptied (compaction), so replay time and disk use stay bounded however long the store
// lives. It is written to a temporary file, fsync'ed and renamed into place, so a snapshot on disk is always whole.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { StoreError } from '../store.js';

const SNAPSHOT = 'snapshot.json';

/** Kind → id → [version, json]: the objects as a snapshot holds them. */
export type SnapshotObjects = Record<string, Record<string, [number, string]>>;

export interface Snapshot {
  seq: number;
  objects: SnapshotObjects;
}

/** Reads the snapshot in `dir` (undefined: none yet), clearing away a half-written one from a crash. */
export async function readSnapshot(dir: string): Promise<Snapshot | undefined> {
  await fsp.rm(path.join(dir, `${SNAPSHOT}.tmp`), { force: true });
  let text: string;
  try {
    text = await fsp.readFile(path.join(dir, SNAPSHOT), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // The snapshot is renamed into place only once complete and fsync'ed, so a bad one is real damage.
  try {
    return JSON.parse(text) as Snapshot;
  } catch (err) {
    throw new StoreError('Unavailable', `snapshot ${path.join(dir, SNAPSHOT)} is corrupt: ${(err as Error).message}`);
  }
}

/** Makes `snap` the directory's snapshot, durably: once this resolves the journal may be emptied. */
export async function writeSnapshot(dir: string, snap: Snapshot): Promise<void> {
  const text = JSON.stringify(snap);
  const tmp = path.join(dir, `${SNAPSHOT}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'w');
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await fsp.rm(tmp, { force: true }); // a half snapshot only takes space a full disk needs
    throw err;
  }
  await fsp.rename(tmp, path.join(dir, SNAPSHOT));
  await fsyncDir(dir);
}

/** Makes the directory's entries (a rename, a created file) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
