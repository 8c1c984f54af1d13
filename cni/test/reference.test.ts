// The harness is honest: driven against Debian's reference plugins in real namespaces it produces working
// interfaces, CHECK catches real breakage, DEL cleans up, GC deletes stale attachments, and bad versions fail.
import test from 'ava';
import { readdir } from 'node:fs/promises';
import { parseNetworkConfig } from '../harness/config.js';
import { CniHarness, PluginError } from '../harness/libcni.js';
import { addrsIn, randomSuffix, sh } from '../harness/netns.js';
import { netns, REFERENCE_DIR, referenceConflist, randomSubnet, tempDir } from './helpers.js';

const ipsOf = (r: unknown) => (r as { ips: { address: string; interface?: number }[] }).ips;

for (const version of ['0.3.1', '0.4.0', '1.0.0']) {
  test.serial(
    `reference chain bridge+host-local→portmap→bandwidth→tuning(→firewall) at ${version}: ADD, CHECK, DEL, DEL again`,
    async (t) => {
      const conf = await referenceConflist(t, version);
      const list = parseNetworkConfig(conf.text);
      const h = new CniHarness({ pluginDirs: [REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
      const ns = await netns(t);
      const rt = {
        containerId: `ctr${randomSuffix(6)}`,
        netns: ns.path,
        ifname: 'eth0',
        args: [
          ['IgnoreUnknown', '1'],
          ['K8S_POD_NAME', 'p'],
        ] as [string, string][],
        capabilityArgs: {
          portMappings: [{ hostPort: 18080 + Math.floor(Math.random() * 1000), containerPort: 80, protocol: 'tcp' }],
          bandwidth: { ingressRate: 1e8, ingressBurst: 1e6, egressRate: 1e8, egressBurst: 1e6 },
          ips: ['10.9.9.9'],
        },
      };
      t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
      const result = await h.addNetworkList(list, rt);

      // The chain passed results along: the final result is bridge's, each later plugin got the previous one.
      const adds = h.trace.filter((c) => c.command === 'ADD');
      const chain = ['bridge', 'portmap', 'bandwidth', 'tuning', ...(version === '0.3.1' ? [] : ['firewall'])];
      t.deepEqual(
        adds.map((c) => c.plugin),
        chain,
      );
      t.is(adds[0]!.conf.prevResult, undefined);
      for (const c of adds.slice(1)) t.truthy(c.conf.prevResult);
      // Capability args only reach plugins that declared them; `ips` was declared by none.
      t.deepEqual(Object.keys(adds[1]!.conf.runtimeConfig ?? {}), ['portMappings']);
      t.deepEqual(Object.keys(adds[2]!.conf.runtimeConfig ?? {}), ['bandwidth']);
      t.is(adds[0]!.conf.runtimeConfig, undefined);
      t.false('capabilities' in adds[1]!.conf);

      // The kernel agrees with the result.
      const address = ipsOf(result)[0]!.address;
      const eth0 = (await addrsIn(ns.name)).find((l) => l.ifname === 'eth0');
      t.truthy(eth0, 'eth0 exists in the namespace');
      t.true(eth0!.addr_info.some((a) => `${a.local}/${a.prefixlen}` === address));
      await sh('ip', ['netns', 'exec', ns.name, 'ping', '-c1', '-W2', address.replace(/\.\d+\/24$/, '.1')]);

      if (version === '0.3.1') {
        await t.throwsAsync(h.checkNetworkList(list, rt), { message: /does not support the CHECK command/ });
      } else {
        // portmap 1.1.1 always checks IPv6 rules it never made (containernetworking/plugins#819, fixed later):
        // CHECK reaches it after bridge passed, and fails there for that reason only.
        const err = await t.throwsAsync(h.checkNetworkList(list, rt), { instanceOf: PluginError });
        t.is(err.plugin, 'portmap');
        t.regex(err.msg, /ipv6/);
        t.deepEqual(
          h.trace.filter((c) => c.command === 'CHECK').map((c) => c.plugin),
          ['bridge', 'portmap'],
        );
      }

      await h.delNetworkList(list, rt);
      const dels = h.trace.filter((c) => c.command === 'DEL').map((c) => c.plugin);
      t.deepEqual(dels, [...chain].reverse());
      t.falsy(
        (await addrsIn(ns.name)).find((l) => l.ifname === 'eth0'),
        'eth0 is gone',
      );
      t.deepEqual(
        (await readdir(`${conf.dataDir}/${conf.name}`)).filter((f) => /^\d/.test(f)),
        [],
        'host-local released the address',
      );
      t.false((await sh('iptables-save', [])).includes(rt.containerId), 'no iptables rule names the container any more');
      // DEL again (nothing left, netns still there) and DEL without netns both succeed.
      await h.delNetworkList(list, rt);
      await h.delNetworkList(list, { ...rt, netns: '' });
    },
  );
}

test.serial('CHECK passes on a healthy chain and fails when the interface lost its address (1.0.0)', async (t) => {
  const conf = await referenceConflist(t, '1.0.0');
  const raw = JSON.parse(conf.text) as { plugins: { type: string }[] };
  raw.plugins = raw.plugins.filter((p) => p.type !== 'portmap'); // see #819 above
  const list = parseNetworkConfig(JSON.stringify(raw));
  const h = new CniHarness({ pluginDirs: [REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
  const ns = await netns(t);
  // bandwidth 1.1.1 CHECK dereferences its runtimeConfig without a nil check: it must get one.
  const rt = {
    containerId: `ctr${randomSuffix(6)}`,
    netns: ns.path,
    ifname: 'eth0',
    capabilityArgs: { bandwidth: { ingressRate: 1e8, ingressBurst: 1e6, egressRate: 1e8, egressBurst: 1e6 } },
  };
  t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
  const result = await h.addNetworkList(list, rt);
  await h.checkNetworkList(list, rt);
  t.deepEqual(
    h.trace.filter((c) => c.command === 'CHECK').map((c) => c.plugin),
    ['bridge', 'bandwidth', 'tuning', 'firewall'],
  );
  t.truthy(h.trace.find((c) => c.command === 'CHECK')!.conf.prevResult, 'CHECK carries the cached result');
  await sh('ip', ['-n', ns.name, 'addr', 'del', ipsOf(result)[0]!.address, 'dev', 'eth0']);
  const err = await t.throwsAsync(h.checkNetworkList(list, rt), { instanceOf: PluginError });
  t.is(err.plugin, 'bridge');
  t.regex(err.msg, /eth0|address|ip/i);
});

test('a single-plugin 0.2.0 config (the Mesos shape) gives an ip4 result', async (t) => {
  const { cidr } = randomSubnet();
  const bridge = `cnib${randomSuffix()}`;
  t.teardown(() => sh('ip', ['link', 'del', bridge]).catch(() => undefined));
  const dataDir = await tempDir(t, 'hostlocal');
  const list = parseNetworkConfig(
    JSON.stringify({
      cniVersion: '0.2.0',
      name: `m-${randomSuffix()}`,
      type: 'bridge',
      bridge,
      isGateway: true,
      ipam: { type: 'host-local', subnet: cidr, dataDir },
    }),
  );
  t.is(list.plugins.length, 1);
  const h = new CniHarness({ pluginDirs: [REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
  const ns = await netns(t);
  const rt = { containerId: `ctr${randomSuffix(6)}`, netns: ns.path, ifname: 'eth0' };
  t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
  const result = (await h.addNetworkList(list, rt)) as { ip4?: { ip: string } };
  t.regex(result.ip4?.ip ?? '', /^10\.\d+\.\d+\.\d+\/24$/);
  await h.delNetworkList(list, rt);
});

test.serial('cniVersions picks the highest version the runtime knows; VERSION and validation see 1.1.0 is unsupported', async (t) => {
  const conf = await referenceConflist(t, '1.0.0');
  const raw = JSON.parse(conf.text) as Record<string, unknown>;
  raw.cniVersion = '0.3.1'; // cniVersions overrides it
  raw.cniVersions = ['0.3.1', '1.0.0', '9.9.9'];
  const list = parseNetworkConfig(JSON.stringify(raw));
  t.is(list.cniVersion, '1.0.0');
  const h = new CniHarness({ pluginDirs: [REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
  t.deepEqual(await h.validateNetworkList(list), []);
  const info = await h.getVersionInfo('bridge');
  t.false(info.supportedVersions.includes('1.1.0'));
  const newer = parseNetworkConfig(JSON.stringify({ ...raw, cniVersions: ['1.1.0'] }));
  t.is((await h.validateNetworkList(newer)).length, 5, 'none of the five plugins speaks 1.1.0');
  const ns = await netns(t);
  const err = await t.throwsAsync(h.addNetworkList(newer, { containerId: `ctr${randomSuffix(6)}`, netns: ns.path, ifname: 'eth0' }), {
    instanceOf: PluginError,
  });
  t.is(err.code, 1, 'incompatible version');
});

test.serial('GC deletes cached attachments that are no longer valid, keeps the valid ones', async (t) => {
  const conf = await referenceConflist(t, '1.0.0');
  const list = parseNetworkConfig(conf.text);
  const h = new CniHarness({ pluginDirs: [REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
  const [a, b] = [await netns(t), await netns(t)];
  const ra = { containerId: `ctr${randomSuffix(6)}`, netns: a.path, ifname: 'eth0' };
  const rb = { containerId: `ctr${randomSuffix(6)}`, netns: b.path, ifname: 'eth0' };
  t.teardown(async () => {
    await h.delNetworkList(list, ra).catch(() => undefined);
    await h.delNetworkList(list, rb).catch(() => undefined);
  });
  await h.addNetworkList(list, ra);
  await h.addNetworkList(list, rb);
  const errors = await h.gcNetworkList(list, [{ containerID: ra.containerId, ifname: 'eth0' }]);
  t.deepEqual(errors, []);
  t.truthy((await addrsIn(a.name)).find((l) => l.ifname === 'eth0'));
  t.falsy((await addrsIn(b.name)).find((l) => l.ifname === 'eth0'));
  t.deepEqual(
    (await h.cache.list(list.name)).map((e) => e.containerId),
    [ra.containerId],
  );
  // Below 1.1.0 the GC command itself is never sent.
  t.false(h.trace.some((c) => c.command === 'GC'));
});
