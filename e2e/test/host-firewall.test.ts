// Hosts whose FORWARD policy is DROP (Docker as shipped, ufw, firewalld): br_netfilter sends every bridged frame
// through that hook, so without bees' own FORWARD chain (core/datapath/host-firewall.ts) workloads of one bridge do
// not even reach each other. Here a stock dockerd (iptables on) runs in each harness host and FORWARD is set to
// DROP explicitly (IPv4 and IPv6); every path must work, and cleanup must leave the host's tables as they were.
import test from 'ava';
import { execArgv } from '../../testbed/shell.js';
import type { HarnessHost } from '../harness/index.js';
import { BUSYBOX_IMAGE, startDockerd, type Dockerd } from '../../swarm/test/dockerd.js';
import { startSingleHost } from '../../swarm/test/single-host.js';
import { eventually, startCluster, type Cluster } from '../../testbed/cluster.js';

const tables = async (c: Cluster['harness'], h: HarnessHost, tool: 'iptables' | 'ip6tables'): Promise<string> => {
  const r = await c.exec(h, [tool, '-w', '-t', 'filter', '-S']);
  if (r.code !== 0) throw new Error(`${tool} -S on ${h.name}: ${r.stderr}`);
  return r.stdout;
};

async function forwardDrop(c: Cluster['harness'], h: HarnessHost): Promise<void> {
  for (const tool of ['iptables', 'ip6tables']) {
    const r = await c.exec(h, [tool, '-w', '-P', 'FORWARD', 'DROP']);
    if (r.code !== 0) throw new Error(`${tool} -P FORWARD DROP on ${h.name}: ${r.stderr}`);
  }
}

test('FORWARD DROP and a stock dockerd on every host: same host, cross host, gateway, SNAT, published port, host to workload', async (t) => {
  const c = await startCluster({ hosts: 2 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const { harness } = c;
  const [h1, h2] = [c.host(0), c.host(1)];
  const dockerds: Dockerd[] = [];
  t.teardown(async () => {
    for (const d of dockerds) await d.stop();
  });
  // Independent daemons: started side by side.
  dockerds.push(...(await Promise.all([h1, h2].map((h) => startDockerd({ netns: h.host.nsName, stock: true })))));
  const before = new Map<string, string>();
  for (const h of [h1, h2]) {
    await forwardDrop(harness, h.host);
    for (const tool of ['iptables', 'ip6tables'] as const) before.set(`${h.host.name} ${tool}`, await tables(harness, h.host, tool));
    t.regex(before.get(`${h.host.name} iptables`)!, /-N DOCKER-USER/, `Docker's chains are there on ${h.host.name}`);
    t.regex(before.get(`${h.host.name} iptables`)!, /-P FORWARD DROP/);
    t.regex(before.get(`${h.host.name} ip6tables`)!, /-P FORWARD DROP/);
  }

  const create = { subnets: [{ cidr: '10.93.0.0/24' }, { cidr: 'fd00:93::/64' }] };
  const hostPort = 18000 + Math.floor(Math.random() * 1000);
  const w1 = await c.attach(h1, 'w1', { network: 'fw', create, portMappings: [{ hostPort, containerPort: 8000, protocol: 'tcp' }] });
  const w2 = await c.attach(h1, 'w2', { network: 'fw' });
  const w3 = await c.attach(h2, 'w3', { network: 'fw' });
  const gateway = w1.result.ips.find((i) => i.family === 4)?.gateway;
  t.truthy(gateway);

  t.true(await c.pingEventually(w1.netns, w2.ip4!), 'same host, IPv4');
  t.true(await c.pingEventually(w1.netns, w2.ip6!), 'same host, IPv6');
  t.true(await c.pingEventually(w1.netns, w3.ip4!), 'cross host, IPv4');
  t.true(await c.pingEventually(w3.netns, w1.ip6!), 'cross host, IPv6');
  t.true(await c.pingEventually(w1.netns, gateway!), 'gateway');
  t.true(await c.pingEventually(w3.netns, harness.outsideIp), 'SNAT to the outside from h2');
  t.true(await c.pingEventually(w1.netns, harness.outsideIp), 'SNAT to the outside from h1');
  t.true(await c.pingEventually(h1.host, w1.ip4!), 'host to workload');
  await c.helper(
    w1.netns,
    ['busybox', 'nc', '-ll', '-p', '8000', '-e', 'echo', 'hello'],
    async () => (await harness.exec(w1.netns, ['sh', '-c', 'ss -ltn | grep -q ":8000 "'])).code === 0,
  );
  const published = async (from: string | HarnessHost) => {
    const r = await harness.exec(from, ['nc', '-w', '2', h1.host.underlayIp, String(hostPort)]);
    return r.stdout.trim() === 'hello' ? true : undefined;
  };
  // Waits below are hang guards (a minute), not speed bounds: CI is slower than this machine.
  t.true(await eventually(() => published(`/run/netns/${harness.outsideNs}`), 60_000, 'published port from the outside'));
  t.true(await eventually(() => published(h2.host), 60_000, 'published port from another host'));
  t.regex(await tables(harness, h1.host, 'iptables'), /-A FORWARD -m comment --comment bees -j BEES-FORWARD/);

  // Docker restarted: it re-creates its chains; ours stay where they are and traffic keeps flowing.
  await dockerds[0]!.restart();
  t.true(await c.pingEventually(w1.netns, w2.ip4!), 'same host after a dockerd restart');
  // A firewall reload removed our chain: the agent finds it missing at its next resync (every 30 s).
  const drop = (tool: string) =>
    harness.exec(h1.host, [
      'sh',
      '-c',
      `${tool} -w -D FORWARD -m comment --comment bees -j BEES-FORWARD && ${tool} -w -F BEES-FORWARD && ${tool} -w -X BEES-FORWARD`,
    ]);
  t.is((await drop('iptables')).code, 0);
  t.is((await drop('ip6tables')).code, 0);
  t.false(await c.ping(w1.netns, w2.ip4!, { timeoutSec: 1 }), 'without the chain, FORWARD DROP cuts the bridge (the test can fail)');
  t.true(await c.pingEventually(w1.netns, w2.ip4!, 90_000), 'the agent put the chain back');
  t.true(await c.pingEventually(w2.netns, w1.ip6!, 30_000), 'IPv6 too');

  // Cleanup: once nothing of bees is left on a host, its tables are exactly what Docker and the test made.
  for (const w of [w1, w2, w3]) await c.detach(w);
  for (const h of [h1, h2]) {
    for (const tool of ['iptables', 'ip6tables'] as const) {
      const want = before.get(`${h.host.name} ${tool}`)!;
      const now = await eventually(
        async () => {
          const s = await tables(harness, h.host, tool);
          return s === want ? s : undefined;
        },
        60_000,
        `${tool} of ${h.host.name} back to what it was`,
      ).catch(() => tables(harness, h.host, tool));
      t.is(now, want, `${tool} of ${h.host.name}: no bees chain or rule left, Docker's untouched`);
      t.notRegex(now, /bees|BEES/);
    }
  }
});

test('docker run -p on a bees network with a stock dockerd (its FORWARD DROP and chains) in the host', async (t) => {
  const env = await startSingleHost({ stockDockerd: true });
  t.teardown(() => env.close());
  env.cluster.logAgentsOnFailure(t);
  const { cluster, host, dockerd } = env;
  const { harness } = cluster;
  const docker = dockerd.docker.bind(dockerd);
  await forwardDrop(harness, host.host);
  t.regex(await tables(harness, host.host, 'iptables'), /-N DOCKER-USER/);

  await docker(['network', 'create', '-d', env.name, '--ipam-driver', env.name, '--subnet', '10.94.0.0/24', 'fwnet']);
  const run = (c: string, ...extra: string[]) =>
    docker(['run', '-d', '--name', c, '--network', 'fwnet', ...extra, BUSYBOX_IMAGE, 'sleep', '600']);
  await run('ca');
  await run('cb');
  const ipOf = (c: string) => docker(['inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', c]);
  const ping = (from: string, ip: string) =>
    eventually(
      () =>
        docker(['exec', from, 'ping', '-c', '1', '-W', '1', ip]).then(
          () => true,
          () => undefined,
        ),
      60_000,
      `${from} pings ${ip}`,
    ).catch(() => false);
  t.true(await ping('ca', await ipOf('cb')), 'container to container');
  t.true(await ping('ca', '10.94.0.1'), 'container to its gateway');
  t.true(await ping('ca', harness.outsideIp), 'container to the outside');

  const hostPort = String(18000 + Math.floor(Math.random() * 1000));
  await docker([
    'run',
    '-d',
    '--name',
    'web',
    '--network',
    'fwnet',
    '-p',
    `${hostPort}:8000`,
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
    const argv = ['nc', '-w', '2', host.host.underlayIp, hostPort];
    const r = fromHost ? await harness.exec(host.host, argv) : await execArgv(argv);
    return r.stdout.trim() === 'hello' ? true : undefined;
  };
  t.true(await eventually(() => fetch(false), 60_000, 'published port from another machine of the underlay'));
  t.true(await eventually(() => fetch(true), 60_000, 'published port from the host itself'));

  await docker(['rm', '-f', 'ca', 'cb', 'web']);
  await docker(['network', 'rm', 'fwnet']);
  const left = await eventually(
    async () => {
      const s = (await tables(harness, host.host, 'iptables')) + (await tables(harness, host.host, 'ip6tables'));
      return /BEES|bees/.test(s) ? undefined : s;
    },
    60_000,
    'no bees chain left',
  ).catch(async () => tables(harness, host.host, 'iptables'));
  t.notRegex(left, /BEES|bees/);
  t.regex(left, /-N DOCKER-USER/, "Docker's chains are still there");
});
