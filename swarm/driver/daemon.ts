// Assembles the Docker plugin in one visible place, inside the agent process: backend, IPAM driver, network
// driver, HTTP server. The agent starts it when run with `--docker-plugin` (composed in app/agent.ts); it listens
// with core's safe listener (a live server's socket is never taken over).
import { isAbsolute, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { listenUnix } from '../../core/api/listen.js';
import { DEFAULT_TENANT } from '../../core/topology/service.js';
import { AgentBackend, type AgentParts } from './agent-backend.js';
import { IpamDriver } from './ipam-driver.js';
import { NetworkDriver } from './network-driver.js';
import { DEFAULT_PLUGIN_SOCKET } from './plugin-name.js';
import { buildServer } from './server.js';

export interface DockerPluginConfig {
  /** Where the plugin listens. */
  socket: string;
  /** libnetwork scope: a standalone dockerd refuses networks of global-scope drivers, swarm needs global. */
  scope: 'local' | 'global';
  /** Engine API socket, to record network names on bridges; "" to skip. */
  dockerSocket: string;
  tenant: string;
  router: string;
  log: boolean;
}

export const PLUGIN_DEFAULTS: DockerPluginConfig = {
  socket: DEFAULT_PLUGIN_SOCKET,
  scope: 'local',
  dockerSocket: '/var/run/docker.sock',
  tenant: DEFAULT_TENANT,
  router: 'default',
  log: false,
};

export interface RunningPlugin {
  app: FastifyInstance;
  network: NetworkDriver;
  ipam: IpamDriver;
  socket: string;
  close(): Promise<void>;
  /** For `bees status` (core/agent/agent-status.ts). */
  describe(): { name: string; ok: boolean; detail: string };
}

export async function startDockerPlugin(agent: AgentParts, partial: Partial<DockerPluginConfig> = {}): Promise<RunningPlugin> {
  const config: DockerPluginConfig = { ...PLUGIN_DEFAULTS, ...partial };
  const backend = new AgentBackend(agent);
  const ipam = new IpamDriver(backend, {
    tenant: config.tenant,
    v4Pool: { base: '10.200.0.0/16', prefix: 24 },
    v6Pool: { base: 'fd00:bee5::/48', prefix: 64 },
    swarm: config.scope === 'global',
  });
  const network = new NetworkDriver(
    backend,
    {
      tenant: config.tenant,
      router: config.router,
      scope: config.scope,
      ...(config.dockerSocket ? { dockerSocket: config.dockerSocket } : {}),
    },
    ipam,
  );
  const app = buildServer({ network, ipam, log: config.log });
  await listenUnix(app, config.socket);
  return {
    app,
    network,
    ipam,
    socket: config.socket,
    describe: () => ({
      name: 'docker plugin',
      ok: app.server.listening,
      detail: `unix:${config.socket} (${config.scope} scope)${app.server.listening ? '' : ': not listening'}`,
    }),
    async close() {
      await network.close();
      await app.close();
    },
  };
}

/**
 * The agent's `--docker-*` flags: `--docker-plugin [unix:PATH]` (a relative PATH is inside the agent's run
 * directory; no PATH: where dockerd discovers legacy plugins), `--docker-scope local|global` (default local),
 * `--docker-host unix://PATH` (the engine API, for network names; relative: in the run directory). Undefined when
 * the plugin is not asked for.
 */
export function dockerPluginConfigOf(
  flags: { plugin?: string | undefined; scope?: string | undefined; host?: string | undefined },
  runDir: string,
): Partial<DockerPluginConfig> | undefined {
  if (flags.plugin === undefined) {
    if (flags.scope !== undefined || flags.host !== undefined) throw new Error('--docker-scope and --docker-host need --docker-plugin');
    return undefined;
  }
  const out: Partial<DockerPluginConfig> = {};
  if (flags.plugin !== '') {
    if (!flags.plugin.startsWith('unix:') || flags.plugin.length <= 5)
      throw new Error(`--docker-plugin takes unix:PATH, got '${flags.plugin}'`);
    const path = flags.plugin.slice(5);
    out.socket = isAbsolute(path) ? path : join(runDir, path);
  }
  if (flags.scope !== undefined) {
    if (flags.scope !== 'local' && flags.scope !== 'global')
      throw new Error(`--docker-scope must be local or global, got '${flags.scope}'`);
    out.scope = flags.scope;
  }
  if (flags.host !== undefined) {
    if (!/^unix:\/\/./.test(flags.host)) throw new Error(`--docker-host takes unix://PATH, got '${flags.host}'`);
    const path = flags.host.slice('unix://'.length);
    out.dockerSocket = isAbsolute(path) ? path : join(runDir, path);
  }
  return out;
}
