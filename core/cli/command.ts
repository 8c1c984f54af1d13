// The `bees` command framework: what a command is, what it gets to run, and the helpers every command shares
// (option parsing with the common flags, tables for people, JSON for scripts, one-line errors).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ApiClient, DEFAULT_API } from '../api/client.js';
import { clientSecrets, ENV, TOKEN_ON_ARGV } from '../api/credentials.js';

/** Where a command writes, and its environment (so tests and embedding need no real process). */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  env: NodeJS.ProcessEnv;
}

export interface Command {
  /** The words that select it, e.g. 'net create'. */
  name: string;
  /** One line for `bees help`. */
  summary: string;
  /** Synopsis and options, shown by `bees help NAME` and `bees NAME --help`. */
  usage: string;
  /** Hand every argument to run() untouched, for commands parsing their own flags (--help/-h is still answered first). */
  rawArgs?: boolean;
  /** Exit code (default 0). Throw CliError (or any Error) to fail with a one-line reason. */
  run(args: string[], io: Io): Promise<number | void>;
}

/** A module of commands: what commands.ts lists. */
export interface CommandModule {
  commands: Command[];
}

/** A failure to report as "bees: <message>" with that exit code (2: usage). */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every API-talking command accepts. */
export const COMMON_OPTIONS = {
  api: { type: 'string' },
  // Declared only to refuse it with a reason (TOKEN_ON_ARGV) instead of "unknown option".
  token: { type: 'string' },
  'token-file': { type: 'string' },
  ca: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export const COMMON_USAGE = `Common options:
  --api unix:PATH|tcp://HOST:PORT|https://HOST:PORT
                                    API endpoint (default $BEES_API or ${DEFAULT_API})
  --token-file FILE                 bearer token for a TCP endpoint (default $${ENV.token})
  --ca FILE                         CA certificate for an https endpoint (default $${ENV.ca})
  --json                            machine-readable output`;

/** parseArgs with the common options; a bad flag is a usage error naming it. */
export function parse<O extends Options>(cmd: Command, args: string[], options: O, positionals: { min: number; max: number }) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(`${cmd.name}: ${(err as Error).message.split('\n')[0]}\nusage: ${cmd.usage.split('\n')[0]}`, 2);
  }
  if ((parsed.values as { token?: string }).token !== undefined) throw new CliError(`${cmd.name}: ${TOKEN_ON_ARGV}`, 2);
  const n = parsed.positionals.length;
  if (n < positionals.min || n > positionals.max) {
    const what = n < positionals.min ? 'missing argument' : `unexpected argument '${parsed.positionals[positionals.max]}'`;
    throw new CliError(`${cmd.name}: ${what}\nusage: ${cmd.usage.split('\n')[0]}`, 2);
  }
  return parsed;
}

/** The API client for the endpoint named by --api, $BEES_API or the default socket. */
export function apiClient(values: { api?: string; 'token-file'?: string; ca?: string }, io: Io): ApiClient {
  const endpoint = values.api ?? io.env.BEES_API ?? DEFAULT_API;
  try {
    return new ApiClient(endpoint, clientSecrets({ tokenFile: values['token-file'], ca: values.ca }, io.env));
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
}

/** Parses an integer option, refusing junk with a message naming the flag. */
export function intOption(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[0-9]+$/.test(value)) throw new CliError(`--${name}: '${value}' is not a whole number`, 2);
  return Number(value);
}

/** Aligned columns for people. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** "key: value" lines for one object. */
export function details(pairs: [string, string][]): string {
  const w = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w)} ${v}`).join('\n') + '\n';
}

export function printJson(io: Io, value: unknown): void {
  io.out(JSON.stringify(value, null, 2) + '\n');
}

/** The answer of a command that made, changed or removed one thing: the object for scripts (--json), a line for people. */
export function reply(io: Io, values: { json?: boolean }, value: unknown, line: string): void {
  if (values.json) printJson(io, value);
  else io.out(`${line}\n`);
}

/** A table below the details of a `show`, set off by a blank line; nothing when there are no rows. */
export function tableSection(io: Io, headers: string[], rows: string[][]): void {
  if (rows.length) io.out('\n' + table(headers, rows));
}
