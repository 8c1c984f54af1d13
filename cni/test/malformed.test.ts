// Bad input gets the spec's error code and a message a person can act on, on stdout, exit 1 — never a crash.
import test from 'ava';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { buildPlugin, netns, tempDir } from './helpers.js';

interface Case {
  name: string;
  env: Record<string, string>;
  stdin: string;
  code: number;
  msg: RegExp;
}

/** Runs the plugin asynchronously, so servers in this process keep answering while it runs. */
function run(bin: string, env: Record<string, string>, stdin: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(join(bin, 'midonet'), [], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'midonet', agentSocket: '/nonexistent/agent.sock', ...extra });

test('malformed input table: code and message for each', async (t) => {
  const bin = await buildPlugin();
  const dir = await tempDir(t, 'malformed');
  const ns = await netns(t);
  const plainFile = join(dir, 'not-a-netns');
  await writeFile(plainFile, '');
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  const cases: Case[] = [
    { name: 'stdin is not JSON', env: add, stdin: '{"cniVersion": ', code: 6, msg: /not JSON/ },
    { name: 'stdin is empty', env: add, stdin: '', code: 6, msg: /no network configuration/ },
    { name: 'stdin is a JSON list', env: add, stdin: '[]', code: 6, msg: /must be a JSON object/ },
    { name: 'no CNI_COMMAND', env: { ...add, CNI_COMMAND: '' }, stdin: conf(), code: 4, msg: /CNI_COMMAND is not set/ },
    { name: 'unknown CNI_COMMAND', env: { ...add, CNI_COMMAND: 'FROB' }, stdin: conf(), code: 4, msg: /"FROB" is not one of/ },
    { name: 'missing container id, ifname and netns', env: { CNI_COMMAND: 'ADD', CNI_PATH: '/x' }, stdin: conf(), code: 4, msg: /CNI_CONTAINERID is not set; CNI_IFNAME is not set; CNI_NETNS is not set/ },
    { name: 'bad container id', env: { ...add, CNI_CONTAINERID: '-bad id' }, stdin: conf(), code: 4, msg: /CNI_CONTAINERID "-bad id" must match/ },
    { name: 'ifname too long', env: { ...add, CNI_IFNAME: 'a-very-long-interface' }, stdin: conf(), code: 4, msg: /not a usable interface name/ },
    { name: 'netns does not exist', env: { ...add, CNI_NETNS: '/run/netns/does-not-exist-42' }, stdin: conf(), code: 4, msg: /does-not-exist-42: no such file/ },
    { name: 'netns is a plain file', env: { ...add, CNI_NETNS: plainFile }, stdin: conf(), code: 4, msg: /is not a network namespace/ },
    { name: "netns is the plugin's own", env: { ...add, CNI_NETNS: '/proc/self/ns/net' }, stdin: conf(), code: 4, msg: /own \(host\) network namespace/ },
    { name: 'unknown CNI_ARGS key without IgnoreUnknown', env: { ...add, CNI_ARGS: 'FOO=bar' }, stdin: conf(), code: 4, msg: /unknown key "FOO".*IgnoreUnknown/ },
    { name: 'CNI_ARGS not K=V', env: { ...add, CNI_ARGS: 'IgnoreUnknown=1;junk' }, stdin: conf(), code: 4, msg: /"junk" is not KEY=VALUE/ },
    { name: 'unknown cniVersion', env: add, stdin: conf({ cniVersion: '0.5.0' }), code: 1, msg: /speaks 0\.1\.0.*1\.1\.0.*asks for "0\.5\.0"/ },
    { name: 'CHECK below 0.4.0', env: { ...add, CNI_COMMAND: 'CHECK' }, stdin: conf({ cniVersion: '0.3.1' }), code: 1, msg: /CHECK needs cniVersion 0\.4\.0/ },
    { name: 'GC below 1.1.0', env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: conf({ 'cni.dev/valid-attachments': [] }), code: 1, msg: /GC needs cniVersion 1\.1\.0/ },
    { name: 'STATUS below 1.1.0', env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, stdin: conf(), code: 1, msg: /STATUS needs cniVersion 1\.1\.0/ },
    { name: 'bad CIDR', env: add, stdin: conf({ subnet: '10.0.0.0/33' }), code: 7, msg: /subnet="10\.0\.0\.0\/33": not a CIDR/ },
    { name: 'bad subnets entry', env: add, stdin: conf({ subnets: [{ cidr: 'ten/8' }] }), code: 7, msg: /subnets\[0\]\.cidr="ten\/8"/ },
    { name: 'missing network name', env: add, stdin: JSON.stringify({ cniVersion: '1.0.0', type: 'midonet' }), code: 7, msg: /name=undefined: the network name is required/ },
    { name: 'ipam key', env: add, stdin: conf({ ipam: { type: 'host-local' } }), code: 2, msg: /unsupported field: ipam=.*host-local/ },
    { name: 'bad MAC', env: add, stdin: conf({ runtimeConfig: { mac: 'zz:00' } }), code: 7, msg: /runtimeConfig\.mac="zz:00": not a MAC/ },
    { name: 'bad static IP', env: add, stdin: conf({ runtimeConfig: { ips: ['10.0.0.300'] } }), code: 7, msg: /runtimeConfig\.ips\[0\]="10\.0\.0\.300"/ },
    { name: 'bad port mapping', env: add, stdin: conf({ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] } }), code: 7, msg: /portMappings\[0\]\.hostPort=0/ },
    { name: 'bad mtu', env: add, stdin: conf({ mtu: 10 }), code: 7, msg: /mtu=10/ },
    { name: 'createNetwork without subnet', env: add, stdin: conf({ createNetwork: true }), code: 7, msg: /needs "subnet"/ },
    { name: 'Mesos network_info not an object', env: add, stdin: conf({ args: { 'org.apache.mesos': { network_info: 3 } } }), code: 7, msg: /network_info/ },
    { name: 'agent socket unreachable on ADD', env: add, stdin: conf(), code: 11, msg: /cannot reach the bees agent at \/nonexistent\/agent\.sock: no such socket/ },
    { name: 'agent socket unreachable on DEL', env: { ...add, CNI_COMMAND: 'DEL' }, stdin: conf(), code: 11, msg: /cannot reach the bees agent/ },
    { name: 'agent socket unreachable on STATUS', env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/x' }, stdin: conf({ cniVersion: '1.1.0' }), code: 50, msg: /cannot reach the bees agent/ },
    { name: 'CHECK without prevResult', env: { ...add, CNI_COMMAND: 'CHECK' }, stdin: conf(), code: 7, msg: /CHECK needs prevResult/ },
    { name: 'GC without valid attachments', env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: conf({ cniVersion: '1.1.0' }), code: 7, msg: /GC needs cni\.dev\/valid-attachments/ },
    { name: 'GC with a malformed attachment', env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' }, stdin: conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'x' }] }), code: 7, msg: /valid-attachments\[0\].*needs containerID and ifname/ },
  ];
  for (const c of cases) {
    const r = await run(bin, c.env, c.stdin);
    let body: { code?: number; msg?: string; cniVersion?: string } = {};
    try {
      body = JSON.parse(r.stdout);
    } catch {
      t.fail(`${c.name}: stdout is not an error object: ${r.stdout} / ${r.stderr}`);
      continue;
    }
    t.is(r.status, 1, `${c.name}: exit status`);
    t.is(body.code, c.code, `${c.name}: code (msg: ${body.msg})`);
    t.regex(body.msg ?? '', c.msg, `${c.name}: message`);
    t.is(typeof body.cniVersion, 'string', `${c.name}: error carries cniVersion`);
  }
});

test('an agent that answers garbage is code 103, not a crash', async (t) => {
  const bin = await buildPlugin();
  const dir = await tempDir(t, 'garbage');
  const ns = await netns(t);
  const socket = join(dir, 'garbage.sock');
  // Not the agent: a server that breaks the workload API on purpose.
  const server = createServer((_q, s) => s.end('<html>teapot</html>'));
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const r = await run(bin, { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: '/x' }, conf({ agentSocket: socket }));
  t.is(r.status, 1);
  const body = JSON.parse(r.stdout) as { code: number; msg: string };
  t.is(body.code, 103);
  t.regex(body.msg, /not JSON: <html>teapot/);
});

test('VERSION answers every supported version, with or without stdin', async (t) => {
  const bin = await buildPlugin();
  for (const stdin of ['{"cniVersion":"0.4.0"}', '']) {
    const r = await run(bin, { CNI_COMMAND: 'VERSION' }, stdin);
    t.is(r.status, 0);
    t.deepEqual(JSON.parse(r.stdout).supportedVersions, ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
  }
});
