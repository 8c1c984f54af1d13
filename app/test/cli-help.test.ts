// Every `bees` command answers --help and -h with its usage and exit code 0, and starts nothing: no agent, no
// API, no demo (`bees up --help` used to start an agent, `bees agent --help` was an error). Every command through
// main() in this process (one module load: quick), watching for servers left listening; and the commands that
// parse their own flags once more through the real entry point, as a user runs them.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Io } from '../../core/cli/command.js';
import { commandModules } from '../commands.js';
import { main } from '../main.js';

const MAIN = fileURLToPath(new URL('../main.ts', import.meta.url));
const RUN_DIR = '/run/bees';
// By URL: the scratch directory the entry runs in has no node_modules to find tsx from.
const TSX = import.meta.resolve('tsx');

const runDirEntries = () => (existsSync(RUN_DIR) ? readdirSync(RUN_DIR).sort() : []);
/** Listening sockets and child processes of this process (what a started agent, API or demo would add). */
const started = () =>
  process
    .getActiveResourcesInfo()
    .filter((r) => /Server|Process|Pipe(?!Wrap$)/.test(r))
    .sort();

async function inProcess(args: string[]): Promise<{ code: number | 'no answer within 10 s'; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (s) => {
      out += s;
    },
    err: (s) => {
      err += s;
    },
    env: {},
  };
  const code = await Promise.race([
    main(args, io),
    new Promise<'no answer within 10 s'>((r) => setTimeout(() => r('no answer within 10 s'), 10_000).unref()),
  ]);
  return { code, out, err };
}

test.serial('every command answers --help and -h with its usage, exit 0, starting nothing', async (t) => {
  const names = (await Promise.all(commandModules.map((load) => load()))).flatMap((m) => m.commands.map((c) => c.name));
  t.true(
    ['agent', 'up', 'api', 'demo', 'cni install', 'mesos config', 'docker install'].every((n) => names.includes(n)),
    names.join(', '),
  );
  const before = { resources: started(), runDir: runDirEntries() };
  const failures: string[] = [];
  for (const name of names) {
    for (const flag of ['--help', '-h']) {
      const r = await inProcess([...name.split(' '), flag]);
      const why = [
        r.code !== 0 && `exit ${r.code}`,
        !r.out.startsWith(`usage: bees ${name}`) && `stdout does not start with its usage: ${JSON.stringify(r.out.slice(0, 120))}`,
        r.err !== '' && `stderr: ${r.err.slice(0, 300)}`,
        JSON.stringify(started()) !== JSON.stringify(before.resources) && `left running: ${started().join(', ')}`,
      ].filter(Boolean);
      if (why.length) failures.push(`bees ${name} ${flag}: ${why.join('; ')}`);
    }
  }
  t.deepEqual(failures, []);
  t.deepEqual(runDirEntries(), before.runDir, `nothing new in ${RUN_DIR} (no agent or API socket)`);
});

test.serial('through the entry point: agent, up and api answer --help/-h at once and exit 0', async (t) => {
  const before = runDirEntries();
  const cases = [['agent', '--help'], ['up', '--help'], ['up', '-h'], ['api', '--help'], ['--help'], ['help', 'up']];
  await Promise.all(
    cases.map(async (args) => {
      const r = await new Promise<{ code: number | string; out: string; err: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--import', TSX, MAIN, ...args],
          { cwd: tmpdir(), timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '' } },
          (e, out, err) => {
            const x = e as (Error & { code?: number; killed?: boolean }) | null;
            resolve({ code: x ? (x.killed ? 'still running after 60 s' : (x.code ?? 'error')) : 0, out, err });
          },
        );
      });
      t.is(r.code, 0, `bees ${args.join(' ')}: ${r.err}`);
      t.regex(r.out, /^usage: bees/, `bees ${args.join(' ')}`);
      t.is(r.err, '', `bees ${args.join(' ')} wrote to stderr`);
    }),
  );
  t.deepEqual(runDirEntries(), before);
  const bare = await inProcess([]);
  t.is(bare.code, 2, 'a bare bees is a usage error');
});
