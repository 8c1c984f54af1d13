// The router's desired state against the kernel's as read, compared as values (core/datapath/router-state.ts): no
// kernel here, the kernel side is core/test/datapath-router.test.ts.
import test from 'ava';
import {
  desiredRouterState,
  diffRouter,
  planRouter,
  type Change,
  type CurrentLink,
  type NamespaceState,
  type RouterWant,
} from '../datapath/router-state.js';
import { legName, routerLegName, uplinkName } from '../datapath/names.js';
import type { DesiredRouter } from '../datapath/types.js';

const ID = 'r1';
const A = 0x1a;
const B = 0x2b;
const router: DesiredRouter = {
  id: ID,
  legs: [
    { vni: A, mac: '02:00:00:00:00:0A', addresses: ['10.1.0.1/24', 'fd00:1::1/64'] },
    { vni: B, mac: '02:00:00:00:00:0b', addresses: ['10.2.0.1/24'] },
  ],
  neighbours: [
    { ip: '10.1.0.5', mac: '02:00:00:00:01:05', vni: A },
    { ip: 'FD00:1::5', mac: '02:00:00:00:01:05', vni: A },
    { ip: '10.2.0.7', mac: '02:00:00:00:02:07', vni: B },
  ],
  routes: [
    { dst: '10.9.0.0/16', via: '10.2.0.254', vni: B },
    { dst: 'fd00:9::/48', type: 'blackhole' },
  ],
  snat: true,
  hostReachable: ['10.1.0.0/24'],
};
const SLOT = 7; // 169.254.0.28/30: .29 in the router, .30 on the host
const mtu = (): number => 1450;
const want = (r: DesiredRouter = router): RouterWant => desiredRouterState(planRouter(r), mtu, SLOT);

const link = (name: string, l: Partial<CurrentLink> = {}): [string, CurrentLink] => [
  name,
  { name, mtu: 1500, mac: '', up: true, addresses: [], ...l },
];

/** The kernel as a router converged to `w` leaves it (and as netlink reads it: kernel routes, link-locals, bridges). */
function converged(w: RouterWant): { host: NamespaceState; ns: NamespaceState } {
  const host: NamespaceState = {
    links: new Map([link('bb-1a', { mtu: 1450 }), link('bb-2b', { mtu: 1450 }), link('eth0')]),
    routes: [{ family: 4, dst: '192.168.1.0/24', type: 1, dev: 'eth0', kernel: true }],
    neighbours: [],
    fdb: new Set(w.host.fdb.map((f) => `${f.dev} ${f.mac}`)),
  };
  for (const l of w.host.links) {
    host.links.set(l.name, {
      name: l.name,
      mtu: l.mtu ?? 1500,
      mac: '',
      up: true,
      ...(l.master ? { master: l.master } : {}),
      addresses: l.addresses.map((cidr) => ({ cidr, linkScope: false })),
    });
  }
  host.routes.push(...w.host.routes.map((r) => ({ ...r, type: 1, kernel: false })));
  const ns: NamespaceState = { links: new Map(), routes: [], neighbours: w.ns.neighbours.map((n) => ({ ...n })), fdb: new Set() };
  for (const l of w.ns.links) {
    const addresses = l.addresses.map((cidr) => ({ cidr, linkScope: false }));
    if (l.name.startsWith('l-')) addresses.push({ cidr: 'fe80::a/64', linkScope: true });
    ns.links.set(l.name, { name: l.name, mtu: l.mtu ?? 65536, mac: l.mac ?? '', up: true, addresses });
  }
  ns.routes.push(
    { family: 4, dst: '10.1.0.0/24', type: 1, dev: routerLegName(A), kernel: true },
    { family: 6, dst: 'fe80::/64', type: 1, dev: routerLegName(A), kernel: true },
    { family: 6, dst: 'ff00::/8', type: 5, dev: routerLegName(A), kernel: false },
    ...w.ns.routes.map((r) => ({
      ...r,
      type: r.type === 'unicast' ? 1 : r.type === 'blackhole' ? 6 : 8,
      kernel: false,
      ...(r.type === 'blackhole' ? { dev: 'lo' } : {}),
    })),
  );
  return { host, ns };
}

const ops = (cs: Change[]): string[] => cs.map((c) => `${c.where} ${c.op}`);

/** A change as the `ip` command that would make it reads: compact, and checkable against `ip -batch` by eye. */
function ipLine(c: Change): string {
  switch (c.op) {
    case 'link-mac':
      return `link set dev ${c.name} address ${c.mac}`;
    case 'addr-del':
      return `addr del ${c.cidr} dev ${c.dev}`;
    case 'route-del':
      return `route del ${c.route.type === 'unicast' ? '' : `${c.route.type} `}${c.route.dst}${c.route.dev ? ` dev ${c.route.dev}` : ''}`;
    case 'route-set': {
      const r = c.route;
      if (r.type !== 'unicast') return `route replace ${r.type} ${r.dst}`;
      return `route replace ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.dev ? ` dev ${r.dev}` : ''}`;
    }
    default:
      throw new Error(`no ip line for ${c.op}`);
  }
}

test('a converged router differs in nothing, in either family', (t) => {
  const w = want();
  const { host, ns } = converged(w);
  t.deepEqual(diffRouter(w, host, ns), []);
  // Normalized input (upper-case MAC and IPv6, CIDR host routes) compares with what the kernel prints.
  t.is(w.ns.neighbours[1]!.ip, 'fd00:1::5');
  t.is(w.ns.links.find((l) => l.name === routerLegName(A))!.mac, '02:00:00:00:00:0a');
});

test('a new router: veths first, then the host ends, then the namespace, each IPv6 address without DAD', (t) => {
  const w = want();
  const host = converged(w).host;
  for (const l of w.host.links) host.links.delete(l.name);
  host.routes = host.routes.filter((r) => r.kernel);
  host.fdb.clear();
  const ns: NamespaceState = { links: new Map([link('lo', { up: false, mtu: 65536 })]), routes: [], neighbours: [], fdb: new Set() };
  const cs = diffRouter(w, host, ns);
  const veths = cs.filter((c) => c.op === 'veth-add');
  t.deepEqual(
    veths.map((c) => c.op === 'veth-add' && [c.name, c.peer, c.peerMac, c.mtu]),
    [
      [legName(ID, A), routerLegName(A), '02:00:00:00:00:0a', 1450],
      [legName(ID, B), routerLegName(B), '02:00:00:00:00:0b', 1450],
      [uplinkName(ID), 'up0', undefined, undefined],
    ],
  );
  t.true(cs.indexOf(veths[2]!) < cs.findIndex((c) => c.where === 'host' && c.op === 'link-set'), 'links exist before they are set');
  // Address generation off before up, on the host ends and the router's uplink; the legs keep their link-local.
  for (const name of [legName(ID, A), uplinkName(ID), 'up0']) {
    const noGen = cs.findIndex((c) => c.op === 'link-set' && c.name === name && c.noAddrGen);
    const up = cs.findIndex((c) => c.op === 'link-set' && c.name === name && c.up);
    t.true(noGen >= 0 && noGen < up, name);
  }
  t.false(cs.some((c) => c.op === 'link-set' && c.name === routerLegName(A) && c.noAddrGen));
  t.false(
    cs.some((c) => c.op === 'link-mac'),
    'MACs are set when the veth is made, so neighbours are not flushed',
  );
  t.deepEqual(
    cs.filter((c) => c.op === 'addr-add').map((c) => c.op === 'addr-add' && `${c.where} ${c.dev} ${c.cidr}${c.nodad ? ' nodad' : ''}`),
    [
      `host ${uplinkName(ID)} 169.254.0.30/30`,
      `ns ${routerLegName(A)} 10.1.0.1/24`,
      `ns ${routerLegName(A)} fd00:1::1/64 nodad`,
      `ns ${routerLegName(B)} 10.2.0.1/24`,
      'ns up0 169.254.0.29/30',
    ],
  );
  t.is(cs.filter((c) => c.op === 'fdb-pin').length, 2);
  t.is(cs.filter((c) => c.op === 'neigh-set').length, 3);
  t.deepEqual(
    cs.filter((c) => c.op === 'route-set').map((c) => c.op === 'route-set' && `${c.where} ${ipLine(c)}`),
    [
      `host route replace 10.1.0.0/24 via 169.254.0.29 dev ${uplinkName(ID)}`,
      `ns route replace 10.9.0.0/16 via 10.2.0.254 dev ${routerLegName(B)}`,
      'ns route replace blackhole fd00:9::/48',
      'ns route replace 0.0.0.0/0 via 169.254.0.30 dev up0',
    ],
  );
  t.true(cs.some((c) => c.op === 'link-set' && c.name === 'lo' && c.up));
});

test('what the model no longer names goes; what belongs to the kernel stays', (t) => {
  const w = want({ ...router, hostReachable: [], snat: true });
  const { host, ns } = converged(want());
  ns.links.set('l-ff', { name: 'l-ff', mtu: 1450, mac: '', up: true, addresses: [] });
  ns.neighbours.push({ ip: '10.3.0.9', mac: '02:00:00:00:03:09', dev: 'l-ff' }); // goes with its link
  ns.links.get(routerLegName(A))!.addresses.push({ cidr: '10.1.0.2/24', linkScope: false });
  ns.neighbours.push({ ip: '10.1.0.99', mac: '02:00:00:00:01:99', dev: routerLegName(A) });
  ns.routes.push({ family: 6, dst: 'fd00:8::/48', type: 8, kernel: false });
  const cs = diffRouter(w, host, ns);
  t.deepEqual(
    cs.map(
      (c) =>
        `${c.where} ${c.op === 'link-del' ? `link del ${c.name}` : c.op === 'neigh-del' ? `neigh del ${c.ip} dev ${c.dev}` : ipLine(c)}`,
    ),
    [
      'ns link del l-ff',
      `host route del 10.1.0.0/24 dev ${uplinkName(ID)}`,
      `ns addr del 10.1.0.2/24 dev ${routerLegName(A)}`,
      `ns neigh del 10.1.0.99 dev ${routerLegName(A)}`,
      'ns route del prohibit fd00:8::/48',
    ],
  );
  // Without SNAT or host routes the uplink itself goes.
  const noUplink = diffRouter(desiredRouterState(planRouter({ ...router, snat: false, hostReachable: [] }), mtu, undefined), host, ns);
  t.true(noUplink.some((c) => c.where === 'host' && c.op === 'link-del' && c.name === uplinkName(ID)));
  t.false(
    noUplink.some((c) => c.op === 'route-del' && c.route.dst === '0.0.0.0/0'),
    "the router's default route goes with the uplink, not by a request that would fail after it",
  );
});

test('a changed MAC is set (and the neighbours it flushes put back); a changed MTU or route is replaced alone', (t) => {
  const w = want();
  const { host, ns } = converged(w);
  ns.links.get(routerLegName(A))!.mac = '02:00:00:00:00:99';
  host.links.get(legName(ID, B))!.mtu = 1500;
  const r = ns.routes.find((x) => x.dst === '10.9.0.0/16')!;
  r.gateway = '10.2.0.253';
  const cs = diffRouter(w, host, ns);
  t.deepEqual(ops(cs), ['host link-set', 'ns link-mac', 'ns neigh-set', 'ns neigh-set', 'ns route-set']);
  t.deepEqual(cs[0], { where: 'host', op: 'link-set', name: legName(ID, B), mtu: 1450 });
  t.is(ipLine(cs[1]!), `link set dev ${routerLegName(A)} address 02:00:00:00:00:0a`);
  t.true(cs.slice(2, 4).every((c) => c.op === 'neigh-set' && c.dev === routerLegName(A)));
});

test('a half-gone leg is made again whole: its addresses, neighbours and pinned MAC with it', (t) => {
  const w = want();
  const { host, ns } = converged(w);
  host.links.delete(legName(ID, A)); // the inner end survived alone (say, renamed away and back)
  const cs = diffRouter(w, host, ns);
  t.deepEqual(cs[0], { where: 'ns', op: 'link-del', name: routerLegName(A) }, 'the survivor goes before its name is reused');
  t.is(cs[1]!.op, 'veth-add');
  t.true(cs.some((c) => c.op === 'fdb-pin' && c.dev === legName(ID, A)));
  t.is(cs.filter((c) => c.op === 'addr-add').length, 2);
  t.is(cs.filter((c) => c.op === 'neigh-set').length, 2);
  t.false(cs.some((c) => c.op === 'neigh-del' || c.op === 'addr-del' || c.op === 'route-del'));
});

test('bad input is refused before anything is compared', (t) => {
  t.throws(() => planRouter({ ...router, id: '-x' }), { message: /invalid router id/ });
  t.throws(() => planRouter({ ...router, legs: [router.legs[0]!, router.legs[0]!] }), { message: /two legs on one bridge/ });
  t.throws(() => planRouter({ ...router, neighbours: [{ ip: '10.3.0.1', mac: '02:00:00:00:00:01', vni: 0x3c }] }), {
    message: /refers to bridge 60, which has no leg/,
  });
  t.throws(() => planRouter({ ...router, routes: [{ dst: '10.7.0.0/16' }] }), { message: /needs a next hop or a leg/ });
});
