// How a testbed starts a `bees` process (an agent on a host): the same layout this code runs from. Under tsx (the
// tests, `npm run bench`) that is the source entry app/main.ts with `--import tsx`; from a build (`./bees demo`,
// the installed `bees`) it is the compiled dist/app/main.js, where no .ts file exists.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/**
 * The argv prefix that runs `bees`, for a module at `moduleUrl` in testbed/ (default: this one). Throws when the
 * entry is missing, naming it, instead of letting a spawned agent die on it.
 */
export function beesArgv(moduleUrl: string = import.meta.url): string[] {
  const fromSource = moduleUrl.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSource ? '../app/main.ts' : '../app/main.js', moduleUrl));
  if (!existsSync(entry))
    throw new Error(`the bees entry point ${entry} does not exist${fromSource ? '' : ' (run the build: npx tsc -p tsconfig.json)'}`);
  return fromSource ? [process.execPath, '--import', 'tsx', entry] : [process.execPath, entry];
}

/** Environment assignments and node flags a `bees` process runs under. */
export interface NodeLaunch {
  env: Record<string, string>;
  nodeArgs: string[];
}

/** `VAR=value` words are environment, the rest node flags (each must start with `-`). */
export function parseLaunch(words: string[]): NodeLaunch {
  const env: Record<string, string> = {};
  const nodeArgs: string[] = [];
  for (const w of words) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(w);
    if (m) env[m[1]!] = m[2]!;
    else if (w.startsWith('-')) nodeArgs.push(w);
    else throw new Error(`'${w}' is neither VAR=value nor a node flag`);
  }
  return { env, nodeArgs };
}

/**
 * What production runs `bees` under: the entry's `#!/usr/bin/env -S VAR=… node FLAGS` line (app/main.ts's, kept
 * in dist/app/main.js), which the installed `bees`, the image and the ./bees launcher use. beesArgv() leaves it out
 * (it runs node on the entry); agents whose CPU or memory a benchmark reports should run under it.
 */
export function productionLaunch(shebang?: string, moduleUrl: string = import.meta.url): NodeLaunch {
  const line = shebang ?? readFileSync(beesArgv(moduleUrl).at(-1)!, 'utf8').split('\n')[0]!;
  const m = /^#!\/usr\/bin\/env -S (.*)$/.exec(line.trim());
  if (!m) throw new Error(`the bees entry does not start with a '#!/usr/bin/env -S' line: ${line}`);
  const words = m[1]!.split(/\s+/);
  const at = words.indexOf('node');
  if (at < 0) throw new Error(`no node in ${line}`);
  return parseLaunch([...words.slice(0, at), ...words.slice(at + 1)]);
}

/** `argv` (node first, as beesArgv() gives it) with `launch`'s node flags after node. */
export function withNodeFlags(argv: string[], launch: NodeLaunch): string[] {
  return [argv[0]!, ...launch.nodeArgs, ...argv.slice(1)];
}

export interface BeesRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `bees ARGS` (the CLI) to completion, as beesArgv() starts it: its exit code and what it wrote. `env` is added
 * to this process's environment; stdin is closed, so a command that would read it sees its end instead of waiting.
 */
export function runBees(args: string[], options: { env?: Record<string, string>; cwd?: string } = {}): Promise<BeesRun> {
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = beesArgv();
    const p = spawn(cmd!, [...pre, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
