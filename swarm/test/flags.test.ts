// The agent's --docker-* flags: where the plugin listens, its scope, the engine socket; bad values are refused
// with a message naming the flag.
import test from 'ava';
import { join, relative } from 'node:path';
import { agentOptionsFrom } from '../../app/agent-options.js';
import { AGENT_PLUGIN_SOCKET_DIR, AGENT_PLUGIN_SOCKET_NAME } from '../driver/plugin-name.js';
import { pluginConfig } from '../install/managed.js';
import { dockerPluginConfigOf } from '../driver/daemon.js';
import { dockerPluginBuildCommand } from '../commands.js';
import type { Io } from '../../core/cli/command.js';

test('docker plugin flags', (t) => {
  t.is(dockerPluginConfigOf({}, '/run/bees'), undefined);
  t.deepEqual(dockerPluginConfigOf({ plugin: '' }, '/run/bees'), {});
  t.deepEqual(dockerPluginConfigOf({ plugin: 'unix:docker-plugin.sock', scope: 'global', host: 'unix://d.sock' }, '/r'), {
    socket: '/r/docker-plugin.sock',
    scope: 'global',
    dockerSocket: '/r/d.sock',
  });
  t.deepEqual(dockerPluginConfigOf({ plugin: 'unix:/run/docker/plugins/x.sock', host: 'unix:///var/run/docker.sock' }, '/r'), {
    socket: '/run/docker/plugins/x.sock',
    dockerSocket: '/var/run/docker.sock',
  });
  t.throws(() => dockerPluginConfigOf({ plugin: 'tcp://1.2.3.4:80' }, '/r'), { message: /--docker-plugin takes unix:PATH/ });
  t.throws(() => dockerPluginConfigOf({ plugin: 'unix:' }, '/r'), { message: /--docker-plugin/ });
  t.throws(() => dockerPluginConfigOf({ plugin: '', scope: 'swarm' }, '/r'), { message: /--docker-scope must be local or global/ });
  t.throws(() => dockerPluginConfigOf({ plugin: '', host: '/var/run/docker.sock' }, '/r'), {
    message: /--docker-host takes unix:\/\/PATH/,
  });
  t.throws(() => dockerPluginConfigOf({ scope: 'local' }, '/r'), { message: /need --docker-plugin/ });
});

test('bees agent takes --docker-plugin with or without a value', (t) => {
  t.is(agentOptionsFrom(['--store', 'file:/tmp/x']).extraServices, undefined);
  t.is(agentOptionsFrom(['--docker-plugin']).extraServices?.length, 1);
  t.is(agentOptionsFrom(['--docker-plugin', '--docker-scope', 'global']).extraServices?.length, 1);
  t.is(agentOptionsFrom(['--docker-plugin', 'unix:p.sock', '--run-dir', '/tmp/r']).extraServices?.length, 1);
  t.throws(() => agentOptionsFrom(['--docker-scope', 'global']), { message: /need --docker-plugin/ });
});

test('bees docker plugin build: --docker-host needs --install and takes unix://PATH, refused before building', async (t) => {
  const io: Io = { out: () => undefined, err: () => undefined, env: {} };
  await t.throwsAsync(dockerPluginBuildCommand.run(['--out', '/nonexistent/p', '--docker-host', 'unix:///d.sock'], io), {
    message: /--docker-host needs --install/,
  });
  await t.throwsAsync(dockerPluginBuildCommand.run(['--out', '/nonexistent/p', '--install', 'x', '--docker-host', '/d.sock'], io), {
    message: /--docker-host takes unix:\/\/PATH/,
  });
});

test('the managed plugin mounts the directory of its agent socket only, not the run directory', (t) => {
  const config = pluginConfig({ out: '/x', beesRunDir: '/run/bees' }) as {
    mounts: { source: string; destination: string }[];
    env: { name: string; value: string }[];
  };
  t.deepEqual(
    config.mounts.map((m) => m.source),
    [`/run/bees/${AGENT_PLUGIN_SOCKET_DIR}`],
  );
  // The proxy's socket, seen through the mount, is the one the agent serves at AGENT_PLUGIN_SOCKET_NAME.
  const inside = config.env.find((e) => e.name === 'BEES_AGENT_SOCKET')!.value;
  const mount = config.mounts[0]!;
  t.is(join(mount.source, relative(mount.destination, inside)), join('/run/bees', AGENT_PLUGIN_SOCKET_NAME));
});
