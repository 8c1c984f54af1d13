// `bees`: finds the command named by the leading words of the arguments and runs it. Errors end as one line,
// "bees: <reason>", with exit code 1 (2 for usage mistakes). The entry point, with the adapters' commands, is
// app/main.ts; core's own commands are listed in ./commands.ts.
import { CliError, COMMON_USAGE, type Command, type CommandModule, type Io } from './command.js';
import { commandModules as coreCommandModules } from './commands.js';

export type CommandModules = Array<() => Promise<CommandModule>>;

async function loadCommands(commandModules: CommandModules): Promise<Command[]> {
  const mods = await Promise.all(commandModules.map((load) => load()));
  return mods.flatMap((m) => m.commands);
}

/** The command whose name is the longest run of leading words of `argv`. */
function match(commands: Command[], argv: string[]): { cmd: Command; rest: string[] } | undefined {
  let best: { cmd: Command; rest: string[] } | undefined;
  for (const cmd of commands) {
    const words = cmd.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.cmd.name.split(' ').length)) {
      best = { cmd, rest: argv.slice(words.length) };
    }
  }
  return best;
}

function overview(commands: Command[], prefix = ''): string {
  const shown = commands.filter((c) => c.name.startsWith(prefix)).sort((a, b) => a.name.localeCompare(b.name));
  const w = Math.max(...shown.map((c) => c.name.length));
  return `usage: bees COMMAND [ARGS] [--help]\n\nCommands:\n${shown.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}\n\n${COMMON_USAGE}\n`;
}

function help(cmd: Command): string {
  return `usage: ${cmd.usage}\n\n${cmd.summary}\n`;
}

/** True when the arguments ask for a command's usage: every command answers it and starts nothing. */
function asksForHelp(args: string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

export async function main(argv: string[], io: Io, modules: CommandModules = coreCommandModules): Promise<number> {
  try {
    const commands = await loadCommands(modules);
    if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h') {
      io.out(overview(commands));
      return argv.length === 0 ? 2 : 0;
    }
    if (argv[0] === 'help') {
      const found = match(commands, argv.slice(1));
      if (argv.length > 1 && !found) {
        if (commands.some((c) => c.name.startsWith(`${argv[1]} `))) {
          io.out(overview(commands, `${argv[1]} `));
          return 0;
        }
        throw new CliError(`unknown command '${argv.slice(1).join(' ')}' (see bees help)`, 2);
      }
      io.out(found ? help(found.cmd) : overview(commands));
      return 0;
    }
    const found = match(commands, argv);
    if (!found) {
      const group = commands.filter((c) => c.name.startsWith(`${argv[0]} `));
      if (group.length) {
        io.err(overview(group));
        throw new CliError(argv[1] ? `unknown command '${argv[0]} ${argv[1]}'` : `'${argv[0]}' needs a subcommand`, 2);
      }
      throw new CliError(`unknown command '${argv[0]}' (see bees help)`, 2);
    }
    // Before run(), for every command, rawArgs ones too: `bees up --help` must not start an agent.
    if (asksForHelp(found.rest)) {
      // Commands with their own flags (rawArgs) take none of the common ones.
      io.out(found.cmd.rawArgs ? help(found.cmd) : help(found.cmd) + `\n${COMMON_USAGE}\n`);
      return 0;
    }
    return (await found.cmd.run(found.rest, io)) ?? 0;
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    io.err(`bees: ${message}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}
