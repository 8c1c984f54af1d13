// Ephemeral records held in this process's memory, with prefix watchers. The file store keeps its liveness
// records here (they die with the process that owns the directory); the ZooKeeper store caches its own in one.
import { StoreError, type EphemeralHandler } from './store.js';

export function checkEphemeralKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024 || /[\u0000-\u001f]/.test(key)) {
    throw new StoreError('Invalid', `bad ephemeral key ${JSON.stringify(key)}`);
  }
}

export function checkPrefix(prefix: unknown): asserts prefix is string {
  if (typeof prefix !== 'string') throw new StoreError('Invalid', `bad ephemeral prefix ${JSON.stringify(prefix)}`);
}

/** JSON text of an ephemeral value; refuses what JSON cannot carry. */
export function encodeEphemeral(key: string, value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new StoreError('Invalid', `ephemeral ${key}: value is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (json === undefined) throw new StoreError('Invalid', `ephemeral ${key}: value is not JSON-serialisable`);
  return json;
}

interface EphemeralWatcher {
  prefix: string;
  handler: EphemeralHandler;
}

export class EphemeralHub {
  private readonly records = new Map<string, string>();
  private readonly watchers = new Set<EphemeralWatcher>();

  put(key: string, value: unknown): void {
    checkEphemeralKey(key);
    const json = encodeEphemeral(key, value);
    if (this.records.get(key) === json) return;
    this.records.set(key, json);
    this.changed(key);
  }

  remove(key: string): void {
    checkEphemeralKey(key);
    if (this.records.delete(key)) this.changed(key);
  }

  /** Replaces the whole set (a backend's fresh view), notifying only the prefixes whose records changed. */
  replace(all: Map<string, string>): void {
    const touched = new Set<string>();
    for (const [k, v] of this.records) if (all.get(k) !== v) touched.add(k);
    for (const [k, v] of all) if (this.records.get(k) !== v) touched.add(k);
    this.records.clear();
    for (const [k, v] of all) this.records.set(k, v);
    for (const w of this.watchers) {
      if ([...touched].some((k) => k.startsWith(w.prefix))) this.notify(w);
    }
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  keys(): string[] {
    return [...this.records.keys()];
  }

  list(prefix: string): Record<string, unknown> {
    checkPrefix(prefix);
    const out: Record<string, unknown> = {};
    for (const [k, v] of this.records) if (k.startsWith(prefix)) out[k] = JSON.parse(v);
    return out;
  }

  watch(prefix: string, handler: EphemeralHandler): () => void {
    checkPrefix(prefix);
    if (typeof handler !== 'function') throw new StoreError('Invalid', 'watchEphemeral needs a handler function');
    const w = { prefix, handler };
    this.watchers.add(w);
    this.notify(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  clear(): void {
    this.records.clear();
    this.watchers.clear();
  }

  private changed(key: string): void {
    for (const w of this.watchers) if (key.startsWith(w.prefix)) this.notify(w);
  }

  private notify(w: EphemeralWatcher): void {
    try {
      w.handler(this.list(w.prefix));
    } catch (err) {
      process.emitWarning(`bees store: an ephemeral watch handler threw: ${(err as Error).stack ?? String(err)}`);
    }
  }
}
