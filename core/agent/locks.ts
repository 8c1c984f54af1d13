// Ordering of datapath work inside the agent. Workload attaches and detaches run concurrently with each other
// (shared), but never while a reconcile pass sweeps (exclusive): a sweep computed from a cache that has not yet
// seen a new port must not remove the bridge or veth that attach has just created.

export class SharedExclusiveLock {
  private shared = 0;
  private exclusive = false;
  private readonly waiting: { exclusive: boolean; wake: () => void }[] = [];

  async runShared<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(false);
    try {
      return await fn();
    } finally {
      this.shared--;
      this.drain();
    }
  }

  async runExclusive<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire(true);
    try {
      return await fn();
    } finally {
      this.exclusive = false;
      this.drain();
    }
  }

  private acquire(exclusive: boolean): Promise<void> {
    // Writers queue behind everything; readers also queue behind a waiting writer so it is not starved.
    if (!this.exclusive && this.waiting.length === 0 && (exclusive ? this.shared === 0 : true)) {
      if (exclusive) this.exclusive = true;
      else this.shared++;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push({ exclusive, wake: resolve }));
  }

  private drain(): void {
    while (this.waiting.length > 0 && !this.exclusive) {
      const next = this.waiting[0]!;
      if (next.exclusive) {
        if (this.shared > 0) return;
        this.waiting.shift();
        this.exclusive = true;
        next.wake();
        return;
      }
      this.waiting.shift();
      this.shared++;
      next.wake();
    }
  }
}
