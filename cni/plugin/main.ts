// Entry point of the `midonet` CNI plugin executable: read env + stdin, run one command, print the result or the
// error object on stdout (libcni reads errors from stdout), exit 0 or 1.
import { readFileSync, writeSync } from 'node:fs';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, cmdVersion } from './commands.js';
import { parseJson, type MidonetNetConf } from './config.js';
import { parseEnv } from './env.js';
import { CniError, Code } from './errors.js';
import { isSupported, LATEST } from './versions.js';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    // EAGAIN: non-blocking stdin with nothing in it; EOF-like conditions mean "no config".
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN' || (e as NodeJS.ErrnoException).code === 'EOF') return '';
    throw new CniError(Code.ioFailure, `cannot read the network configuration from stdin: ${(e as Error).message}`);
  }
}

function print(obj: unknown): void {
  writeSync(1, JSON.stringify(obj) + '\n');
}

export async function main(env: NodeJS.ProcessEnv): Promise<number> {
  let version: string = LATEST;
  try {
    const stdin = readStdin();
    if (env.CNI_COMMAND === 'VERSION') {
      const conf = stdin.trim() === '' ? undefined : parseJson(stdin);
      print(cmdVersion(conf));
      return 0;
    }
    const cniEnv = parseEnv(env);
    const conf: MidonetNetConf = parseJson(stdin);
    if (isSupported(conf.cniVersion)) version = conf.cniVersion;
    switch (cniEnv.command) {
      case 'ADD': print(await cmdAdd(cniEnv, conf)); break;
      case 'DEL': await cmdDel(cniEnv, conf); break;
      case 'CHECK': await cmdCheck(cniEnv, conf); break;
      case 'GC': await cmdGc(cniEnv, conf); break;
      case 'STATUS': await cmdStatus(cniEnv, conf); break;
      case 'VERSION': break; // handled above, before the per-container checks
    }
    return 0;
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(Code.agentInternal, `internal error: ${(e as Error)?.stack ?? String(e)}`);
    print(err.toJSON(version));
    return 1;
  }
}

// Exit at once: an idle keep-alive socket must not hold the runtime waiting.
process.exit(await main(process.env));
