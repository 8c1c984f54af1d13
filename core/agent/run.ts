// `bees agent`: the agent's own flags, and running it in the foreground until SIGINT/SIGTERM. The adapters' flags
// and what they add to the agent (the CNI route, the Docker plugin) are composed in app/agent-options.ts.
import type { ParseArgsConfig } from 'node:util';
import { readTokenFile, serverSecrets, TOKEN_ON_ARGV } from '../api/credentials.js';
import { parseMetricsListen } from './metrics-listener.js';
import { Agent, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, type AgentOptions } from './agent.js';

/** The agent's own flags, for parseArgs. */
export const AGENT_FLAGS = {
  store: { type: 'string' },
  'host-id': { type: 'string' },
  'host-name': { type: 'string' },
  'underlay-ip': { type: 'string' },
  'tunnel-port': { type: 'string' },
  listen: { type: 'string' },
  // Declared only to refuse it with a reason instead of "unknown option": tokens never come from argv.
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'read-token-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'workload-socket': { type: 'string' },
  'state-dir': { type: 'string' },
  'run-dir': { type: 'string' },
  'router-ns-prefix': { type: 'string' },
  // Off by default: logging accepted connections costs a conntrack match and a log rule per accept rule.
  'flow-log': { type: 'boolean' },
  'log-format': { type: 'string' },
  // Seconds a network's bridge and router stay on a host after its last local port left (default 60).
  'network-linger': { type: 'string' },
  // GET /metrics alone on a TCP address, for Prometheus; with a bearer token read from a file.
  'metrics-listen': { type: 'string' },
  'metrics-token-file': { type: 'string' },
  // The tc-BPF fast path (core/datapath/README.md, "The fast path"): on (default) or off; also $BEES_FAST_PATH.
  'fast-path': { type: 'string' },
} as const satisfies NonNullable<ParseArgsConfig['options']>;

export type AgentFlagValues = {
  [K in keyof typeof AGENT_FLAGS]?: (typeof AGENT_FLAGS)[K]['type'] extends 'boolean' ? boolean : string;
};

/** AgentOptions from the parsed flags (the store from $BEES_STORE, else the state directory's file store). */
export function agentOptionsOf(values: AgentFlagValues): AgentOptions & { runDir: string } {
  if (values.token !== undefined) throw new Error(TOKEN_ON_ARGV);
  const secrets = serverSecrets(
    { tokenFile: values['token-file'], readTokenFile: values['read-token-file'], tlsCert: values['tls-cert'], tlsKey: values['tls-key'] },
    process.env,
  );
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR;
  const store = values.store ?? process.env.BEES_STORE ?? `file:${stateDir}/store`;
  let tunnelPort: number | undefined;
  if (values['tunnel-port'] !== undefined) {
    tunnelPort = Number(values['tunnel-port']);
    if (!Number.isInteger(tunnelPort) || tunnelPort < 1 || tunnelPort > 65535)
      throw new Error(`--tunnel-port must be a port number, got '${values['tunnel-port']}'`);
  }
  let lingerMs: number | undefined;
  if (values['network-linger'] !== undefined) {
    const s = Number(values['network-linger']);
    if (!Number.isFinite(s) || s < 0 || s > 86_400)
      throw new Error(`--network-linger must be seconds (0-86400), got '${values['network-linger']}'`);
    lingerMs = Math.round(s * 1000);
  }
  const runDir = values['run-dir'] ?? DEFAULT_RUN_DIR;
  const fastPath = values['fast-path'] ?? process.env.BEES_FAST_PATH ?? 'on';
  if (fastPath !== 'on' && fastPath !== 'off') throw new Error(`--fast-path must be on or off, got '${fastPath}'`);
  if (values['metrics-listen'] !== undefined) parseMetricsListen(values['metrics-listen']);
  if (values['metrics-token-file'] !== undefined && values['metrics-listen'] === undefined)
    throw new Error('--metrics-token-file goes with --metrics-listen ADDR:PORT');
  const metricsToken =
    values['metrics-token-file'] !== undefined ? readTokenFile(values['metrics-token-file'], 'metrics token file') : undefined;
  return {
    store,
    stateDir,
    runDir,
    ...(values['host-id'] ? { hostId: values['host-id'] } : {}),
    ...(values['host-name'] ? { hostName: values['host-name'] } : {}),
    ...(values['underlay-ip'] ? { underlayIp: values['underlay-ip'] } : {}),
    ...(tunnelPort ? { tunnelPort } : {}),
    ...(values.listen ? { listen: values.listen } : {}),
    ...secrets,
    ...(values['workload-socket'] ? { workloadSocket: values['workload-socket'] } : {}),
    ...(values['router-ns-prefix'] ? { routerNsPrefix: values['router-ns-prefix'] } : {}),
    ...(values['flow-log'] ? { flowLog: true } : {}),
    ...(values['log-format'] !== undefined ? { logFormat: logFormat(values['log-format']) } : {}),
    ...(lingerMs !== undefined ? { networkLingerMs: lingerMs } : {}),
    ...(values['metrics-listen'] ? { metricsListen: values['metrics-listen'] } : {}),
    ...(metricsToken ? { metricsToken } : {}),
    ...(fastPath === 'off' ? { fastPath: false } : {}),
  };
}

/**
 * Start an agent and keep it running; resolves when it has stopped after a signal. `onReady` gets an AbortSignal
 * that fires on SIGINT/SIGTERM: the agent is stopped only once `onReady` has settled, so whatever it made (the
 * `bees up` demo's workloads) is cleaned up through a live agent instead of being left behind.
 */
export async function runAgentUntilSignal(
  opts: AgentOptions,
  onReady?: (agent: Agent, signal: AbortSignal) => Promise<void> | void,
): Promise<void> {
  const agent = new Agent(opts);
  const interrupted = new AbortController();
  let ready: Promise<void> = Promise.resolve();
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      interrupted.abort(new Error(sig));
      process.stderr.write(`bees-agent: ${sig}, stopping (the datapath stays up)\n`);
      void ready
        .catch(() => undefined)
        .then(() => agent.stop())
        .finally(resolve);
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
  await agent.start();
  if (!interrupted.signal.aborted) ready = Promise.resolve(onReady?.(agent, interrupted.signal));
  await ready;
  await stopped;
}

function logFormat(v: string): 'text' | 'json' {
  if (v !== 'text' && v !== 'json') throw new Error(`--log-format must be text or json, got '${v}'`);
  return v;
}
