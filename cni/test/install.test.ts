// `bees cni install` leaves a working installation: the conflist it writes, run by the harness from the
// directories it wrote, attaches a container through the real agent (on an e2e harness host).
import test from 'ava';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Io } from '../../core/cli/command.js';
import { loadNetworkConfig } from '../harness/config.js';
import { CniHarness } from '../harness/libcni.js';
import { addrsIn, randomSuffix } from '../harness/netns.js';
import { commands } from '../install.js';
import type { Port } from '../../core/model/types.js';
import { buildPlugin, randomSubnet, tempDir } from './helpers.js';
import { startAgents, workloadVeths } from './real-agent.js';

const cmd = commands[0]!;

function io(): Io & { stdout: string[] } {
  const stdout: string[] = [];
  return { stdout, out: (s) => stdout.push(s), err: () => undefined, env: {} };
}

test('install writes the binary and a midonet→portmap conflist that works as installed', async (t) => {
  const bin = await buildPlugin();
  const [binDir, confDir] = [await tempDir(t, 'bin'), await tempDir(t, 'conf')];
  const cluster = await startAgents(1);
  t.teardown(() => cluster.close());
  const agent = cluster.agents[0]!;
  const subnet = randomSubnet();
  const out = io();
  t.is(
    await cmd.run(
      [
        '--bin-dir',
        binDir,
        '--conf-dir',
        confDir,
        '--binary',
        join(bin, 'midonet'),
        '--network',
        'pods',
        '--subnet',
        subnet.cidr,
        '--agent-socket',
        agent.socket,
        '--json',
      ],
      out,
    ),
    0,
  );
  const report = JSON.parse(out.stdout.join('')) as { conflist: string; cniVersion: string };
  t.is(report.cniVersion, '1.0.0', "the highest version midonet and Debian's portmap share");
  t.true(((await stat(join(binDir, 'midonet'))).mode & 0o111) !== 0);
  t.true(((await stat(join(binDir, 'portmap'))).mode & 0o111) !== 0, 'portmap copied next to it');
  const written = JSON.parse(await readFile(join(confDir, '10-midonet.conflist'), 'utf8')) as { plugins: { type: string }[] };
  t.deepEqual(
    written.plugins.map((p) => p.type),
    ['midonet', 'portmap'],
  );

  const list = await loadNetworkConfig(report.conflist);
  const h = new CniHarness({ pluginDirs: [binDir], cacheDir: await tempDir(t, 'cache'), hostNetns: agent.host.netns });
  t.deepEqual(await h.validateNetworkList(list), []);
  const nsPath = await cluster.harness.addWorkload(agent.host, 'pod');
  const hostPort = 20000 + Math.floor(Math.random() * 1000);
  const rt = {
    containerId: `c${randomSuffix(6)}`,
    netns: nsPath,
    ifname: 'eth0',
    capabilityArgs: { portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }] },
  };
  t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
  await h.addNetworkList(list, rt);
  const eth0 = (await addrsIn(nsPath.replace('/run/netns/', ''))).find((l) => l.ifname === 'eth0');
  t.true(eth0!.addr_info.some((a) => a.local.startsWith(subnet.base)));
  const [port] = (await agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.workloadId === rt.containerId);
  const bridges = await agent.api<{ id: string; name: string }[]>('/v1/bridges');
  t.is(bridges.find((b) => b.id === port!.bridgeId)?.name, 'pods');
  t.regex(
    (await cluster.harness.exec(agent.host, ['iptables-save', '-t', 'nat'])).stdout,
    new RegExp(`--dport ${hostPort} `),
    'portmap published the port',
  );
  await h.delNetworkList(list, rt);
  t.deepEqual(await workloadVeths(cluster.harness, agent.host), []);
});

test('install refuses a bad subnet and a missing binary, and can leave portmap out', async (t) => {
  const bin = await buildPlugin();
  const [binDir, confDir] = [await tempDir(t, 'bin'), await tempDir(t, 'conf')];
  await t.throwsAsync(
    cmd.run(['--bin-dir', binDir, '--conf-dir', confDir, '--subnet', '10.0.0.0/99', '--binary', join(bin, 'midonet')], io()),
    { message: /--subnet: '10\.0\.0\.0\/99' is not a CIDR/ },
  );
  await t.throwsAsync(cmd.run(['--bin-dir', binDir, '--conf-dir', confDir, '--binary', join(binDir, 'nope')], io()), {
    message: /is not an executable file/,
  });
  t.is(await cmd.run(['--bin-dir', binDir, '--conf-dir', confDir, '--binary', join(bin, 'midonet'), '--no-portmap'], io()), 0);
  const written = JSON.parse(await readFile(join(confDir, '10-midonet.conflist'), 'utf8')) as {
    cniVersion: string;
    plugins: { type: string }[];
  };
  t.deepEqual(
    written.plugins.map((p) => p.type),
    ['midonet'],
  );
  t.is(written.cniVersion, '1.1.0');
});
