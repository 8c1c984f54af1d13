// The nftables module (core/datapath/nft) on a real kernel: features own separate per-port chains, so re-plugging a
// port (which replaces its port security) leaves another feature's rules for that port alone; base chains are
// installed once, not rewritten by every port; and sweeps delete only tables that carry our ownership comment.
import test from 'ava';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { LinuxDatapath } from '../datapath/index.js';
import {
  applyStageChain,
  dropTable,
  forgetDevices,
  FROM_PORT,
  HOST_BRIDGE,
  HOST_NAT,
  installPortSecurity,
  listStageChain,
  nftQueryCounter,
  nftTransactionCounter,
  stageChain,
} from '../datapath/nft/index.js';
import { cluster, desiredBridge, mac, randomVni, spec, type TestPort } from './datapath-helpers.js';

const exec = promisify(execFile);
const NFT = '/usr/sbin/nft';

test.serial("another feature's rules for a port survive re-plugging and replacing its port security", async (t) => {
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const vni = randomVni();
  const p: TestPort = { host, vni, mac: mac(), ips: ['10.90.0.2/24'], portSecurity: true };
  await dp.ensureBridge(desiredBridge(host, vni, [p]));
  p.netns = await c.h.addWorkload(host, 'wnft');
  const port = (await dp.plug(spec(p))).hostIfname;

  // A second feature (the policy stage "from-port") adds its own rule for the same port, through the module.
  const marker = 'ip daddr 192.0.2.99 drop';
  await applyStageChain(host.netns, FROM_PORT, port, [marker], 'test feature');
  const hasMarker = async (): Promise<boolean> => (await listStageChain(host.netns, FROM_PORT, port)).includes('192.0.2.99');
  t.true(await hasMarker());

  // Attach again (same spec), then with another address: port security is replaced, the other chain stays.
  await dp.plug(spec(p));
  t.true(await hasMarker(), "a re-plug flushed the other feature's chain");
  p.ips = ['10.90.0.3/24'];
  await dp.plug(spec(p));
  t.deepEqual(await dp.checkPlug(spec(p)), []);
  t.true(await hasMarker(), "replacing port security flushed the other feature's chain");
  const map = await c.h.exec(host, [NFT, 'list', 'map', HOST_BRIDGE.family, HOST_BRIDGE.name, FROM_PORT.map]);
  t.true(map.stdout.includes(`"${port}" : jump ${stageChain(FROM_PORT, port)}`), map.stdout);
  // The stage's base chain sits at its declared priority.
  const base = await c.h.exec(host, [NFT, 'list', 'chain', HOST_BRIDGE.family, HOST_BRIDGE.name, FROM_PORT.base]);
  t.regex(base.stdout, /hook forward priority 10;/);

  // Unplugging removes the port's chains of every feature, this one's too.
  await dp.unplug(port);
  t.is(await listStageChain(host.netns, FROM_PORT, port), '');
  const chains = await c.h.exec(host, [NFT, 'list', 'chains', HOST_BRIDGE.family]);
  t.false(chains.stdout.includes(port), chains.stdout);
  await dp.removeBridge(vni);
  await dp.sweep({});
  t.deepEqual(await c.h.allLeaks(), {});
});

/** A fresh namespace standing for a host, removed after the test. */
async function namespace(t: import('ava').ExecutionContext): Promise<string> {
  const name = `nft-${randomBytes(3).toString('hex')}`;
  await exec('ip', ['netns', 'add', name]);
  t.teardown(() =>
    exec('ip', ['netns', 'del', name]).then(
      () => undefined,
      () => undefined,
    ),
  );
  return name;
}

const nft = async (ns: string, ...args: string[]): Promise<string> => (await exec('ip', ['netns', 'exec', ns, NFT, ...args])).stdout;

test.serial('the base chain is installed once: a second port costs one transaction and leaves it untouched', async (t) => {
  const ns = await namespace(t);
  const path = `/run/netns/${ns}`;
  await installPortSecurity(path, { hostIfname: 'bva', mac: '02:00:00:00:00:0a', ips: ['10.0.0.10'] });
  const handles = async (): Promise<string> => nft(ns, '-a', 'list', 'chain', HOST_BRIDGE.family, HOST_BRIDGE.name, 'forward');
  const before = await handles();
  t.regex(before, /iifname vmap @ports/);
  const count = nftTransactionCounter.count;
  await installPortSecurity(path, { hostIfname: 'bvb', mac: '02:00:00:00:00:0b', ips: ['10.0.0.11'] });
  t.is(nftTransactionCounter.count - count, 1);
  t.is(await handles(), before, 'the base chain was rewritten');
  // Removed behind our back: the next port puts it back.
  await nft(ns, 'flush', 'chain', HOST_BRIDGE.family, HOST_BRIDGE.name, 'forward');
  await installPortSecurity(path, { hostIfname: 'bvc', mac: '02:00:00:00:00:0c', ips: ['10.0.0.12'] });
  t.regex(await handles(), /oifname vmap @tunnels/);
});

test.serial('devices forgotten at the same time share their chain listings, and each loses its chains', async (t) => {
  const ns = await namespace(t);
  const path = `/run/netns/${ns}`;
  const devices = Array.from({ length: 12 }, (_, i) => `bvf${i}`);
  for (const [i, d] of devices.entries()) {
    await installPortSecurity(path, { hostIfname: d, mac: mac(), ips: [`10.0.1.${i + 1}`] });
    await applyStageChain(path, FROM_PORT, d, ['counter'], 'test feature');
  }
  const queries = nftQueryCounter.count;
  // As twenty unplugs at once call it: one device each.
  await Promise.all(devices.map((d) => forgetDevices(path, [d], `forget ${d}`)));
  // The first call lists alone, the others queue behind it and share the next listing.
  t.true(nftQueryCounter.count - queries <= 2, `${nftQueryCounter.count - queries} listings for ${devices.length} devices`);
  const left = await nft(ns, 'list', 'chains', HOST_BRIDGE.family);
  for (const d of devices) t.false(left.includes(stageChain(FROM_PORT, d)), `${d} kept its chain`);
  t.notRegex(left, /chain p-bvf/);
  // A later call lists afresh: a chain made after the shared listings is still found.
  await applyStageChain(path, FROM_PORT, 'bvg', ['counter'], 'test feature');
  await forgetDevices(path, ['bvg'], 'forget bvg');
  t.false((await nft(ns, 'list', 'chains', HOST_BRIDGE.family)).includes(stageChain(FROM_PORT, 'bvg')));
});

test.serial('sweeps delete our tables and leave a foreign table of the same name', async (t) => {
  const ns = await namespace(t);
  const path = `/run/netns/${ns}`;
  const dp = new LinuxDatapath({ underlayIp: '192.0.2.1', hostNetns: path, routerNsPrefix: `${ns}-r-` });
  // Someone else's tables, named like ours but without our comment.
  await nft(ns, 'add', 'table', HOST_BRIDGE.family, HOST_BRIDGE.name);
  await nft(ns, 'add', 'table', HOST_NAT.family, HOST_NAT.name);
  await dp.sweep({});
  const tables = await nft(ns, 'list', 'tables');
  t.true(tables.includes(`table ${HOST_BRIDGE.family} ${HOST_BRIDGE.name}`), tables);
  t.true(tables.includes(`table ${HOST_NAT.family} ${HOST_NAT.name}`), tables);
  t.is(await dropTable(path, HOST_BRIDGE), 'foreign');

  // Ours (created by a feature, so with the comment): swept.
  await nft(ns, 'delete', 'table', HOST_BRIDGE.family, HOST_BRIDGE.name);
  await installPortSecurity(path, { hostIfname: 'bva', mac: '02:00:00:00:00:0a', ips: ['10.0.0.10'] });
  await dp.sweep({});
  t.false((await nft(ns, 'list', 'tables')).includes(`table ${HOST_BRIDGE.family} ${HOST_BRIDGE.name}`));
  t.is(await dropTable(path, HOST_BRIDGE), 'absent');
});
