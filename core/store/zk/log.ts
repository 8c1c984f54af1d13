// The change log's naming, shared by the writer (commit.ts) and the reader (follower.ts).
//
//   log/n<count>_<seq>   one PERSISTENT_SEQUENTIAL entry per transaction, created in the same multi as the objects,
//                        holding its changes; change i of entry <seq> has Change.seq = seq * 1000 + i
//   meta/trimmed         the highest Change.seq removed from the log (resuming before it is 'Gone')
import type { Stat } from 'node-zookeeper-client';
import type { StoredChange as BaseChange } from '../watcher.js';
import type { Callback, ZkSession } from './session.js';

/** Changes per transaction are numbered inside one log entry's seq: at most this many per commit. */
export const SEQ_STRIDE = 1000;

export interface LogName {
  name: string;
  tx: number;
  count: number;
}

export function parseLogName(name: string): LogName | undefined {
  const m = /^n(\d+)_(\d{10})$/.exec(name);
  // +1: ZooKeeper's first sequence number is 0, and seq 0 means "no change yet".
  return m ? { name, tx: Number(m[2]) + 1, count: Number(m[1]) } : undefined;
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
  const names = retry ? await s.read<string[]>(fn) : await s.zk<string[]>(fn);
  return names
    .map(parseLogName)
    .filter((n): n is LogName => n !== undefined)
    .sort((a, b) => a.tx - b.tx);
}

export async function trimmedSeq(s: ZkSession, root: string): Promise<number> {
  const [data] = await s.read<[Buffer, Stat]>((c, cb) => c.getData(`${root}/meta/trimmed`, cb));
  return Number(data.toString()) || 0;
}

export const modelPath = (root: string, kind: string, id: string): string => `${root}/models/${kind}/${id}`;
