// `bees trace` (core/cli/trace.ts) through the real CLI against a real `bees api` process (POST /v1/trace).
import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '../api/client.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'app/main.ts');

function bees(args: string[], env: Record<string, string>): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });
}

test('bees trace: the path, chain and rules for people and scripts, exit 3 when dropped, 4xx for bad ends', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-trace-'));
  const sock = path.join(dir, 'api.sock');
  const server = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, 'api', '--store', `file:${path.join(dir, 'store')}`, '--listen', `unix:${sock}`],
    { cwd: ROOT },
  );
  let log = '';
  server.stderr.on('data', (d) => {
    log += d;
  });
  t.teardown(async () => {
    if (server.exitCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('close', r));
    }
    await rm(dir, { recursive: true, force: true });
  });
  for (let i = 0; ; i++) {
    if (server.exitCode !== null || i > 1200) throw new Error(`bees api did not listen: ${log}`);
    if (
      await stat(sock).then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const env = { BEES_API: `unix:${sock}` };
  const api = new ApiClient(`unix:${sock}`);
  const net = await api.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.90.0.0/24' }] });
  const a = await api.create('Port', { bridgeId: net.id, ips: ['10.90.0.10'] });
  const b = await api.create('Port', { bridgeId: net.id, ips: ['10.90.0.20'] });
  const chain = await api.create('Chain', { name: 'web-only' });
  const web = await api.create('Rule', {
    chainId: chain.id,
    position: 1,
    action: 'accept',
    condition: { nwProto: 6, tpDst: { start: 80, end: 80 } },
  });
  const deny = await api.create('Rule', { chainId: chain.id, position: 2, action: 'drop', condition: {} });
  await api.update('Port', b.id, { outboundFilterId: chain.id });

  const ok = await bees(['trace', '10.90.0.10', '10.90.0.20', '--port', '80'], env);
  t.is(ok.code, 0, ok.err);
  t.regex(ok.out, new RegExp(`port-outbound +port ${b.id} +chain web-only`));
  t.regex(ok.out, new RegExp(`rule ${web.id}: matched → accept`));
  t.regex(ok.out, /verdict: delivered/);

  const dropped = await bees(['trace', a.id, '10.90.0.20', '--proto', 'udp', '--port', '53', '--json'], env);
  t.is(dropped.code, 3, dropped.err);
  const j = JSON.parse(dropped.out) as { delivered: boolean; request: { verdict: string; ruleId: string; stage: string } };
  t.false(j.delivered);
  t.like(j.request, { verdict: 'drop', ruleId: deny.id, stage: 'port-outbound' });

  const bad = await bees(['trace', '10.90.0.99', b.id], env);
  t.not(bad.code, 0);
  t.regex(bad.err, /no port, workload address or workload id "10.90.0.99"/);
  const usage = await bees(['trace', 'x', 'y', '--proto', 'sctp'], env);
  t.is(usage.code, 2);
});
