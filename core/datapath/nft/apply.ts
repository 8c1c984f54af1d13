// Applying nftables transactions: in-process through libnftables (lib.ts), merged per namespace, with the `nft`
// command as the fallback when the library does not load (said once on stderr).
import { inNetns, run } from '../exec.js';
import { runNft, whyUnavailable } from './lib.js';

let warnedNoLibrary = false;

/** libnftables when it loads; otherwise false, said once on stderr (the `nft` command then does the work). */
function nftLibrary(): boolean {
  const why = whyUnavailable();
  if (why === undefined) return true;
  if (!warnedNoLibrary) {
    warnedNoLibrary = true;
    process.stderr.write(`bees datapath: libnftables unavailable (${why}); running the nft command instead\n`);
  }
  return false;
}

/**
 * Apply an nft script atomically inside `netns`: in-process through libnftables. Fails with
 * "<context>: <nft's own error text>".
 */
export async function nftApply(netns: string | undefined, script: string, context: string): Promise<void> {
  if (!script.trim()) return;
  if (nftLibrary()) await applyMerged(netns, script, context);
  else await run(inNetns(netns, ['nft', '-f', '-']), { input: script, context });
}

/** nftables transactions sent to the kernel by nftApply (merged ones count once); read before and after. */
export const nftTransactionCounter = { count: 0 };

interface PendingNft {
  script: string;
  context: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}
const nftQueues = new Map<string, PendingNft[]>();

/**
 * The kernel commits one nftables transaction at a time per namespace, and one that removes rules waits for an RCU
 * grace period (~12 ms here). So transactions for one namespace go one at a time, and those that arrived meanwhile
 * (20 workloads detached at once) are merged into the next: one commit, one grace period for all of them. If a
 * merged transaction fails, nothing of it was applied; its parts are then applied one by one, so each caller gets
 * its own outcome and error.
 */
function applyMerged(netns: string | undefined, script: string, context: string): Promise<void> {
  const key = netns ?? '';
  const queue = nftQueues.get(key);
  return new Promise<void>((resolve, reject) => {
    const item = { script, context, resolve, reject };
    if (queue) queue.push(item);
    else {
      nftQueues.set(key, [item]);
      void drainNft(netns, key);
    }
  });
}

async function drainNft(netns: string | undefined, key: string): Promise<void> {
  const queue = nftQueues.get(key)!;
  try {
    while (queue.length) {
      const batch = queue.splice(0);
      const one = async (b: PendingNft) => {
        nftTransactionCounter.count++;
        await runNft(netns, b.script, b.context).then(() => b.resolve(), b.reject);
      };
      if (batch.length === 1) {
        await one(batch[0]!);
        continue;
      }
      try {
        nftTransactionCounter.count++;
        await runNft(netns, batch.map((b) => (b.script.endsWith('\n') ? b.script : `${b.script}\n`)).join(''), 'merged nft transactions');
        for (const b of batch) b.resolve();
      } catch {
        for (const b of batch) await one(b);
      }
    }
  } finally {
    nftQueues.delete(key);
  }
}

/** nft queries (listings) run by nftQuery; read before and after. */
export const nftQueryCounter = { count: 0 };

/** Run a read-only nft command (e.g. `list chain bridge bees p-x`) inside `netns`; resolves with its output. */
export async function nftQuery(netns: string | undefined, command: string, context: string): Promise<string> {
  nftQueryCounter.count++;
  if (nftLibrary()) return runNft(netns, command, context);
  return run(inNetns(netns, ['nft', ...command.split(/\s+/)]), { context });
}
