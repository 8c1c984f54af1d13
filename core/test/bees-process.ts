// The real `bees` CLI and a real `bees api` process, for the tests that drive the CLI end to end. Spawned through
// testbed/bees-entry.ts, never imported: core imports no app code.
import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beesArgv, runBees } from '../../testbed/bees-entry.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface Run {
  code: number;
  out: string;
  err: string;
}

function spawnBees(args: string[], env: Record<string, string> = {}): ChildProcessWithoutNullStreams {
  const [cmd, ...pre] = beesArgv();
  return spawn(cmd!, [...pre, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
}

/** Runs `bees ARGS` to completion from the repository root: its exit code and what it wrote. */
export async function bees(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const r = await runBees(args, { env, cwd: ROOT });
  return { code: r.code, out: r.stdout, err: r.stderr };
}

export interface BeesApi {
  /** The api's unix socket. */
  sock: string;
  /** The environment that points the CLI at it. */
  env: { BEES_API: string };
  server: ChildProcess;
  /** What the api process wrote to stderr so far. */
  log: () => string;
}

/** Starts `bees api` on a file store and a unix socket in a fresh directory; stopped and removed at teardown. */
export async function startBeesApi(t: ExecutionContext, prefix: string): Promise<BeesApi> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const sock = path.join(dir, 'api.sock');
  const server = spawnBees(['api', '--store', `file:${path.join(dir, 'store')}`, '--listen', `unix:${sock}`]);
  let log = '';
  server.stderr.on('data', (d) => {
    log += d;
  });
  t.teardown(async () => {
    if (server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('close', r));
    }
    await rm(dir, { recursive: true, force: true });
  });
  await waitForSocket(sock, server, () => log);
  return { sock, env: { BEES_API: `unix:${sock}` }, server, log: () => log };
}

async function waitForSocket(file: string, child: ChildProcess, log: () => string): Promise<void> {
  // Generous: a loaded CI machine takes seconds to start node with tsx.
  for (let i = 0; i < 1200; i++) {
    if (child.exitCode !== null) throw new Error(`bees api exited: ${log()}`);
    try {
      await stat(file);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`bees api did not listen: ${log()}`);
}
