// Running commands inside the harness's namespaces.
import { spawn } from 'node:child_process';
import { systemTool } from '../core/datapath/exec.js';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run argv to completion; never rejects for a non-zero exit (callers decide), only for a failed spawn. */
export function execArgv(argv: string[], input?: string, timeoutMs = 60_000): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(systemTool(argv[0]!), argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${argv.join(' ')}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    child.stdin.on('error', () => {
      /* exited before reading stdin */
    });
    child.stdin.end(input ?? '');
  });
}

/** Like execArgv but rejects with the command and its stderr on a non-zero exit. */
export async function mustExec(argv: string[], input?: string): Promise<string> {
  const r = await execArgv(argv, input);
  if (r.code !== 0)
    throw new Error(`${argv.join(' ')} failed (${r.code}): ${r.stderr.trim() || r.stdout.trim()}${input ? `\ninput:\n${input}` : ''}`);
  return r.stdout;
}

export const nsArgv = (netnsPath: string, argv: string[]): string[] => [
  'nsenter',
  `--net=${netnsPath}`,
  systemTool(argv[0]!),
  ...argv.slice(1),
];
