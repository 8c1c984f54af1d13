// The load balancer's compiler (core/lb/compile.ts): weights become numgen ranges, members out of rotation leave the
// map, and a script replacing an earlier state loads in a real kernel (a throwaway namespace), removing what is no
// longer wanted and keeping the affinity sets of members still selectable.
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { nftApply, nftQuery } from '../datapath/nft/apply.js';
import { parseExisting } from '../datapath/nft/lb.js';
import { compileLb, weightedVmap, type LbHost, type LbMember } from '../lb/compile.js';

const exec = promisify(execFile);
const m = (id: string, weight: number, more: Partial<LbMember> = {}): LbMember => ({
  id,
  address: `10.9.0.${id.length + weight}`,
  port: 8080,
  weight,
  adminStateUp: true,
  status: 'up',
  ...more,
});

test('weights become adjacent numgen ranges over their sum; disabled, down and zero-weight members are left out', (t) => {
  t.is(
    weightedVmap('v', [m('a', 1), m('b', 2), m('c', 3)]),
    'numgen random mod 6 vmap { 0 : goto m-v-a, 1-2 : goto m-v-b, 3-5 : goto m-v-c }',
  );
  t.is(
    weightedVmap('v', [m('a', 1, { adminStateUp: false }), m('b', 2, { status: 'down' }), m('c', 0), m('d', 4)]),
    'numgen random mod 4 vmap { 0-3 : goto m-v-d }',
  );
  t.is(weightedVmap('v', [m('a', 1, { status: 'down' })]), undefined);
});

test('bad input is refused naming the field', (t) => {
  const host = (address: string): LbHost => ({
    bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1' }],
    vips: [{ id: 'v', address, port: 80, protocol: 'tcp', members: [], bridges: ['bb-1'] }],
  });
  t.throws(() => compileLb(host('10.96.0.300')), { message: /address of VIP v "10.96.0.300" is not an IPv4 address/ });
  t.throws(() => compileLb({ ...host('10.96.0.1'), bridges: [] }), { message: /names bridge bb-1/ });
});

test('an update loads in the kernel, drops what is gone and keeps sticky clients of members still in rotation', async (t) => {
  const ns = `lbc-${randomBytes(3).toString('hex')}`;
  await exec('ip', ['netns', 'add', ns]);
  t.teardown(() => exec('ip', ['netns', 'del', ns]).then(() => undefined));
  const netns = `/run/netns/${ns}`;
  const host = (members: LbMember[]): LbHost => ({
    bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1' }],
    vips: [
      {
        id: 'web',
        address: '10.96.0.10',
        port: 80,
        protocol: 'tcp',
        members,
        bridges: ['bb-1'],
        sessionPersistence: 'source_ip',
        affinityTimeoutS: 60,
      },
      { id: 'dns', address: '10.96.0.11', port: 53, protocol: 'udp', members: [], bridges: ['bb-1'] },
    ],
  });
  const list = () => nftQuery(netns, 'list table ip bees-lb', 'list');
  await nftApply(netns, compileLb(host([m('a', 1), m('b', 1), m('c', 1)])), 'first');
  // A sticky client of a, as the kernel's `update` would have added it.
  await nftApply(netns, 'add element ip bees-lb a-web-a { 10.0.0.7 }\nadd element ip bees-lb a-web-b { 10.0.0.8 }\n', 'element');
  let listing = await list();
  t.regex(listing, /chain v-dns \{\n\s+drop/, 'a VIP without members drops');
  t.regex(listing, /chain b-bb-1 \{\n\s+ip daddr \. meta l4proto \. th dport vmap \{[^}]*10\.96\.0\.10 \. tcp \. 80 : goto v-web/);
  t.regex(listing, /chain b-bb-1 \{\n\s+ip daddr \. meta l4proto \. th dport vmap \{[^}]*10\.96\.0\.11 \. udp \. 53 : goto v-dns/);

  // c is removed, b goes down.
  await nftApply(netns, compileLb(host([m('a', 1), m('b', 1, { status: 'down' })]), parseExisting(listing)), 'update');
  listing = await list();
  t.false(listing.includes('m-web-c'), "the removed member's chain is gone");
  t.false(listing.includes('a-web-c'), 'and its affinity set');
  t.false(listing.includes('goto m-web-b'), 'a member that is down gets no new connection');
  t.regex(listing, /set a-web-a \{[^}]*elements = \{ 10\.0\.0\.7/s, 'a sticky client of a member still in rotation stays');
  t.notRegex(listing, /set a-web-b \{[^}]*elements/s, 'the sticky clients of a member that went down are let go');
});

test('backup members are used only while no other member is in rotation', (t) => {
  t.is(weightedVmap('v', [m('a', 1), m('b', 1, { backup: true })]), 'numgen random mod 1 vmap { 0 : goto m-v-a }');
  t.is(weightedVmap('v', [m('a', 1, { status: 'down' }), m('b', 2, { backup: true })]), 'numgen random mod 2 vmap { 0-1 : goto m-v-b }');
});

test('a member change rewrites only its own VIP: the other chains and the base chains are not touched', (t) => {
  const host = (bMembers: LbMember[]): LbHost => ({
    bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1' }],
    vips: [
      { id: 'web', address: '10.96.0.10', port: 80, protocol: 'tcp', members: [m('a', 1)], bridges: ['bb-1'] },
      { id: 'api', address: '10.96.0.11', port: 80, protocol: 'tcp', members: bMembers, bridges: ['bb-1'] },
    ],
  });
  const before = host([m('b', 1), m('c', 1)]);
  const after = host([m('b', 1)]);
  const existing = { chains: new Set(['b-bb-1', 'v-web', 'm-web-a', 'v-api', 'm-api-b', 'm-api-c']), sets: new Set<string>() };
  const script = compileLb(after, existing, before);
  const touched = [...script.matchAll(/^(?:flush|delete) chain ip bees-lb (\S+)$/gm)].map((x) => x[1]);
  t.deepEqual(touched.sort(), ['m-api-c', 'm-api-c', 'v-api'].sort(), script);
  t.notRegex(script, /add rule ip bees-lb (pre|post|out|b-bb-1|v-web|m-web-a|m-api-b) /);
  t.regex(script, /^delete chain ip bees-lb m-api-c$/m);
  t.is(
    compileLb(after, { ...existing, chains: new Set([...existing.chains].filter((c) => c !== 'm-api-c')) }, after)
      .split('\n')
      .filter((l) => /rule|flush|delete/.test(l)).length,
    0,
    'nothing changed, nothing written',
  );
});

test('published ports, a changed affinity timeout and a removed VIP load in the kernel', async (t) => {
  const ns = `lbc-${randomBytes(3).toString('hex')}`;
  await exec('ip', ['netns', 'add', ns]);
  t.teardown(() => exec('ip', ['netns', 'del', ns]).then(() => undefined));
  const netns = `/run/netns/${ns}`;
  const host = (timeout: number, nodePort: boolean): LbHost => ({
    bridges: [{ ifname: 'bb-1', gateway: '10.9.0.1' }],
    vips: [
      {
        id: 'web',
        address: '10.96.0.10',
        port: 80,
        protocol: 'tcp',
        members: [m('a', 1), m('b', 2)],
        bridges: ['bb-1'],
        sessionPersistence: 'source_ip',
        affinityTimeoutS: timeout,
        ...(nodePort
          ? {
              nodePort: {
                port: 30080,
                local: false,
                localMembers: ['a'],
                remotes: [{ address: '192.0.2.2', weight: 2 }],
                peers: ['192.0.2.2', '192.0.2.3'],
              },
            }
          : {}),
      },
    ],
  });
  const list = () => nftQuery(netns, 'list table ip bees-lb', 'list');
  const first = host(60, true);
  await nftApply(netns, compileLb(first, parseExisting('')), 'first');
  let listing = await list();
  // One chain's text in a listing: from its header to the next chain.
  const chain = (l: string, name: string) => l.split(`chain ${name} {`)[1]?.split(/\n\s*(?:chain|set) /)[0] ?? '';
  t.regex(chain(listing, 'pre'), /fib daddr type local meta l4proto \. th dport vmap \{ tcp \. 30080 : goto n-web \}/);
  t.regex(
    listing,
    /chain n-web \{\n\s+ip saddr \{ 192\.0\.2\.2, 192\.0\.2\.3 \} goto nl-web\n\s+numgen random mod 3 vmap \{ 0 : goto nl-web, 1-2 : goto nh-web-192_0_2_2 \}/,
  );
  t.regex(listing, /chain nh-web-192_0_2_2 \{[^}]*dnat to 192\.0\.2\.2:30080/s);
  t.regex(listing, /masquerade/);
  t.regex(chain(listing, 'out'), /fib daddr type local/, 'the host itself reaches the port too');
  const second = host(120, false);
  await nftApply(netns, compileLb(second, parseExisting(listing), first), 'second');
  listing = await list();
  t.regex(listing, /set a-web-a \{[^}]*timeout 2m/s, 'the new timeout');
  t.false(listing.includes('n-web'), 'the published port is gone');
  t.false(listing.includes('masquerade'));
  await nftApply(netns, compileLb({ bridges: [], vips: [] }, parseExisting(listing), second), 'third');
  listing = await list();
  t.notRegex(listing, /chain (v|m|b|n)-/, 'no chain of a VIP left');
  t.notRegex(listing, /set /);
});
