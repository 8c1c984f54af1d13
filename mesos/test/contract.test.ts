// The Mesos contract: the plugin invoked exactly as the network/cni isolator invokes it (env, stdin with the
// injected network_info, no CNI_ARGS, no prevResult, DEL without a netns), with the config `bees mesos config`
// writes. The agent side is the CNI tests' STAND-IN agent (cni/test/standin-agent.ts), not the real agent.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AttachRequest, DetachRequest } from '../../core/workload/types.js';
import { addrsIn, randomSuffix } from '../../cni/harness/netns.js';
import { buildPlugin, netns, randomSubnet, tempDir } from '../../cni/test/helpers.js';
import { startStandInAgent } from '../../cni/test/standin-agent.js';
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
  const agent = await startStandInAgent(await tempDir(t, 'agent'));
  t.teardown(() => agent.close());
  const out = await tempDir(t, 'mesos');
  const subnet = randomSubnet();
  const io = { out: () => undefined, err: () => undefined, env: {} };
  await commands[0]!.run(['--out', out, '--name', 'bees', '--network', 'default-net', '--subnet', subnet.cidr, '--agent-socket', agent.socket, '--plugins-dir', bin], io);
  const flags = await readFile(join(out, 'mesos-agent.flags'), 'utf8');
  t.regex(flags, new RegExp(`--network_cni_config_dir=${out}/net.d`));
  const conf = JSON.parse(await readFile(join(out, 'net.d', 'bees.json'), 'utf8')) as Record<string, unknown>;
  t.is(conf.cniVersion, '0.2.0');
  t.is(conf.type, 'midonet');
  t.false('plugins' in conf, 'Mesos reads single-plugin configs only');

  // The isolator injects network_info into the config it passes on stdin.
  const injected = JSON.stringify({
    ...conf,
    args: { 'org.apache.mesos': { network_info: {
      name: 'bees',
      labels: { labels: [{ key: 'tenant', value: 'team-a' }, { key: 'network', value: 'frontend' }, { key: 'ip', value: `${subnet.base}.40` }, { key: 'app', value: 'web' }] },
      port_mappings: [{ host_port: 31000, container_port: 8080, protocol: 'tcp' }],
    } } },
  });
  const ns = await netns(t);
  const containerId = `mesos-${randomSuffix(8)}`;
  const add = await isolatorRun(bin, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0', CNI_NETNS: ns.path }, injected);
  t.is(add.status, 0, add.stdout);
  // Mesos parses {ip4: {ip, gateway, routes}}.
  const result = JSON.parse(add.stdout) as { cniVersion: string; ip4: { ip: string; gateway: string } };
  t.is(result.cniVersion, '0.2.0');
  t.is(result.ip4.ip, `${subnet.base}.40/24`);
  const req = agent.requests.find((r) => r.path === '/v1/attach')!.body as AttachRequest;
  t.like(req, { orchestrator: 'mesos', workloadId: containerId, ifname: 'eth0', tenant: 'team-a', network: 'frontend', ips: [`${subnet.base}.40`], labels: { 'mesos.app': 'web' } });
  t.deepEqual(req.portMappings, [{ hostPort: 31000, containerPort: 8080, protocol: 'tcp' }]);
  t.truthy((await addrsIn(ns.name)).find((l) => l.ifname === 'eth0'));

  // After an agent reboot the isolator sends DEL without CNI_NETNS; twice is fine too.
  for (let i = 0; i < 2; i++) {
    const del = await isolatorRun(bin, { CNI_COMMAND: 'DEL', CNI_CONTAINERID: containerId, CNI_IFNAME: 'eth0' }, injected);
    t.is(del.status, 0, del.stdout);
  }
  t.like(agent.requests.find((r) => r.path === '/v1/detach')!.body as DetachRequest, { orchestrator: 'mesos', workloadId: containerId, tenant: 'team-a', network: 'frontend' });
  t.is(agent.attachments.size, 0);
});
