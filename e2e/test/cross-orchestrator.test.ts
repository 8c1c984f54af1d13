// The headline, end to end: one virtual network shared by three orchestrators on two hosts. Two harness hosts,
// one real agent each (real ZooKeeper, Docker plugin served by the agent), a private dockerd on h1, a private
// podman (CNI backend) and a private containerd (CRI plugin) on h2, both running our `midonet` CNI executable.
// Docker creates the network (`docker network create -d <plugin> --ipam-driver <plugin> --subnet …`); podman and
// the CRI name the same network in their conflists by the bridge id the topology gives it (found on h2's REST API
// by its Docker name label) with `createNetwork: false`, so they can only join it, never make another. A Docker
// container, a podman container and a CRI pod then ping each other in both directions (Docker<->podman and
// Docker<->CRI cross hosts over VXLAN, podman<->CRI on one host), and tearing down through each orchestrator
// leaves no workload port in the store and nothing in either host's namespace.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Bridge, Port } from '../../core/model/types.js';
import { CriRuntime } from '../../testbed/cri.js';
import {
  buildPlugin,
  busyboxRootfsTar,
  pauseImageArchive,
  PODMAN_IMAGE,
  PODMAN_ULIMITS,
  randomSubnet,
  sandboxNetns,
  startContainerd,
  startPodman,
  tempDir,
} from '../../cni/test/helpers.js';
import { BridgeLabel, bridgeIdOf } from '../../swarm/driver/network-options.js';
import { installLegacy, uninstallLegacy } from '../../swarm/install/legacy.js';
import { BUSYBOX_IMAGE, startDockerd } from '../../swarm/test/dockerd.js';
import { eventually, startCluster } from '../../testbed/cluster.js';

const PLUGIN_SOCKET = 'docker-plugin.sock';

test('a Docker container, a podman container and a CRI pod on one virtual network reach each other across two hosts', async (t) => {
  const plugin = `mn${randomBytes(3).toString('hex')}`;
  const netName = `xo${randomBytes(3).toString('hex')}`;
  const subnet = randomSubnet();
  const [pluginDir, cluster] = await Promise.all([
    buildPlugin(),
    // Local scope: a dockerd outside swarm mode refuses networks of global-scope drivers. The socket is relative to
    // each agent's run directory, so the two agents do not fight over one path.
    startCluster({
      hosts: 2,
      agentArgs: ['--docker-plugin', `unix:${PLUGIN_SOCKET}`, '--docker-scope', 'local', '--docker-host', 'unix://docker.sock'],
    }),
  ]);
  t.teardown(() => cluster.close());
  cluster.logAgentsOnFailure(t);
  const { harness } = cluster;
  const [h1, h2] = [cluster.host(0), cluster.host(1)];

  // dockerd on h1 finds h1's agent through a legacy spec file (what `bees docker install` writes).
  const spec = await installLegacy({ socket: join(h1.runDir, PLUGIN_SOCKET), name: plugin });
  t.truthy(spec);
  t.teardown(() => uninstallLegacy({ name: plugin }).then(() => undefined));
  const work = await tempDir(t, 'xo');
  const rootfsTar = await busyboxRootfsTar(work);
  const [dockerd, pauseArchive] = await Promise.all([
    startDockerd({ netns: h1.host.nsName, socket: join(h1.runDir, 'docker.sock') }),
    mkdir(join(work, 'pause'), { recursive: true }).then(() => pauseImageArchive(harness, h2.host, rootfsTar, join(work, 'pause'))),
  ]);
  t.teardown(() => dockerd.stop());
  const docker = dockerd.docker.bind(dockerd);

  // 1. Docker makes the network; h2's agent sees its bridge, labelled with the Docker name.
  const netId = await docker(['network', 'create', '-d', plugin, '--ipam-driver', plugin, '--subnet', subnet.cidr, netName]);
  const bridge = await eventually(
    async () => (await h2.api.list('Bridge')).find((b: Bridge) => b.labels[BridgeLabel.networkName] === netName),
    15_000,
    'h2 sees the bridge by its Docker network name',
  );
  t.is(bridge.id, bridgeIdOf(netId));
  t.is(bridge.labels[BridgeLabel.networkId], netId);

  // 2. podman and containerd on h2 join that bridge by id; createNetwork false: they may not make one of their own.
  const conflist = {
    cniVersion: '1.0.0',
    name: netName,
    plugins: [
      {
        type: 'midonet',
        agentSocket: join(h2.runDir, 'workload.sock'),
        tenant: 'default',
        network: bridge.id,
        createNetwork: false,
        capabilities: { ips: true, mac: true },
      },
    ],
  };
  await mkdir(join(h2.host.stateDir, 'podman'), { recursive: true });
  const [podman, containerd] = await Promise.all([
    startPodman(harness, h2.host, { dir: join(h2.host.stateDir, 'podman'), pluginDir, conflists: [conflist], rootfsTar }),
    startContainerd(harness, h2.host, { dir: join(h2.host.stateDir, 'containerd'), pluginDir, conflist, pauseArchive }),
  ]);
  t.teardown(() => containerd.close());
  t.teardown(() => podman.close());
  const cri = new CriRuntime(containerd.socket);
  t.teardown(() => cri.close());

  // 3. One workload per orchestrator.
  await docker(['run', '-d', '--name', 'dk', '--network', netName, BUSYBOX_IMAGE, 'sleep', '600']);
  const dockerIp = await docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', 'dk']);
  // podman 4 drops NET_RAW by default; ping needs it.
  await podman.run([
    'run',
    '-d',
    '--name',
    'pm',
    ...PODMAN_ULIMITS,
    '--network',
    netName,
    '--cap-add',
    'NET_RAW',
    PODMAN_IMAGE,
    'sleep',
    '600',
  ]);
  const podmanIp = (await podman.run(['exec', 'pm', 'sh', '-c', "ip -4 -o addr show dev eth0 | awk '{print $4}'"])).split('/')[0]!;
  const sandbox = await cri.runPodSandbox({
    metadata: { name: 'pod', uid: `uid-${randomBytes(4).toString('hex')}`, namespace: 'xo', attempt: 0 },
    hostname: 'pod',
  });
  let sandboxLive = true;
  t.teardown(async () => {
    if (!sandboxLive) return;
    await cri.stopPodSandbox(sandbox).catch(() => undefined);
    await cri.removePodSandbox(sandbox).catch(() => undefined);
  });
  const { status, info } = await cri.podSandboxStatus(sandbox);
  t.is(status.state, 'SANDBOX_READY');
  const podIp = status.network?.ip ?? '';
  const podNetns = sandboxNetns(info);

  const ips = [dockerIp, podmanIp, podIp];
  for (const ip of ips) t.true(ip.startsWith(`${subnet.base}.`), `${ip} is in ${subnet.cidr}`);
  t.is(new Set(ips).size, 3, `distinct addresses from one IPAM: ${ips.join(', ')}`);
  // The store holds exactly these three ports on the one bridge: one per orchestrator, on the right host.
  const ports = (await h1.api.list('Port')).filter((p: Port) => p.owner !== undefined);
  t.deepEqual(
    ports.map((p) => [p.owner!.orchestrator, p.bridgeId, p.hostId]).sort(),
    [
      ['cni', bridge.id, h2.hostId],
      ['cni', bridge.id, h2.hostId],
      ['docker', bridge.id, h1.hostId],
    ].sort(),
  );

  // 4. All three pairs, both directions. Docker<->podman and Docker<->CRI cross the underlay in VXLAN (UDP 6677)
  // both ways: counted on the underlay bridge, so a path that bypassed the overlay would show.
  const vxlan = (from: typeof h1, to: typeof h1) =>
    harness.underlayCounter(`ip saddr ${from.host.underlayIp} ip daddr ${to.host.underlayIp} udp dport 6677`);
  const [there, back] = [await vxlan(h1, h2), await vxlan(h2, h1)];
  const pingFrom: Record<string, (ip: string) => Promise<boolean>> = {
    docker: (ip) =>
      docker(['exec', 'dk', 'ping', '-c', '1', '-W', '1', ip]).then(
        () => true,
        () => false,
      ),
    podman: (ip) =>
      podman.run(['exec', 'pm', 'ping', '-c', '1', '-W', '1', ip]).then(
        () => true,
        () => false,
      ),
    cri: (ip) => harness.ping(podNetns, ip, { timeoutSec: 1 }),
  };
  const ipOf: Record<string, string> = { docker: dockerIp, podman: podmanIp, cri: podIp };
  for (const from of Object.keys(pingFrom)) {
    for (const to of Object.keys(ipOf)) {
      if (from === to) continue;
      const ok = await eventually(
        async () => ((await pingFrom[from]!(ipOf[to]!)) ? true : undefined),
        15_000,
        `${from} pings ${to} (${ipOf[to]})`,
      ).catch(() => false);
      t.true(ok, `${from} -> ${to} (${ipOf[to]})`);
    }
  }

  t.true((await there()) > 0 && (await back()) > 0, 'the cross-host pings went over VXLAN both ways');

  // 5. Tear down through each orchestrator; the Docker network goes last (it holds the bridge).
  await podman.run(['rm', '-f', '-t', '0', 'pm']);
  await cri.stopPodSandbox(sandbox);
  await cri.removePodSandbox(sandbox);
  sandboxLive = false;
  await docker(['rm', '-f', 'dk']);
  await docker(['network', 'rm', netName]);
  for (const h of [h1, h2]) {
    t.deepEqual(
      (await h.api.list('Port')).filter((p: Port) => p.owner !== undefined),
      [],
      `no workload port left (${h.host.name})`,
    );
  }
  t.deepEqual(
    (await h1.api.list('Bridge')).filter((b: Bridge) => b.id === bridge.id),
    [],
    'the bridge went with the Docker network',
  );
  const leaks = await eventually(
    async () => {
      const l = await harness.allLeaks();
      return Object.keys(l).length === 0 ? l : undefined;
    },
    20_000,
    'both hosts back to their baseline',
  ).catch(() => harness.allLeaks());
  t.deepEqual(leaks, {});
});
