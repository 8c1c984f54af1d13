// Serialising async work. Several places must not interleave a check-then-act (two attaches of one port, two
// IPAM requests of one interface, two port-mapping changes in one namespace, two requests on one netlink
// socket): each queues its work behind the previous one for the same key, while other keys run in parallel.
// A failed job does not poison the queue: the next one runs anyway, and the caller of the failed one gets its
// error.

/** Serialises work per key (e.g. per bridge): different keys run in parallel. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  /** Runs `fn` once every job queued before it for `key` has settled; resolves or rejects as `fn` does. */
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const result = prev.then(fn);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    // The map only holds keys with work pending, so it does not grow with every key ever used.
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }

  /** Resolves once the jobs queued so far for `key` have settled (never rejects). */
  async idle(key: string): Promise<void> {
    await this.tails.get(key);
  }

  /** Keys with work queued or running (for tests and status). */
  get pending(): number {
    return this.tails.size;
  }
}

/** One queue: a KeyedMutex with a single key. */
export class Mutex {
  private readonly m = new KeyedMutex();

  run<T>(fn: () => Promise<T>): Promise<T> {
    return this.m.run('', fn);
  }

  idle(): Promise<void> {
    return this.m.idle('');
  }
}
