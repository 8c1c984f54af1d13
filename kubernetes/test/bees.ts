// Runs one of kubernetes/commands.ts's commands as `bees` would (argv → command → exit code), for tests that need
// a real process: the commands are registered in the CLI by the composition root, which this directory does not own.
import { commands } from '../commands.js';

const argv = process.argv.slice(2);
const cmd = commands.filter((c) => c.name.split(' ').every((w, i) => argv[i] === w)).sort((a, b) => b.name.length - a.name.length)[0];
if (!cmd) {
  process.stderr.write(`bees: unknown command '${argv.join(' ')}'\n`);
  process.exit(2);
}
cmd
  .run(argv.slice(cmd.name.split(' ').length), {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    env: process.env,
  })
  .then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (err: Error & { exitCode?: number }) => {
      process.stderr.write(`bees: ${err.message}\n`);
      process.exitCode = err.exitCode ?? 1;
    },
  );
