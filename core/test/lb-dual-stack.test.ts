// Dual stack in the load balancer's compiler (core/lb/compile.ts): one pool with members of both families and a VIP
// of each, as a Kubernetes dual-stack Service writes it. Each family's table holds only its VIPs, each VIP only its
// family's members; the IPv6 script loads in a real kernel (a throwaway namespace) and a member change there
// touches only its VIP. The topology service (real file store) refuses family mismatches, naming the field.
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { nftApply, nftQuery } from '../datapath/nft/apply.js';
import { parseExisting } from '../datapath/nft/lb.js';
import { compileLb, leavingMembers, type LbHost, type LbMember } from '../lb/compile.js';
import { httpProbe, tcpConnectProbe } from '../lb/health.js';
import { spawn } from 'node:child_process';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

const exec = promisify(execFile);
const m = (id: string, address: string, more: Partial<LbMember> = {}): LbMember => ({
  id,
  address,
  port: 8080,
  weight: 1,
  adminStateUp: true,
  status: 'up',
  ...more,
});
const members = [m('a4', '10.9.0.5'), m('a6', 'fd00:9::5'), m('b6', 'fd00:9::6')];
const host = (ms: LbMember[] = members, sticky = true): LbHost => ({
  bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1', gateway6: 'fd00:9::1' }],
  vips: [
    { id: 'web4', address: '10.96.0.10', port: 80, protocol: 'tcp', members: ms, bridges: ['bb-1'] },
    {
      id: 'web6',
      address: 'fd00:96::10',
      port: 80,
      protocol: 'tcp',
      members: ms,
      bridges: ['bb-1'],
      ...(sticky ? { sessionPersistence: 'source_ip' as const, affinityTimeoutS: 60 } : {}),
    },
    { id: 'dns6', address: 'fd00:96::53', port: 53, protocol: 'udp', members: ms, bridges: ['bb-1'] },
  ],
});

test('each family table holds its own VIPs, each served by the members of its family', (t) => {
  const v4 = compileLb(host(), undefined, undefined, 4);
  const v6 = compileLb(host(), undefined, undefined, 6);
  t.regex(v4, /^add table ip bees-lb /m);
  t.regex(v6, /^add table ip6 bees-lb /m);
  t.notRegex(v4, /fd00/, 'no IPv6 VIP or member in the IPv4 table');
  t.notRegex(v6, /10\.9\.0\.5|10\.96/, 'no IPv4 VIP or member in the IPv6 table');
  t.regex(v4, /add rule ip bees-lb v-web4 numgen random mod 1 vmap \{ 0 : goto m-web4-a4 \}/);
  t.regex(v6, /add rule ip6 bees-lb v-web6 numgen random mod 2 vmap \{ 0 : goto m-web6-a6, 1 : goto m-web6-b6 \}/);
  t.regex(v6, /add rule ip6 bees-lb m-web6-a6 meta l4proto tcp dnat ip6 to \[fd00:9::5\]:8080/);
  t.regex(v6, /add set ip6 bees-lb a-web6-a6 \{ type ipv6_addr;/);
  t.regex(v6, /snat ip6 to fd00:9::1/, 'hairpin SNAT to the IPv6 gateway');
  // A bridge without an IPv6 gateway cannot carry an IPv6 VIP.
  const noGw = { ...host(), bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1' }] };
  t.throws(() => compileLb(noGw, undefined, undefined, 6), { message: /IPv6 VIP web6 names bridge bb-1, which has no IPv6 gateway/ });
  t.notThrows(() => compileLb(noGw, undefined, undefined, 4));
});

test('a leaving IPv6 member is told apart from its pool’s IPv4 members', (t) => {
  const after = host([members[0]!, members[1]!, m('b6', 'fd00:9::6', { adminStateUp: false })]);
  t.deepEqual(
    leavingMembers(host().vips, after.vips).map((l) => `${l.vipId} ${l.vip} ${l.member}`),
    ['web6 fd00:96::10 fd00:9::6', 'dns6 fd00:96::53 fd00:9::6'],
  );
});

test('the IPv6 table loads in the kernel, and a member change rewrites only its VIP', async (t) => {
  const ns = `lb6-${randomBytes(3).toString('hex')}`;
  await exec('ip', ['netns', 'add', ns]);
  t.teardown(() => exec('ip', ['netns', 'del', ns]).then(() => undefined));
  const netns = `/run/netns/${ns}`;
  const list = () => nftQuery(netns, 'list table ip6 bees-lb', 'list');
  const first = host();
  await nftApply(netns, compileLb(first, parseExisting(''), undefined, 6), 'first');
  await nftApply(netns, 'add element ip6 bees-lb a-web6-a6 { fd00:9::77 }\n', 'a sticky client');
  let listing = await list();
  t.regex(listing, /chain b-bb-1 \{\n\s+ip6 daddr \. meta l4proto \. th dport vmap \{[^}]*fd00:96::10 \. tcp \. 80 : goto v-web6/);
  t.regex(listing, /dnat to \[fd00:9::6\]:8080/);
  const second = host([members[0]!, members[1]!]);
  const script = compileLb(second, parseExisting(listing), first, 6);
  const touched = [...script.matchAll(/^flush chain ip6 bees-lb (\S+)$/gm)].map((x) => x[1]).sort();
  t.deepEqual(touched, ['m-dns6-b6', 'm-web6-b6', 'v-dns6', 'v-web6'], script);
  await nftApply(netns, script, 'second');
  listing = await list();
  t.false(listing.includes('fd00:9::6'), 'the removed member is gone');
  t.regex(listing, /set a-web6-a6 \{[^}]*elements = \{ fd00:9::77/s, 'a sticky client of a member still in rotation stays');
});

test('the topology refuses a VIP and members that could never meet, naming the field', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-lb6-'));
  const store = await openStore(`file:${dir}`);
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const topo = new Topology(store);
  const v4only = await topo.create('Bridge', { name: 'v4', subnets: [{ cidr: '10.1.0.0/24' }] });
  const r = await topo.create('Router', { name: 'r' });
  await topo.attachRouter(r.id, v4only.id);
  const l = await topo.create('LoadBalancer', { routerId: r.id });
  const p = await topo.create('Pool', { loadBalancerId: l.id });
  await topo.create('PoolMember', { poolId: p.id, address: '10.1.0.10', port: 8080 });
  const refused = async (p: Promise<unknown>, message: RegExp) => {
    const e = await t.throwsAsync(p, { message });
    t.is((e as { field?: string }).field, 'address');
    t.is((e as { code?: string }).code, 'invalid');
  };
  // An IPv6 VIP over IPv4 members only.
  await refused(
    topo.create('Vip', { poolId: p.id, address: 'fd00:96::1', port: 80 }),
    /IPv6 VIP would have no member.*every member of pool .* is IPv4/,
  );
  // A VIP of a family no network of the router has: outside every subnet.
  const p6 = await topo.create('Pool', { loadBalancerId: l.id });
  await refused(
    topo.create('Vip', { poolId: p6.id, address: 'fd00:96::1', port: 80 }),
    /IPv6 VIP is outside the subnets of every network of router/,
  );
  // Dual stack grows one object at a time: a pool with an IPv6 VIP takes an IPv4 member (not served until an IPv4
  // VIP comes), then the IPv4 VIP.
  const ds = await topo.create('Bridge', { name: 'ds', subnets: [{ cidr: '10.2.0.0/24' }, { cidr: 'fd00:2::/64' }] });
  await topo.attachRouter(r.id, ds.id);
  const pd = await topo.create('Pool', { loadBalancerId: l.id });
  await topo.create('PoolMember', { poolId: pd.id, address: 'fd00:2::9', port: 8080 });
  const vip = await topo.create('Vip', { poolId: pd.id, address: 'fd00:96::2', port: 80 });
  await topo.create('PoolMember', { poolId: pd.id, address: '10.2.0.9', port: 8080 });
  await topo.create('Vip', { poolId: pd.id, address: '10.96.0.2', port: 80 });
  // A VIP's address change is checked like a create.
  await topo.update('Vip', vip.id, { address: '10.96.0.3' });
  const p4 = await topo.create('Pool', { loadBalancerId: l.id });
  await topo.create('PoolMember', { poolId: p4.id, address: '10.2.0.9', port: 8080 });
  const v4 = await topo.create('Vip', { poolId: p4.id, address: '10.96.0.4', port: 80 });
  await refused(topo.update('Vip', v4.id, { address: 'fd00:96::4' }), /IPv6 VIP would have no member/);
  t.pass();
});

test('health probes reach a member by its IPv6 address (TCP connect, and HTTP with the address bracketed)', async (t) => {
  const ns = `lb6h-${randomBytes(3).toString('hex')}`;
  await exec('ip', ['netns', 'add', ns]);
  t.teardown(() => exec('ip', ['netns', 'del', ns]).then(() => undefined));
  await exec('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const srv = spawn('ip', ['netns', 'exec', ns, 'python3', '-m', 'http.server', '--bind', '::1', '8081'], { stdio: 'ignore' });
  t.teardown(() => void srv.kill('SIGKILL'));
  const target = { memberId: 'm', address: '::1', port: 8081, netns: `/run/netns/${ns}` };
  const deadline = Date.now() + 10_000;
  while (!(await tcpConnectProbe(target, 1)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.true(await tcpConnectProbe(target, 1), 'TCP connect over IPv6');
  t.true(await httpProbe('/', '200')(target, 1), 'HTTP GET of http://[::1]:8081/');
  t.false(await httpProbe('/nope', '200')(target, 1), 'a 404 is unhealthy');
});
