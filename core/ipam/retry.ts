// Optimistic concurrency: IPAM writes are compare-and-set on a block's version. A lost race (another host wrote
// the block first, created it first, or deleted it) is retried after a jittered, growing pause so the losers do
// not collide again in lock step.
import { StoreError } from '../store/store.js';
import { TopologyError } from '../topology/errors.js';

export interface RetryOptions {
  /** Attempts before giving up; each attempt re-reads the store. */
  maxAttempts?: number;
  /** First pause in ms; doubles per attempt up to `maxDelayMs`, then a random fraction of it is taken. */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

/** Store answers that mean "somebody else wrote first": re-read and try again. */
export function isRace(err: unknown): boolean {
  return err instanceof StoreError && (err.code === 'Conflict' || err.code === 'Exists' || err.code === 'NotFound');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Runs `attempt` until it does not lose a race. Other store failures become TopologyError('unavailable');
 * TopologyErrors (the caller's verdicts: invalid, conflict, exhausted) pass through untouched.
 */
export async function retryRaces<T>(what: string, attempt: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 200;
  const base = options.baseDelayMs ?? 1;
  const cap = options.maxDelayMs ?? 50;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isRace(err)) {
        if (err instanceof StoreError) throw new TopologyError('unavailable', `${what}: store failed: ${err.message}`);
        throw err;
      }
      if (n >= maxAttempts) {
        throw new TopologyError(
          'unavailable',
          `${what}: gave up after ${n} attempts lost to concurrent writers (last: ${(err as Error).message})`,
        );
      }
      const ceiling = Math.min(cap, base * 2 ** Math.min(n, 16));
      await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
    }
  }
}
