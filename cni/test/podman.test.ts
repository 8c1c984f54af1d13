// podman (CNI backend) on two e2e harness hosts, each with its own real agent, sharing one real ZooKeeper. Each
// podman is private: its own containers.conf (CONTAINERS_CONF), --root/--runroot/--tmpdir and CNI config dir
// in the host's state dir, and runs inside the host's network namespace, so the plugins it runs do too. The image
// is busybox-static imported with `podman import`. Nothing of the machine's own podman is touched.
import test from 'ava';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Port } from '../../core/model/types.js';
import type { HarnessHost } from '../../e2e/harness/index.js';
import { randomSuffix } from '../harness/netns.js';
import { buildPlugin, randomSubnet, tempDir } from './helpers.js';
import { startAgents, workloadVeths, type HostAgent } from './real-agent.js';

// runc may not raise hard limits here (ENVIRONMENT.md; `--ulimit host` still asked for more NOFILE than we hold): ask for less.
const ULIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=512:512'];

interface Podman {
  run(args: string[], input?: string): Promise<string>;
  host: HarnessHost;
}

test('podman on two hosts: cross-host reachability, a pod shares one attachment, --ip, -p', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(2);
  t.teardown(() => cluster.close());
  const { harness } = cluster;
  const subnet = randomSubnet();
  const netName = `bees${randomSuffix()}`;
  const image = await tempDir(t, 'bbimg');
  await mkdir(join(image, 'rootfs', 'bin'), { recursive: true });
  await harness.exec(harness.hosts[0]!, ['cp', '/bin/busybox', join(image, 'rootfs', 'bin', 'busybox')]);
  await harness.exec(harness.hosts[0]!, [
    'sh',
    '-c',
    `cd ${image}/rootfs/bin && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done && printf '#!/bin/sh\\nexec sleep 100000\\n' > ../pause && chmod +x ../pause && tar -C ${image}/rootfs -cf ${image}/bb.tar .`,
  ]);

  async function podmanOn(agent: HostAgent): Promise<Podman> {
    const dir = join(agent.host.stateDir, 'podman');
    const confDir = join(dir, 'net.d');
    await mkdir(confDir, { recursive: true });
    await writeFile(
      join(dir, 'containers.conf'),
      [
        // The infra container of a pod takes no --ulimit: the same limits as defaults.
        '[containers]',
        'default_ulimits=["nofile=1024:1024", "nproc=512:512"]',
        '[network]',
        'network_backend="cni"',
        `cni_plugin_dirs=["${bin}", "/usr/lib/cni"]`,
        `network_config_dir="${confDir}"`,
        '[engine]',
        'cgroup_manager="cgroupfs"',
        'events_logger="file"',
        `events_logfile_path="${dir}/events.log"`,
        'runtime="runc"',
      ].join('\n') + '\n',
    );
    await writeFile(
      join(confDir, `${netName}.conflist`),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: netName,
        plugins: [
          { type: 'midonet', agentSocket: agent.socket, network: netName, subnet: subnet.cidr, capabilities: { ips: true, mac: true } },
          { type: 'portmap', capabilities: { portMappings: true }, snat: true },
        ],
      }),
    );
    const globals = [
      '--root',
      join(dir, 'root'),
      '--runroot',
      join(dir, 'runroot'),
      '--tmpdir',
      join(dir, 'tmp'),
      '--storage-driver',
      'vfs',
      '--network-config-dir',
      confDir,
    ];
    const p: Podman = {
      host: agent.host,
      async run(args, input) {
        const r = await harness.exec(
          agent.host,
          ['env', `CONTAINERS_CONF=${join(dir, 'containers.conf')}`, 'podman', ...globals, ...args],
          input,
        );
        if (r.code !== 0) throw new Error(`podman ${args.join(' ')} on ${agent.host.name} failed (${r.code}): ${r.stderr.trim()}`);
        return r.stdout.trim();
      },
    };
    t.teardown(async () => {
      await p.run(['rm', '-af', '-t', '0']).catch(() => undefined);
      await p.run(['pod', 'rm', '-af', '-t', '0']).catch(() => undefined);
    });
    await p.run(['import', join(image, 'bb.tar'), 'localhost/bb:latest']);
    return p;
  }
  const [a1, a2] = cluster.agents as [HostAgent, HostAgent];
  const [p1, p2] = await Promise.all([podmanOn(a1), podmanOn(a2)]);
  const ipOf = async (p: Podman, name: string) => p.run(['exec', name, 'sh', '-c', "ip -4 -o addr show dev eth0 | awk '{print $4}'"]);
  const common = [...ULIMITS, '--network', netName];

  // --ip honoured, -p published.
  const staticIp = `${subnet.base}.50`;
  await p1.run([
    'run',
    '-d',
    '--name',
    'web',
    ...common,
    '--ip',
    staticIp,
    '-p',
    '18080:8080',
    'localhost/bb:latest',
    'httpd',
    '-f',
    '-p',
    '8080',
    '-h',
    '/bin',
  ]);
  t.is(await ipOf(p1, 'web'), `${staticIp}/24`);
  // Cross-host: a container on h2 reaches the one on h1 over the virtual network (VXLAN between the agents).
  // podman 4 drops NET_RAW by default; ping needs it.
  await p2.run(['run', '-d', '--name', 'client', ...common, '--cap-add', 'NET_RAW', 'localhost/bb:latest', 'sleep', '600']);
  const clientIp = (await ipOf(p2, 'client')).split('/')[0]!;
  t.true(clientIp.startsWith(subnet.base));
  t.not(clientIp, staticIp);
  let reached = '';
  for (let i = 0; i < 10 && reached !== 'ok'; i++)
    reached = await p2.run(['exec', 'client', 'ping', '-c', '1', '-W', '1', staticIp]).then(
      () => 'ok',
      (e: Error) => e.message,
    );
  t.is(reached, 'ok', 'h2 container pings the h1 container');
  t.regex(
    await p2.run(['exec', 'client', 'wget', '-q', '-O', '-', `http://${staticIp}:8080/`]).catch((e: Error) => e.message),
    /busybox|Index|href|404/i,
    'TCP across hosts',
  );
  // -p: the port is published on h1's address; reach it from h2's host namespace.
  const published = await harness.exec(p2.host, ['sh', '-c', `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${a1.host.underlayIp} 18080`]);
  t.regex(published.stdout, /HTTP\/1\.[01]/, `published port answers (${published.stderr})`);

  // A pod: its containers share the infra container's one attachment.
  const pod = `pod${randomSuffix()}`;
  await p1.run(['pod', 'create', '--name', pod, '--network', netName, '--infra-image', 'localhost/bb:latest', '--infra-command', '/pause']);
  await p1.run(['run', '-d', '--name', 'm1', '--pod', pod, ...ULIMITS, 'localhost/bb:latest', 'sleep', '600']);
  await p1.run(['run', '-d', '--name', 'm2', '--pod', pod, ...ULIMITS, 'localhost/bb:latest', 'sleep', '600']);
  const [m1, m2] = [await ipOf(p1, 'm1'), await ipOf(p1, 'm2')];
  t.is(m1, m2, 'pod members share eth0');
  const ports = (await a1.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni' && p.hostId !== undefined);
  t.is(
    ports.filter((p) => p.ips.some((ip) => ip.startsWith(`${m1.split('/')[0]}/`) || ip === m1.split('/')[0])).length,
    1,
    'one port for the pod',
  );

  // Removing everything leaves no port, no veth.
  await p1.run(['rm', '-af', '-t', '0']);
  await p1.run(['pod', 'rm', '-af', '-t', '0']);
  await p2.run(['rm', '-af', '-t', '0']);
  t.deepEqual(
    (await a1.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni'),
    [],
  );
  t.deepEqual(await workloadVeths(harness, a1.host), []);
  t.deepEqual(await workloadVeths(harness, a2.host), []);
});
