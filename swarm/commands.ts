// CLI commands of the Docker adapter, for the registry in core/cli/commands.ts. The plugin itself runs inside
// the agent (`bees agent --docker-plugin …`, `bees up`); these commands install it:
//   bees docker install [--socket P] [--spec-dir D] [--name N] [--uninstall]
//   bees docker plugin build --out DIR [--run-dir DIR] [--install NAME [--docker-host unix://PATH]]
import { parseArgs } from 'node:util';
import { CliError, type Command, type CommandModule } from '../core/cli/command.js';
import { installLegacy, uninstallLegacy } from './install/legacy.js';
import { buildManagedPlugin } from './install/managed.js';
import { DEFAULT_DOCKER_SOCKET } from './driver/plugin-name.js';

function fail(message: string, usage: string): never {
  throw new CliError(`${message}\nusage: ${usage.split('\n')[0]!}`, 2);
}

const INSTALL_USAGE = 'bees docker install [--socket PATH] [--spec-dir DIR] [--name NAME] [--uninstall]';
export const dockerInstallCommand: Command = {
  name: 'docker install',
  summary: 'Make dockerd discover the driver as a legacy plugin',
  usage: INSTALL_USAGE,
  async run(argv, io) {
    let values;
    try {
      ({ values } = parseArgs({
        args: argv,
        strict: true,
        options: { socket: { type: 'string' }, 'spec-dir': { type: 'string' }, name: { type: 'string' }, uninstall: { type: 'boolean' } },
      }));
    } catch (err) {
      return fail((err as Error).message, INSTALL_USAGE);
    }
    const opts = {
      ...(values.socket ? { socket: values.socket } : {}),
      ...(values['spec-dir'] ? { specDir: values['spec-dir'] } : {}),
      ...(values.name ? { name: values.name } : {}),
    };
    if (values.uninstall) {
      io.out((await uninstallLegacy(opts)) ? 'removed\n' : 'nothing to remove\n');
      return 0;
    }
    const file = await installLegacy(opts);
    io.out(file ? `wrote ${file}\n` : 'the driver socket is where dockerd looks already; nothing to write\n');
    return 0;
  },
};

const BUILD_USAGE = `bees docker plugin build --out DIR [--run-dir DIR] [--install NAME [--docker-host unix://PATH]]
  --run-dir DIR       the agent's run directory (default /run/bees); the agent must serve unix:docker-plugin/agent.sock there
  --install NAME      also create and enable the plugin as NAME in this host's dockerd (engine API, no docker CLI)
  --docker-host HOST  the daemon's socket (default unix://${DEFAULT_DOCKER_SOCKET})
  without --install, on every node: docker plugin create midonet DIR &&
    docker plugin set midonet bees-run.source=/run/bees/docker-plugin && docker plugin enable midonet`;
export const dockerPluginBuildCommand: Command = {
  name: 'docker plugin build',
  summary: 'Assemble a managed (v2) Docker plugin directory from local files',
  usage: BUILD_USAGE,
  async run(argv, io) {
    let values;
    try {
      ({ values } = parseArgs({
        args: argv,
        strict: true,
        options: { out: { type: 'string' }, 'run-dir': { type: 'string' }, install: { type: 'string' }, 'docker-host': { type: 'string' } },
      }));
    } catch (err) {
      return fail((err as Error).message, BUILD_USAGE);
    }
    if (!values.out) return fail('--out is required', BUILD_USAGE);
    const host = values['docker-host'];
    if (host !== undefined && !values.install) return fail('--docker-host needs --install', BUILD_USAGE);
    if (host !== undefined && !/^unix:\/\/./.test(host)) return fail(`--docker-host takes unix://PATH, got '${host}'`, BUILD_USAGE);
    const dir = await buildManagedPlugin({ out: values.out, ...(values['run-dir'] ? { beesRunDir: values['run-dir'] } : {}) });
    io.out(`${dir}\n`);
    if (values.install) {
      // dockerode (and what it brings: grpc, protobufjs, ssh2) only when the daemon is really called: every bees
      // process loads this module to list its commands, the agent included.
      const { dockerClient, installManagedPlugin } = await import('./install/plugin-lifecycle.js');
      await installManagedPlugin(dockerClient(host), { name: values.install, dir });
      io.out(`plugin ${values.install} enabled\n`);
    }
    return 0;
  },
};

export const commands: Command[] = [dockerInstallCommand, dockerPluginBuildCommand];
export default { commands } satisfies CommandModule;
