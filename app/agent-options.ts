// `bees agent`'s flags as the agent's options: core's flags (core/agent/run.ts), the CNI shim's route always, and
// the Docker plugin (swarm/driver/daemon.ts) when `--docker-plugin` asks for it.
import { parseArgs } from 'node:util';
import type { AgentOptions } from '../core/agent/agent.js';
import { AGENT_FLAGS, agentOptionsOf } from '../core/agent/run.js';
import { cniRoute } from '../cni/plugin/route.js';
import { dockerPluginConfigOf, startDockerPlugin } from '../swarm/driver/daemon.js';

const DOCKER_FLAGS = {
  'docker-plugin': { type: 'string' },
  'docker-scope': { type: 'string' },
  'docker-host': { type: 'string' },
} as const;

/** `--docker-plugin` may come without a value (then: the socket where dockerd discovers legacy plugins). */
function withOptionalValues(argv: string[]): string[] {
  return argv.flatMap((a, i) => (a === '--docker-plugin' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--')) ? [a, ''] : [a]));
}

export function agentOptionsFrom(argv: string[]): AgentOptions {
  const { values } = parseArgs({
    args: withOptionalValues(argv),
    strict: true,
    allowPositionals: false,
    options: { ...AGENT_FLAGS, ...DOCKER_FLAGS },
  });
  const opts = agentOptionsOf(values);
  const docker = dockerPluginConfigOf(
    { plugin: values['docker-plugin'], scope: values['docker-scope'], host: values['docker-host'] },
    opts.runDir,
  );
  return { ...opts, workloadRoutes: [cniRoute], ...(docker ? { extraServices: [(agent) => startDockerPlugin(agent, docker)] } : {}) };
}
