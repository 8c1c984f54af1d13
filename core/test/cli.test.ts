// The real `bees` CLI (node --import tsx app/main.ts) against a real `bees api` process on a unix socket.
import test from 'ava';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { bees, startBeesApi } from './bees-process.js';

test('bees against a real bees api on a unix socket: tables, --json, errors, exit codes', async (t) => {
  const { sock, env, server, log } = await startBeesApi(t, 'bees-cli-');

  const created = await bees(['net', 'create', 'blue', '--subnet', '10.80.0.0/24', '--subnet6', 'fd00:80::/64', '--mtu', '1400'], env);
  t.is(created.code, 0, created.err);
  t.regex(created.out.trim(), /^[0-9a-f-]{36}$/);
  // --api on the command line works as well as $BEES_API.
  const viaFlag = await bees(['net', 'create', 'green', '--subnet', '10.81.0.0/24', '--vni', '77', '--api', `unix:${sock}`]);
  t.is(viaFlag.code, 0, viaFlag.err);

  const ls = await bees(['net', 'ls'], env);
  t.is(ls.code, 0, ls.err);
  const lines = ls.out.trimEnd().split('\n');
  t.regex(lines[0]!, /^NAME\s+TENANT\s+ID\s+VNI\s+SUBNETS\s+GATEWAYS\s+MTU$/);
  t.is(lines.length, 3);
  // Columns are aligned: every row starts its ID column where the header does.
  const idCol = lines[0]!.indexOf('ID');
  for (const l of lines.slice(1)) t.regex(l.slice(idCol), /^[0-9a-f]{8}-/);
  t.regex(ls.out, /blue\s+default\s+\S+\s+1\s+10\.80\.0\.0\/24,fd00:80::\/64\s+10\.80\.0\.1,fd00:80::1\s+1400/);
  t.regex(ls.out, /green\s+default\s+\S+\s+77\s/);

  const json = await bees(['net', 'ls', '--json'], env);
  t.is(json.code, 0);
  const nets = JSON.parse(json.out) as { name: string; tunnelKey: number }[];
  t.deepEqual(
    nets.map((n) => [n.name, n.tunnelKey]),
    [
      ['blue', 1],
      ['green', 77],
    ],
  );

  const show = await bees(['net', 'show', 'blue', '--json'], env);
  t.is((JSON.parse(show.out) as { mtu: number }).mtu, 1400);

  // Errors: one line, "bees: …", non-zero exit.
  const overlap = await bees(['net', 'create', 'red', '--subnet', '10.80.0.128/25'], env);
  t.is(overlap.code, 1);
  t.regex(overlap.err, /^bees: subnet 10\.80\.0\.128\/25 overlaps 10\.80\.0\.0\/24 of bridge "blue"/);
  t.is(overlap.err.trim().split('\n').length, 1);
  const missing = await bees(['net', 'show', 'nope'], env);
  t.is(missing.code, 1);
  t.is(missing.err, "bees: network 'nope' not found\n");
  const badFlag = await bees(['net', 'ls', '--colour'], env);
  t.is(badFlag.code, 2);
  t.regex(badFlag.err, /^bees: net ls: Unknown option '--colour'/);
  const badMtu = await bees(['net', 'create', 'x', '--subnet', '10.82.0.0/24', '--mtu', 'big'], env);
  t.is(badMtu.code, 2);
  const noSubnet = await bees(['net', 'create', 'x'], env);
  t.is(noSubnet.code, 2);
  const unknown = await bees(['frobnicate'], env);
  t.is(unknown.code, 2);
  t.regex(unknown.err, /unknown command 'frobnicate'/);
  const down = await bees(['net', 'ls'], { BEES_API: `unix:${path.join(path.dirname(sock), 'nothing.sock')}` });
  t.is(down.code, 1);
  t.regex(down.err, /^bees: cannot reach the API/);

  // Routers.
  t.is((await bees(['router', 'create', 'edge'], env)).code, 0);
  const attach = await bees(['router', 'attach', 'edge', 'blue'], env);
  t.is(attach.code, 0, attach.err);
  t.regex(attach.out, /edge -> blue: 10\.80\.0\.1\/24, fd00:80::1\/64/);
  const routers = await bees(['router', 'ls'], env);
  t.regex(routers.out, /^NAME\s+TENANT\s+ID\s+SNAT\s+NETWORKS\n/);
  t.regex(routers.out, /edge\s+default\s+\S+\s+yes\s+blue\(10\.80\.0\.1\/24,fd00:80::1\/64\)/);
  const attachBad = await bees(['router', 'attach', 'edge', 'blue', '--address', '10.99.0.1/24'], env);
  t.is(attachBad.code, 1);

  // Ports and hosts.
  const ports = await bees(['port', 'ls', '--network', 'blue', '--json'], env);
  t.is(ports.code, 0, ports.err);
  t.is((JSON.parse(ports.out) as unknown[]).length, 1);
  const portTable = await bees(['port', 'ls'], env);
  t.regex(portTable.out, /bridge-link\s+blue/);
  t.regex(portTable.out, /router-link\s+edge/);
  const hosts = await bees(['host', 'ls'], env);
  t.is(hosts.code, 0);
  t.regex(hosts.out, /^NAME\s+ID\s+ADDRESSES\s+TUNNEL PORT\s+PORTS\s+ALIVE\n$/);
  const noHost = await bees(['port', 'ls', '--host', 'ghost'], env);
  t.is(noHost.err, "bees: host 'ghost' not found\n");

  const st = await bees(['status'], env);
  t.is(st.code, 0);
  t.regex(st.out, /store reachable: yes/);
  t.regex(st.out, /Bridge=2/);
  const stJson = JSON.parse((await bees(['status', '--json'], env)).out) as { counts: Record<string, number> };
  t.is(stJson.counts.Router, 1);

  // Help.
  const help = await bees(['help'], env);
  t.is(help.code, 0);
  for (const name of [
    'api',
    'net create',
    'net ls',
    'net show',
    'net rm',
    'router create',
    'router attach',
    'router ls',
    'port ls',
    'host ls',
    'status',
  ]) {
    t.true(help.out.includes(`  ${name} `), name);
  }
  const cmdHelp = await bees(['net', 'create', '--help'], env);
  t.is(cmdHelp.code, 0);
  t.regex(cmdHelp.out, /^usage: bees net create NAME --subnet CIDR/);

  // Remove: the router link goes with the network.
  const removed = await bees(['net', 'rm', 'blue'], env);
  t.is(removed.code, 0, removed.err);
  t.is((await bees(['net', 'rm', 'blue'], env)).code, 1);
  t.deepEqual(JSON.parse((await bees(['port', 'ls', '--json'], env)).out), []);

  // The api process stops cleanly on SIGTERM and removes its socket.
  server.kill('SIGTERM');
  const code = await new Promise((r) => server.once('close', r));
  t.is(code, 0, log());
  await t.throwsAsync(stat(sock));
});

test('bees api refuses bad arguments with a usage error', async (t) => {
  const noStore = await bees(['api', '--listen', 'unix:/tmp/x.sock']);
  t.is(noStore.code, 2);
  t.regex(noStore.err, /--store URL is required/);
  const badStore = await bees(['api', '--store', 'gopher://x', '--listen', 'unix:/tmp/x.sock']);
  t.is(badStore.code, 1);
  t.regex(badStore.err, /^bees: unsupported store URL/);
});
