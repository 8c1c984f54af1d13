// Issue 10 item 4: the distributed L4 load balancer on three harness hosts (real agents, real ZooKeeper), driven
// only through the REST API: load balancers, pools, members, VIPs and health monitors written there, every agent
// deriving its `ip bees-lb` table and routing from the store (core/agent/plan-lb.ts), member statuses written by
// the agents' health monitors. Each member is a python server answering "<member> <client address it saw>" and
// then echoing, so a connection can be held open across a member change. The network is dual stack: the IPv6
// cases (VIP over the members' IPv6 addresses, TCP and UDP, affinity, hairpin, health monitors, refused input)
// run on the same cluster.
import test from 'ava';
import type { Pool, PoolMember, Router, Vip } from '../../core/model/types.js';
import { LB_RULE_PRIORITY } from '../../core/datapath/nft/lb.js';
import { eventually, startCluster, type Cluster, type ClusterHost, type Workload } from '../../testbed/cluster.js';

const SERVER = `
import socketserver,sys,threading
name=sys.argv[1].encode()
class T(socketserver.BaseRequestHandler):
  def handle(self):
    self.request.sendall(name+b' '+self.client_address[0].encode())
    while True:
      d=self.request.recv(64)
      if not d: break
      self.request.sendall(d)
class U(socketserver.BaseRequestHandler):
  def handle(self): self.request[1].sendto(name+b' '+self.client_address[0].encode(), self.client_address)
import socket
socketserver.ThreadingTCPServer.allow_reuse_address=True
socketserver.ThreadingTCPServer.daemon_threads=True
socketserver.ThreadingTCPServer.request_queue_size=256
class V6:
  address_family=socket.AF_INET6
  def server_bind(self):
    self.socket.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1); super().server_bind()
class T6(V6,socketserver.ThreadingTCPServer): pass
class U6(V6,socketserver.ThreadingUDPServer): pass
# IPv6 first: the test waits for the IPv4 listener, which is then the last one made.
servers=[T6(('::',8080),T),U6(('::',8080),U),socketserver.ThreadingUDPServer(('0.0.0.0',8080),U)]
for x in servers: threading.Thread(target=x.serve_forever,daemon=True).start()
socketserver.ThreadingTCPServer(('0.0.0.0',8080),T).serve_forever()
`;

// N TCP connections to ADDR:PORT, one after the other; prints {"<member> <seen client>": count}.
const TCP_CLIENT = `
import socket,sys,json,collections
c=collections.Counter()
for i in range(int(sys.argv[3])):
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); c[s.recv(64).decode()]+=1; s.close()
  except Exception as e: c['error '+str(e)]+=1
print(json.dumps(c))
`;

// One connection held open: the greeting goes to FILE.g; once FILE.go exists, "ping" is sent and the echo printed.
const HOLD_CLIENT = `
import socket,sys,os,time
f=sys.argv[3]
s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5); open(f+'.g','w').write(s.recv(64).decode())
while not os.path.exists(f+'.go'): time.sleep(0.05)
try:
  s.settimeout(3); s.sendall(b'ping'); r=s.recv(64).decode(); print('ok '+r if r else 'closed')
except Exception as e: print('error '+str(e))
`;

// One UDP datagram from a fixed source port; prints the answer.
const UDP_CLIENT = `
import socket,sys
v6=':' in sys.argv[1]
s=socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('::' if v6 else '0.0.0.0',int(sys.argv[3]))); s.settimeout(2)
s.sendto(b'hi',(sys.argv[1],int(sys.argv[2])))
try: print(s.recv(64).decode())
except Exception as e: print('error '+str(e))
`;

interface Ctx {
  c: Cluster;
  members: Workload[];
  clients: Workload[];
  servers: Map<Workload, { stop(): void }>;
  serve(m: Workload): Promise<void>;
  router: Router;
  gateway: string;
  gateway6: string;
}
let ctx: Ctx;

async function tcp(c: Cluster, from: string, addr: string, n: number, port = 80): Promise<Record<string, number>> {
  const r = await c.harness.exec(from, ['python3', '-c', TCP_CLIENT, addr, String(port), String(n)]);
  if (r.code !== 0) throw new Error(`client in ${from}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, number>;
}
async function udp(c: Cluster, from: Workload, vip: string, sport: number): Promise<string> {
  return (await c.harness.exec(from.netns, ['python3', '-c', UDP_CLIENT, vip, '80', String(sport)])).stdout.trim();
}

/** Counts per member name, summed over clients. */
function byMember(results: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) for (const [k, n] of Object.entries(r)) out[k.split(' ')[0]!] = (out[k.split(' ')[0]!] ?? 0) + n;
  return out;
}

const api = () => ctx.c.hosts[0]!.api;

/** A load balancer on the router, one pool with `members` (workloads, weights), one VIP. */
async function service(opts: {
  address: string;
  protocol?: 'tcp' | 'udp';
  members: [Workload, number][];
  pool?: Partial<Pool>;
  vip?: Partial<Vip>;
  router?: Router;
  api?: ClusterHost['api'];
  /** Members by their IPv6 address (the VIP's address then is IPv6 too). */
  family?: 4 | 6;
  /** Member status as written (default 'up'; 'unknown' leaves it to a health monitor). */
  status?: PoolMember['status'];
}): Promise<{ pool: Pool; vip: Vip; members: PoolMember[]; lbId: string }> {
  const a = opts.api ?? api();
  const lbId = (await a.create('LoadBalancer', { routerId: (opts.router ?? ctx.router).id })).id;
  const pool = await a.create('Pool', { loadBalancerId: lbId, protocol: opts.protocol ?? 'tcp', ...opts.pool });
  const members: PoolMember[] = [];
  for (const [w, weight] of opts.members)
    members.push(
      await a.create('PoolMember', {
        poolId: pool.id,
        address: opts.family === 6 ? w.ip6! : w.ip4!,
        port: 8080,
        weight,
        status: opts.status ?? 'up',
      }),
    );
  const vip = await a.create('Vip', { poolId: pool.id, address: opts.address, port: 80, protocol: opts.protocol ?? 'tcp', ...opts.vip });
  return { pool, vip, members, lbId };
}

test.before(async () => {
  const c = await startCluster({ hosts: 3 });
  const create = { subnets: [{ cidr: '10.62.0.0/24' }, { cidr: 'fd00:62::/64' }] };
  const members: Workload[] = [];
  const clients: Workload[] = [];
  for (const [i, h] of c.hosts.entries()) {
    members.push(await c.attach(h, `m${i + 1}`, { network: 'svc', create }));
    clients.push(await c.attach(h, `c${i + 1}`, { network: 'svc' }));
  }
  const servers = new Map<Workload, { stop(): void }>();
  const serve = async (m: Workload) => {
    servers.set(
      m,
      await c.helper(
        m.netns,
        ['python3', '-c', SERVER, m.name],
        async () => (await c.harness.exec(m.netns, ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
      ),
    );
  };
  for (const m of members) await serve(m);
  const gateway = clients[0]!.result.ips.find((i) => !i.address.includes(':'))!.gateway!;
  const gateway6 = clients[0]!.result.ips.find((i) => i.address.includes(':'))!.gateway!;
  for (const m of members) for (const w of [...members, ...clients]) if (w !== m) await c.pingEventually(w.netns, m.ip4!);
  const router = (await c.hosts[0]!.api.list('Router')).find((r) => r.name === 'default')!;
  ctx = { c, members, clients, servers, serve, router, gateway, gateway6 };
});

test.after.always(async () => {
  await ctx?.c.close();
});

test.serial('weights spread connections from clients on every host; the client address is kept', async (t) => {
  const { c, clients } = ctx;
  const WEB = '10.96.0.10';
  const s = await service({ address: WEB, members: ctx.members.map((m, i) => [m, i + 1]) });
  t.teardown(() => api().delete('LoadBalancer', s.lbId));
  // Written through one host's API: every host's agent applies it from the store.
  await eventually(
    async () => (await Promise.all(clients.map((cl) => tcp(c, cl.netns, WEB, 1)))).every((r) => !Object.keys(r)[0]!.startsWith('error')),
    15_000,
    'the VIP answers from every host',
  );
  // Weights 1:2:3, 100 connections from a client on each host. Each count is Binomial(300, w/6): it must lie within
  // 4.5 standard deviations of its mean (a false failure about once in 150 000 runs; equal weights, 100 each, fall
  // far outside the bounds for 1 and 3).
  const spread = await Promise.all(clients.map((cl) => tcp(c, cl.netns, WEB, 100)));
  const counts = byMember(spread);
  t.log('spread over members by weight 1:2:3 of 300 connections', counts);
  const total = 300;
  for (const [i, w] of [1, 2, 3].entries()) {
    const p = w / 6;
    const mean = total * p;
    const tol = 4.5 * Math.sqrt(total * p * (1 - p));
    const got = counts[`m${i + 1}`] ?? 0;
    t.true(Math.abs(got - mean) <= tol, `m${i + 1} (weight ${w}) got ${got} of ${total}, expected ${mean} ± ${tol.toFixed(1)}`);
  }
  t.deepEqual(
    Object.keys(counts).filter((k) => k.startsWith('error')),
    [],
    'every connection was answered',
  );
  for (const [i, r] of spread.entries()) for (const k of Object.keys(r)) t.is(k.split(' ')[1], clients[i]!.ip4!, `seen client of ${k}`);

  // A weight change through the API: m3 to 0 leaves rotation everywhere.
  const changedAt = Date.now();
  await api().update('PoolMember', s.members[2]!.id, { weight: 0 });
  await eventually(async () => !(await tcp(c, clients[0]!.netns, WEB, 20))[`m3 ${clients[0]!.ip4}`], 10_000, 'weight 0 applied');
  t.log(`weight 0 through h1's API: m3 out of rotation for c1 on h1 within ${Date.now() - changedAt} ms (20 connections per probe)`);
  const after = byMember(await Promise.all(clients.map((cl) => tcp(c, cl.netns, WEB, 30))));
  t.is(after.m3 ?? 0, 0, `a member of weight 0 gets no new connection: ${JSON.stringify(after)}`);
});

test.serial('affinity by source keeps a client on one member, with the VIP timeout', async (t) => {
  const { c, clients } = ctx;
  const STICKY = '10.96.0.11';
  const s = await service({
    address: STICKY,
    members: ctx.members.map((m) => [m, 1]),
    vip: { sessionPersistence: 'source_ip', affinityTimeoutS: 600 },
  });
  t.teardown(() => api().delete('LoadBalancer', s.lbId));
  await eventually(async () => !Object.keys(await tcp(c, clients[0]!.netns, STICKY, 1))[0]!.startsWith('error'), 15_000, 'VIP up');
  for (const cl of clients) {
    const r = await tcp(c, cl.netns, STICKY, 30);
    t.is(Object.keys(r).length, 1, `${cl.name} stuck to one member: ${JSON.stringify(r)}`);
  }
  const sets = await c.harness.exec(c.hosts[0]!.host, ['nft', 'list', 'table', 'ip', 'bees-lb']);
  t.regex(sets.stdout, /set a-[^{]+\{[^}]*timeout 10m/s, 'the affinity sets carry the VIP timeout');
});

test.serial('hairpin: a member reaching its own VIP is answered by itself, seeing the gateway', async (t) => {
  const { c } = ctx;
  const SELF = '10.96.0.12';
  const s = await service({ address: SELF, members: [[ctx.members[0]!, 1]] });
  t.teardown(() => api().delete('LoadBalancer', s.lbId));
  const want = { [`m1 ${ctx.gateway}`]: 5 };
  await eventually(async () => JSON.stringify(await tcp(c, ctx.members[0]!.netns, SELF, 5)) === JSON.stringify(want), 15_000, 'hairpin');
  t.deepEqual(await tcp(c, ctx.members[0]!.netns, SELF, 5), want);
});

test.serial(
  'IPv6: a VIP over the members’ IPv6 addresses spreads TCP, keeps the client, sticks, hairpins; UDP moves on a cut',
  async (t) => {
    const { c, clients, members } = ctx;
    const WEB6 = 'fd00:96::10';
    const STICKY6 = 'fd00:96::11';
    const SELF6 = 'fd00:96::12';
    const DNS6 = 'fd00:96::15';
    const web = await service({ address: WEB6, family: 6, members: members.map((m) => [m, 1]) });
    const sticky = await service({
      address: STICKY6,
      family: 6,
      members: members.map((m) => [m, 1]),
      vip: { sessionPersistence: 'source_ip', affinityTimeoutS: 600 },
    });
    const self = await service({ address: SELF6, family: 6, members: [[members[0]!, 1]] });
    const dns = await service({
      address: DNS6,
      family: 6,
      protocol: 'udp',
      members: [
        [members[1]!, 1],
        [members[2]!, 1],
      ],
      pool: { memberRemoval: 'cut' },
    });
    t.teardown(async () => {
      for (const s of [web, sticky, self, dns]) await api().delete('LoadBalancer', s.lbId);
    });
    await eventually(
      async () => (await Promise.all(clients.map((cl) => tcp(c, cl.netns, WEB6, 1)))).every((r) => !Object.keys(r)[0]!.startsWith('error')),
      15_000,
      'the IPv6 VIP answers from every host',
    );
    // 30 connections from a client on each host over three members of weight 1: each gets some (a member missing all
    // 90 has probability (2/3)^90 ≈ 1e-16), every one answered, every member saw the client's own IPv6 address.
    const spread = await Promise.all(clients.map((cl) => tcp(c, cl.netns, WEB6, 30)));
    const counts = byMember(spread);
    t.log('IPv6 VIP, 90 connections over three members', counts);
    t.deepEqual(Object.keys(counts).sort(), ['m1', 'm2', 'm3'], `every member and no error: ${JSON.stringify(counts)}`);
    for (const [i, r] of spread.entries()) for (const k of Object.keys(r)) t.is(k.split(' ')[1], clients[i]!.ip6!, `seen client of ${k}`);
    const h1 = (await c.harness.exec(c.hosts[0]!.host, ['nft', 'list', 'table', 'ip6', 'bees-lb'])).stdout;
    t.regex(h1, /fd00:96::10 \. tcp \. 80 : goto v-/, 'the VIP is in the IPv6 table');
    t.notRegex(
      (await c.harness.exec(c.hosts[0]!.host, ['nft', 'list', 'table', 'ip', 'bees-lb'])).stdout,
      /fd00:96/,
      'not in the IPv4 one',
    );

    for (const cl of clients) {
      const r = await tcp(c, cl.netns, STICKY6, 20);
      t.is(Object.keys(r).length, 1, `${cl.name} stuck to one member over IPv6: ${JSON.stringify(r)}`);
    }
    t.regex(h1, /set a-[^{]+\{\s*type ipv6_addr[^}]*timeout 10m/s, 'IPv6 affinity sets with the VIP timeout');

    const want = { [`m1 ${ctx.gateway6}`]: 5 };
    await eventually(
      async () => JSON.stringify(await tcp(c, members[0]!.netns, SELF6, 5)) === JSON.stringify(want),
      10_000,
      'IPv6 hairpin',
    );

    const cl = clients[0]!;
    const first = await eventually(
      async () => {
        const r = await udp(c, cl, DNS6, 40001);
        return /^m[23] /.test(r) && r;
      },
      15_000,
      'UDP over IPv6 answered by a member',
    );
    t.is(first.split(' ')[1], cl.ip6!, 'the UDP member saw the client');
    t.is(await udp(c, cl, DNS6, 40001), first, 'same flow, same member');
    const gone = first.split(' ')[0]!;
    await api().delete('PoolMember', dns.members[gone === 'm2' ? 0 : 1]!.id);
    const stay = gone === 'm2' ? 'm3' : 'm2';
    await eventually(async () => (await udp(c, cl, DNS6, 40001)).startsWith(`${stay} `), 10_000, 'the IPv6 UDP flow moved (its entry cut)');
  },
);

test.serial('IPv6 VIPs refused where they could not work: 400 naming the address', async (t) => {
  const { members } = ctx;
  const lbId = (await api().create('LoadBalancer', { routerId: ctx.router.id })).id;
  t.teardown(() => api().delete('LoadBalancer', lbId));
  const pool = await api().create('Pool', { loadBalancerId: lbId });
  await api().create('PoolMember', { poolId: pool.id, address: members[0]!.ip4!, port: 8080 });
  const e = await t.throwsAsync(api().create('Vip', { poolId: pool.id, address: 'fd00:96::20', port: 80 }));
  t.like(e, { status: 400, field: 'address' });
  t.regex(e.message, /IPv6 VIP would have no member/);
  // A router whose networks are IPv4 only: an IPv6 VIP is outside every subnet.
  const v4only = await api().create('Bridge', { name: 'v4only', subnets: [{ cidr: '10.63.0.0/24' }] });
  const r = await api().create('Router', { name: 'v4only' });
  t.teardown(async () => {
    await api().detachRouter(r.id, v4only.id);
    await api().delete('Router', r.id);
    await api().delete('Bridge', v4only.id);
  });
  await api().attachRouter(r.id, v4only.id);
  const lb2 = (await api().create('LoadBalancer', { routerId: r.id })).id;
  const p2 = await api().create('Pool', { loadBalancerId: lb2 });
  const e2 = await t.throwsAsync(api().create('Vip', { poolId: p2.id, address: 'fd00:96::21', port: 80 }));
  t.like(e2, { status: 400, field: 'address' });
  t.regex(e2.message, /outside the subnets of every network/);
});

test.serial("a disabled member's connections drain, or are cut; UDP moves after a member leaves a 'cut' pool", async (t) => {
  const { c, clients } = ctx;
  const DRAIN = '10.96.0.13';
  const CUT = '10.96.0.14';
  const DNS = '10.96.0.15';
  const drain = await service({ address: DRAIN, members: [[ctx.members[1]!, 1]], pool: { memberRemoval: 'drain' } });
  const cut = await service({ address: CUT, members: [[ctx.members[2]!, 1]], pool: { memberRemoval: 'cut' } });
  const dns = await service({
    address: DNS,
    protocol: 'udp',
    members: [
      [ctx.members[1]!, 1],
      [ctx.members[2]!, 1],
    ],
    pool: { memberRemoval: 'cut' },
  });
  t.teardown(async () => {
    for (const s of [drain, cut, dns]) await api().delete('LoadBalancer', s.lbId);
  });
  const cl = clients[0]!;
  for (const vip of [DRAIN, CUT])
    await eventually(async () => !Object.keys(await tcp(c, cl.netns, vip, 1))[0]!.startsWith('error'), 15_000, vip);
  const file = (n: string) => `${ctx.c.hosts[0]!.host.stateDir}/hold-${n}`;
  const hold = (vip: string, n: string) => c.harness.exec(cl.netns, ['python3', '-c', HOLD_CLIENT, vip, '80', file(n)]);
  const held = [hold(DRAIN, 'drain'), hold(CUT, 'cut')];
  const { existsSync, writeFileSync } = await import('node:fs');
  await eventually(async () => existsSync(`${file('drain')}.g`) && existsSync(`${file('cut')}.g`), 10_000, 'held connections open');

  const first = await eventually(
    async () => {
      const r = await udp(c, cl, DNS, 40000);
      return /^m[23] /.test(r) && r;
    },
    15_000,
    'UDP answered by a member',
  );
  t.is(await udp(c, cl, DNS, 40000), first, 'same flow, same member');
  const gone = first.split(' ')[0]!;
  const stay = gone === 'm2' ? 'm3' : 'm2';

  await api().update('PoolMember', drain.members[0]!.id, { adminStateUp: false });
  await api().update('PoolMember', cut.members[0]!.id, { adminStateUp: false });
  await api().delete('PoolMember', dns.members[gone === 'm2' ? 0 : 1]!.id);
  for (const vip of [DRAIN, CUT])
    await eventually(
      async () => Object.keys(await tcp(c, cl.netns, vip, 1))[0]!.startsWith('error'),
      10_000,
      `${vip} takes no new connection`,
    );
  writeFileSync(`${file('drain')}.go`, '');
  writeFileSync(`${file('cut')}.go`, '');
  const [d, k] = await Promise.all(held);
  t.is(d!.stdout.trim(), 'ok ping', "drain: the disabled member's open connection goes on");
  t.notRegex(k!.stdout.trim(), /^ok/, `cut: the open connection is gone (${k!.stdout.trim()})`);
  await eventually(async () => (await udp(c, cl, DNS, 40000)).startsWith(`${stay} `), 10_000, 'the UDP flow moved to the remaining member');
});

test.serial('health monitors: a killed member leaves rotation within two intervals and comes back (both families)', async (t) => {
  const { c, clients } = ctx;
  const HM = '10.96.0.16';
  const HM6 = 'fd00:96::16';
  const monitor = await api().create('HealthMonitor', { type: 'tcp', delay: 1, timeout: 1, maxRetries: 2 });
  const s = await service({
    address: HM,
    members: [
      [ctx.members[0]!, 1],
      [ctx.members[1]!, 1],
    ],
    pool: { healthMonitorId: monitor.id },
  });
  t.teardown(async () => {
    await api().delete('LoadBalancer', s.lbId);
    await api().delete('HealthMonitor', monitor.id);
  });
  // Dual stack: the same pool also holds m1 and m2 by their IPv6 addresses, status left to the monitor (its
  // probes go to the IPv6 addresses), and an IPv6 VIP.
  const six: PoolMember[] = [];
  for (const w of [ctx.members[0]!, ctx.members[1]!])
    six.push(await api().create('PoolMember', { poolId: s.pool.id, address: w.ip6!, port: 8080 }));
  await api().create('Vip', { poolId: s.pool.id, address: HM6, port: 80 });
  const m2 = s.members[1]!.id;
  const status = async (id: string) => (await api().get('PoolMember', id)).status;
  await eventually(async () => (await status(m2)) === 'up' && (await status(s.members[0]!.id)) === 'up', 15_000, 'members up');
  await eventually(async () => (await status(six[0]!.id)) === 'up' && (await status(six[1]!.id)) === 'up', 15_000, 'IPv6 members up');
  await eventually(async () => (byMember([await tcp(c, clients[0]!.netns, HM, 20)]).m2 ?? 0) > 0, 10_000, 'm2 in rotation');
  await eventually(async () => (byMember([await tcp(c, clients[0]!.netns, HM6, 20)]).m2 ?? 0) > 0, 10_000, 'm2 in rotation (IPv6)');
  const killedAt = Date.now();
  ctx.servers.get(ctx.members[1]!)!.stop();
  await eventually(async () => (await status(m2)) === 'down', 10_000, 'm2 down in the store', 50);
  const downAt = Date.now();
  await eventually(async () => !byMember([await tcp(c, clients[2]!.netns, HM, 10)]).m2, 10_000, 'm2 out of rotation on h3', 50);
  const outAt = Date.now();
  t.log(
    `m2 written down ${downAt - killedAt} ms after its server was killed (interval 1 s, 2 retries), out of rotation on h3 ${outAt - killedAt} ms after`,
  );
  // Two intervals, plus the probe timeout and the store's propagation.
  t.true(outAt - killedAt <= 2 * 1000 + 1000 + 1500, `out within two intervals: ${outAt - killedAt} ms`);
  const only = byMember(await Promise.all(clients.map((cl) => tcp(c, cl.netns, HM, 20))));
  t.deepEqual(only, { m1: 60 }, 'only the healthy member answers');
  await eventually(async () => (await status(six[1]!.id)) === 'down', 10_000, 'm2 down by its IPv6 address too');
  await eventually(async () => !byMember([await tcp(c, clients[2]!.netns, HM6, 10)]).m2, 10_000, 'm2 out of the IPv6 VIP on h3');
  t.deepEqual(byMember(await Promise.all(clients.map((cl) => tcp(c, cl.netns, HM6, 10)))), { m1: 30 }, 'IPv6: only m1');
  await ctx.serve(ctx.members[1]!);
  await eventually(async () => (await status(m2)) === 'up', 10_000, 'm2 up again');
  await eventually(async () => (await status(six[1]!.id)) === 'up', 10_000, 'm2 up again (IPv6)');
  await eventually(async () => (byMember([await tcp(c, clients[0]!.netns, HM, 30)]).m2 ?? 0) > 0, 10_000, 'm2 back in rotation');
  await eventually(async () => (byMember([await tcp(c, clients[0]!.netns, HM6, 30)]).m2 ?? 0) > 0, 10_000, 'm2 back (IPv6)');

  // HTTP: a path that answers 404 is unhealthy.
  const http = await api().create('HealthMonitor', {
    type: 'http',
    delay: 1,
    timeout: 1,
    maxRetries: 1,
    urlPath: '/nope',
    expectedCodes: '200',
  });
  t.teardown(() => api().delete('HealthMonitor', http.id));
  const web = await c.helper(
    ctx.members[2]!.netns,
    // Bound to '::', python's http.server takes IPv4 as well (dual stack).
    ['python3', '-m', 'http.server', '--bind', '::', '8081'],
    async () => (await c.harness.exec(ctx.members[2]!.netns, ['sh', '-c', 'ss -ltn | grep -q ":8081 "'])).code === 0,
  );
  t.teardown(() => web.stop());
  const lb = (await api().create('LoadBalancer', { routerId: ctx.router.id })).id;
  t.teardown(() => api().delete('LoadBalancer', lb));
  const pool = await api().create('Pool', { loadBalancerId: lb, healthMonitorId: http.id });
  const hm = await api().create('PoolMember', { poolId: pool.id, address: ctx.members[2]!.ip4!, port: 8081 });
  const hm6 = await api().create('PoolMember', { poolId: pool.id, address: ctx.members[2]!.ip6!, port: 8081 });
  await api().create('Vip', { poolId: pool.id, address: '10.96.0.17', port: 80 });
  const both = async (want: string) => (await status(hm.id)) === want && (await status(hm6.id)) === want;
  await eventually(() => both('down'), 10_000, 'HTTP 404 is down (both families)');
  await api().update('HealthMonitor', http.id, { urlPath: '/' });
  await eventually(() => both('up'), 10_000, 'HTTP 200 is up (both families: the IPv6 URL is bracketed)');
});

test.serial('NodePort: the VIP on every host underlay address, from the outside; local policy keeps the client', async (t) => {
  const { c } = ctx;
  const s = await service({
    address: '10.96.0.20',
    members: [
      [ctx.members[0]!, 1],
      [ctx.members[1]!, 1],
    ],
    vip: { nodePort: 30080 },
  });
  t.teardown(() => api().delete('LoadBalancer', s.lbId));
  const out = `/run/netns/${c.harness.outsideNs}`;
  // Cluster policy: every host answers, h3 (no member) through the others; the members see a host address.
  for (const h of c.hosts) {
    const r = await eventually(
      async () => {
        const x = await tcp(c, out, h.host.underlayIp, 20, 30080);
        return !Object.keys(x).some((k) => k.startsWith('error')) && x;
      },
      15_000,
      `node port on ${h.host.name}`,
    );
    t.log(`${h.host.name}: ${JSON.stringify(r)}`);
    const seen = new Set(Object.keys(r).map((k) => k.split(' ')[1]));
    if (h === c.hosts[2])
      t.true(
        [...seen].every((a) => a !== c.harness.outsideIp),
        'forwarded connections are masqueraded',
      );
  }
  // Local policy: only local members, the client's address kept; a host without members answers nothing.
  await api().update('Vip', s.vip.id, { externalTrafficPolicy: 'local' });
  const h1 = await eventually(
    async () => {
      const x = await tcp(c, out, c.hosts[0]!.host.underlayIp, 10, 30080);
      return JSON.stringify(x) === JSON.stringify({ [`m1 ${c.harness.outsideIp}`]: 10 }) && x;
    },
    10_000,
    'local policy on h1',
  );
  t.truthy(h1);
  t.true(
    Object.keys(await tcp(c, out, c.hosts[2]!.host.underlayIp, 2, 30080)).every((k) => k.startsWith('error')),
    'h3 has no local member',
  );
});

test.serial('tenants with the same subnet and the same VIP address stay apart', async (t) => {
  const { c } = ctx;
  const VIP = '10.96.0.30';
  const create = { subnets: [{ cidr: '10.62.0.0/24' }] };
  const other = await c.attach(c.hosts[1]!, 'o1', { tenant: 'other', network: 'svc', create });
  const otherClient = await c.attach(c.hosts[0]!, 'oc1', { tenant: 'other', network: 'svc' });
  const srv = await c.helper(
    other.netns,
    ['python3', '-c', SERVER, 'o1'],
    async () => (await c.harness.exec(other.netns, ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
  );
  t.teardown(() => srv.stop());
  const tenant = (await api().list('Tenant')).find((x) => x.name === 'other')!;
  const router = (await api().list('Router')).find((r) => r.name === 'default' && r.tenantId === tenant.id)!;
  // Ours is m3, whose address differs from o1's: a VIP matched on the wrong bridge would reach m1 or o1 instead.
  t.not(ctx.members[2]!.ip4, other.ip4);
  const a = await service({ address: VIP, members: [[ctx.members[2]!, 1]] });
  const b = await service({ address: VIP, members: [[other, 1]], router });
  t.teardown(async () => {
    await api().delete('LoadBalancer', a.lbId);
    await api().delete('LoadBalancer', b.lbId);
  });
  await eventually(async () => (await tcp(c, otherClient.netns, VIP, 1))[`o1 ${otherClient.ip4}`] === 1, 15_000, 'other tenant VIP');
  t.deepEqual(
    await tcp(c, otherClient.netns, VIP, 10),
    { [`o1 ${otherClient.ip4}`]: 10 },
    "the other tenant's client reaches its own member",
  );
  t.deepEqual(await tcp(c, ctx.clients[0]!.netns, VIP, 10), { [`m3 ${ctx.clients[0]!.ip4}`]: 10 }, 'ours reaches ours');
});

/** No table, policy rule (either family) or host-namespace neighbour of the load balancer on a host. */
async function clean(c: Cluster, h: ClusterHost): Promise<boolean> {
  const table = await c.harness.exec(h.host, ['nft', 'list', 'table', 'ip', 'bees-lb']);
  const table6 = await c.harness.exec(h.host, ['nft', 'list', 'table', 'ip6', 'bees-lb']);
  const rules = (await c.harness.exec(h.host, ['ip', 'rule', 'show'])).stdout;
  const rules6 = (await c.harness.exec(h.host, ['ip', '-6', 'rule', 'show'])).stdout;
  const neigh = (await c.harness.exec(h.host, ['ip', 'neigh', 'show', 'nud', 'permanent'])).stdout;
  return (
    table.code !== 0 &&
    table6.code !== 0 &&
    !rules.includes(`${LB_RULE_PRIORITY}:`) &&
    !rules6.includes(`${LB_RULE_PRIORITY}:`) &&
    !/dev bb-/.test(neigh)
  );
}

test.serial('a load balancer deleted while an agent is down is swept when it comes back', async (t) => {
  const { c } = ctx;
  const h2 = c.hosts[1]!;
  const s = await service({ address: '10.96.0.41', members: [[ctx.members[0]!, 1]] });
  await eventually(
    async () => !Object.keys(await tcp(c, ctx.clients[1]!.netns, '10.96.0.41', 1))[0]!.startsWith('error'),
    15_000,
    'VIP up on h2',
  );
  await c.killAgent(h2);
  await api().delete('LoadBalancer', s.lbId);
  t.false(await clean(c, h2), 'the dead agent left its table');
  await c.startAgent(h2);
  await eventually(() => clean(c, h2), 10_000, 'h2 swept after restart');
  t.pass();
});

test.serial('nothing is left on any host once the load balancers are deleted', async (t) => {
  const { c } = ctx;
  const s = await service({ address: '10.96.0.40', members: [[ctx.members[0]!, 1]] });
  await eventually(
    async () => !Object.keys(await tcp(c, ctx.clients[1]!.netns, '10.96.0.40', 1))[0]!.startsWith('error'),
    15_000,
    'VIP up',
  );
  await api().delete('LoadBalancer', s.lbId);
  for (const h of c.hosts) {
    await eventually(() => clean(c, h), 10_000, `no table, policy rule or neighbour left on ${h.host.name}`);
  }
  t.pass();
});

test.serial("a host's client bridge gone: its routing goes, the VIP stays elsewhere", async (t) => {
  const { c } = ctx;
  const h3 = c.hosts[2]!;
  const s = await service({ address: '10.96.0.42', members: [[ctx.members[0]!, 1]] });
  t.teardown(() => api().delete('LoadBalancer', s.lbId));
  await eventually(
    async () => !Object.keys(await tcp(c, ctx.clients[2]!.netns, '10.96.0.42', 1))[0]!.startsWith('error'),
    15_000,
    'VIP up on h3',
  );
  t.false(await clean(c, h3));
  await c.detach(ctx.clients[2]!);
  await c.detach(ctx.members[2]!);
  await eventually(() => clean(c, h3), 10_000, 'h3 holds nothing of the load balancer once its bridge is gone');
  t.deepEqual(await tcp(c, ctx.clients[1]!.netns, '10.96.0.42', 3), { [`m1 ${ctx.clients[1]!.ip4}`]: 3 }, 'h2 still serves it');
});
