// A port's policy carried by its plug (PlugSpec.policy: one nft transaction with its port security, committed
// before the port joins its bridge), and set element changes over nfnetlink (policy-elements.ts), on the real
// kernel in harness namespaces.
import test from 'ava';
import type { PolicyChange } from '../datapath/index.js';
import { nftApply, nftQuery } from '../datapath/nft/index.js';
import { changeSetElements } from '../datapath/nft/policy-elements.js';
import { installedBindTargets, policyChangeScript, replaceSetScript } from '../datapath/nft/policy.js';
import { chainExists, nftBatchCounter } from '../datapath/nft/nfnetlink.js';
import { nftTransactionCounter } from '../datapath/nft/apply.js';
import { compileChain, type CompileContext, type SetDecl } from '../policy/compile.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, spec, threePorts, type TestPort } from './datapath-helpers.js';

const CTX: CompileContext = { macOf: () => undefined, chainExists: () => true };

/** Whether `element` is in set `name` of `table bridge bees` (nft's own lookup). */
async function member(ns: string, name: string, element: string): Promise<boolean> {
  return nftQuery(ns, `get element bridge bees ${name} { ${element} }`, 'get').then(
    () => true,
    () => false,
  );
}

test.serial('set elements join and leave over nfnetlink: addresses, prefixes, IPv6, MACs; idempotent; overlaps refused', async (t) => {
  t.timeout(120_000);
  const c = await cluster(t, 1);
  const ns = c.h.hosts[0]!.netns;
  const v4: SetDecl = { name: 'iag-t-v4', type: 'ipv4_addr', interval: true };
  const v6: SetDecl = { name: 'iag-t-v6', type: 'ipv6_addr', interval: true };
  const macs: SetDecl = { name: 'pg-t', type: 'ether_addr' };
  const many = Array.from({ length: 2000 }, (_, i) => `10.100.${i >> 8}.${i & 0xff}`);
  await nftApply(ns, replaceSetScript(v4, many) + replaceSetScript(v6, []) + replaceSetScript(macs, []), 'sets');

  await changeSetElements(
    ns,
    [
      { decl: v4, add: ['10.200.0.1', '10.201.0.0/24'] },
      { decl: v6, add: ['fd00::1', 'fd01::/64'] },
      { decl: macs, add: ['02:00:00:00:00:01'] },
    ],
    'join',
  );
  for (const [set, e] of [
    [v4, '10.200.0.1'],
    [v4, '10.201.0.77'],
    [v6, 'fd00::1'],
    [v6, 'fd01::5'],
    [macs, '02:00:00:00:00:01'],
  ] as const) {
    t.true(await member(ns, set.name, e), `${e} in ${set.name}`);
  }
  // The neighbours of an added address are not members: the interval is exactly that address.
  t.false(await member(ns, v4.name, '10.200.0.2'));
  t.false(await member(ns, v4.name, '10.200.0.0'));
  // Adding again, or removing what is absent, is no error.
  await changeSetElements(ns, [{ decl: v4, add: ['10.200.0.1'], remove: ['10.250.0.9'] }], 'again');
  // An address inside a prefix of the set overlaps it: the kernel refuses, and nothing of the batch is applied.
  await t.throwsAsync(changeSetElements(ns, [{ decl: v4, add: ['10.202.0.1', '10.201.0.5'] }], 'overlap'), {
    message: /overlap: .*(File exists|EEXIST)/,
  });
  t.false(await member(ns, v4.name, '10.202.0.1'));

  await changeSetElements(
    ns,
    [
      { decl: v4, remove: ['10.200.0.1', '10.201.0.0/24', '10.100.3.7'] },
      { decl: v6, remove: ['fd01::/64'] },
      { decl: macs, remove: ['02:00:00:00:00:01'] },
    ],
    'leave',
  );
  for (const [set, e] of [
    [v4, '10.200.0.1'],
    [v4, '10.201.0.77'],
    [v4, '10.100.3.7'],
    [v6, 'fd01::5'],
    [macs, '02:00:00:00:00:01'],
  ] as const) {
    t.false(await member(ns, set.name, e), `${e} left ${set.name}`);
  }
  t.true(await member(ns, v4.name, '10.100.3.8'));
  t.true(await member(ns, v6.name, 'fd00::1'));
});

test.serial(
  "a plug carrying its port's policy: in force when the plug returns, one transaction; a failed one leaves no port",
  async (t) => {
    t.timeout(120_000);
    const { c, host, dp, vni, A, B, C } = await threePorts(t, '10.78.0');
    // B's port-outbound chain (frames going to B) drops ICMP from A only.
    const chain = compileChain(
      'to-b',
      [{ id: 'no-a', chainId: 'to-b', position: 1, action: 'drop', condition: { nwSrc: `${ipOf(A)}/32` } }],
      CTX,
    );
    const hostIfname = 'bvtestplugb';
    const policy: PolicyChange = {
      zones: [],
      sets: [],
      chains: [chain],
      bindings: [{ ifname: hostIfname, stage: 'port-outbound', chainId: 'to-b' }],
      removeChains: [],
      removeSets: [],
    };
    await dp.plug({ ...spec(B), hostIfname, policy });
    B.hostIfname = hostIfname;
    // In force from the first packet: no retry needed for the drop to hold, and C (not matched) gets through.
    const ping = (from: TestPort, to: TestPort) => c.h.exec(from.netns!, ['ping', '-c', '1', '-W', '1', ipOf(to)]);
    t.not((await ping(A, B)).code, 0, 'A is dropped on its way to B');
    t.true(await c.h.pingEventually(C.netns!, ipOf(B)), 'C reaches B');
    t.regex(await nftQuery(host.netns, `list chain bridge bees tp-${hostIfname}`, 'list'), /goto c-to-b/);

    // A policy the kernel refuses fails the plug, and the port is gone with it (it never joined the bridge).
    const D: TestPort = { host, vni, mac: mac(), ips: ['10.78.0.9/24'], portSecurity: true, netns: await c.h.addWorkload(host, 'wd') };
    const broken: PolicyChange = {
      ...policy,
      chains: [{ chainId: 'bad', name: 'c-bad', rules: ['this is not nft'], sets: [], jumps: [] }],
      bindings: [{ ifname: 'bvtestplugd', stage: 'port-outbound', chainId: 'bad' }],
    };
    await t.throwsAsync(dp.plug({ ...spec(D), hostIfname: 'bvtestplugd', policy: broken }), { message: /policy of bvtestplugd/ });
    t.false((await dp.inventory()).plugs.includes('bvtestplugd'));
  },
);

test.serial(
  'ports sharing a chain: an attach binds the installed chain without adding it again; the chain goes with its last port',
  async (t) => {
    t.timeout(120_000);
    const c = await cluster(t, 1);
    const host = c.h.hosts[0]!;
    const ns = host.netns;
    const dp = c.dp.get(host.name)!;
    const vni = randomVni();
    const ports: TestPort[] = [0, 1, 2, 3].map((i) => ({ host, vni, mac: mac(), ips: [`10.78.1.${i + 2}/24`], portSecurity: true }));
    const [A, B1, B2, C] = ports as [TestPort, TestPort, TestPort, TestPort];
    await dp.ensureBridge(desiredBridge(host, vni, ports));
    await plugAll(c, [A, C]);
    const chain = compileChain(
      'to-b',
      [{ id: 'no-a', chainId: 'to-b', position: 1, action: 'drop', condition: { nwSrc: `${ipOf(A)}/32` } }],
      CTX,
    );
    const bind = (ifname: string, chainId: string | null, chains = [] as (typeof chain)[]): PolicyChange => ({
      zones: [],
      sets: [],
      chains,
      bindings: [{ ifname, stage: 'port-outbound', chainId }],
      removeChains: [],
      removeSets: [],
    });
    const plugInto = async (p: TestPort, hostIfname: string, policy: PolicyChange) => {
      p.netns = await c.h.addWorkload(host, `w${hostIfname.slice(-2)}`);
      await dp.plug({ ...spec(p), hostIfname, policy });
      p.hostIfname = hostIfname;
    };
    // The first port brings the chain, added once in its transaction (not again by its binding, after its rules);
    // the second finds it installed.
    const first = bind('bvsharedb1', 'to-b', [chain]);
    t.is(policyChangeScript(first, installedBindTargets(ns, first)).match(/add chain bridge bees c-to-b\n/g)?.length, 1);
    await plugInto(B1, 'bvsharedb1', first);
    t.true(chainExists(ns, 'bridge', 'bees', 'c-to-b'));
    t.false(chainExists(ns, 'bridge', 'bees', 'c-nope'));
    t.false(chainExists(ns, 'inet', 'no-such-table', 'c-to-b'));
    const second = bind('bvsharedb2', 'to-b');
    t.deepEqual([...installedBindTargets(ns, second)], ['to-b']);
    // Re-adding an installed chain holding rules makes the commit wait in the kernel: the binding does without.
    t.notRegex(policyChangeScript(second, installedBindTargets(ns, second)), /add chain bridge bees c-to-b\n/);
    // Its binding goes over nfnetlink (port-binding.ts), in one batch with the port security: no nft text.
    const batches = nftBatchCounter.count;
    const texts = nftTransactionCounter.count;
    await plugInto(B2, 'bvsharedb2', second);
    t.is(nftBatchCounter.count - batches, 1);
    t.is(nftTransactionCounter.count - texts, 0);
    t.regex(await nftQuery(ns, 'list chain bridge bees tp-bvsharedb2', 'list'), /goto c-to-b/);
    t.regex(await nftQuery(ns, 'list map bridge bees to-port', 'list'), /"bvsharedb2" : jump tp-bvsharedb2/);
    const ping = (from: TestPort, to: TestPort) => c.h.exec(from.netns!, ['ping', '-c', '1', '-W', '1', ipOf(to)]);
    t.not((await ping(A, B2)).code, 0, 'A is dropped on its way to B2');
    t.true(await c.h.pingEventually(C.netns!, ipOf(B2)), 'C reaches B2');

    // A binding to a chain the kernel lacks still creates it (empty), in the same transaction.
    const D: TestPort = { host, vni, mac: mac(), ips: ['10.78.1.9/24'], portSecurity: true };
    const missing = bind('bvsharedd', 'nope');
    t.deepEqual([...installedBindTargets(ns, missing)], []);
    await plugInto(D, 'bvsharedd', missing);
    t.true(chainExists(ns, 'bridge', 'bees', 'c-nope'));

    // The first port leaves: its stage chain and map element go, the shared chain stays for the second.
    await dp.unplug(B1.hostIfname!);
    const listing = () => nftQuery(ns, 'list table bridge bees', 'list');
    t.notRegex(await listing(), /bvsharedb1/);
    t.true(chainExists(ns, 'bridge', 'bees', 'c-to-b'));
    t.not((await ping(A, B2)).code, 0, 'B2 is still filtered');
    // The last port leaves; the agent's next pass removes the chains no binding reaches (core/agent/plan.ts).
    await dp.unplug(B2.hostIfname!);
    await dp.unplug(D.hostIfname!);
    await dp.applyPolicy({ ...bind('bvsharedb2', null), bindings: [], removeChains: ['to-b', 'nope'] });
    const left = await listing();
    t.notRegex(left, /bvshared|c-to-b|c-nope/, left);
  },
);
