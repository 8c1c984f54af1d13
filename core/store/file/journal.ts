// The journal: an append-only file of committed transactions, one line each, "<crc32 hex> <json>" where the JSON
// is {"changes": StoredChange[]} of one commit, in seq order. A commit is acknowledged only once its line is
// written and fsync'ed, so the journal is the store's durable history between snapshots.
//
// Faults. A crash mid-write leaves a torn record at the very end: it was never acknowledged, so it is dropped on
// replay. A damaged record followed by intact ones is not a torn write but damage to acknowledged history:
// replay refuses with the file and byte offset instead of dropping what follows.
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { StoreError } from '../store.js';
import type { StoredChange } from '../watcher.js';

export const JOURNAL = 'journal';

/** One commit's changes as a journal line (newline included). */
export function encodeRecord(changes: StoredChange[]): string {
  const payload = JSON.stringify({ changes });
  return `${checksum(payload)} ${payload}\n`;
}

function checksum(payload: string): string {
  return crc32(payload).toString(16).padStart(8, '0');
}

/** Decodes one journal line: its changes, or why it is not a record. */
function decodeRecord(line: string): StoredChange[] | string {
  if (line.length < 10 || line[8] !== ' ') return 'not a record';
  const payload = line.slice(9);
  if (checksum(payload) !== line.slice(0, 8)) return 'checksum mismatch';
  try {
    const rec = JSON.parse(payload) as { changes?: unknown };
    return Array.isArray(rec.changes) ? (rec.changes as StoredChange[]) : 'record without changes';
  } catch {
    return 'bad JSON';
  }
}

/** Counts the intact records in `buf` (newline-terminated lines that decode). */
function intactRecords(buf: Buffer, from: number): number {
  let n = 0;
  for (let at = from; at < buf.length;) {
    const nl = buf.indexOf(0x0a, at);
    if (nl < 0) break;
    if (typeof decodeRecord(buf.toString('utf8', at, nl)) !== 'string') n++;
    at = nl + 1;
  }
  return n;
}

export class Journal {
  /** Bytes of intact, durable records: everything past it is a torn or failed write to cut off. */
  private size: number;

  private constructor(
    private readonly fh: FileHandle,
    size: number,
  ) {
    this.size = size;
  }

  /**
   * Replays the journal in `dir`, handing `apply` every change after `seq` in order, and opens it for appending.
   * A bad record with nothing intact after it is a torn write (a commit never acknowledged) and is truncated;
   * one with intact records after it is damage, and replay refuses.
   */
  static async replay(dir: string, seq: number, apply: (c: StoredChange) => void): Promise<Journal> {
    const file = path.join(dir, JOURNAL);
    let buf: Buffer = Buffer.alloc(0);
    try {
      buf = await fsp.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    let good = 0;
    let record = 0;
    while (good < buf.length) {
      const nl = buf.indexOf(0x0a, good);
      if (nl < 0) break; // a torn last line
      const changes = decodeRecord(buf.toString('utf8', good, nl));
      if (typeof changes === 'string') {
        const after = intactRecords(buf, nl + 1);
        if (after === 0) break; // a torn tail
        throw new StoreError(
          'Unavailable',
          `journal ${file} is corrupt at byte offset ${good} (record ${record + 1}: ${changes}) with ${after} ` +
            `intact record(s) after it; refusing to drop them. Repair or restore the file; truncating it to ${good} ` +
            `bytes discards the damaged record and everything after it`,
        );
      }
      for (const c of changes) {
        if (c.seq <= seq) continue; // already in the snapshot (crash between snapshot and truncate)
        if (c.seq !== seq + 1) {
          throw new StoreError(
            'Unavailable',
            `journal ${file} skips from seq ${seq} to ${c.seq} at byte offset ${good} (record ${record + 1}): ` + 'changes are missing',
          );
        }
        apply(c);
        seq = c.seq;
      }
      good = nl + 1;
      record++;
    }
    const fh = await fsp.open(file, 'a');
    const journal = new Journal(fh, good);
    if (good < buf.length) await journal.cutBack();
    return journal;
  }

  /** Bytes of durable records; compaction is due once this passes its threshold. */
  get bytes(): number {
    return this.size;
  }

  /** Appends records and makes them durable; on failure the caller cuts the partial write off with `cutBack`. */
  async append(bytes: Buffer): Promise<void> {
    // write(2) may write part of the buffer (a nearly full disk): loop until all of it is written or it fails.
    for (let off = 0; off < bytes.length;) off += (await this.fh.write(bytes, off)).bytesWritten;
    await this.fh.datasync();
    this.size += bytes.length;
  }

  /** Truncates whatever follows the last durable record (a torn or failed write), durably. */
  async cutBack(): Promise<void> {
    await this.fh.truncate(this.size);
    await this.fh.sync();
  }

  /** Empties the journal once a snapshot holds everything in it. */
  async clear(): Promise<void> {
    await this.fh.truncate(0);
    await this.fh.sync();
    this.size = 0;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}
