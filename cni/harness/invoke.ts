// Running a plugin executable the way libcni's invoke package does: find it in CNI_PATH, pass env and stdin,
// read the result or the error object from stdout (stderr only when stdout has none).
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { HarnessError, PluginError, type RuntimeConf } from './types.js';

export interface InvokeOutput {
  stdout: string;
  stderr: string;
  exitCode: number;
  ms: number;
}

export async function findPlugin(type: string, dirs: string[]): Promise<string> {
  if (type.includes('/')) throw new HarnessError(`plugin type ${JSON.stringify(type)} must be a bare name`);
  for (const dir of dirs) {
    const p = join(dir, type);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  throw new HarnessError(`failed to find plugin ${JSON.stringify(type)} in path [${dirs.join(' ')}]`);
}

/** Environment for one call; per-container variables only for the commands that have a container. */
export function pluginEnv(command: string, dirs: string[], rt?: RuntimeConf): Record<string, string> {
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_PATH: dirs.join(':'),
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
  };
  if (rt && ['ADD', 'DEL', 'CHECK'].includes(command)) {
    env.CNI_CONTAINERID = rt.containerId;
    if (rt.netns) env.CNI_NETNS = rt.netns;
    env.CNI_IFNAME = rt.ifname;
    if (rt.args?.length) env.CNI_ARGS = rt.args.map(([k, v]) => `${k}=${v}`).join(';');
  }
  return env;
}

function run(path: string, env: Record<string, string>, stdin: string, hostNetns?: string): Promise<InvokeOutput> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    // A runtime runs its plugins in the host's namespace: with hostNetns set, that is a test host's namespace.
    const [cmd, args] = hostNetns ? ['nsenter', [`--net=${hostNetns}`, '--', path]] : [path, []];
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.stdin.on('error', () => {
      /* the plugin may exit before reading stdin; its exit code tells */
    });
    child.on('close', (code, signal) =>
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode: code ?? (signal ? 128 : 1),
        ms: Number(process.hrtime.bigint() - start) / 1e6,
      }),
    );
    child.stdin.end(stdin);
  });
}

/** Runs one plugin command; returns the parsed stdout (undefined when empty) or throws PluginError. */
export async function invokePlugin(
  path: string,
  command: string,
  env: Record<string, string>,
  conf: unknown,
  hostNetns?: string,
): Promise<unknown> {
  let res: InvokeOutput | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      res = await run(path, env, JSON.stringify(conf), hostNetns);
      break;
    } catch (e) {
      // libcni retries "text file busy": the binary may still be being written by an installer.
      if ((e as NodeJS.ErrnoException).code === 'ETXTBSY' && attempt < 5) {
        await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
        continue;
      }
      throw new HarnessError(`cannot run ${path}: ${(e as Error).message}`);
    }
  }
  const name = path.split('/').pop() ?? path;
  if (res.exitCode !== 0) {
    let parsed: { code?: unknown; msg?: unknown; details?: unknown } | undefined;
    try {
      parsed = JSON.parse(res.stdout) as { code?: unknown; msg?: unknown; details?: unknown };
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed.code === 'number') {
      throw new PluginError(
        name,
        command,
        parsed.code,
        jsonText(parsed.msg ?? ''),
        typeof parsed.details === 'string' ? parsed.details : undefined,
        res.stderr,
      );
    }
    throw new PluginError(
      name,
      command,
      999,
      `exited ${res.exitCode} without an error object: ${(res.stderr || res.stdout).trim().slice(0, 500)}`,
      undefined,
      res.stderr,
    );
  }
  if (res.stdout.trim() === '') return undefined;
  try {
    return JSON.parse(res.stdout);
  } catch (e) {
    throw new HarnessError(`${name} ${command} printed something that is not JSON: ${res.stdout.slice(0, 200)} (${(e as Error).message})`);
  }
}

/** A value parsed from JSON as text: a string as itself, anything else (number, boolean, object) as its JSON. */
function jsonText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
