#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --optimize-for-size
// The `bees` entry point: core's CLI (core/cli/main.ts) with every command module, adapters' included.
//
// The line above is how the installed `bees` and the image run (the ./bees launcher passes the same): the agent
// is a long-lived daemon on every host whose work is I/O and short bursts, not throughput in JS. Node's defaults
// size the heap for throughput; with a 1 MB young generation, V8's size-optimised mode and two malloc arenas
// instead of one per thread, an idle agent measured 77 MB RSS here instead of 119 MB (bench/memory.ts).
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
