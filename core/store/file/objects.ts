// The file store's objects in memory, where every read is answered. A commit is staged against them (checked op
// by op, seeing its own earlier ops), applied at once so the next commit sees it, and undone if its journal
// write fails: each applied change returns the entry it replaced, so memory can always return to the durable state.
import type { Kind } from '../../model/types.js';
import { StoreError, type Op } from '../store.js';
import { encodeValue, opId } from '../validate.js';
import type { StoredChange } from '../watcher.js';
import type { SnapshotObjects } from './snapshot.js';

/** A stored object: its version and its JSON text (parsing on read hands every caller its own copy). */
export interface Entry {
  version: number;
  json: string;
}

/** How to undo one applied change: the entry it replaced (undefined: there was none). */
export interface Undo {
  kind: Kind;
  id: string;
  prev: Entry | undefined;
}

export class ObjectTable {
  private readonly objects = new Map<Kind, Map<string, Entry>>();
  /** Seq of the newest change applied (possibly not yet durable). */
  seq = 0;

  get(kind: Kind, id: string): Entry | undefined {
    return this.objects.get(kind)?.get(id);
  }

  entries(kind: Kind): Iterable<Entry> {
    return this.objects.get(kind)?.values() ?? [];
  }

  /** Fills the table from a snapshot. */
  load(objects: SnapshotObjects, seq: number): void {
    for (const [kind, byId] of Object.entries(objects)) {
      const map = this.kindMap(kind as Kind);
      for (const [id, [version, json]] of Object.entries(byId)) map.set(id, { version, json });
    }
    this.seq = seq;
  }

  /** Applies a change; returns how to undo it. */
  apply(c: StoredChange): Undo {
    const map = this.kindMap(c.kind);
    const prev = map.get(c.id);
    if (c.type === 'delete') map.delete(c.id);
    else map.set(c.id, { version: c.version, json: c.json! });
    this.seq = c.seq;
    return { kind: c.kind, id: c.id, prev };
  }

  /** Undoes commits' changes, newest commit first and within it newest change first, back to `seq`. */
  undo(commits: readonly (readonly Undo[])[], seq: number): void {
    forEachUndo(commits, ({ kind, id, prev }) => {
      if (prev) this.kindMap(kind).set(id, prev);
      else this.kindMap(kind).delete(id);
    });
    this.seq = seq;
  }

  /** The table as a snapshot holds it, without the changes of `pending` commits (they may yet fail). */
  snapshot(pending: readonly (readonly Undo[])[]): SnapshotObjects {
    const objects: SnapshotObjects = {};
    for (const [kind, map] of this.objects) {
      const byId: Record<string, [number, string]> = {};
      for (const [id, e] of map) byId[id] = [e.version, e.json];
      objects[kind] = byId;
    }
    forEachUndo(pending, ({ kind, id, prev }) => {
      const byId = (objects[kind] ??= {});
      if (prev) byId[id] = [prev.version, prev.json];
      else delete byId[id];
    });
    return objects;
  }

  /** Checks every op against current state (seeing earlier ops of the same commit) and computes its changes. */
  stage(ops: Op[]): { versions: number[]; changes: StoredChange[] } {
    const staged = new Map<string, Entry | null>(); // "kind\0id" -> entry, null = deleted in this commit
    const current = (kind: Kind, id: string): Entry | undefined => {
      const k = `${kind}\0${id}`;
      if (staged.has(k)) return staged.get(k) ?? undefined;
      return this.get(kind, id);
    };
    const versions: number[] = [];
    const changes: StoredChange[] = [];
    let seq = this.seq;
    for (const op of ops) {
      const id = opId(op);
      const cur = current(op.kind, id);
      const key = `${op.kind}\0${id}`;
      switch (op.op) {
        case 'create': {
          if (cur) throw new StoreError('Exists', `${op.kind} ${id} already exists`, op.kind, id);
          const json = encodeValue(op.kind, op.value);
          staged.set(key, { version: 1, json });
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'create', version: 1, json });
          versions.push(1);
          break;
        }
        case 'update': {
          if (!cur) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          const json = encodeValue(op.kind, op.value);
          const version = cur.version + 1;
          staged.set(key, { version, json });
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'update', version, json });
          versions.push(version);
          break;
        }
        case 'delete': {
          if (!cur) throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          if (op.version !== undefined && op.version !== cur.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          staged.set(key, null);
          changes.push({ seq: ++seq, kind: op.kind, id, type: 'delete', version: cur.version });
          versions.push(0);
          break;
        }
        case 'check': {
          if (op.version === 0) {
            if (cur) throw new StoreError('Conflict', `${op.kind} ${id} exists (version ${cur.version})`, op.kind, id);
          } else if (!cur) {
            throw new StoreError('NotFound', `${op.kind} ${id} does not exist`, op.kind, id);
          } else if (cur.version !== op.version) {
            throw new StoreError('Conflict', `${op.kind} ${id} is at version ${cur.version}, not ${op.version}`, op.kind, id);
          }
          versions.push(0);
          break;
        }
      }
    }
    return { versions, changes };
  }

  private kindMap(kind: Kind): Map<string, Entry> {
    let map = this.objects.get(kind);
    if (!map) {
      map = new Map();
      this.objects.set(kind, map);
    }
    return map;
  }
}

/** Visits the undo records of `commits` newest first, the order that restores the state before the oldest. */
function forEachUndo(commits: readonly (readonly Undo[])[], visit: (u: Undo) => void): void {
  for (let i = commits.length - 1; i >= 0; i--) {
    const u = commits[i]!;
    for (let j = u.length - 1; j >= 0; j--) visit(u[j]!);
  }
}
