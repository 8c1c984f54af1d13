// Issue 10 item 4: the distributed L4 load balancer on three harness hosts (real agents, real ZooKeeper). The
// tables are applied by the test through applyLoadBalancers() (the agent does not drive them yet); every host gets
// the state of all VIPs, each member is a python server answering "<member> <client address it saw>".
import test from 'ava';
import { applyLoadBalancers, type LbHostSpec } from '../../core/datapath/nft/lb.js';
import { LB_ROUTE_TABLE_BASE } from '../../core/datapath/nft/lb.js';
import type { LbMember, LbVip } from '../../core/lb/compile.js';
import { HealthChecker, withHealth } from '../../core/lb/health.js';
import { execFileSync } from 'node:child_process';
import { eventually, startCluster, type Cluster, type Workload } from '../../testbed/cluster.js';

const SERVER = `
import socketserver,sys,threading
name=sys.argv[1].encode()
class T(socketserver.BaseRequestHandler):
  def handle(self): self.request.sendall(name+b' '+self.client_address[0].encode())
class U(socketserver.BaseRequestHandler):
  def handle(self): self.request[1].sendto(name+b' '+self.client_address[0].encode(), self.client_address)
socketserver.ThreadingTCPServer.allow_reuse_address=True
socketserver.ThreadingTCPServer.request_queue_size=256
t=socketserver.ThreadingTCPServer(('0.0.0.0',8080),T); u=socketserver.ThreadingUDPServer(('0.0.0.0',8080),U)
threading.Thread(target=u.serve_forever,daemon=True).start(); t.serve_forever()
`;

// N TCP connections to VIP:port, one after the other; prints {"<member> <seen client>": count}.
const TCP_CLIENT = `
import socket,sys,json,collections
c=collections.Counter()
for i in range(int(sys.argv[3])):
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); c[s.recv(64).decode()]+=1; s.close()
  except Exception as e: c['error '+str(e)]+=1
print(json.dumps(c))
`;

// One UDP datagram from a fixed source port; prints the answer.
const UDP_CLIENT = `
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
s.bind(('0.0.0.0',int(sys.argv[3]))); s.settimeout(2)
s.sendto(b'hi',(sys.argv[1],int(sys.argv[2])))
try: print(s.recv(64).decode())
except Exception as e: print('error '+str(e))
`;

async function tcp(c: Cluster, from: Workload, vip: string, n: number): Promise<Record<string, number>> {
  const r = await c.harness.exec(from.netns, ['python3', '-c', TCP_CLIENT, vip, '80', String(n)]);
  if (r.code !== 0) throw new Error(`client in ${from.name}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, number>;
}
async function udp(c: Cluster, from: Workload, vip: string, sport: number): Promise<string> {
  return (await c.harness.exec(from.netns, ['python3', '-c', UDP_CLIENT, vip, '80', String(sport)])).stdout.trim();
}

/** Counts per member name, summed over clients; the seen client addresses apart. */
function byMember(results: Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) for (const [k, n] of Object.entries(r)) out[k.split(' ')[0]!] = (out[k.split(' ')[0]!] ?? 0) + n;
  return out;
}

test('L4 load balancer: weights, client address, removal, affinity, hairpin, UDP after a member change, health monitors', async (t) => {
  const c = await startCluster({ hosts: 3 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const create = { subnets: [{ cidr: '10.62.0.0/24' }] };
  const members: Workload[] = [];
  const clients: Workload[] = [];
  for (const [i, h] of c.hosts.entries()) {
    members.push(await c.attach(h, `m${i + 1}`, { network: 'svc', create }));
    clients.push(await c.attach(h, `c${i + 1}`, { network: 'svc' }));
  }
  const servers = new Map<Workload, { stop(): void }>();
  const serve = async (m: Workload) =>
    servers.set(
      m,
      await c.helper(
        m.netns,
        ['python3', '-c', SERVER, m.name],
        async () => (await c.harness.exec(m.netns, ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
      ),
    );
  for (const m of members) await serve(m);
  const gateway = clients[0]!.result.ips[0]!.gateway!;
  t.true(await c.pingEventually(clients[0]!.netns, gateway));
  const gatewayMac = (
    JSON.parse((await c.harness.exec(clients[0]!.netns, ['ip', '-j', 'neigh', 'show', gateway])).stdout) as { lladdr: string }[]
  )[0]!.lladdr;
  for (const m of members)
    for (const w of [...members, ...clients]) if (w !== m) t.true(await c.pingEventually(w.netns, m.ip4!), `${w.name} -> ${m.name}`);

  const bridgeOf = async (w: Workload) =>
    (
      JSON.parse((await c.harness.exec(w.on.host, ['ip', '-j', 'link', 'show', w.result.hostInterface.name])).stdout) as {
        master: string;
      }[]
    )[0]!.master;
  const bridge = await bridgeOf(clients[0]!);
  const vni = parseInt(bridge.slice('bb-'.length), 16);
  const member = (i: number, weight: number): LbMember => ({
    id: members[i]!.name,
    address: members[i]!.ip4!,
    port: 8080,
    weight,
    adminStateUp: true,
    status: 'up',
  });
  const vip = (id: string, address: string, protocol: 'tcp' | 'udp', ms: LbMember[], sticky = false): LbVip => ({
    id,
    address,
    port: 80,
    protocol,
    members: ms,
    bridges: [bridge],
    ...(sticky ? { sessionPersistence: 'source_ip' as const } : {}),
  });
  const apply = async (vips: LbVip[]) => {
    await Promise.all(
      c.hosts.map(async (h) => {
        const spec: LbHostSpec = {
          bridges: [
            {
              ifname: bridge,
              gateway,
              gatewayMac,
              table: LB_ROUTE_TABLE_BASE + vni,
              subnets: ['10.62.0.0/24'],
              neighbours: members.map((m) => ({ address: m.ip4!, mac: m.result.interface.mac })),
            },
          ],
          vips,
          hairpinPorts: members.filter((m) => m.on === h).map((m) => m.result.hostInterface.name),
        };
        await applyLoadBalancers(h.host.netns, spec);
      }),
    );
  };
  const WEIGHTED = '10.96.0.10';
  const STICKY = '10.96.0.11';
  const SELF = '10.96.0.12';
  const UDP = '10.96.0.13';
  const weighted = [member(0, 1), member(1, 2), member(2, 3)];
  const base = [
    vip('web', WEIGHTED, 'tcp', weighted),
    vip('sticky', STICKY, 'tcp', [member(0, 1), member(1, 1), member(2, 1)], true),
    vip('self', SELF, 'tcp', [member(0, 1)]),
    vip('dns', UDP, 'udp', [member(1, 1), member(2, 1)]),
  ];
  await apply(base);

  // Weights 1:2:3, 100 connections from a client on each host. Each count is Binomial(300, w/6): it must lie within
  // 4.5 standard deviations of its mean (a false failure about once in 150 000 runs; equal weights, 100 each, fall
  // far outside the bounds for 1 and 3).
  const spread = await Promise.all(clients.map((cl) => tcp(c, cl, WEIGHTED, 100)));
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
  // The client's own address reached the member, whichever host it was on: no SNAT on the way.
  for (const [i, r] of spread.entries()) for (const k of Object.keys(r)) t.is(k.split(' ')[1], clients[i]!.ip4!, `seen client of ${k}`);

  // Affinity: each client stays on one member across 30 connections (three equal members).
  for (const cl of clients) {
    const r = await tcp(c, cl, STICKY, 30);
    t.is(Object.keys(r).length, 1, `${cl.name} stuck to one member: ${JSON.stringify(r)}`);
  }

  // Hairpin: a member reaching a VIP whose only member is itself; it sees the gateway as the client.
  t.deepEqual(await tcp(c, members[0]!, SELF, 5), { [`m1 ${gateway}`]: 5 }, 'hairpin');

  // UDP after a member change: the same client socket first reaches one member, keeps it, and moves to the other
  // one once that member is removed (its conntrack entry is cut).
  const first = await udp(c, clients[0]!, UDP, 40000);
  t.regex(first, /^m[23] /, 'UDP answered by a member');
  t.is(await udp(c, clients[0]!, UDP, 40000), first, 'same flow, same member');
  const gone = first.split(' ')[0]!;
  const stay = gone === 'm2' ? 'm3' : 'm2';

  // Removal: m3 leaves the weighted VIP, and the first UDP member leaves its pool.
  await apply([
    vip('web', WEIGHTED, 'tcp', [member(0, 1), member(1, 2)]),
    ...base.slice(1, 3),
    vip('dns', UDP, 'udp', [member(stay === 'm2' ? 1 : 2, 1)]),
  ]);
  const after = byMember(await Promise.all(clients.map((cl) => tcp(c, cl, WEIGHTED, 50))));
  t.is(after.m3 ?? 0, 0, `removed member got no new connection: ${JSON.stringify(after)}`);
  t.is((after.m1 ?? 0) + (after.m2 ?? 0), 150, 'the others took them all');
  t.is((await udp(c, clients[0]!, UDP, 40000)).split(' ')[0], stay, 'UDP flow moved to the remaining member');

  // Health monitors: each host checks its own members (TCP connect from its router instance, which holds the
  // gateway address on the bridge) every second, down after 2 failures. The test carries statuses to every host
  // (the agent would write PoolMember.status to the store). m2's server is killed: it must leave rotation within two
  // intervals (plus 1 s for the probes themselves; the apply that follows on three hosts is logged), and come back
  // once it listens again.
  const removed = [
    vip('web', WEIGHTED, 'tcp', [member(0, 1), member(1, 2)]),
    ...base.slice(1, 3),
    vip('dns', UDP, 'udp', [member(stay === 'm2' ? 1 : 2, 1)]),
  ];
  const monitor = { delay: 1, timeout: 1, maxRetries: 2 };
  const routerNs = (h: (typeof c.hosts)[0]) =>
    execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .find((n) => n.startsWith(h.host.routerNsPrefix));
  const status = new Map<string, 'up' | 'down'>();
  const changes: { member: string; status: string; at: number; applied: number }[] = [];
  const checkers = c.hosts.map((h) => {
    const ns = routerNs(h);
    if (!ns) throw new Error(`no router namespace on ${h.host.name}`);
    const ch = new HealthChecker(monitor, async (id, st) => {
      status.set(id, st);
      const at = Date.now();
      await apply(withHealth(removed, (m) => status.get(m)));
      changes.push({ member: id, status: st, at, applied: Date.now() });
    });
    ch.set(members.filter((m) => m.on === h).map((m) => ({ memberId: m.name, address: m.ip4!, port: 8080, netns: `/run/netns/${ns}` })));
    ch.start();
    return ch;
  });
  t.teardown(() => {
    for (const ch of checkers) ch.stop();
  });
  await eventually(async () => status.size === 3 && [...status.values()].every((s) => s === 'up'), 10_000, 'every member up');
  const killedAt = Date.now();
  servers.get(members[1]!)!.stop();
  const down = await eventually(async () => changes.find((x) => x.member === 'm2' && x.status === 'down'), 10_000, 'm2 down');
  t.log(
    `m2 found down ${down.at - killedAt} ms after its server was killed (interval ${monitor.delay} s), out of rotation on every host ${down.applied - killedAt} ms after`,
  );
  t.true(
    down.at - killedAt <= 2 * monitor.delay * 1000 + 1000,
    `found down within two intervals (+1 s for the probes): ${down.at - killedAt} ms`,
  );
  t.deepEqual(await tcp(c, clients[0]!, WEIGHTED, 60), { [`m1 ${clients[0]!.ip4}`]: 60 }, 'only the healthy member answers');
  await serve(members[1]!);
  await eventually(
    async () => changes.some((x) => x.member === 'm2' && x.status === 'up' && x.at > down.at),
    10_000,
    'm2 up again and applied',
  );
  const back = byMember([await tcp(c, clients[0]!, WEIGHTED, 60)]);
  t.true((back.m2 ?? 0) > 0 && (back.m1 ?? 0) + (back.m2 ?? 0) === 60, `m2 back in rotation: ${JSON.stringify(back)}`);
});
