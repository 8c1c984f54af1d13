// A managed (v2) plugin's life in dockerd, through the engine API (dockerode): create it from the directory
// `bees docker plugin build` made, point its run-directory mount at the agent's, enable, disable, remove. What
// `docker plugin create/set/enable/disable/rm` do, without needing the docker CLI on the host.
import { join } from 'node:path';
import Docker from 'dockerode';
import { pack } from 'tar-fs';
import { AGENT_PLUGIN_SOCKET_DIR, DEFAULT_DOCKER_SOCKET } from '../driver/plugin-name.js';
import { RUN_MOUNT } from './managed.js';

export { DEFAULT_DOCKER_SOCKET };

/** An engine API client on a unix socket: a path, or `unix://PATH` as `docker -H` takes it. */
export function dockerClient(host = DEFAULT_DOCKER_SOCKET): Docker {
  return new Docker({ socketPath: host.replace(/^unix:\/\//, '') });
}

type DialOptions = Parameters<Docker['modem']['dial']>[0];

/**
 * A raw engine API call through dockerode's own transport, for the two plugin calls dockerode does not expose
 * faithfully: its createPlugin sends JSON where the daemon expects the plugin's tar context, and its disable
 * sends `force` in the body where the daemon reads it from the query.
 */
function dial(docker: Docker, opts: DialOptions): Promise<void> {
  return new Promise((resolve, reject) => docker.modem.dial(opts, (err) => (err ? reject(err) : resolve())));
}

/** A handle on an installed plugin (the second argument names a remote to pull from: none here). */
const pluginOf = (docker: Docker, name: string): Docker.Plugin => docker.getPlugin(name, undefined);

/** The daemon's own words for a failed call (dockerode puts them in `json.message`), prefixed with what we did. */
function explain(what: string, e: unknown): Error {
  const err = e as { json?: { message?: string }; message?: string };
  return new Error(`${what}: ${err.json?.message ?? err.message ?? String(e)}`);
}

export interface ManagedInstall {
  /** The plugin's reference, e.g. `midonet` or `example/midonet:latest`. */
  name: string;
  /** A directory holding config.json and rootfs/ (what buildManagedPlugin made). */
  dir: string;
  /** The agent's run directory on this host, when not the default the plugin was built with. */
  runDir?: string;
}

/**
 * `docker plugin create NAME DIR`, `docker plugin set NAME bees-run.source=RUNDIR/docker-plugin`, `docker plugin enable
 * NAME`: the plugin sees only the directory of the agent's plugin socket, not the rest of the run directory.
 */
export async function installManagedPlugin(docker: Docker, p: ManagedInstall): Promise<void> {
  const ctx = pack(p.dir);
  try {
    await dial(docker, {
      path: '/plugins/create?',
      method: 'POST',
      options: { _query: { name: p.name } },
      file: ctx,
      statusCodes: { 200: true, 204: true, 500: 'server error' },
    });
  } catch (e) {
    throw explain(`create plugin ${p.name} from ${p.dir}`, e);
  } finally {
    ctx.destroy();
  }
  const plugin = pluginOf(docker, p.name);
  if (p.runDir) {
    await plugin.configure({ _body: [`${RUN_MOUNT}.source=${join(p.runDir, AGENT_PLUGIN_SOCKET_DIR)}`] }).catch((e: unknown) => {
      throw explain(`set ${RUN_MOUNT}.source of plugin ${p.name}`, e);
    });
  }
  await enablePlugin(docker, p.name);
}

export async function enablePlugin(docker: Docker, name: string): Promise<void> {
  await pluginOf(docker, name)
    .enable({ timeout: 30 })
    .catch((e: unknown) => {
      throw explain(`enable plugin ${name}`, e);
    });
}

/** `docker plugin disable [-f] NAME`: with `force`, even while networks use it. */
export async function disablePlugin(docker: Docker, name: string, force = false): Promise<void> {
  await dial(docker, {
    path: `/plugins/${name}/disable?`,
    method: 'POST',
    options: { _query: { force } },
    statusCodes: { 200: true, 404: 'plugin not installed', 500: 'server error' },
  }).catch((e: unknown) => {
    throw explain(`disable plugin ${name}`, e);
  });
}

/** Whether the plugin is installed and enabled. */
export async function pluginEnabled(docker: Docker, name: string): Promise<boolean> {
  const info = await pluginOf(docker, name)
    .inspect()
    .catch(() => undefined);
  return info?.Enabled === true;
}

/** `docker plugin rm -f NAME`; nothing installed is nothing to do. */
export async function removePlugin(docker: Docker, name: string): Promise<void> {
  await pluginOf(docker, name)
    .remove({ force: true })
    .catch((e: unknown) => {
      if ((e as { statusCode?: number }).statusCode === 404) return;
      throw explain(`remove plugin ${name}`, e);
    });
}
