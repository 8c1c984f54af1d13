// Installation both ways against a real dockerd and a real agent hosting the plugin: the legacy spec file dockerd
// discovers, and the managed (v2) plugin (a stateless proxy to the agent's socket) built from local files, created
// and enabled through the engine API, then used for a network whose container reaches its gateway.
import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_PLUGIN_SOCKET_DIR, AGENT_PLUGIN_SOCKET_NAME } from '../driver/plugin-name.js';
import { installLegacy, uninstallLegacy } from '../install/legacy.js';
import { buildManagedPlugin, RUN_MOUNT } from '../install/managed.js';
import {
  disablePlugin,
  dockerClient,
  enablePlugin,
  installManagedPlugin,
  pluginEnabled,
  removePlugin,
} from '../install/plugin-lifecycle.js';
import { BUSYBOX_IMAGE } from './dockerd.js';
import { eventually, startSingleHost } from './single-host.js';

/** The fields of the managed plugin's config.json these tests check. */
interface ManagedPluginConfig {
  interface: { types: string[] };
  linux: { capabilities: string[] };
  mounts: { destination: string }[];
}

test('legacy: a spec file in the plugin directory points dockerd at the agent plugin socket', async (t) => {
  const env = await startSingleHost({ socket: 'legacy-plugin.sock' });
  t.teardown(() => env.close());
  const { name, socket, dockerd: d, store } = env;
  // /etc/docker/plugins is where dockerd looks; the unique name keeps concurrent tests apart.
  const spec = await installLegacy({ socket, name });
  t.teardown(async () => {
    await uninstallLegacy({ name });
  });
  t.is(spec, `/etc/docker/plugins/${name}.spec`);
  t.is(await readFile(spec!, 'utf8'), `unix://${socket}\n`);
  t.is(
    await installLegacy({ socket: `/run/docker/plugins/${name}x.sock`, name: `${name}x` }),
    undefined,
    'no spec needed where dockerd looks',
  );

  const id = await d.docker(['network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.81.0.0/24', 'lnet']);
  const bridge = (await store.list('Bridge')).find((b) => b.value.labels['docker.network.id'] === id);
  t.deepEqual(
    bridge?.value.subnets.map((s) => [s.cidr, s.gateway]),
    [['10.81.0.0/24', '10.81.0.1']],
  );
  t.is(await d.docker(['network', 'inspect', '-f', '{{.Driver}} {{(index .IPAM.Config 0).Subnet}}', 'lnet']), `${name} 10.81.0.0/24`);
  await d.docker(['network', 'rm', 'lnet']);
  t.deepEqual(await store.list('Bridge'), []);
  t.true(await uninstallLegacy({ name }));
  t.false(existsSync(spec!));
});

test('managed: plugin build, docker plugin create + enable, a container on a network through the proxy', async (t) => {
  const env = await startSingleHost({ socket: AGENT_PLUGIN_SOCKET_NAME });
  t.teardown(() => env.close());
  const { host, dockerd: d, store } = env;
  const dir = await mkdtemp(join(tmpdir(), 'bees-managed-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = await buildManagedPlugin({ out: join(dir, 'plugin') });
  const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as ManagedPluginConfig;
  t.deepEqual(config.interface.types, ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0']);
  t.deepEqual(config.linux.capabilities, [], 'the proxy needs no privilege');
  t.deepEqual(
    config.mounts.map((m: { destination: string }) => m.destination),
    ['/run/bees'],
  );

  // Installed through the engine API (dockerode), as `bees docker plugin build --install` does.
  const name = `bees-test/midonet${env.name}:latest`;
  const api = dockerClient(d.host);
  t.teardown(async () => {
    await disablePlugin(api, name, true).catch(() => undefined);
    await removePlugin(api, name);
  });
  // Each test host has its own agent run directory; on a real host the default /run/bees is right.
  await installManagedPlugin(api, { name, dir: out, runDir: host.runDir });
  t.true(await pluginEnabled(api, name));
  t.is(
    await d.docker([
      'plugin',
      'inspect',
      '-f',
      `{{.Enabled}} {{range .Settings.Mounts}}{{if eq .Name "${RUN_MOUNT}"}}{{.Source}}{{end}}{{end}}`,
      name,
    ]),
    `true ${join(host.runDir, AGENT_PLUGIN_SOCKET_DIR)}`,
    'the CLI sees what the API made',
  );
  await t.throwsAsync(installManagedPlugin(api, { name, dir: out }), { message: /^create plugin .* from .*: .*already exists/ });
  const id = await d.docker(['network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.82.0.0/24', 'pnet']);
  t.truthy((await store.list('Bridge')).find((b) => b.value.labels['docker.network.id'] === id));
  await d.docker(['run', '-d', '--name', 'pc', '--network', 'pnet', BUSYBOX_IMAGE, 'sleep', '600']);
  t.true(
    await eventually(
      async () =>
        d.docker(['exec', 'pc', 'ping', '-c', '1', '-W', '2', '10.82.0.1']).then(
          () => true,
          () => undefined,
        ),
      15_000,
      'container pings its gateway',
    ),
  );
  const ipOf = (c: string) => d.docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c]);
  const ip = await ipOf('pc');

  // The plugin restarts under a running container: it held nothing, so nothing is lost or made twice.
  await t.throwsAsync(disablePlugin(api, name), { message: /in use/ }, 'a plugin in use is only disabled by force');
  await disablePlugin(api, name, true);
  t.false(await pluginEnabled(api, name));
  await enablePlugin(api, name);
  t.is(await ipOf('pc'), ip);
  t.true(
    await d.docker(['exec', 'pc', 'ping', '-c', '1', '-W', '2', '10.82.0.1']).then(
      () => true,
      () => false,
    ),
    'the datapath never depended on the plugin',
  );
  await d.docker(['run', '-d', '--name', 'pd', '--network', 'pnet', BUSYBOX_IMAGE, 'sleep', '600']);
  t.true(
    await eventually(
      async () =>
        d.docker(['exec', 'pd', 'ping', '-c', '1', '-W', '2', ip]).then(
          () => true,
          () => undefined,
        ),
      15_000,
      'a new container reaches the old one',
    ),
  );
  const dockerPorts = async () => (await store.list('Port')).filter((p) => p.value.owner?.orchestrator === 'docker').length;
  t.is(await eventually(async () => ((await dockerPorts()) === 2 ? 2 : undefined), 60_000, 'two ports').catch(dockerPorts), 2);

  await d.docker(['rm', '-f', 'pc', 'pd']);
  await d.docker(['network', 'rm', 'pnet']);
  t.deepEqual(await store.list('Bridge'), []);
  await disablePlugin(api, name);
  await removePlugin(api, name);
  t.is(await d.docker(['plugin', 'ls', '-q']), '', 'removed');
  await removePlugin(api, name);
});
