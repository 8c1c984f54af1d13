#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=2 --heap-growing-percent=50
// The `bees` entry point: core's CLI (core/cli/main.ts) with every command module, adapters' included.
//
// The line above is how the installed `bees` and the image run (the ./bees launcher passes the same): the agent
// is a long-lived daemon on every host whose work is I/O and short bursts, not throughput in JS. Node's defaults
// size the heap for throughput: an idle agent measured 119 MB RSS, ~72 MiB with a small young generation and two
// malloc arenas instead of one per thread. A fixed old-generation growing factor of 1.5 (V8 grows it up to 4×)
// keeps the memory per remote port under 2 KiB; V8's size-optimised mode did too, for ~60% more CPU per sync and
// twice as much per change. The side-by-side measurement behind this choice: core/README.md, "Node flags".
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Io } from '../core/cli/command.js';
import { main as runCli } from '../core/cli/main.js';
import { commandModules } from './commands.js';

export function main(argv: string[], io: Io): Promise<number> {
  return runCli(argv, io, commandModules);
}

// Run when executed, not when imported (tests import main()).
function isEntry(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}
if (isEntry()) {
  const io: Io = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
  };
  void main(process.argv.slice(2), io).then((code) => {
    // Long-running commands (bees api) keep the event loop alive themselves; the others end here.
    process.exitCode = code;
  });
}
