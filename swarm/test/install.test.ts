// Installation both ways against a real dockerd: the legacy spec file dockerd discovers, and the managed (v2)
// plugin built from local files, created and enabled with `docker plugin`, then used for a network.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomId } from '../../core/model/ids.js';
import { startDriver } from '../driver/daemon.js';
import { installLegacy, uninstallLegacy } from '../install/legacy.js';
import { buildManagedPlugin } from '../install/managed.js';
import { startDockerd } from './dockerd.js';

test('legacy: a spec file in the plugin directory points dockerd at the driver socket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-legacy-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const name = `mnl${randomBytes(3).toString('hex')}`;
  const socket = join(dir, 'driver.sock');
  const driver = await startDriver({
    socket, store: `file:${join(dir, 'store')}`, workloadSocket: join(dir, 'none.sock'), dockerSocket: '',
    hostId: randomId(), stateDir: dir, scope: 'local',
  });
  t.teardown(() => driver.close());
  // /etc/docker/plugins is where dockerd looks; the unique name keeps concurrent tests apart.
  const spec = await installLegacy({ socket, name });
  t.teardown(async () => { await uninstallLegacy({ name }); });
  t.is(spec, `/etc/docker/plugins/${name}.spec`);
  t.is(await readFile(spec!, 'utf8'), `unix://${socket}\n`);
  t.is(await installLegacy({ socket: `/run/docker/plugins/${name}x.sock`, name: `${name}x` }), undefined, 'no spec needed where dockerd looks');

  const d = await startDockerd();
  t.teardown(() => d.stop());
  const id = await d.docker(['network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.81.0.0/24', 'lnet']);
  const bridge = (await driver.store.list('Bridge')).find((b) => b.value.labels['docker.network.id'] === id);
  t.deepEqual(bridge?.value.subnets.map((s) => [s.cidr, s.gateway]), [['10.81.0.0/24', '10.81.0.1']]);
  t.is(await d.docker(['network', 'inspect', '-f', '{{.Driver}} {{(index .IPAM.Config 0).Subnet}}', 'lnet']), `${name} 10.81.0.0/24`);
  await d.docker(['network', 'rm', 'lnet']);
  t.deepEqual(await driver.store.list('Bridge'), []);
  t.true(await uninstallLegacy({ name }));
  t.false(existsSync(spec!));
});

test('managed: plugin build, docker plugin create + enable, a network through the plugin', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'bees-managed-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const state = join(dir, 'state');
  const run = join(dir, 'run');
  const netns = join(dir, 'netns');
  for (const d of [state, run, netns]) await mkdir(d, { recursive: true });
  const out = await buildManagedPlugin({ out: join(dir, 'plugin'), beesRunDir: run, netnsDir: netns, stateDir: state });
  const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8'));
  t.deepEqual(config.interface.types, ['docker.networkdriver/1.0', 'docker.ipamdriver/1.0']);
  t.is(config.network.type, 'host');
  t.deepEqual(config.linux.capabilities, ['CAP_NET_ADMIN', 'CAP_SYS_ADMIN']);
  t.deepEqual(config.mounts.map((m: { destination: string }) => m.destination), ['/run/bees', '/var/run/docker/netns', '/var/lib/bees']);
  t.true(existsSync(join(out, 'rootfs/bin/busybox')));

  const d = await startDockerd();
  t.teardown(() => d.stop());
  const name = `bees-test/midonet${randomBytes(2).toString('hex')}:latest`;
  await d.docker(['plugin', 'create', name, out]);
  // Outside swarm mode a global-scope driver's networks are refused; the test daemon is standalone.
  await d.docker(['plugin', 'set', name, 'BEES_STORE=file:/var/lib/bees/store']);
  await d.docker(['plugin', 'enable', name]);
  t.teardown(async () => {
    await d.docker(['plugin', 'disable', '-f', name]).catch(() => undefined);
    await d.docker(['plugin', 'rm', '-f', name]).catch(() => undefined);
  });
  t.is(await d.docker(['plugin', 'inspect', '-f', '{{.Enabled}}', name]), 'true');
  // The plugin reports Scope global: outside swarm dockerd refuses its networks, which proves it answered.
  const err = await d.docker(['network', 'create', '-d', name, '--ipam-driver', name, 'pnet']).catch((e: Error) => e.message);
  t.regex(err, /swarm/);
  t.true(existsSync(join(state, 'host_uuid')), 'the plugin ran with the state directory mounted');
});
