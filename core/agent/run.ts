// `bees agent`: run the per-host agent in the foreground until SIGINT/SIGTERM.
import { parseArgs } from 'node:util';
import { dockerPluginConfigOf, startDockerPlugin } from '../../swarm/driver/daemon.js';
import { DEFAULT_TUNNEL_PORT } from '../model/defaults.js';
import { serverSecrets, TOKEN_ON_ARGV } from '../api/credentials.js';
import { Agent, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR, type AgentOptions } from './agent.js';

export const AGENT_USAGE = `bees agent --store URL [--host-id UUID] [--host-name NAME] [--underlay-ip IP] [--tunnel-port ${DEFAULT_TUNNEL_PORT}]
           [--listen unix:PATH|tcp://HOST:PORT] [--token-file FILE] [--read-token-file FILE]
           [--tls-cert FILE --tls-key FILE] [--workload-socket PATH]
           [--state-dir DIR] [--run-dir DIR] [--router-ns-prefix P]
           [--docker-plugin [unix:PATH]] [--docker-scope local|global] [--docker-host unix://PATH]`;

/** `--docker-plugin` may come without a value (then: the socket where dockerd discovers legacy plugins). */
function withOptionalValues(argv: string[]): string[] {
  return argv.flatMap((a, i) => (a === '--docker-plugin' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--')) ? [a, ''] : [a]));
}

export function agentOptionsFrom(argv: string[]): AgentOptions {
  const { values } = parseArgs({
    args: withOptionalValues(argv),
    strict: true,
    allowPositionals: false,
    options: {
      store: { type: 'string' },
      'host-id': { type: 'string' },
      'host-name': { type: 'string' },
      'underlay-ip': { type: 'string' },
      'tunnel-port': { type: 'string' },
      listen: { type: 'string' },
      // Declared only to refuse it with a reason instead of "unknown option".
      token: { type: 'string' },
      'token-file': { type: 'string' },
      'read-token-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'workload-socket': { type: 'string' },
      'state-dir': { type: 'string' },
      'run-dir': { type: 'string' },
      'router-ns-prefix': { type: 'string' },
      'docker-plugin': { type: 'string' },
      'docker-scope': { type: 'string' },
      'docker-host': { type: 'string' },
    },
  });
  if (values.token !== undefined) throw new Error(TOKEN_ON_ARGV);
  const secrets = serverSecrets({ tokenFile: values['token-file'], readTokenFile: values['read-token-file'], tlsCert: values['tls-cert'], tlsKey: values['tls-key'] }, process.env);
  const stateDir = values['state-dir'] ?? DEFAULT_STATE_DIR;
  const store = values.store ?? process.env.BEES_STORE ?? `file:${stateDir}/store`;
  let tunnelPort: number | undefined;
  if (values['tunnel-port'] !== undefined) {
    tunnelPort = Number(values['tunnel-port']);
    if (!Number.isInteger(tunnelPort) || tunnelPort < 1 || tunnelPort > 65535) throw new Error(`--tunnel-port must be a port number, got '${values['tunnel-port']}'`);
  }
  const runDir = values['run-dir'] ?? DEFAULT_RUN_DIR;
  // The Docker libnetwork plugin, hosted in this process (swarm/driver/daemon.ts).
  const docker = dockerPluginConfigOf({ plugin: values['docker-plugin'], scope: values['docker-scope'], host: values['docker-host'] }, runDir);
  return {
    store,
    stateDir,
    runDir,
    ...(docker ? { extraServices: [(agent) => startDockerPlugin(agent, docker)] } : {}),
    ...(values['host-id'] ? { hostId: values['host-id'] } : {}),
    ...(values['host-name'] ? { hostName: values['host-name'] } : {}),
    ...(values['underlay-ip'] ? { underlayIp: values['underlay-ip'] } : {}),
    ...(tunnelPort ? { tunnelPort } : {}),
    ...(values.listen ? { listen: values.listen } : {}),
    ...secrets,
    ...(values['workload-socket'] ? { workloadSocket: values['workload-socket'] } : {}),
    ...(values['router-ns-prefix'] ? { routerNsPrefix: values['router-ns-prefix'] } : {}),
  };
}

/** Start an agent and keep it running; resolves when it has stopped after a signal. */
export async function runAgentUntilSignal(opts: AgentOptions, onReady?: (agent: Agent) => Promise<void> | void): Promise<void> {
  const agent = new Agent(opts);
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`bees-agent: ${sig}, stopping (the datapath stays up)\n`);
      void agent.stop().finally(resolve);
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
  await agent.start();
  await onReady?.(agent);
  await stopped;
}
