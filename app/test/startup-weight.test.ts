// Every bees process (the agent on every host included) imports every command module to list its commands: none of
// them may pull in a heavy client it does not use yet. dockerode brings grpc-js, protobufjs and ssh2 (about 200
// files, tens of MB resident); the Kubernetes client is heavier still. Checked in a fresh process, whose CommonJS
// module cache shows what was loaded.
import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

const SCRIPT = `
const { createRequire } = await import('node:module');
const { commandModules } = await import('./app/commands.ts');
await Promise.all(commandModules.map((load) => load()));
const loaded = Object.keys(createRequire(import.meta.url).cache);
console.log(JSON.stringify(loaded.filter((f) => /node_modules\\/(dockerode|@kubernetes\\/client-node|ssh2|@grpc)\\//.test(f))));
`;

test('loading every command module loads no Docker or Kubernetes client', async (t) => {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], {
    cwd: ROOT,
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  t.deepEqual(JSON.parse(stdout) as string[], []);
});
