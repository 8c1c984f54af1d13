// `bees lb` against a real `bees api` on the file store: create with a health monitor, VIPs and members, tables
// and --json, changes and removal, and bad input refused with a message naming what is wrong (exit 2 for usage, 1
// for what the API refuses).
import test from 'ava';
import { ApiClient } from '../api/client.js';
import { bees, startBeesApi } from './bees-process.js';

test('bees lb: create, vip add, member add|set|rm, ls, show, rm against a real bees api', async (t) => {
  const { sock, env } = await startBeesApi(t, 'bees-cli-lb-');
  const ok = async (args: string[]) => {
    const r = await bees(args, env);
    t.is(r.code, 0, `${args.join(' ')}: ${r.err}`);
    return r.out;
  };
  const api = new ApiClient(`unix:${sock}`);
  await api.create('Router', { name: 'edge' });

  const lb = (await ok(['lb', 'create', 'edge', '--removal', 'cut', '--monitor', 'http', '--delay', '2', '--url-path', '/healthz'])).trim();
  const vip = (await ok(['lb', 'vip', 'add', lb, '10.96.0.10:80', '--node-port', '30080', '--sticky', '--affinity-timeout', '60'])).trim();
  const m1 = (await ok(['lb', 'member', 'add', lb, '10.1.0.5:8080', '--weight', '3'])).trim();
  await ok(['lb', 'member', 'add', lb, '10.1.0.6:8080', '--backup']);
  t.regex(await ok(['lb', 'member', 'set', lb, '10.1.0.6:8080', '--disable', '--weight', '2']), /10\.1\.0\.6:8080 weight 2 disabled/);

  const stored = await api.get('Vip', vip);
  t.like(stored, { address: '10.96.0.10', port: 80, nodePort: 30080, sessionPersistence: 'source_ip', affinityTimeoutS: 60 });
  const pool = (await api.list('Pool', { loadBalancerId: lb }))[0]!;
  t.like(pool, { memberRemoval: 'cut', protocol: 'tcp' });
  t.like(await api.get('HealthMonitor', pool.healthMonitorId!), { type: 'http', delay: 2, urlPath: '/healthz' });
  t.like(await api.get('PoolMember', m1), { weight: 3, adminStateUp: true });

  t.regex(
    await ok(['lb', 'ls']),
    new RegExp(`^ID\\s+ROUTER\\s+VIPS\\s+MEMBERS UP\\n${lb}\\s+edge\\s+tcp 10\\.96\\.0\\.10:80 node:30080 sticky\\s+1/2\\n$`),
  );
  const show = await ok(['lb', 'show', lb]);
  t.regex(show, /monitor:\s+http GET \/healthz expecting 200 every 2 s/);
  t.regex(show, /tcp 10\.96\.0\.10:80\s+30080\s+source 60 s\s+cluster\/cluster/);
  t.regex(show, /10\.1\.0\.6:8080\s+2\s+yes\s+disabled/);
  const json = JSON.parse(await ok(['lb', 'ls', '--json'])) as { id: string; members: unknown[]; vips: unknown[] }[];
  t.deepEqual(
    json.map((l) => [l.id, l.members.length, l.vips.length]),
    [[lb, 2, 1]],
  );

  // Bad input: usage errors exit 2 naming the flag; what the API refuses exits 1 with its message.
  const badAddr = await bees(['lb', 'member', 'add', lb, '10.1.0.7'], env);
  t.is(badAddr.code, 2);
  t.regex(badAddr.err, /'10\.1\.0\.7' is not ADDRESS:PORT/);
  const badPolicy = await bees(['lb', 'vip', 'add', lb, '10.96.0.11:80', '--external-policy', 'nearest'], env);
  t.is(badPolicy.code, 2);
  t.regex(badPolicy.err, /--external-policy: 'nearest' is not one of cluster, local/);
  const badWeight = await bees(['lb', 'member', 'add', lb, '10.1.0.7:80', '--weight', '70000'], env);
  t.is(badWeight.code, 1);
  t.regex(badWeight.err, /weight/);
  const noLb = await bees(['lb', 'show', 'f00'], env);
  t.is(noLb.code, 1);
  t.regex(noLb.err, /load balancer 'f00' not found/);

  await ok(['lb', 'member', 'rm', lb, m1]);
  await ok(['lb', 'vip', 'rm', lb, '10.96.0.10:80']);
  t.deepEqual(await api.list('Vip'), []);
  await ok(['lb', 'rm', lb]);
  t.deepEqual(await api.list('LoadBalancer'), []);
  t.deepEqual(await api.list('PoolMember'), []);
  t.deepEqual(await api.list('HealthMonitor'), [], 'the monitor made for it went with it');
});
