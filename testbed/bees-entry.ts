// How a testbed starts a `bees` process (an agent on a host): the same layout this code runs from. Under tsx (the
// tests, `npm run bench`) that is the source entry app/main.ts with `--import tsx`; from a build (`./bees demo`,
// the installed `bees`) it is the compiled dist/app/main.js, where no .ts file exists.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
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
