// A leaving member's connections are cut in its own tenant only, and even by an agent that restarted meanwhile
// (core/datapath/nft/lb-removal.ts, issue 10 item 4). One namespace with two client bridges in their own conntrack
// zones (as `inet bees-ct` gives them), two tenants' VIPs with the same address and member addresses, conntrack
// entries of translated connections in both zones; then members leave a pool whose memberRemoval is 'cut'.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { execArgv, mustExec, nsArgv } from '../../testbed/shell.js';
import { applyLoadBalancers, forgetApplied, LB_ROUTE_TABLE_BASE, type LbHostSpec } from '../datapath/nft/lb.js';
import { vipsInKernel } from '../datapath/nft/lb-removal.js';
import { spawnCounter } from '../datapath/index.js';
import { nftApply, nftQuery } from '../datapath/nft/index.js';
import { bridgeZoneScript, ensureConntrack } from '../datapath/nft/policy.js';
import type { LbMember, LbVip } from '../lb/compile.js';

const VIP = '10.96.0.10';
const member = (id: string, address: string): LbMember => ({ id, address, port: 8080, weight: 1, adminStateUp: true, status: 'up' });
const vip = (id: string, bridge: string, members: LbMember[]): LbVip => ({
  id,
  address: VIP,
  port: 80,
  protocol: 'tcp',
  members,
  bridges: [bridge],
  memberRemoval: 'cut',
});

test.serial("a cut member's connections go in its tenant's zone only, and after an agent restart too", async (t) => {
  t.timeout(120_000);
  const netns = `lbr${randomBytes(3).toString('hex')}`;
  const path = `/run/netns/${netns}`;
  t.teardown(async () => {
    forgetApplied(path);
    await execArgv(['ip', 'netns', 'del', netns]);
  });
  await mustExec(['ip', 'netns', 'add', netns]);
  const bridges = [
    { ifname: 'bb-00000a', vni: 10, zone: 1 },
    { ifname: 'bb-00000b', vni: 11, zone: 2 },
  ];
  await mustExec(
    ['ip', '-n', netns, '-batch', '-'],
    // A port each, so the bridges have a carrier (an onlink route needs one).
    [
      'link set dev lo up',
      ...bridges.map(
        (b) =>
          `link add ${b.ifname} type bridge\nlink add d${b.vni} type veth peer name e${b.vni}\nlink set dev e${b.vni} up\nlink set dev d${b.vni} master ${b.ifname} up\nlink set dev ${b.ifname} up`,
      ),
    ].join('\n') + '\n',
  );
  await ensureConntrack(path);
  for (const b of bridges) await nftApply(path, bridgeZoneScript(b.ifname, b.zone), 'zones');
  const spec = (a: LbMember[], b: LbMember[]): LbHostSpec => ({
    bridges: bridges.map((x) => ({
      ifname: x.ifname,
      gateway: '10.1.0.1',
      gatewayMac: '02:00:00:00:00:01',
      table: LB_ROUTE_TABLE_BASE + x.vni,
      subnets: ['10.1.0.0/24'],
      neighbours: [],
    })),
    // Tenant A on bridge a, tenant B on bridge b: the same VIP, the same member addresses.
    vips: [vip('va', 'bb-00000a', a), vip('vb', 'bb-00000b', b)],
    hairpinPorts: [],
  });
  /** A translated connection to the VIP answered by `address`, in `zone`. */
  const connection = (zone: number, address: string, sport: number) =>
    mustExec(
      nsArgv(path, [
        'conntrack',
        '-I',
        '-p',
        'tcp',
        '-s',
        '10.1.0.5',
        '-d',
        VIP,
        '--sport',
        String(sport),
        '--dport',
        '80',
        '-r',
        address,
        '-q',
        '10.1.0.5',
        '--reply-port-src',
        '8080',
        '--reply-port-dst',
        String(sport),
        '--state',
        'ESTABLISHED',
        '-t',
        '600',
        '--zone',
        String(zone),
      ]),
    );
  /** The connections left, as "zone member". */
  const left = async () => {
    const x = await execArgv(nsArgv(path, ['conntrack', '-L', '-p', 'tcp', '--orig-dst', VIP]));
    return [...x.stdout.matchAll(/src=(\S+) dst=10\.1\.0\.5 sport=8080 .*zone=(\d+)/g)].map((m) => `${m[2]} ${m[1]}`).sort();
  };

  const m1 = member('m1', '10.1.0.64');
  const m2 = member('m2', '10.1.0.65');
  const m3 = member('m3', '10.1.0.66');
  await applyLoadBalancers(path, spec([m1, m2], [m1, m2]));
  for (const [zone, address, sport] of [
    [1, m1.address, 40001],
    [1, m2.address, 40002],
    [2, m1.address, 40001],
    [2, m2.address, 40002],
  ] as const)
    await connection(zone, address, sport);
  t.deepEqual(await left(), ['1 10.1.0.64', '1 10.1.0.65', '2 10.1.0.64', '2 10.1.0.65']);

  // Tenant A's m1 leaves: its connection in zone 1 goes; tenant B's to the same addresses stays.
  await applyLoadBalancers(path, spec([m2], [m1, m2]));
  t.deepEqual(await left(), ['1 10.1.0.65', '2 10.1.0.64', '2 10.1.0.65']);

  // What a restarted agent finds in the kernel: the members in rotation per VIP, and its bridges.
  const kernel = vipsInKernel(await nftQuery(path, 'list table ip bees-lb', 'nft'));
  t.deepEqual(
    kernel.map((v) => ({ id: v.id, bridges: v.bridges, members: v.members.map((m) => `${m.id} ${m.address}:${m.port}`) })),
    [
      { id: 'va', bridges: ['bb-00000a'], members: ['m2 10.1.0.65:8080'] },
      { id: 'vb', bridges: ['bb-00000b'], members: ['m1 10.1.0.64:8080', 'm2 10.1.0.65:8080'] },
    ],
  );
  // The agent restarts, and meanwhile m2 left tenant A's pool: its first (full) apply still cuts it.
  forgetApplied(path);
  await applyLoadBalancers(path, spec([m3], [m1, m2]), { full: true });
  t.deepEqual(await left(), ['2 10.1.0.64', '2 10.1.0.65']);
});

test.serial("a restarted agent's full apply with no load balancer reads the kernel without a process", async (t) => {
  const netns = `lbe${randomBytes(3).toString('hex')}`;
  const path = `/run/netns/${netns}`;
  t.teardown(async () => {
    forgetApplied(path);
    await execArgv(['ip', 'netns', 'del', netns]);
  });
  await mustExec(['ip', 'netns', 'add', netns]);
  const table = String(LB_ROUTE_TABLE_BASE + 12);
  // What an earlier run left: its policy rule and a permanent neighbour on a client bridge.
  await mustExec(
    ['ip', '-n', netns, '-batch', '-'],
    [
      'link add bb-00000c type bridge',
      'link set bb-00000c up',
      `rule add iif bb-00000c lookup ${table} priority 10500`,
      'neigh replace 10.1.0.64 lladdr 02:00:00:00:00:64 dev bb-00000c nud permanent',
    ].join('\n') + '\n',
  );
  const empty: LbHostSpec = { bridges: [], vips: [], hairpinPorts: [] };
  await applyLoadBalancers(path, empty, { full: true });
  const rules = await mustExec(['ip', '-n', netns, 'rule', 'show']);
  t.false(rules.includes('bb-00000c'), 'the leftover rule is removed');
  const neigh = await mustExec(['ip', '-n', netns, 'neigh', 'show', 'dev', 'bb-00000c']);
  t.is(neigh.trim(), '', 'the leftover neighbour is removed');
  // Restarted again: nothing applied is remembered, the kernel is read (rules, neighbours), nothing is left to remove.
  forgetApplied(path);
  const spawns = spawnCounter.count;
  await applyLoadBalancers(path, empty, { full: true });
  t.is(spawnCounter.count - spawns, 0, 'nothing left: the kernel read in-process');
});
