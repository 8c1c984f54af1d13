// Process execution for the datapath. Per-workload changes talk to the kernel in-process (netlink/, nft/); what
// runs once per network still goes through `ip -batch` or `bridge -batch`, so that it costs a spawn per batch, not
// one per netlink operation. Spawns are counted so the per-attach cost can be measured (and asserted) by tests and
// benchmarks.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { KernelError } from './netlink/libc.js';
import { NftError } from './nft/lib.js';

const SYSTEM_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const resolved = new Map<string, string>();

/**
 * The system binary called `cmd`. Never resolved through PATH: under npm, node_modules/.bin comes first, and it
 * can hold unrelated tools of the same name (@vercel/nft installs an `nft`).
 */
export function systemTool(cmd: string): string {
  if (cmd.includes('/')) return cmd;
  let p = resolved.get(cmd);
  if (!p) {
    p = SYSTEM_DIRS.map((d) => `${d}/${cmd}`).find((f) => existsSync(f)) ?? cmd;
    resolved.set(cmd, p);
  }
  return p;
}

/** Number of processes the datapath has started since load; read it before and after an operation. */
export const spawnCounter = { count: 0 };

export class CommandError extends Error {
  constructor(
    message: string,
    readonly argv: string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export interface RunOptions {
  /** Written to the child's stdin (batch scripts). */
  input?: string;
  /** Prefix of the error message, saying what we were trying to do. */
  context?: string;
}

/** Run argv, resolve with stdout; reject with a CommandError carrying the context and the tool's own words. */
export function run(argv: string[], opts: RunOptions = {}): Promise<string> {
  spawnCounter.count++;
  return new Promise((resolve, reject) => {
    const child = spawn(systemTool(argv[0]!), argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new CommandError(`${opts.context ?? argv.join(' ')}: ${e.message}`, argv, null, '')));
    child.on('close', (code) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString().trim();
      if (code === 0) resolve(stdout);
      else {
        const why = stderr || `exit code ${code}`;
        reject(new CommandError(`${opts.context ?? argv.join(' ')}: ${why}`, argv, code, stderr));
      }
    });
    child.stdin.on('error', () => {
      /* the child may exit before reading everything; its exit code tells */
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** argv run inside the network namespace at `netns` (a path), or in the current one when undefined. */
export function inNetns(netns: string | undefined, argv: string[]): string[] {
  return netns ? ['nsenter', `--net=${netns}`, systemTool(argv[0]!), ...argv.slice(1)] : argv;
}

/** Run an `ip -batch` script (one command per line) inside `netns`. Empty scripts cost nothing. */
export async function ipBatch(netns: string | undefined, lines: string[], context: string): Promise<void> {
  if (lines.length === 0) return;
  await batch(netns, 'ip', lines, context);
}

/** Run a batch; on failure, name the command that failed (the tool only gives its line number). */
async function batch(netns: string | undefined, tool: string, lines: string[], context: string): Promise<void> {
  try {
    await run(inNetns(netns, [tool, '-batch', '-']), { input: lines.join('\n') + '\n', context });
  } catch (e) {
    const m = e instanceof CommandError ? /Command failed -:(\d+)/.exec(e.stderr) : null;
    const line = m ? lines[Number(m[1]) - 1] : undefined;
    if (e instanceof CommandError && line !== undefined) {
      const why = e.stderr
        .split('\n')
        .filter((l) => !l.startsWith('Command failed'))
        .join('; ');
      throw new CommandError(`${context}: "${line}": ${why}`, e.argv, e.exitCode, e.stderr);
    }
    throw e;
  }
}

/** Run a `bridge -batch` script inside `netns`. */
export async function bridgeBatch(netns: string | undefined, lines: string[], context: string): Promise<void> {
  if (lines.length === 0) return;
  await batch(netns, 'bridge', lines, context);
}

/** Run a JSON-printing command (ip -j …) inside `netns` and parse its output: a list (some print nothing for none). */
export async function runJson<T extends unknown[]>(netns: string | undefined, argv: string[], context: string): Promise<T> {
  const out = await run(inNetns(netns, argv), { context });
  const text = out.trim() || '[]';
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${context}: unparsable output from ${argv.join(' ')}: ${(e as Error).message}`);
  }
}

/** ENODEV (no such interface), ENOENT (no such namespace file or object), ESRCH (no such route/neighbour). */
const GONE_ERRNOS = new Set(['ENODEV', 'ENOENT', 'ESRCH']);

/** True when an error only says the object is already gone (so a removal has nothing to do). */
export function isGone(e: unknown): boolean {
  if (e instanceof KernelError) return GONE_ERRNOS.has(e.code);
  const s = e instanceof CommandError ? e.stderr : e instanceof NftError ? e.nftMessage : String(e);
  return /Cannot find device|does not exist|No such file or directory|No such process|No such device|Cannot open network namespace/i.test(
    s,
  );
}
