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
