// One CNI invocation as a pure function: the plugin's environment and stdin in, what it prints on stdout and its
// exit status out. The agent runs it for every `POST /v1/cni` from the shim (cni/shim/midonet.c), so the CNI
// logic lives in a process that is already running instead of one started per call.
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, cmdVersion, type WorkloadApi } from './commands.js';
import { parseJson, type MidonetNetConf } from './config.js';
import { parseEnv } from './env.js';
import { CniError, Code } from './errors.js';
import { isSupported, LATEST } from './versions.js';

export type { WorkloadApi } from './commands.js';

export interface CniOutcome {
  /** Exactly what the plugin prints on stdout: a result, an error object (libcni reads errors from stdout), or nothing. */
  stdout: string;
  exitCode: 0 | 1;
}

const line = (obj: unknown): string => JSON.stringify(obj) + '\n';

/** Runs one CNI command. Never throws: every failure becomes the spec's error object and exit status 1. */
export async function runCni(env: Record<string, string | undefined>, stdin: string, api: WorkloadApi): Promise<CniOutcome> {
  let version: string = LATEST;
  try {
    if (env.CNI_COMMAND === 'VERSION') {
      const conf = stdin.trim() === '' ? undefined : parseJson(stdin);
      return { stdout: line(cmdVersion(conf)), exitCode: 0 };
    }
    const cniEnv = parseEnv(env);
    const conf: MidonetNetConf = parseJson(stdin);
    if (isSupported(conf.cniVersion)) version = conf.cniVersion;
    let stdout = '';
    switch (cniEnv.command) {
      case 'ADD':
        stdout = line(await cmdAdd(cniEnv, conf, api));
        break;
      case 'DEL':
        await cmdDel(cniEnv, conf, api);
        break;
      case 'CHECK':
        await cmdCheck(cniEnv, conf, api);
        break;
      case 'GC':
        await cmdGc(cniEnv, conf, api);
        break;
      case 'STATUS':
        await cmdStatus(cniEnv, conf, api);
        break;
      case 'VERSION':
        break; // handled above, before the per-container checks
    }
    return { stdout, exitCode: 0 };
  } catch (e) {
    const err = e instanceof CniError ? e : new CniError(Code.agentInternal, `internal error: ${(e as Error)?.stack ?? String(e)}`);
    return { stdout: line(err.toJSON(version)), exitCode: 1 };
  }
}
