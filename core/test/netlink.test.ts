// The in-process kernel client (core/datapath/netlink, nft/lib.ts) against the real kernel: every change is
// read back through the `ip`/`nft` commands, each test in fresh namespaces of its own, and the test process
// must end in the namespace it started in.
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import {
  createVeth,
  deleteAddress,
  deleteLink,
  deleteRoute,
  deleteFdb,
  getLink,
  KernelError,
  listFdb,
  listLinks,
  listNeighbours,
  replaceNeighbour,
  setBridgeFdb,
  setTunnelFdb,
  listAddresses,
  listRoutes,
  replaceAddress,
  replaceRoute,
  RTN,
  setLink,
  withNetlink,
} from '../datapath/netlink/index.js';
import { NftError, runNft } from '../datapath/nft/lib.js';
import { nftApply, nftTransactionCounter } from '../datapath/nft/index.js';
import { isGone } from '../datapath/exec.js';

const IP = '/usr/sbin/ip';
const NFT = '/usr/sbin/nft';
const startInode = statSync('/proc/self/ns/net').ino;

function ip(ns: string, ...args: string[]): unknown {
  return JSON.parse(execFileSync(IP, ['-n', ns, '-j', ...args]).toString() || '[]');
}

/** A fresh named namespace, deleted when the test ends however it ends. */
function namespace(t: ExecutionContext): { name: string; path: string } {
  const name = `nlt-${randomBytes(4).toString('hex')}`;
  execFileSync(IP, ['netns', 'add', name]);
  t.teardown(() => {
    execFileSync(IP, ['netns', 'del', name]);
  });
  return { name, path: `/run/netns/${name}` };
}

interface LinkJson {
  ifname: string;
  address: string;
  mtu: number;
  flags: string[];
  master?: string;
  linkinfo?: { info_kind: string };
}
interface AddrJson {
  addr_info: { local: string; prefixlen: number; family: string; nodad?: boolean }[];
}
interface RouteJson {
  dst: string;
  gateway?: string;
  dev: string;
  scope?: string;
}

test('a veth is born with its peer inside another namespace under its final name, MAC and MTU', async (t) => {
  const a = namespace(t);
  const b = namespace(t);
  await withNetlink(a.path, async (s) => {
    await createVeth(s, { name: 'bvtest0', mtu: 1450, peer: { name: 'eth0', mac: '02:aa:bb:cc:dd:01', mtu: 1450, netns: b.path } });
    await setLink(s, 'bvtest0', { noIpv6AddrGen: true });
    await setLink(s, 'bvtest0', { up: true });
    const l = await getLink(s, 'bvtest0');
    t.like(l, { name: 'bvtest0', mtu: 1450, up: true, kind: 'veth' });
    t.is(await getLink(s, 'eth0'), undefined, 'the peer is not in the host namespace');
  });
  const host = (ip(a.name, '-d', 'link', 'show', 'bvtest0') as (LinkJson & { addrgenmode?: string; linkinfo: unknown })[])[0]!;
  t.true(host.flags.includes('UP'));
  t.is(host.mtu, 1450);
  t.regex(execFileSync(IP, ['-n', a.name, '-d', 'link', 'show', 'bvtest0']).toString(), /addrgenmode none/);
  const peer = (ip(b.name, 'link', 'show', 'eth0') as LinkJson[])[0]!;
  t.is(peer.address, '02:aa:bb:cc:dd:01');
  t.is(peer.mtu, 1450);
  t.false(peer.flags.includes('UP'));
});

test('a bridge port: master set and read back; deleting twice says "gone"; a duplicate name gives the kernel\'s words', async (t) => {
  const a = namespace(t);
  execFileSync(IP, ['-n', a.name, 'link', 'add', 'br0', 'type', 'bridge']);
  await withNetlink(a.path, async (s) => {
    await createVeth(s, { name: 'v0', peer: { name: 'v0p' } });
    const br = (await getLink(s, 'br0'))!;
    await setLink(s, 'v0', { master: br.index, up: true });
    t.is((await getLink(s, 'v0'))?.masterIndex, br.index);
    t.is((ip(a.name, 'link', 'show', 'v0') as LinkJson[])[0]?.master, 'br0');

    const dup = await t.throwsAsync(createVeth(s, { name: 'v0', peer: { name: 'v9' } }), {
      message: /create veth v0 \(peer v9\): File exists/,
    });
    t.true(dup instanceof KernelError && dup.code === 'EEXIST');
    t.false(isGone(dup));
    const bad = await t.throwsAsync(setLink(s, 'nosuch0', { up: true }), { message: /nosuch0.*No such device/ });
    t.true(isGone(bad), 'a missing device is "gone" to callers');

    t.is(await deleteLink(s, 'v0'), 'deleted');
    t.is(await deleteLink(s, 'v0'), 'gone');
    t.is(await deleteLink(s, 'v0p'), 'gone', 'the peer went with it');
  });
  t.deepEqual(
    (ip(a.name, 'link', 'show', 'type', 'veth') as LinkJson[]).map((l) => l.ifname),
    [],
  );
});

test('IPv4 and IPv6 addresses and routes are installed, replaced idempotently and read back', async (t) => {
  const a = namespace(t);
  const b = namespace(t);
  await withNetlink(a.path, async (s) => {
    await createVeth(s, { name: 'h0', peer: { name: 'eth0', netns: b.path } });
    await setLink(s, 'h0', { up: true });
  });
  const seen = await withNetlink(b.path, async (s) => {
    const l = (await getLink(s, 'eth0'))!;
    await setLink(s, l.index, { up: true });
    for (let i = 0; i < 2; i++) {
      // twice: replace converges, never "File exists"
      await replaceAddress(s, l.index, '10.7.0.5/24');
      await replaceAddress(s, l.index, 'fd00:7::5/64', { nodad: true });
      await replaceRoute(s, { dst: 'default', gateway: '10.7.0.1', oif: l.index });
      await replaceRoute(s, { dst: 'default', gateway: 'fd00:7::1', oif: l.index });
      await replaceRoute(s, { dst: '10.8.0.0/16', gateway: '10.7.0.254', oif: l.index });
      await replaceRoute(s, { dst: '10.9.1.1', oif: l.index });
      await replaceRoute(s, { dst: 'fd00:9::/64', oif: l.index });
    }
    return { addrs: await listAddresses(s, l.index), routes: await listRoutes(s), index: l.index };
  });
  const addrs = (ip(b.name, 'addr', 'show', 'dev', 'eth0') as AddrJson[])[0]!.addr_info;
  t.true(addrs.some((x) => x.local === '10.7.0.5' && x.prefixlen === 24));
  t.true(
    addrs.some((x) => x.local === 'fd00:7::5' && x.prefixlen === 64 && x.nodad === true),
    JSON.stringify(addrs),
  );
  t.true(seen.addrs.some((x) => x.ip === '10.7.0.5' && x.prefix === 24 && x.family === 4));
  t.true(seen.addrs.some((x) => x.ip === 'fd00:7::5' && x.prefix === 64 && x.family === 6));

  const v4 = ip(b.name, 'route', 'show', 'table', 'main') as RouteJson[];
  const v6 = ip(b.name, '-6', 'route', 'show', 'table', 'main') as RouteJson[];
  t.true(v4.some((r) => r.dst === 'default' && r.gateway === '10.7.0.1'));
  t.true(v4.some((r) => r.dst === '10.8.0.0/16' && r.gateway === '10.7.0.254'));
  t.true(v4.some((r) => r.dst === '10.9.1.1' && !r.gateway && r.scope === 'link'));
  t.true(v6.some((r) => r.dst === 'default' && r.gateway === 'fd00:7::1'));
  t.true(v6.some((r) => r.dst === 'fd00:9::/64' && !r.gateway));
  t.is(v4.filter((r) => r.dst === 'default').length, 1, 'replace did not add a second default route');
  const want = [
    { dst: '0.0.0.0/0', gateway: '10.7.0.1' },
    { dst: '10.8.0.0/16', gateway: '10.7.0.254' },
    { dst: '10.9.1.1/32' },
    { dst: '::/0', gateway: 'fd00:7::1' },
    { dst: 'fd00:9::/64' },
  ];
  for (const w of want) {
    t.true(
      seen.routes.some((r) => r.dst === w.dst && r.gateway === w.gateway && r.oif === seen.index),
      `listRoutes has ${JSON.stringify(w)}`,
    );
  }
  await t.throwsAsync(
    withNetlink(b.path, (s) => replaceRoute(s, { dst: '10.10.0.0/16', gateway: '192.0.2.1', oif: seen.index })),
    { message: /replace route 10\.10\.0\.0\/16 via 192\.0\.2\.1.*Network is unreachable/ },
  );
});

test('a MAC is set, addresses and routes are deleted ("gone" the second time), typed routes in both families', async (t) => {
  const a = namespace(t);
  const b = namespace(t);
  await withNetlink(a.path, (s) => createVeth(s, { name: 'h0', peer: { name: 'eth0', netns: b.path } }));
  const seen = await withNetlink(b.path, async (s) => {
    const l = (await getLink(s, 'eth0'))!;
    await setLink(s, l.index, { up: true, mac: '02:aa:bb:cc:dd:0e' });
    await replaceAddress(s, l.index, '10.7.0.5/24');
    await replaceAddress(s, l.index, '10.7.1.5/24');
    await replaceAddress(s, l.index, 'fd00:7::5/64', { nodad: true });
    await replaceRoute(s, { dst: '10.8.0.0/16', gateway: '10.7.0.254', oif: l.index });
    await replaceRoute(s, { dst: 'fd00:8::/48', gateway: 'fd00:7::fe' }); // the kernel finds the link
    for (const [dst, type] of [
      ['10.9.0.0/16', 'blackhole'],
      ['10.10.0.0/16', 'unreachable'],
      ['10.11.0.0/16', 'prohibit'],
      ['fd00:9::/48', 'blackhole'],
      ['fd00:10::/48', 'unreachable'],
      ['fd00:11::/48', 'prohibit'],
    ] as const) {
      for (let i = 0; i < 2; i++) await replaceRoute(s, { dst, type });
    }
    // A route replaced by one of another type, and back.
    await replaceRoute(s, { dst: '10.8.0.0/16', type: 'prohibit' });
    await replaceRoute(s, { dst: '10.8.0.0/16', gateway: '10.7.0.253', oif: l.index });
    return { index: l.index, routes: await listRoutes(s) };
  });
  t.is((ip(b.name, 'link', 'show', 'eth0') as LinkJson[])[0]!.address, '02:aa:bb:cc:dd:0e');
  const typed = (fam: string): string[] =>
    (ip(b.name, fam, 'route', 'show', 'table', 'main') as (RouteJson & { type?: string })[])
      .filter((r) => r.type && r.type !== 'unicast')
      .map((r) => `${r.type} ${r.dst}`)
      .sort();
  t.deepEqual(typed('-4'), ['blackhole 10.9.0.0/16', 'prohibit 10.11.0.0/16', 'unreachable 10.10.0.0/16']);
  t.deepEqual(typed('-6'), ['blackhole fd00:9::/48', 'prohibit fd00:11::/48', 'unreachable fd00:10::/48']);
  t.true(seen.routes.some((r) => r.dst === '10.8.0.0/16' && r.gateway === '10.7.0.253' && r.type === RTN.unicast));
  t.true(seen.routes.some((r) => r.dst === 'fd00:8::/48' && r.gateway === 'fd00:7::fe' && r.oif === seen.index));
  t.true(seen.routes.some((r) => r.dst === 'fd00:11::/48' && r.type === RTN.prohibit));

  await withNetlink(b.path, async (s) => {
    for (let i = 0; i < 2; i++) {
      const want = i === 0 ? 'deleted' : 'gone';
      t.is(await deleteAddress(s, seen.index, '10.7.1.5/24'), want);
      t.is(await deleteAddress(s, seen.index, 'fd00:7::5/64'), want);
      t.is(await deleteRoute(s, { dst: '10.8.0.0/16', oif: seen.index }), want);
      t.is(await deleteRoute(s, { dst: 'fd00:8::/48', oif: seen.index }), want);
      t.is(await deleteRoute(s, { dst: '10.9.0.0/16', type: 'blackhole' }), want);
      t.is(await deleteRoute(s, { dst: 'fd00:11::/48', type: 'prohibit' }), want);
    }
    // A typed IPv6 route reads back through lo, and is deleted as read.
    const lo = seen.routes.find((r) => r.dst === 'fd00:10::/48')!.oif;
    t.is(lo, (await getLink(s, 'lo'))!.index);
    t.is(await deleteRoute(s, { dst: 'fd00:10::/48', type: 'unreachable', oif: lo }), 'deleted');
    // Delete matches the type: an IPv4 unreachable route is not a blackhole one.
    t.is(await deleteRoute(s, { dst: '10.10.0.0/16', type: 'blackhole' }), 'gone');
    t.is(await deleteAddress(s, 9999, '10.7.0.5/24'), 'gone', 'no such link');
    await t.throwsAsync(replaceRoute(s, { dst: '10.12.0.0/16', type: 'blackhole', gateway: '10.7.0.1' }), {
      message: /route blackhole 10\.12\.0\.0\/16 via 10\.7\.0\.1: a blackhole route has no next hop or device/,
    });
    await t.throwsAsync(replaceRoute(s, { dst: '10.12.0.0/16' }), { message: /route 10\.12\.0\.0\/16: needs a next hop or a device/ });
    await t.throwsAsync(setLink(s, seen.index, { mac: 'zz' }), { message: /invalid MAC address "zz"/ });
  });
  const addrs = (ip(b.name, 'addr', 'show', 'dev', 'eth0') as AddrJson[])[0]!.addr_info.filter((x) => !x.local.startsWith('fe80'));
  t.deepEqual(
    addrs.map((x) => `${x.local}/${x.prefixlen}`),
    ['10.7.0.5/24'],
  );
  t.deepEqual(typed('-4'), ['prohibit 10.11.0.0/16', 'unreachable 10.10.0.0/16']);
  t.deepEqual(typed('-6'), ['blackhole fd00:9::/48']);
  const v4 = ip(b.name, 'route', 'show', 'table', 'main') as RouteJson[];
  t.false(v4.some((r) => r.dst === '10.8.0.0/16'));
});

interface FdbJson {
  mac: string;
  ifname: string;
  dst?: string;
  master?: string;
  flags?: string[];
  state?: string;
}
interface NeighJson {
  dst: string;
  dev: string;
  lladdr?: string;
  state: string[];
}

test('FDB and neighbour dumps, and a VXLAN device, a bridge and its port read as `bridge -j` and `ip -d -j` print them', async (t) => {
  const a = namespace(t);
  const sh = (...args: string[]): void => void execFileSync(IP, ['-n', a.name, ...args]);
  sh('link', 'add', 'bbt', 'type', 'bridge', 'nf_call_iptables', '1');
  sh('link', 'add', 'bxt', 'type', 'vxlan', 'id', '4242', 'local', '192.0.2.1', 'dstport', '6677', 'nolearning', 'proxy');
  sh('link', 'set', 'bxt', 'master', 'bbt');
  sh('link', 'set', 'dev', 'bxt', 'type', 'bridge_slave', 'learning', 'off');
  // Some written by the tools, some by us: each side must read the other's.
  const fdbCmd = (verb: string, mac: string, dst: string): void =>
    void execFileSync('/usr/sbin/bridge', ['-n', a.name, 'fdb', verb, mac, 'dev', 'bxt', 'dst', dst, 'self', 'permanent']);
  fdbCmd('append', '00:00:00:00:00:00', '192.0.2.2');
  fdbCmd('replace', '02:00:00:00:00:0a', '192.0.2.2');
  sh('neigh', 'replace', '10.9.0.10', 'lladdr', '02:00:00:00:00:0a', 'dev', 'bxt', 'nud', 'permanent');
  await withNetlink(a.path, async (s) => {
    const vx = (await getLink(s, 'bxt'))!;
    await setTunnelFdb(s, vx.index, '00:00:00:00:00:00', '192.0.2.3', true);
    await setTunnelFdb(s, vx.index, '02:00:00:00:00:0b', '192.0.2.4');
    await setBridgeFdb(s, vx.index, '02:00:00:00:00:0b');
    await replaceNeighbour(s, vx.index, 'fd00:9::11', '02:00:00:00:00:0b');
    t.like(vx, {
      kind: 'vxlan',
      vxlan: { id: 4242, local: '192.0.2.1', port: 6677, learning: false, proxy: true },
      bridgePort: { learning: false },
    });
    t.like(await getLink(s, 'bbt'), { kind: 'bridge', bridge: { nfCallIptables: true, nfCallIp6tables: false } });
    t.is((await listLinks(s)).find((l) => l.name === 'bxt')?.masterIndex, (await getLink(s, 'bbt'))!.index);
  });

  // What the tools print, in the form of our dumps.
  const fdbJson = JSON.parse(execFileSync('/usr/sbin/bridge', ['-n', a.name, '-j', 'fdb', 'show', 'dev', 'bxt']).toString()) as FdbJson[];
  const neighJson = ip(a.name, 'neigh', 'show', 'dev', 'bxt') as NeighJson[];
  const key = (mac: string, dst: string | undefined, self: boolean, master: string | undefined, state: string): string =>
    [mac, dst ?? '-', self ? 'self' : '-', master ?? '-', state].join(' ');
  const expectFdb = fdbJson.map((f) => key(f.mac, f.dst, f.flags?.includes('self') ?? false, f.master, f.state ?? '')).sort();
  const expectNeigh = neighJson.map((n) => `${n.dst} ${n.lladdr ?? '-'} ${n.state.includes('PERMANENT')}`).sort();
  const got = await withNetlink(a.path, async (s) => {
    const vx = (await getLink(s, 'bxt'))!;
    const names = new Map((await listLinks(s)).map((l) => [l.index, l.name]));
    const fdb = (await listFdb(s, vx.index)).map((f) =>
      key(
        f.mac,
        f.dst,
        f.self,
        f.masterIndex === undefined ? undefined : names.get(f.masterIndex),
        f.permanent ? 'permanent' : f.static ? 'static' : '',
      ),
    );
    const neigh = (await listNeighbours(s, vx.index)).map((n) => `${n.ip} ${n.mac ?? '-'} ${n.permanent}`);
    return { fdb: fdb.sort(), neigh: neigh.sort() };
  });
  t.deepEqual(got.fdb, expectFdb);
  t.deepEqual(got.neigh, expectNeigh);
  t.true(expectFdb.includes('00:00:00:00:00:00 192.0.2.3 self - permanent'), 'appended replication entry');
  t.true(expectFdb.includes('02:00:00:00:00:0b - - bbt static'), 'static bridge entry');
  t.true(expectFdb.includes('02:00:00:00:00:0b 192.0.2.4 self - permanent'));
  t.is(got.neigh.length, 2);

  // Deletes, and deleting twice says "gone".
  await withNetlink(a.path, async (s) => {
    const vx = (await getLink(s, 'bxt'))!;
    t.is(await deleteFdb(s, vx.index, '02:00:00:00:00:0a', '192.0.2.2'), 'deleted');
    t.is(await deleteFdb(s, vx.index, '02:00:00:00:00:0a', '192.0.2.2'), 'gone');
    t.is(await deleteFdb(s, vx.index, '02:00:00:00:00:0b'), 'deleted');
    t.is(await deleteFdb(s, vx.index, '00:00:00:00:00:00', '192.0.2.2'), 'deleted');
  });
  const after = (
    JSON.parse(execFileSync('/usr/sbin/bridge', ['-n', a.name, '-j', 'fdb', 'show', 'dev', 'bxt']).toString()) as FdbJson[]
  ).map((f) => `${f.mac} ${f.dst ?? f.master}`);
  t.false(after.some((l) => l.startsWith('02:00:00:00:00:0a') || l === '02:00:00:00:00:0b bbt' || l === '00:00:00:00:00:00 192.0.2.2'));
  t.true(after.includes('00:00:00:00:00:00 192.0.2.3'), 'the other replication entry stays');
});

test('a missing namespace is a clear, "gone" error', async (t) => {
  const e = await t.throwsAsync(
    withNetlink('/run/netns/nlt-does-not-exist', (s) => getLink(s, 'lo')),
    { message: /network namespace \/run\/netns\/nlt-does-not-exist: No such file or directory/ },
  );
  t.true(isGone(e));
});

test('nftables scripts run in-process inside a namespace, and a bad script is a clear error', async (t) => {
  const a = namespace(t);
  const table = `t${randomBytes(3).toString('hex')}`;
  await runNft(
    a.path,
    `add table inet ${table}\nadd chain inet ${table} c { type filter hook input priority 0; }\nadd rule inet ${table} c tcp dport 4242 drop\n`,
    'apply',
  );
  const listed = execFileSync(IP, ['netns', 'exec', a.name, NFT, 'list', 'ruleset']).toString();
  t.regex(listed, new RegExp(`table inet ${table}[\\s\\S]*tcp dport 4242 drop`));
  t.false(execFileSync(NFT, ['list', 'tables']).toString().includes(table), "not in the test process's own namespace");
  t.regex(await runNft(a.path, `list table inet ${table}`, 'list'), /tcp dport 4242 drop/);

  const syntax = await t.throwsAsync(runNft(a.path, 'add tabel inet x\n', 'could not frob'), {
    message: /^could not frob: Error: syntax error/,
  });
  t.true(syntax instanceof NftError);
  await t.throwsAsync(nftApply(a.path, 'add rule inet nosuch c drop\n', 'could not add the rule'), {
    message: /^could not add the rule: Error: .*No such file or directory/,
  });
  // A failed transaction changed nothing.
  t.is(execFileSync(IP, ['netns', 'exec', a.name, NFT, 'list', 'ruleset']).toString(), listed);
});

test('concurrent nft transactions on one namespace are merged, and one bad part fails alone', async (t) => {
  const a = namespace(t);
  const table = `m${randomBytes(3).toString('hex')}`;
  await nftApply(a.path, `add table inet ${table}\n`, 'table');
  const chains = Array.from({ length: 12 }, (_, i) => `c${i}`);
  const results = await Promise.allSettled([
    ...chains.map((c) =>
      nftApply(
        a.path,
        `add chain inet ${table} ${c}\nadd rule inet ${table} ${c} tcp dport ${1000 + Number(c.slice(1))} drop\n`,
        `chain ${c}`,
      ),
    ),
    nftApply(a.path, `add rule inet ${table} nosuch drop\n`, 'the bad one'),
  ]);
  t.deepEqual(
    results.slice(0, -1).map((r) => r.status),
    chains.map(() => 'fulfilled'),
  );
  const bad = results.at(-1)!;
  t.is(bad.status, 'rejected');
  t.regex(String(((bad as PromiseRejectedResult).reason as Error).message), /^the bad one: /);
  const listed = execFileSync(IP, ['netns', 'exec', a.name, NFT, 'list', 'table', 'inet', table]).toString();
  for (const c of chains) t.regex(listed, new RegExp(`chain ${c} \\{[\\s\\S]*?tcp dport ${1000 + Number(c.slice(1))} drop`));
  // Removals arriving together: the first goes alone, the other eleven in one merged transaction.
  const before = nftTransactionCounter.count;
  await Promise.all(
    chains.map((c) => nftApply(a.path, `flush chain inet ${table} ${c}\ndelete chain inet ${table} ${c}\n`, `remove ${c}`)),
  );
  t.notRegex(execFileSync(IP, ['netns', 'exec', a.name, NFT, 'list', 'table', 'inet', table]).toString(), /chain/);
  t.is(nftTransactionCounter.count - before, 2);
});

test.after.always('the test process is still in the namespace it started in', (t) => {
  t.is(statSync('/proc/self/ns/net').ino, startInode);
  t.is(statSync('/proc/thread-self/ns/net').ino, startInode);
});
