// Preloaded into the measured agent (NODE_OPTIONS=--import): on SIGUSR2 it runs a full garbage collection and
// writes the process's memory figures to $BEES_SCALE_MEMFILE, so the benchmark reads memory after GC without any
// hook in the agent itself. v8.setFlagsFromString + a new context is how a process gets gc() without starting
// with --expose-gc (NODE_OPTIONS may not carry V8 flags on every Node).
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

const file = process.env.BEES_SCALE_MEMFILE;
// Only the agent itself: a node process it might start inherits NODE_OPTIONS and must not overwrite the file.
if (file && process.argv.includes('agent')) {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc');
  process.on('SIGUSR2', () => {
    gc();
    gc();
    const m = process.memoryUsage();
    writeFileSync(file, JSON.stringify({ at: Date.now(), pid: process.pid, ...m }));
  });
  writeFileSync(file, JSON.stringify({ at: 0, pid: process.pid }));
}
