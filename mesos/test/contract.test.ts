// The Mesos contract: the plugin invoked exactly as the network/cni isolator invokes it (env, stdin with the
// injected network_info, no CNI_ARGS, no prevResult, DEL without a netns), with the config `bees mesos config`
// writes, against the real agent (on an e2e harness host, file store): what it made is read from its REST API.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { IpamBlock, Port } from '../../core/model/types.js';
import { addrsIn, randomSuffix } from '../../cni/harness/netns.js';
import { buildPlugin, randomSubnet, tempDir } from '../../cni/test/helpers.js';
import { startAgents, workloadVeths } from '../../cni/test/real-agent.js';
import { commands } from '../config.js';

function isolatorRun(bin: string, env: Record<string, string>, stdin: string): Promise<{ status: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    // Exactly the isolator's variables (cni.cpp): nothing else, not even CNI_ARGS.
    const child = spawn(join(bin, 'midonet'), [], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: bin, ...env } });
    let stdout = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout }));
    child.stdin.end(stdin);
  });
}

test('Mesos isolator ADD/DEL with the generated 0.2.0 config and injected network_info', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(1);
  t.teardown(() => cluster.close());
  const agent = cluster.agents[0]!;
  const out = await tempDir(t, 'mesos');
  const subnet = randomSubnet();
  const io = { out: () => undefined, err: () => undefined, env: {} };
  await commands[0]!.run(
    [
      '--out',
      out,
      '--name',
      'bees',
      '--network',
      'default-net',
      '--subnet',
      subnet.cidr,
      '--agent-socket',
      agent.socket,
      '--plugins-dir',
      bin,
    ],
    io,
  );
  const flags = await readFile(join(out, 'mesos-agent.flags'), 'utf8');
  t.regex(flags, new RegExp(`--network_cni_config_dir=${out}/net.d`));
  const conf = JSON.parse(await readFile(join(out, 'net.d', 'bees.json'), 'utf8')) as Record<string, unknown>;
  t.is(conf.cniVersion, '0.2.0');
  t.is(conf.type, 'midonet');
  t.false('plugins' in conf, 'Mesos reads single-plugin configs only');

  // The isolator injects network_info into the config it passes on stdin.
  const injected = JSON.stringify({
    ...conf,
    args: {
      'org.apache.mesos': {
        network_info: {
          name: 'bees',
          labels: {
            labels: [
              { key: 'tenant', value: 'team-a' },
              { key: 'network', value: 'frontend' },
              { key: 'ip', value: `${subnet.base}.40` },
              { key: 'app', value: 'web' },
            ],
          },
          port_mappings: [{ host_port: 31000, container_port: 8080, protocol: 'tcp' }],
        },
      },
    },
  });
  const nsPath = await cluster.harness.addWorkload(agent.host, 'task');
  const ns = { path: nsPath, name: nsPath.replace('/run/netns/', '') };
  const containerId = `mesos-${randomSuffix(8)}`;
  const add = await isolatorRun(
    bin,
    { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0', CNI_NETNS: ns.path },
    injected,
  );
  t.is(add.status, 0, add.stdout);
  // Mesos parses {ip4: {ip, gateway, routes}}.
  const result = JSON.parse(add.stdout) as { cniVersion: string; ip4: { ip: string; gateway: string } };
  t.is(result.cniVersion, '0.2.0');
  t.is(result.ip4.ip, `${subnet.base}.40/24`);
  const ports = async () => (await agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.workloadId === containerId);
  const [port] = await ports();
  t.like(port, { owner: { orchestrator: 'mesos', workloadId: containerId, ifname: 'eth0' }, options: { 'mesos.app': 'web' } });
  t.deepEqual(
    port!.ips.map((ip) => ip.split('/')[0]),
    [`${subnet.base}.40`],
  );
  const bridges = await agent.api<{ id: string; name: string; tenantId: string }[]>('/v1/bridges');
  t.is(bridges.find((b) => b.id === port!.bridgeId)?.name, 'frontend', 'network_info chose the network');
  const tenants = await agent.api<{ id: string; name: string }[]>('/v1/tenants');
  t.is(tenants.find((x) => x.id === bridges.find((b) => b.id === port!.bridgeId)?.tenantId)?.name, 'team-a', 'and the tenant');
  t.truthy((await addrsIn(ns.name)).find((l) => l.ifname === 'eth0' && l.addr_info.some((a) => a.local === `${subnet.base}.40`)));

  // After an agent reboot the isolator sends DEL without CNI_NETNS; twice is fine too.
  for (let i = 0; i < 2; i++) {
    const del = await isolatorRun(bin, { CNI_COMMAND: 'DEL', CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0' }, injected);
    t.is(del.status, 0, del.stdout);
  }
  t.deepEqual(await ports(), []);
  const held = (await agent.api<IpamBlock[]>('/v1/ipam-blocks'))
    .flatMap((b) => Object.values(b.allocations))
    .filter((a) => a.owner === `mesos:${containerId}`);
  t.deepEqual(held, []);
  t.deepEqual(await workloadVeths(cluster.harness, agent.host), []);
});
