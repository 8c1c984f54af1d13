// End to end on one host: a real agent serving the plugin (harness host namespace, store in real ZooKeeper) and a
// dockerd of the test's own in the same namespace. `docker network create -d <plugin> --ipam-driver <plugin>`,
// containers reach each other, the gateway and the outside, `-p` publishes a port reachable from the host and from
// another machine of the underlay; the agent and dockerd restart under running containers; `docker network rm`
// leaves nothing behind.
import test from 'ava';
import { execArgv } from '../../e2e/harness/index.js';
import { bridgeIdOf } from '../driver/network-options.js';
import { BUSYBOX_IMAGE } from './dockerd.js';
import { eventually, startSingleHost } from './single-host.js';

test('docker network create / run / ping / publish / restarts / rm through the midonet plugin', async (t) => {
  const env = await startSingleHost();
  t.teardown(() => env.close());
  const { cluster, host, dockerd, name, store } = env;
  const { harness } = cluster;

  const netId = await dockerd.docker([
    'network',
    'create',
    '-d',
    name,
    '--ipam-driver',
    name,
    '--subnet',
    '10.77.0.0/24',
    '-o',
    'mtu=1400',
    'net1',
  ]);
  const bridgeId = bridgeIdOf(netId);
  const named = await eventually(
    async () => {
      const b = (await store.get('Bridge', bridgeId))?.value;
      return b?.labels['docker.network.name'] === 'net1' ? b : undefined;
    },
    10_000,
    'bridge labelled with the Docker network name',
  );
  t.is(named.labels['docker.network.id'], netId);

  const run = (c: string, ...extra: string[]) =>
    dockerd.docker(['run', '-d', '--name', c, '--network', 'net1', ...extra, BUSYBOX_IMAGE, 'sleep', '600']);
  await run('ca');
  await run('cb');
  const ipOf = async (c: string) => dockerd.docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c]);
  const ipA = await ipOf('ca');
  const ipB = await ipOf('cb');
  t.regex(ipA, /^10\.77\.0\.\d+$/);
  t.regex(ipB, /^10\.77\.0\.\d+$/);
  t.not(ipA, ipB);
  t.regex(await dockerd.docker(['exec', 'ca', 'ip', 'link', 'show', 'eth0']), /mtu 1400/);
  t.regex(await dockerd.docker(['exec', 'ca', 'ip', 'route']), /default via 10\.77\.0\.1/);
  const ping = (from: string, ip: string) =>
    dockerd.docker(['exec', from, 'ping', '-c', '1', '-W', '2', ip]).then(
      () => true,
      () => false,
    );
  const reaches = (from: string, ip: string, what: string) =>
    eventually(async () => ((await ping(from, ip)) ? true : undefined), 60_000, what);
  t.true(await reaches('ca', ipB, 'a pings b'));
  t.true(await ping('cb', ipA));
  t.true(await reaches('ca', '10.77.0.1', 'a pings the gateway'));
  t.true(await reaches('ca', harness.outsideIp, 'a reaches the outside'));
  t.is((await store.list('Port')).filter((p) => p.value.owner?.orchestrator === 'docker').length, 2);

  // -p: a host port of the harness host forwards to the container, from the host itself and from the root
  // namespace (another machine on the underlay).
  await dockerd.docker([
    'run',
    '-d',
    '--name',
    'web',
    '--network',
    'net1',
    '-p',
    '18080:8000',
    BUSYBOX_IMAGE,
    'nc',
    '-ll',
    '-p',
    '8000',
    '-e',
    'echo',
    'hello',
  ]);
  const fetch = async (fromHost: boolean) => {
    const argv = ['nc', '-w', '2', host.host.underlayIp, '18080'];
    const r = fromHost ? await harness.exec(host.host, argv) : await execArgv(argv);
    return r.stdout.trim() === 'hello' ? true : undefined;
  };
  t.true(await eventually(() => fetch(false), 60_000, 'published port from another machine of the underlay'));
  t.true(await eventually(() => fetch(true), 60_000, 'published port from the host itself'));
  const nft = async () => (await harness.exec(host.host, ['/usr/sbin/nft', 'list', 'tables'])).stdout;
  t.regex(await nft(), /bees-portmap/);
  await dockerd.docker(['rm', '-f', 'web']);
  t.notRegex(
    await eventually(async () => ((await nft()).includes('bees-portmap') ? undefined : await nft()), 60_000, 'port unpublished'),
    /bees-portmap/,
  );

  // The agent (and the plugin it hosts) restarts under running containers: addresses and connectivity stay, and
  // a new container can start.
  await cluster.killAgent(host);
  t.true(await ping('ca', ipB), 'the datapath runs without the agent');
  await cluster.startAgent(host).catch((e: Error) => {
    t.log(cluster.agentLog(host).slice(-4000));
    throw e;
  });
  t.is(await ipOf('ca'), ipA);
  t.true(await reaches('ca', ipB, 'a pings b after the agent restart'));
  await run('cc');
  t.true(await reaches('cc', ipA, 'a new container reaches an old one'));

  // dockerd restarts (live-restore): networks and endpoints survive, nothing is duplicated.
  await dockerd.restart();
  t.is(await dockerd.docker(['network', 'inspect', '-f', '{{.Driver}}', 'net1']), name);
  t.is(await ipOf('cb'), ipB);
  t.true(await reaches('cb', ipA, 'b pings a after the dockerd restart'));
  await run('cd');
  t.true(await reaches('cd', ipB, 'a container started after the restart reaches b'));
  const ports = (await store.list('Port')).filter((p) => p.value.owner?.orchestrator === 'docker');
  t.is(ports.length, 4, 'one port per container, none duplicated');
  t.is(new Set(ports.flatMap((p) => p.value.ips)).size, 4);

  await dockerd.docker(['rm', '-f', 'ca', 'cb', 'cc', 'cd']);
  await dockerd.docker(['network', 'rm', 'net1']);
  t.is(await store.get('Bridge', bridgeId), undefined);
  t.deepEqual(
    (await store.list('Port')).map((p) => p.value.id),
    [],
  );
  t.deepEqual(
    (await store.list('IpamBlock')).map((b) => b.value.id),
    [],
  );
  const leaks = await eventually(
    async () => {
      const l = await harness.leaks(host.host);
      return l.length === 0 ? l : undefined;
    },
    20_000,
    'host namespace back to its baseline',
  ).catch(async () => harness.leaks(host.host));
  t.deepEqual(leaks, []);
});
