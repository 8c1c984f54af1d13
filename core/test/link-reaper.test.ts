// Batched link deletion (core/datapath/link-reaper.ts) against the real kernel, in a namespace of its own.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { deleteLinks, groupNumbers } from '../datapath/link-reaper.js';

const IP = '/usr/sbin/ip';

function links(ns: string): { ifname: string; group?: string }[] {
  return JSON.parse(execFileSync(IP, ['-n', ns, '-d', '-j', 'link', 'show']).toString() || '[]') as { ifname: string; group?: string }[];
}

test('deletions at the same time go as one link group; a link of another owner in that group stays', async (t) => {
  const name = `lrt-${randomBytes(4).toString('hex')}`;
  execFileSync(IP, ['netns', 'add', name]);
  t.teardown(() => execFileSync(IP, ['netns', 'del', name]));
  for (let i = 0; i < 12; i++) execFileSync(IP, ['-n', name, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', `p${i}`]);
  execFileSync(IP, ['-n', name, 'link', 'add', 'fx', 'type', 'veth', 'peer', 'name', 'fy']);
  execFileSync(IP, ['-n', name, 'link', 'set', 'fx', 'group', '777']);
  const real = groupNumbers.next;
  let batches = 0;
  t.teardown(() => {
    groupNumbers.next = real;
  });

  // The group number drawn is one another owner's link already carries: the batch must not take it along.
  groupNumbers.next = () => (batches++, 777);
  await Promise.all([0, 1, 2, 3, 4, 5].map((i) => deleteLinks(`/run/netns/${name}`, [`v${i}`, `nosuch${i}`])));
  let left = links(name).map((l) => l.ifname);
  for (let i = 0; i <= 5; i++) t.false(left.includes(`v${i}`) || left.includes(`p${i}`), `v${i} and its peer are gone`);
  t.true(left.includes('fx') && left.includes('fy'), 'the foreign link in group 777 stays');

  groupNumbers.next = () => (batches++, 4242);
  await Promise.all([6, 7, 8, 9, 10, 11].map((i) => deleteLinks(`/run/netns/${name}`, [`v${i}`])));
  left = links(name).map((l) => l.ifname);
  t.deepEqual(
    left.filter((n) => /^[vp]\d+$/.test(n)),
    [],
    'every veth of ours is gone',
  );
  t.true(left.includes('fx'));
  t.true(batches >= 2, 'concurrent deletions were batched');
});
