// Docker Swarm on three harness hosts: one real agent per host (store in real ZooKeeper) serving the plugin
// socket in its run directory, one dockerd per host namespace in one swarm (init on the first, join on the others),
// the managed plugin (a stateless proxy to the local agent) enabled on every node. A swarm-scoped midonet network,
// a service of three replicas spread over the hosts whose tasks reach each other across hosts; scaling down frees
// the addresses of the tasks removed.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { Ipam } from '../../core/ipam/ipam.js';
import { randomId } from '../../core/model/ids.js';
import { openStore } from '../../core/store/open.js';
import { eventually } from '../../testbed/cluster.js';
import { bridgeIdOf } from '../driver/network-options.js';
import { BUSYBOX_IMAGE } from './dockerd.js';
import { startSwarm } from './swarm-cluster.js';
import { syncedReads } from './single-host.js';

test('a swarm service on a midonet network: replicas on three hosts reach each other, scaling down frees addresses', async (t) => {
  const swarm = await startSwarm(3);
  t.teardown(() => swarm.close());
  const { cluster, daemons, manager, plugin } = swarm;
  t.is(await manager.docker(['info', '-f', '{{.Swarm.Nodes}}']), '3');

  const netId = await manager.docker([
    'network',
    'create',
    '-d',
    plugin,
    '--ipam-driver',
    plugin,
    '--subnet',
    '10.91.0.0/24',
    '--attachable',
    'snet',
  ]);
  t.is(await manager.docker(['network', 'inspect', '-f', '{{.Scope}}', 'snet']), 'swarm');
  const svc = `s${randomBytes(2).toString('hex')}`;
  // dnsrr: a VIP needs IPVS, which this kernel lacks.
  await manager.docker(
    [
      'service',
      'create',
      '--detach',
      '--no-resolve-image',
      '--name',
      svc,
      '--replicas',
      '3',
      '--endpoint-mode',
      'dnsrr',
      '--network',
      'snet',
      BUSYBOX_IMAGE,
      'sleep',
      '3600',
    ],
    180_000,
  );

  // One running task per host (the default spread strategy), each with an address on the network.
  const tasks = await eventually(
    async () => {
      const found = await Promise.all(
        daemons.map(async (d) => {
          const ids = (await d.docker(['ps', '-q', '--filter', `label=com.docker.swarm.service.name=${svc}`])).split('\n').filter(Boolean);
          return Promise.all(
            ids.map(async (id) => ({
              d,
              id,
              ip: await d.docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', id]),
            })),
          );
        }),
      );
      return found.every((f) => f.length === 1) ? found.flat() : undefined;
    },
    90_000,
    'one task of the service running on each host',
    1000,
  ).catch(async (e: Error) => {
    t.log(await manager.docker(['service', 'ps', '--no-trunc', svc]).catch((x: Error) => x.message));
    t.log(
      manager
        .log()
        .split('\n')
        .filter((l) => /level=(error|warn)/.test(l))
        .slice(-15)
        .join('\n'),
    );
    throw e;
  });
  for (const task of tasks) t.regex(task.ip, /^10\.91\.0\.\d+$/);
  t.is(new Set(tasks.map((x) => x.ip)).size, 3);
  for (const from of tasks) {
    for (const to of tasks) {
      if (from === to) continue;
      const ok = await eventually(
        async () =>
          from.d.docker(['exec', from.id, 'ping', '-c', '1', '-W', '2', to.ip]).then(
            () => true,
            () => undefined,
          ),
        20_000,
        `task ${from.ip} reaches ${to.ip}`,
      );
      t.true(ok);
    }
  }

  // Scaling down: the tasks removed give their ports and addresses back.
  const store = syncedReads(await openStore(cluster.storeUrl));
  t.teardown(() => store.close());
  const ipam = new Ipam(store, randomId());
  const bridgeId = bridgeIdOf(netId);
  const allocated = async () => (await ipam.allocations(bridgeId)).filter((a) => a.owner.startsWith('docker:')).map((a) => a.address);
  const dockerPorts = async () =>
    (await store.list('Port')).filter((p) => p.value.bridgeId === bridgeId && p.value.owner?.orchestrator === 'docker');
  const before = await allocated();
  for (const x of tasks) t.true(before.includes(x.ip), `task address ${x.ip} allocated`);
  const portsBefore = (await dockerPorts()).length;
  await manager.docker(['service', 'scale', '--detach', `${svc}=1`]);
  const after = await eventually(
    async () => {
      const a = await allocated();
      return a.length === before.length - 2 && (await dockerPorts()).length === portsBefore - 2 ? a : undefined;
    },
    60_000,
    'two task addresses and ports freed',
    500,
  );
  t.is(tasks.filter((x) => after.includes(x.ip)).length, 1, 'the remaining task keeps its address');

  await manager.docker(['service', 'rm', svc]);
  await eventually(
    async () => ((await store.list('Port')).some((p) => p.value.bridgeId === bridgeId) ? undefined : true),
    60_000,
    'last task gone',
    500,
  ).catch(() => undefined);
  await eventually(
    async () =>
      manager.docker(['network', 'rm', 'snet']).then(
        () => true,
        () => undefined,
      ),
    30_000,
    'network removed',
    1000,
  );
  t.is(
    await eventually(async () => ((await store.get('Bridge', bridgeId)) ? undefined : 'gone'), 30_000, 'bridge removed on every host', 500),
    'gone',
  );
});
