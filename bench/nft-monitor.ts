// `nft monitor rules` in a host namespace, for benchmarks that time a change until each host's kernel committed it.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { nsArgv } from '../testbed/shell.js';

/** `nft monitor` in a host namespace: resolves when a committed rule line satisfies `match`. */
export class Monitor {
  private readonly p: ChildProcess;
  private waiters: { match: (line: string) => boolean; resolve: (at: number) => void }[] = [];
  readonly ready: Promise<void>;

  constructor(netns: string) {
    const [cmd, ...args] = nsArgv(netns, ['nft', 'monitor', 'rules']);
    this.p = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    this.p.on('error', () => undefined);
    const lines = createInterface({ input: this.p.stdout! });
    lines.on('line', (line) => {
      const at = performance.now();
      this.waiters = this.waiters.filter((w) => {
        if (!w.match(line)) return true;
        w.resolve(at);
        return false;
      });
    });
    // nft has no "listening" signal: a short pause after spawn (it subscribes before its first read).
    this.ready = new Promise((r) => setTimeout(r, 300));
  }

  wait(match: (line: string) => boolean, timeoutMs: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const w = { match, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        if (this.waiters.includes(w)) {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(new Error('no such commit within the timeout'));
        }
      }, timeoutMs).unref();
    });
  }

  stop(): void {
    this.p.kill('SIGKILL');
  }
}
