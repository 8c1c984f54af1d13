// nftables in-process: libnftables (the library behind the `nft` command, Debian's libnftables1) bound through
// koffi. A script runs as one atomic transaction exactly as `nft -f -` would run it, minus the process.
// libnftables opens its netlink socket in nft_ctx_new (tested: a context created inside a namespace changes that
// namespace's ruleset whichever thread runs it later), so the context is created with the thread inside the
// target namespace (inNamespace) and the script runs on a libuv pool thread: a transaction can wait for RCU grace
// periods in the kernel (~10 ms when it touches an existing chain), and the event loop goes on meanwhile.
import koffi from 'koffi';
import { onPoolThread } from '../netlink/libc.js';
import { inNamespace } from '../netlink/netns.js';

const NFT_CTX_DEFAULT = 0;
const LIBRARY = 'libnftables.so.1';

interface Nftables {
  ctxNew(flags: number): unknown;
  bufferOutput(ctx: unknown): number;
  bufferError(ctx: unknown): number;
  run: { (ctx: unknown, script: string): number; async: (...args: unknown[]) => void };
  output(ctx: unknown): string | null;
  error(ctx: unknown): string | null;
  free: { (ctx: unknown): void; async: (...args: unknown[]) => void };
}

let lib: Nftables | undefined;
let loadError: Error | undefined;

/** The bound library, or undefined when it cannot be loaded (then `whyUnavailable()` says why). */
export function nftables(): Nftables | undefined {
  if (lib || loadError) return lib;
  try {
    const l = koffi.load(LIBRARY);
    const ctx = koffi.pointer('nft_ctx', koffi.opaque());
    lib = {
      ctxNew: l.func('nft_ctx_new', ctx, ['uint32_t']),
      bufferOutput: l.func('nft_ctx_buffer_output', 'int', [ctx]),
      bufferError: l.func('nft_ctx_buffer_error', 'int', [ctx]),
      run: l.func('nft_run_cmd_from_buffer', 'int', [ctx, 'const char *']),
      output: l.func('nft_ctx_get_output_buffer', 'const char *', [ctx]),
      error: l.func('nft_ctx_get_error_buffer', 'const char *', [ctx]),
      free: l.func('nft_ctx_free', 'void', [ctx]),
    };
  } catch (e) {
    loadError = e as Error;
  }
  return lib;
}

export function whyUnavailable(): string | undefined {
  nftables();
  return loadError?.message;
}

/** nft's own complaint about a script, as `nft -f` would print it on stderr. */
export class NftError extends Error {
  constructor(
    message: string,
    readonly nftMessage: string,
  ) {
    super(message);
    this.name = 'NftError';
  }
}

/**
 * Run an nft script (commands separated by newlines) in the namespace at `netns` (current when undefined);
 * returns what nft would print (listings). Throws NftError "<context>: <nft's error text>" on failure.
 */
export async function runNft(netns: string | undefined, script: string, context: string): Promise<string> {
  const n = nftables();
  if (!n) throw new Error(`${context}: libnftables unavailable: ${loadError?.message}`);
  const ctx = inNamespace(netns, () => n.ctxNew(NFT_CTX_DEFAULT));
  if (!ctx) throw new Error(`${context}: nft_ctx_new failed`);
  try {
    n.bufferOutput(ctx);
    n.bufferError(ctx);
    const rc = await onPoolThread<number>(n.run, [ctx, script]);
    if (rc !== 0) {
      const why = (n.error(ctx) ?? '').trim() || `nft_run_cmd_from_buffer returned ${rc}`;
      throw new NftError(`${context}: ${why}`, why);
    }
    return n.output(ctx) ?? '';
  } finally {
    freeOffLoop(n, ctx);
  }
}

/**
 * Free a context on a libuv pool thread, without waiting: freeing closes its netlink socket, and closing a
 * nfnetlink socket after a commit that removed anything (a flushed or deleted chain, a deleted element) waits in
 * the kernel for that transaction's destruction, an RCU grace period (7-15 ms measured here). On the event loop
 * that stalled every other request of the agent once per such transaction; the commit itself is over by now.
 */
function freeOffLoop(n: Nftables, ctx: unknown): void {
  void onPoolThread<void>(n.free, [ctx]).catch((e: unknown) => {
    process.stderr.write(`bees datapath: nft_ctx_free failed: ${String(e)}\n`);
  });
}
