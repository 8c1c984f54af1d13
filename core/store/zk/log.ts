// The change log's naming, shared by the writer (commit.ts) and the reader (follower.ts).
//
//   log/e<seq>           one PERSISTENT_SEQUENTIAL entry per transaction, created in the same multi as the objects,
//                        holding its changes; change i of entry <seq> has Change.seq = (seq + 1) * 1000 + i
//   log (its data)       rewritten (empty) by the same multi: a data watch on log/ fires once per commit, and the
//                        stat of log/ (cversion: ZooKeeper's next sequence number) names every entry there can be,
//                        so a follower reads the new entries by name instead of listing the whole log per wake-up
//   log/n<count>_<seq>   entries of earlier versions (the count in the name); still read by listings
//   meta/trimmed         the highest Change.seq removed from the log (resuming before it is 'Gone')
import type { Stat } from 'node-zookeeper-client';
import type { Kind } from '../../model/types.js';
import type { Change } from '../store.js';
import type { StoredChange as BaseChange } from '../watcher.js';
import type { Callback, ZkSession } from './session.js';

/** Changes per transaction are numbered inside one log entry's seq: at most this many per commit. */
export const SEQ_STRIDE = 1000;

export interface LogName {
  name: string;
  tx: number;
  /** Changes in the entry, when its name says (older entries); read from its data otherwise. */
  count?: number | undefined;
}

/** The prefix of a new entry's name (ZooKeeper appends the sequence number). */
export const ENTRY_PREFIX = 'e';

export function parseLogName(name: string): LogName | undefined {
  // +1: ZooKeeper's first sequence number is 0, and seq 0 means "no change yet".
  const e = /^e(\d{10})$/.exec(name);
  if (e) return { name, tx: Number(e[1]) + 1 };
  const m = /^n(\d+)_(\d{10})$/.exec(name);
  return m ? { name, tx: Number(m[2]) + 1, count: Number(m[1]) } : undefined;
}

/** The name entry `tx` has, if it exists (see parseLogName). */
export const entryName = (tx: number): string => `${ENTRY_PREFIX}${String(tx - 1).padStart(10, '0')}`;

/** The highest Change.seq entry `n` can hold: exact when its count is known. */
export const lastSeqOf = (n: LogName): number => n.tx * SEQ_STRIDE + (n.count ?? SEQ_STRIDE) - 1;

/** The changes recorded in a log entry's data. */
export interface LogRecord {
  changes: { kind: Kind; id: string; type: Change['type']; version: number; value?: unknown }[];
}

/** A change as the follower keeps it: with the zxid of its transaction, to order it against objects read directly. */
export interface StoredChange extends BaseChange {
  zxid: bigint;
}

export const zxidOf = (b: Buffer): bigint => b.readBigInt64BE(0);

export const childrenCb = (cb: Callback) => (e: unknown, ch: string[]) => cb(e, ch);

/** The log's entries, oldest first. */
export async function logEntries(s: ZkSession, root: string, retry: boolean, watch?: () => void): Promise<LogName[]> {
  const fn = (c: import('node-zookeeper-client').Client, cb: Callback) =>
    watch ? c.getChildren(`${root}/log`, watch, childrenCb(cb)) : c.getChildren(`${root}/log`, childrenCb(cb));
  return sortedEntries(retry ? await s.read<string[]>(fn) : await s.zk<string[]>(fn));
}

/**
 * The tx of the newest entry ever created in log/, from its stat (with a data watch when `watch` is given: it fires
 * on the next commit). ZooKeeper's sequence suffix counts the creates under a parent; its stat counts creates plus
 * deletes (cversion) and what is left (numChildren), so creates = (cversion + numChildren) / 2 while log/ only ever
 * has entries created and removed. The follower checks this against a listing when it starts (`byName`).
 */
export async function logHead(s: ZkSession, root: string, watch?: () => void): Promise<number> {
  const stat = await s.zk<Stat | null>((c, cb) => (watch ? c.exists(`${root}/log`, watch, cb) : c.exists(`${root}/log`, cb)));
  if (!stat) throw new Error(`${root}/log does not exist`);
  return headOf(stat);
}

export const headOf = (stat: Stat): number => (stat.cversion + stat.numChildren) / 2;

/** The log's entries, oldest first, and the head its stat gives (logHead) in the same reply. */
export async function listLog(s: ZkSession, root: string): Promise<{ entries: LogName[]; head: number }> {
  const [names, stat] = await s.zk<[string[], Stat]>((c, cb) =>
    c.getChildren(`${root}/log`, (e: unknown, ch: string[], st: Stat) => cb(e, [ch, st])),
  );
  return { entries: sortedEntries(names), head: headOf(stat) };
}

function sortedEntries(names: string[]): LogName[] {
  return names
    .map(parseLogName)
    .filter((n): n is LogName => n !== undefined)
    .sort((a, b) => a.tx - b.tx);
}

/** The number of changes entry `n` holds (its name's count, else its data's). */
export async function entryCount(s: ZkSession, root: string, n: LogName): Promise<number> {
  if (n.count !== undefined) return n.count;
  const [data] = await s.read<[Buffer, Stat]>((c, cb) => c.getData(`${root}/log/${n.name}`, cb));
  return (JSON.parse(data.toString('utf8')) as LogRecord).changes.length;
}

export async function trimmedSeq(s: ZkSession, root: string): Promise<number> {
  const [data] = await s.read<[Buffer, Stat]>((c, cb) => c.getData(`${root}/meta/trimmed`, cb));
  return Number(data.toString()) || 0;
}

export const modelPath = (root: string, kind: string, id: string): string => `${root}/models/${kind}/${id}`;
