// Writes: every commit is one ZooKeeper multi holding the objects' changes, a change-log entry and a transaction
// marker. After a connection loss with unknown outcome, the marker's presence proves the first attempt committed,
// so a retry never applies a write twice:
//   tx/<ms>-<txid>       created in the same multi; removed after markerTtlMs by the trimmer
// The writer also trims the log beyond its retention, moving meta/trimmed first.
import { randomUUID } from 'node:crypto';
import zookeeper, { type Client, type Stat } from 'node-zookeeper-client';
import type { Kind } from '../../model/types.js';
import { StoreError, type Change, type Op } from '../store.js';
import { checkOps, encodeValue, opId } from '../validate.js';
import { ENTRY_PREFIX, SEQ_STRIDE, childrenCb, entryCount, logEntries, modelPath, parseLogName } from './log.js';
import { call, codeOf, isConnectionError, sleep, type ZkSession } from './session.js';

const { CreateMode, Exception } = zookeeper;

/** ZooKeeper refuses requests beyond jute.maxbuffer (1 MiB); stay under it with room for framing. */
const MAX_TX_BYTES = 900 * 1024;

type Transaction = ReturnType<Client['transaction']>;

/**
 * node-zookeeper-client's Transaction turns version 0 into -1 ("any version": `version || -1`), which would make a
 * conditional write on a never-updated znode unconditional. Set the version of the op just added ourselves.
 */
function pinVersion(tx: Transaction, version: number): Transaction {
  const ops = (tx as unknown as { ops: { version?: number }[] }).ops;
  ops[ops.length - 1]!.version = version;
  return tx;
}

export interface CommitterOptions {
  retention: number;
  markerTtlMs: number;
}

export class Committer {
  /** Newest log entry this client wrote, so its own list() sees its own writes. */
  ownTx = -1;
  private commitsSinceTrim = 0;
  private trimming = false;

  constructor(
    private readonly s: ZkSession,
    private readonly root: string,
    private readonly options: CommitterOptions,
  ) {}

  async commit(ops: Op[]): Promise<number[]> {
    const s = this.s;
    s.live();
    checkOps(ops);
    if (ops.length >= SEQ_STRIDE) throw new StoreError('Invalid', `a commit holds at most ${SEQ_STRIDE - 1} ops (got ${ops.length})`);
    const marker = `${this.root}/tx/${Date.now()}-${randomUUID()}`;
    const opTimeoutMs = s.options.opTimeoutMs;
    const deadline = Date.now() + opTimeoutMs;
    // Versions of an earlier attempt whose outcome is unknown (the connection dropped while it was in flight).
    let maybeCommitted: number[] | undefined;
    for (let attempt = 0; ; attempt++) {
      s.live();
      if (Date.now() >= deadline) {
        throw new StoreError(
          'Unavailable',
          `commit did not complete within ${opTimeoutMs} ms against ZooKeeper ${s.hosts}${maybeCommitted ? ' (outcome unknown)' : ''}`,
        );
      }
      let plan: Awaited<ReturnType<Committer['plan']>> | undefined;
      try {
        await s.waitConnected(deadline);
        if (maybeCommitted) {
          const stat = await s.zk<Stat | null>((c, cb) => c.exists(marker, cb), Math.max(1, deadline - Date.now()));
          if (stat) return maybeCommitted; // the earlier attempt did commit: never apply it twice
        }
        plan = await this.plan(ops, deadline);
        if (!plan.build) return plan.versions;
        const tx = s.client.transaction();
        plan.build(tx);
        let logIndex = -1;
        if (plan.changes.length > 0) {
          const payload = Buffer.from(JSON.stringify({ changes: plan.changes }));
          if (payload.length * 2 > MAX_TX_BYTES)
            throw new StoreError('Invalid', `commit too large for ZooKeeper (${payload.length} bytes of changes)`);
          logIndex = plan.count;
          tx.create(`${this.root}/log/${ENTRY_PREFIX}`, payload, s.acl, CreateMode.PERSISTENT_SEQUENTIAL);
          tx.create(marker, Buffer.alloc(0), s.acl, CreateMode.PERSISTENT);
          // Fires followers' data watch on log/ (log.ts): they read the new entry by name, listing nothing.
          tx.setData(`${this.root}/log`, Buffer.alloc(0), -1);
        }
        const results = await call<{ path?: string }[]>((cb) => tx.commit(cb), Math.max(1, deadline - Date.now()), s.inflight);
        if (logIndex >= 0) {
          const name = parseLogName(results[logIndex]!.path!.split('/').pop()!);
          if (name) this.ownTx = Math.max(this.ownTx, name.tx);
          if (++this.commitsSinceTrim >= Math.max(1, Math.floor(this.options.retention / 10))) void this.trim();
        }
        return plan.versions;
      } catch (err) {
        if (err instanceof StoreError) throw err;
        if (isConnectionError(err)) {
          if (plan?.build && plan.changes.length > 0) maybeCommitted = plan.versions;
          await sleep(Math.min(200, 20 * (attempt + 1)));
          continue;
        }
        const c = codeOf(err);
        if (c === Exception.NODE_EXISTS || c === Exception.NO_NODE || c === Exception.BAD_VERSION) {
          // State moved between our read and the multi: plan again from a fresh read (the marker check at the
          // top covers a retry colliding with an earlier attempt of ours that did commit).
          continue;
        }
        throw s.unavailable(err);
      }
    }
  }

  /**
   * Reads the current version of every object the ops touch, checks the ops against it (each op seeing the ones
   * before it) and builds the multi. Every touched object gets a precondition equal to what was read, so the
   * multi fails, and is planned again, if anything moved in between.
   */
  private async plan(ops: Op[], deadline: number) {
    const s = this.s;
    const keys = new Map<string, { kind: Kind; id: string }>();
    for (const op of ops) keys.set(`${op.kind}\0${opId(op)}`, { kind: op.kind, id: opId(op) });
    const read = new Map<string, number | null>(); // znode version, or null when absent
    await Promise.all(
      [...keys].map(async ([k, { kind, id }]) => {
        const stat = await s.zk<Stat | null>((c, cb) => c.exists(modelPath(this.root, kind, id), cb), Math.max(1, deadline - Date.now()));
        read.set(k, stat ? stat.version : null);
      }),
    );
    const staged = new Map(read);
    const versions: number[] = [];
    const changes: { kind: Kind; id: string; type: Change['type']; version: number; value?: unknown }[] = [];
    const steps: ((tx: Transaction) => void)[] = [];
    for (const op of ops) {
      const id = opId(op);
      const k = `${op.kind}\0${id}`;
      const cur = staged.get(k)!; // znode version or null
      const path = modelPath(this.root, op.kind, id);
      const stale = (v: number) => new StoreError('Conflict', `${op.kind} ${id} is at version ${cur + 1}, not ${v}`, op.kind, id);
      switch (op.op) {
        case 'create': {
          if (cur !== null) throw new StoreError('Exists', `${op.kind} ${id} already exists`, op.kind, id);
          const json = encodeValue(op.kind, op.value);
          steps.push((tx) => tx.create(path, Buffer.from(json), s.acl, CreateMode.PERSISTENT));
          staged.set(k, 0);
          changes.push({ kind: op.kind, id, type: 'create', version: 1, value: JSON.parse(json) });
          versions.push(1);
          break;
        }
        case 'update': {
          if (cur === null) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur + 1) throw stale(op.version);
          const json = encodeValue(op.kind, op.value);
          steps.push((tx) => pinVersion(tx.setData(path, Buffer.from(json), cur), cur));
          staged.set(k, cur + 1);
          changes.push({ kind: op.kind, id, type: 'update', version: cur + 2, value: JSON.parse(json) });
          versions.push(cur + 2);
          break;
        }
        case 'delete': {
          if (cur === null) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur + 1) throw stale(op.version);
          steps.push((tx) => pinVersion(tx.remove(path, cur), cur));
          staged.set(k, null);
          changes.push({ kind: op.kind, id, type: 'delete', version: cur + 1 });
          versions.push(0);
          break;
        }
        case 'check': {
          if (op.version === 0) {
            if (cur !== null) throw new StoreError('Conflict', `${op.kind} ${id} exists (version ${cur + 1})`, op.kind, id);
            // ZooKeeper has no "check absent": create and remove in the same multi fails if it exists.
            steps.push((tx) => tx.create(path, Buffer.alloc(0), s.acl, CreateMode.PERSISTENT));
            steps.push((tx) => pinVersion(tx.remove(path, 0), 0));
          } else if (cur === null) {
            throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          } else {
            if (op.version !== cur + 1) throw stale(op.version);
            steps.push((tx) => pinVersion(tx.check(path, cur), cur));
          }
          versions.push(0);
          break;
        }
      }
    }
    // Every touched object's first step carries the version (or absence) that was read: that pins it.
    return {
      versions,
      changes,
      count: steps.length,
      build: steps.length > 0 ? (tx: Transaction) => steps.forEach((step) => step(tx)) : undefined,
    };
  }

  /** Removes log entries beyond the retention and expired transaction markers. Best effort, in the background. */
  async trim(): Promise<void> {
    const s = this.s;
    if (this.trimming || s.closed) return;
    this.trimming = true;
    this.commitsSinceTrim = 0;
    try {
      const children = await logEntries(s, this.root, false);
      const excess = children.slice(0, Math.max(0, children.length - this.options.retention));
      for (let i = 0; i < excess.length; i += 200) {
        const batch = excess.slice(i, i + 200);
        const last = batch.at(-1)!;
        const [data, stat] = await s.zk<[Buffer, Stat]>((c, cb) => c.getData(`${this.root}/meta/trimmed`, cb));
        const mark = Math.max(Number(data.toString()) || 0, last.tx * SEQ_STRIDE + (await entryCount(s, this.root, last)) - 1);
        const tx = s.client.transaction();
        // The watermark moves first (same multi), so nobody resumes into a hole unnoticed.
        tx.setData(`${this.root}/meta/trimmed`, Buffer.from(String(mark)), stat.version);
        for (const n of batch) tx.remove(`${this.root}/log/${n.name}`, -1);
        await call((cb) => tx.commit(cb), s.options.opTimeoutMs, s.inflight);
      }
      const markers = await s.zk<string[]>((c, cb) => c.getChildren(`${this.root}/tx`, childrenCb(cb)));
      const cutoff = Date.now() - this.options.markerTtlMs;
      await Promise.all(
        markers
          .filter((m) => Number(m.split('-')[0]) < cutoff)
          .map((m) => s.zk<void>((c, cb) => c.remove(`${this.root}/tx/${m}`, -1, cb)).catch(() => {})),
      );
    } catch {
      // Another client trimmed concurrently, or the connection dropped: the next trim catches up.
    } finally {
      this.trimming = false;
    }
  }
}
