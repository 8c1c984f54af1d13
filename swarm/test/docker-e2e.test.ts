// End to end on one host: a real agent (in a harness host namespace, store in real ZooKeeper), the driver, and a
// dockerd of the test's own in the same namespace. `docker network create -d <driver> --ipam-driver <driver>`,
// two containers ping each other and the gateway, `docker network rm` leaves nothing behind.
import test from 'ava';
import { bridgeIdOf } from '../driver/network-options.js';
import { BUSYBOX_IMAGE } from './dockerd.js';
import { eventually, startSingleHost } from './single-host.js';

test('docker network create / run / ping / rm through the midonet driver and IPAM', async (t) => {
  const env = await startSingleHost();
  t.teardown(() => env.close());
  const { harness, host: h, dockerd, driver, name } = env;
  const { docker } = dockerd;

  const netId = await docker(['network', 'create', '-d', name, '--ipam-driver', name, '--subnet', '10.77.0.0/24', '-o', 'mtu=1400', 'net1']);
  const bridgeId = bridgeIdOf(netId);
  const named = await eventually(async () => {
    const b = (await driver.store.get('Bridge', bridgeId))?.value;
    return b?.labels['docker.network.name'] === 'net1' ? b : undefined;
  }, 10_000, 'bridge labelled with the Docker network name');
  t.is(named.labels['docker.network.id'], netId);

  await docker(['run', '-d', '--name', 'ca', '--network', 'net1', BUSYBOX_IMAGE, 'sleep', '600']);
  await docker(['run', '-d', '--name', 'cb', '--network', 'net1', BUSYBOX_IMAGE, 'sleep', '600']);
  const ipOf = async (c: string) => docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c]);
  const ipA = await ipOf('ca');
  const ipB = await ipOf('cb');
  t.regex(ipA, /^10\.77\.0\.\d+$/);
  t.regex(ipB, /^10\.77\.0\.\d+$/);
  t.not(ipA, ipB);
  t.regex(await docker(['exec', 'ca', 'ip', 'link', 'show', 'eth0']), /mtu 1400/);
  t.regex(await docker(['exec', 'ca', 'ip', 'route']), /default via 10\.77\.0\.1/);
  const ping = (from: string, ip: string) => docker(['exec', from, 'ping', '-c', '1', '-W', '2', ip]).then(() => true, () => false);
  t.true(await eventually(async () => ((await ping('ca', ipB)) ? true : undefined), 15_000, 'a pings b'));
  t.true(await ping('cb', ipA));
  t.true(await eventually(async () => ((await ping('ca', '10.77.0.1')) ? true : undefined), 15_000, 'a pings the gateway'));

  const ports = (await driver.store.list('Port')).filter((p) => p.value.owner?.orchestrator === 'docker');
  t.is(ports.length, 2);

  await docker(['rm', '-f', 'ca', 'cb']);
  await docker(['network', 'rm', 'net1']);
  t.is(await driver.store.get('Bridge', bridgeId), undefined);
  t.deepEqual((await driver.store.list('Port')).map((p) => p.value.id), []);
  t.deepEqual((await driver.store.list('IpamBlock')).map((b) => b.value.id), []);
  const leaks = await eventually(async () => {
    const l = await harness.leaks(h);
    // dockerd's own interfaces in the namespace (none with --bridge none) are not ours; everything else is.
    return l.length === 0 ? l : undefined;
  }, 20_000, 'host namespace back to its baseline').catch(async () => harness.leaks(h));
  t.deepEqual(leaks, []);
});
