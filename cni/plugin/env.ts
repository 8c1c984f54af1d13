// The CNI execution environment (SPEC "Parameters"): CNI_COMMAND and friends, and CNI_ARGS' K=V pairs.
import { statSync, statfsSync } from 'node:fs';
import { IFNAME_RULES, validIfname } from '../../core/net/ifname.js';
import { CniError, Code } from './errors.js';

export type Command = 'ADD' | 'DEL' | 'CHECK' | 'GC' | 'STATUS' | 'VERSION';
const COMMANDS: readonly Command[] = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];

/** CNI_ARGS keys we understand; anything else is refused unless IgnoreUnknown is set (like libcni's types/args.go). */
const KNOWN_ARGS = ['IgnoreUnknown', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_UID', 'K8S_POD_INFRA_CONTAINER_ID', 'IP', 'MAC'];

export interface CniArgs {
  podNamespace?: string;
  podName?: string;
  podUid?: string;
  infraContainerId?: string;
  /** From IP=, comma-separated (podman sends one per network). */
  ips?: string[];
  mac?: string;
}

export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifname: string;
  args: CniArgs;
  path: string[];
}

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;

export function parseCniArgs(raw: string | undefined): CniArgs {
  const pairs = new Map<string, string>();
  for (const part of (raw ?? '').split(';')) {
    if (part.trim() === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CniError(Code.badEnv, `CNI_ARGS: ${JSON.stringify(part)} is not KEY=VALUE`);
    pairs.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const ignoreUnknown = ['1', 'true'].includes((pairs.get('IgnoreUnknown') ?? '').toLowerCase());
  const unknown = [...pairs.keys()].filter((k) => !KNOWN_ARGS.includes(k));
  if (unknown.length > 0 && !ignoreUnknown) {
    throw new CniError(
      Code.badEnv,
      `CNI_ARGS: unknown key ${unknown.map((k) => JSON.stringify(k)).join(', ')} (set IgnoreUnknown=1 to allow)`,
    );
  }
  // An empty value counts as absent; absent keys stay off the result.
  const set = (k: string): string | undefined => pairs.get(k) || undefined;
  const podNamespace = set('K8S_POD_NAMESPACE');
  const podName = set('K8S_POD_NAME');
  const podUid = set('K8S_POD_UID');
  const infraContainerId = set('K8S_POD_INFRA_CONTAINER_ID');
  const ip = set('IP');
  const mac = set('MAC');
  return {
    ...(podNamespace ? { podNamespace } : {}),
    ...(podName ? { podName } : {}),
    ...(podUid ? { podUid } : {}),
    ...(infraContainerId ? { infraContainerId } : {}),
    ...(ip
      ? {
          ips: ip
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        }
      : {}),
    ...(mac ? { mac } : {}),
  };
}

/** Reads and validates the environment for `command`; every missing or malformed variable is named in one error. */
export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const command = env.CNI_COMMAND ?? '';
  if (!COMMANDS.includes(command as Command)) {
    throw new CniError(
      Code.badEnv,
      command === '' ? 'CNI_COMMAND is not set' : `CNI_COMMAND ${JSON.stringify(command)} is not one of ${COMMANDS.join(', ')}`,
    );
  }
  const cmd = command as Command;
  const problems: string[] = [];
  const perContainer = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
  const containerId = env.CNI_CONTAINERID ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  const netns = env.CNI_NETNS ?? '';
  if (perContainer) {
    if (containerId === '') problems.push('CNI_CONTAINERID is not set');
    else if (!CONTAINER_ID.test(containerId))
      problems.push(`CNI_CONTAINERID ${JSON.stringify(containerId)} must match ${CONTAINER_ID.source}`);
    if (ifname === '') problems.push('CNI_IFNAME is not set');
    else if (!validIfname(ifname)) problems.push(`CNI_IFNAME ${JSON.stringify(ifname)} is not a usable interface name (${IFNAME_RULES})`);
    // DEL may come without a netns (the runtime lost it, e.g. after a reboot).
    if (cmd !== 'DEL' && netns === '') problems.push('CNI_NETNS is not set');
  }
  if (problems.length > 0) throw new CniError(Code.badEnv, problems.join('; '));
  if (netns !== '' && cmd !== 'DEL') checkNetns(netns);
  return {
    command: cmd,
    containerId,
    netns,
    ifname,
    args: parseCniArgs(env.CNI_ARGS),
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
}

const NSFS_MAGIC = 0x6e736673;

/**
 * A netns path must be a network namespace (nsfs), and not the host's. This runs inside the agent (cni/plugin/run.ts),
 * so "our own" namespace is the agent's, which is the host's namespace the shim and the runtime run in: the same
 * meaning the check had when it ran in the plugin process. (CNI_NETNS_OVERRIDE=1 in the agent's environment lifts it.)
 */
function checkNetns(netns: string): void {
  let st;
  try {
    st = statSync(netns);
  } catch (e) {
    throw new CniError(
      Code.badEnv,
      `CNI_NETNS ${netns}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file (has the namespace been deleted?)' : (e as Error).message}`,
    );
  }
  let fsType: number | undefined;
  try {
    fsType = statfsSync(netns).type;
  } catch {
    fsType = undefined; // statfs is unavailable on some runtimes; the agent's setns will then be the check.
  }
  if (fsType !== undefined && fsType !== NSFS_MAGIC && !netns.startsWith('/proc/')) {
    throw new CniError(
      Code.badEnv,
      `CNI_NETNS ${netns} is not a network namespace (expected a bind-mounted netns such as /run/netns/NAME or /proc/PID/ns/net)`,
    );
  }
  try {
    const own = statSync('/proc/self/ns/net');
    if (own.ino === st.ino && own.dev === st.dev && process.env.CNI_NETNS_OVERRIDE !== '1') {
      throw new CniError(Code.badEnv, `CNI_NETNS ${netns} is the agent's own (host) network namespace; refusing to configure the host`);
    }
  } catch (e) {
    if (e instanceof CniError) throw e;
  }
}
