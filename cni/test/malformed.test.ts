// Bad input gets the spec's error code and a message a person can act on, on stdout, exit 1 — never a crash.
// Validation runs in the agent (cni/plugin/run.ts behind POST /v1/cni), so the table runs the shipped shim against a
// real agent and then proves nothing changed there. The shim's own failures (no agent, a silent or foreign socket,
// stdin it cannot forward) are tested without one.
import test from 'ava';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { buildPlugin, netns, tempDir } from './helpers.js';
import { startAgents, workloadVeths } from './real-agent.js';

interface Case {
  name: string;
  env: Record<string, string>;
  stdin: string | Buffer;
  code: number;
  msg: RegExp;
}

/** Runs the plugin asynchronously, so servers in this process keep answering while it runs. */
function run(
  bin: string,
  env: Record<string, string>,
  stdin: string | Buffer,
  defaultSocket?: string,
): Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  // With defaultSocket: the shim runs in a private mount namespace whose /run/bees/workload.sock (the default, for
  // a stdin that names no agentSocket) leads to that socket; a tmpfs on /run there hides nothing from the agent.
  const [file, args] = defaultSocket
    ? [
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          'mount -t tmpfs bees /run && mkdir /run/bees && ln -s "$1" /run/bees/workload.sock && exec "$2"',
          'sh',
          defaultSocket,
          join(bin, 'midonet'),
        ],
      ]
    : [join(bin, 'midonet'), []];
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.stdin.on('error', () => undefined);
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

const NO_AGENT = '/nonexistent/agent.sock';
const confFor =
  (agentSocket: string) =>
  (extra: Record<string, unknown> = {}) =>
    JSON.stringify({ cniVersion: '1.0.0', name: 'net1', type: 'midonet', agentSocket, ...extra });
const conf = confFor(NO_AGENT);

/** The CNI error object the shim printed: exit 1, no signal, a JSON object with code, msg and cniVersion. */
function errorOf(
  t: import('ava').ExecutionContext,
  name: string,
  r: Awaited<ReturnType<typeof run>>,
): { code?: number; msg?: string; cniVersion?: string } {
  t.is(r.signal, null, `${name}: killed by a signal (stderr: ${r.stderr})`);
  t.is(r.status, 1, `${name}: exit status`);
  try {
    const body = JSON.parse(r.stdout) as { code?: number; msg?: string; cniVersion?: string };
    t.is(typeof body.cniVersion, 'string', `${name}: error carries cniVersion`);
    return body;
  } catch {
    t.fail(`${name}: stdout is not an error object: ${r.stdout} / ${r.stderr}`);
    return {};
  }
}

test('malformed input table against a real agent: code and message for each, and nothing changes in the agent', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(1);
  t.teardown(() => cluster.close());
  const agent = cluster.agents[0]!;
  const conf = confFor(agent.socket);
  const state = async () => ({
    ports: await agent.api('/v1/ports'),
    ipam: await agent.api('/v1/ipam-blocks'),
    bridges: await agent.api('/v1/bridges'),
    veths: await workloadVeths(cluster.harness, agent.host),
  });
  const before = await state();
  const dir = await tempDir(t, 'malformed');
  const ns = await netns(t);
  const plainFile = join(dir, 'not-a-netns');
  await writeFile(plainFile, '');
  const add = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: ns.path, CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  const cases: Case[] = [
    { name: 'stdin is not JSON', env: add, stdin: '{"cniVersion": ', code: 6, msg: /not JSON/ },
    { name: 'stdin is empty', env: add, stdin: '', code: 6, msg: /no network configuration/ },
    { name: 'stdin is a JSON list', env: add, stdin: '[]', code: 6, msg: /must be a JSON object/ },
    { name: 'stdin is binary junk', env: add, stdin: Buffer.from([0, 255, 1, 123, 34, 0xc3, 0x28, 10]), code: 6, msg: /not JSON/ },
    {
      name: 'stdin is 3 MiB of config (forwarded whole) with a bad value',
      env: add,
      stdin: conf({ subnet: '10.0.0.0/33', pad: 'x'.repeat(3 << 20) }),
      code: 7,
      msg: /subnet="10\.0\.0\.0\/33"/,
    },
    { name: 'no CNI_COMMAND', env: { ...add, CNI_COMMAND: '' }, stdin: conf(), code: 4, msg: /CNI_COMMAND is not set/ },
    { name: 'unknown CNI_COMMAND', env: { ...add, CNI_COMMAND: 'FROB' }, stdin: conf(), code: 4, msg: /"FROB" is not one of/ },
    {
      name: 'missing container id, ifname and netns',
      env: { CNI_COMMAND: 'ADD', CNI_PATH: '/x' },
      stdin: conf(),
      code: 4,
      msg: /CNI_CONTAINERID is not set; CNI_IFNAME is not set; CNI_NETNS is not set/,
    },
    {
      name: 'bad container id',
      env: { ...add, CNI_CONTAINERID: '-bad id' },
      stdin: conf(),
      code: 4,
      msg: /CNI_CONTAINERID "-bad id" must match/,
    },
    {
      name: 'ifname too long',
      env: { ...add, CNI_IFNAME: 'a-very-long-interface' },
      stdin: conf(),
      code: 4,
      msg: /not a usable interface name/,
    },
    {
      name: 'netns does not exist',
      env: { ...add, CNI_NETNS: '/run/netns/does-not-exist-42' },
      stdin: conf(),
      code: 4,
      msg: /does-not-exist-42: no such file/,
    },
    { name: 'netns is a plain file', env: { ...add, CNI_NETNS: plainFile }, stdin: conf(), code: 4, msg: /is not a network namespace/ },
    // The agent's own namespace (the /proc/self it resolves is its own) is the host's: refused.
    {
      name: "netns is the agent's own",
      env: { ...add, CNI_NETNS: '/proc/self/ns/net' },
      stdin: conf(),
      code: 4,
      msg: /own \(host\) network namespace/,
    },
    {
      name: 'unknown CNI_ARGS key without IgnoreUnknown',
      env: { ...add, CNI_ARGS: 'FOO=bar' },
      stdin: conf(),
      code: 4,
      msg: /unknown key "FOO".*IgnoreUnknown/,
    },
    { name: 'CNI_ARGS not K=V', env: { ...add, CNI_ARGS: 'IgnoreUnknown=1;junk' }, stdin: conf(), code: 4, msg: /"junk" is not KEY=VALUE/ },
    {
      name: 'unknown cniVersion',
      env: add,
      stdin: conf({ cniVersion: '0.5.0' }),
      code: 1,
      msg: /speaks 0\.1\.0.*1\.1\.0.*asks for "0\.5\.0"/,
    },
    {
      name: 'CHECK below 0.4.0',
      env: { ...add, CNI_COMMAND: 'CHECK' },
      stdin: conf({ cniVersion: '0.3.1' }),
      code: 1,
      msg: /CHECK needs cniVersion 0\.4\.0/,
    },
    {
      name: 'GC below 1.1.0',
      env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
      stdin: conf({ 'cni.dev/valid-attachments': [] }),
      code: 1,
      msg: /GC needs cniVersion 1\.1\.0/,
    },
    {
      name: 'STATUS below 1.1.0',
      env: { CNI_COMMAND: 'STATUS', CNI_PATH: '/x' },
      stdin: conf(),
      code: 1,
      msg: /STATUS needs cniVersion 1\.1\.0/,
    },
    { name: 'bad CIDR', env: add, stdin: conf({ subnet: '10.0.0.0/33' }), code: 7, msg: /subnet="10\.0\.0\.0\/33": not a CIDR/ },
    { name: 'bad subnets entry', env: add, stdin: conf({ subnets: [{ cidr: 'ten/8' }] }), code: 7, msg: /subnets\[0\]\.cidr="ten\/8"/ },
    {
      name: 'missing network name',
      env: add,
      stdin: JSON.stringify({ cniVersion: '1.0.0', type: 'midonet' }),
      code: 7,
      msg: /name=undefined: the network name is required/,
    },
    { name: 'ipam key', env: add, stdin: conf({ ipam: { type: 'host-local' } }), code: 2, msg: /unsupported field: ipam=.*host-local/ },
    { name: 'bad MAC', env: add, stdin: conf({ runtimeConfig: { mac: 'zz:00' } }), code: 7, msg: /runtimeConfig\.mac="zz:00": not a MAC/ },
    {
      name: 'bad static IP',
      env: add,
      stdin: conf({ runtimeConfig: { ips: ['10.0.0.300'] } }),
      code: 7,
      msg: /runtimeConfig\.ips\[0\]="10\.0\.0\.300"/,
    },
    {
      name: 'bad port mapping',
      env: add,
      stdin: conf({ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80, protocol: 'tcp' }] } }),
      code: 7,
      msg: /portMappings\[0\]\.hostPort=0/,
    },
    { name: 'bad mtu', env: add, stdin: conf({ mtu: 10 }), code: 7, msg: /mtu=10/ },
    { name: 'createNetwork without subnet', env: add, stdin: conf({ createNetwork: true }), code: 7, msg: /needs "subnet"/ },
    {
      name: 'Mesos network_info not an object',
      env: add,
      stdin: conf({ args: { 'org.apache.mesos': { network_info: 3 } } }),
      code: 7,
      msg: /network_info/,
    },
    { name: 'CHECK without prevResult', env: { ...add, CNI_COMMAND: 'CHECK' }, stdin: conf(), code: 7, msg: /CHECK needs prevResult/ },
    {
      name: 'GC without valid attachments',
      env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
      stdin: conf({ cniVersion: '1.1.0' }),
      code: 7,
      msg: /GC needs cni\.dev\/valid-attachments/,
    },
    {
      name: 'GC with a malformed attachment',
      env: { CNI_COMMAND: 'GC', CNI_PATH: '/x' },
      stdin: conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: 'x' }] }),
      code: 7,
      msg: /valid-attachments\[0\].*needs containerID and ifname/,
    },
  ];
  for (const c of cases) {
    const body = errorOf(t, c.name, await run(bin, c.env, c.stdin, agent.socket));
    t.is(body.code, c.code, `${c.name}: code (msg: ${body.msg})`);
    t.regex(body.msg ?? '', c.msg, `${c.name}: message`);
  }
  t.deepEqual(await state(), before, 'no port, IPAM allocation, bridge or veth appeared in the agent');
});

// ---- The shim's own failures: nothing behind the socket that is the agent ----

const addEnv = (path: string) => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: path, CNI_IFNAME: 'eth0', CNI_PATH: '/x' });

test("no agent: ADD and DEL are code 11 naming the socket, STATUS is code 50; the error speaks the config's version", async (t) => {
  const bin = await buildPlugin();
  const ns = await netns(t);
  for (const [command, code, version] of [
    ['ADD', 11, '0.4.0'],
    ['DEL', 11, '1.0.0'],
    ['CHECK', 11, '1.0.0'],
    ['GC', 11, '1.1.0'],
    ['STATUS', 50, '1.1.0'],
  ] as const) {
    const body = errorOf(t, command, await run(bin, { ...addEnv(ns.path), CNI_COMMAND: command }, conf({ cniVersion: version })));
    t.is(body.code, code, `${command}: code`);
    t.is(body.cniVersion, version, `${command}: cniVersion`);
    t.is(body.msg, `cannot reach the bees agent at ${NO_AGENT}: no such socket (is the agent running?)`, `${command}: message`);
  }
  // An unknown version in the config: the error speaks the latest one.
  t.is(errorOf(t, 'odd version', await run(bin, addEnv(ns.path), conf({ cniVersion: '9.9.9' }))).cniVersion, '1.1.0');
  // No agentSocket: the default one is named.
  const dflt = errorOf(
    t,
    'default socket',
    await run(
      bin,
      addEnv(ns.path),
      JSON.stringify({ cniVersion: '1.0.0', name: 'n', type: 'midonet', nested: { agentSocket: '/not/top/level' } }),
    ),
  );
  t.regex(dflt.msg ?? '', /^cannot reach the bees agent at \/run\/bees\/workload\.sock: /);
});

test('no agent: junk, empty, deeply nested and huge stdin are CNI errors, never a crash', async (t) => {
  const bin = await buildPlugin();
  const ns = await netns(t);
  const inputs: [string, string | Buffer, number, RegExp][] = [
    ['empty', '', 11, /cannot reach/],
    ['binary junk', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) % 256)), 11, /cannot reach/],
    ['unterminated string', '{"agentSocket": "/tmp/x', 11, /at \/run\/bees\/workload\.sock/],
    [
      'escapes in the socket path',
      JSON.stringify({ agentSocket: '/nonexistent/\u00e9\t"q".sock' }),
      11,
      /at \/nonexistent\/\u00e9\t"q"\.sock: no such socket/,
    ],
    ['a socket path longer than a unix socket allows', JSON.stringify({ agentSocket: `/tmp/${'a'.repeat(300)}` }), 11, /too long/],
    ['200000 nested arrays', '{"a":' + '['.repeat(200_000), 11, /cannot reach/],
    ['over 4 MiB', 'x'.repeat(5 << 20), 6, /larger than 4194304 bytes/],
  ];
  for (const [name, stdin, code, msg] of inputs) {
    const body = errorOf(t, name, await run(bin, addEnv(ns.path), stdin));
    t.is(body.code, code, `${name}: code (msg: ${body.msg})`);
    t.regex(body.msg ?? '', msg, `${name}: message`);
  }
});

test('a socket that accepts and never answers: the shim gives up after agentTimeoutMs with code 11', async (t) => {
  const bin = await buildPlugin();
  const dir = await tempDir(t, 'silent');
  const ns = await netns(t);
  const socket = join(dir, 'silent.sock');
  const held: Socket[] = [];
  const server = createNetServer((s) => {
    held.push(s);
    s.on('error', () => undefined);
  }); // reads, never writes
  await new Promise<void>((r) => server.listen(socket, r));
  t.teardown(() => {
    for (const s of held) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const started = Date.now();
  const body = errorOf(t, 'silent', await run(bin, addEnv(ns.path), conf({ agentSocket: socket, agentTimeoutMs: 400 })));
  const took = Date.now() - started;
  t.is(body.code, 11);
  t.is(body.msg, `cannot reach the bees agent at ${socket}: no answer within 400 ms (is the agent running?)`);
  t.true(took >= 400 && took < 3000, `took ${took} ms`);
  t.true(held.length >= 1, 'the shim did connect');
});

test('something that is not the agent at the socket: code 11 with what it answered, not a crash', async (t) => {
  const bin = await buildPlugin();
  const dir = await tempDir(t, 'garbage');
  const ns = await netns(t);
  // Not the agent: an HTTP server that breaks the protocol, and one that hangs up at once.
  const teapot = join(dir, 'teapot.sock');
  const server = createServer((_q, s) => s.end('<html>teapot</html>'));
  await new Promise<void>((r) => server.listen(teapot, r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const hangup = join(dir, 'hangup.sock');
  const rude = createNetServer((s) => s.destroy());
  await new Promise<void>((r) => rude.listen(hangup, r));
  t.teardown(() => new Promise<void>((r) => rude.close(() => r())));
  const a = errorOf(t, 'teapot', await run(bin, addEnv(ns.path), conf({ agentSocket: teapot })));
  t.is(a.code, 11);
  t.regex(
    a.msg ?? '',
    /cannot reach the bees agent at .*teapot\.sock: it answered HTTP 200 without a valid cni-exit-code header.*<html>teapot/,
  );
  const b = errorOf(
    t,
    'hangup',
    await run(bin, { ...addEnv(ns.path), CNI_COMMAND: 'STATUS' }, conf({ agentSocket: hangup, cniVersion: '1.1.0' })),
  );
  t.is(b.code, 50);
  t.regex(b.msg ?? '', /cannot reach the bees agent at .*hangup\.sock: /);
});

test('VERSION is answered without the agent: every supported version, the asked one echoed', async (t) => {
  const bin = await buildPlugin();
  const { SUPPORTED_VERSIONS } = await import('../plugin/versions.js');
  for (const [stdin, asked] of [
    ['{"cniVersion":"0.4.0","agentSocket":"/nonexistent/x.sock"}', '0.4.0'],
    ['', '1.1.0'],
    ['  {"name":"n"}\n', '1.1.0'],
    ['{"cniVersion":"7.\\u0030"}', '7.\\u0030'],
  ] as const) {
    const r = await run(bin, { CNI_COMMAND: 'VERSION' }, stdin);
    t.is(r.status, 0, r.stdout);
    const out = JSON.parse(r.stdout) as { cniVersion: string; supportedVersions: string[] };
    t.deepEqual(out.supportedVersions, [...SUPPORTED_VERSIONS]);
    t.is(out.cniVersion, JSON.parse(`"${asked}"`));
  }
  for (const [stdin, msg] of [
    ['{"cniVersion": ', /not JSON/],
    ['[1]', /must be a JSON object/],
    [Buffer.from([0, 1, 2]), /not JSON/],
  ] as const) {
    const body = errorOf(t, `VERSION ${String(stdin)}`, await run(bin, { CNI_COMMAND: 'VERSION' }, stdin));
    t.is(body.code, 6);
    t.regex(body.msg ?? '', msg);
  }
});
