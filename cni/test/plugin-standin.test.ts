// The midonet plugin through the libcni-like harness at every spec version, against the STAND-IN agent
// (cni/test/standin-agent.ts — not the real agent; see its header). Proves the protocol layer: what the plugin
// asks the agent for, the result shape per version, chaining before and after reference plugins, CHECK, DEL,
// GC and STATUS semantics.
import test, { type ExecutionContext } from 'ava';
import type { AttachRequest, CheckRequest, DetachRequest, GcRequest } from '../../core/workload/types.js';
import { parseNetworkConfig } from '../harness/config.js';
import { CniHarness, PluginError } from '../harness/libcni.js';
import { addrsIn, randomSuffix, sh } from '../harness/netns.js';
import type { RuntimeConf } from '../harness/types.js';
import { buildPlugin, netns, REFERENCE_DIR, randomSubnet, tempDir } from './helpers.js';
import { startStandInAgent, type StandInAgent } from './standin-agent.js';

const ALL = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

async function setup(t: ExecutionContext) {
  const bin = await buildPlugin();
  const dir = await tempDir(t, 'standin');
  const agent = await startStandInAgent(dir);
  t.teardown(() => agent.close());
  const h = new CniHarness({ pluginDirs: [bin, REFERENCE_DIR], cacheDir: await tempDir(t, 'cache') });
  return { agent, h, subnet: randomSubnet() };
}

const bodies = <T>(a: StandInAgent, path: string) => a.requests.filter((r) => r.path === path).map((r) => r.body as T);

/** The chain each version can have: reference plugins speak <= 1.0.0, firewall >= 0.4.0, lists need >= 0.3.0. */
function pluginsFor(version: string, midonet: Record<string, unknown>): Record<string, unknown>[] {
  if (version < '0.3.0') return [midonet];
  if (version === '1.1.0') return [midonet];
  const chain: Record<string, unknown>[] = [midonet, { type: 'portmap', capabilities: { portMappings: true }, snat: true }, { type: 'tuning', sysctl: { 'net.ipv4.conf.eth0.accept_local': '1' } }];
  if (version >= '0.4.0') chain.push({ type: 'firewall', backend: 'iptables' });
  return chain;
}

for (const version of ALL) {
  test.serial(`midonet at ${version}: ADD wires eth0 through the agent, result has the ${version} shape, CHECK, DEL, DEL again`, async (t) => {
    const { agent, h, subnet } = await setup(t);
    const name = `mn-${randomSuffix()}`;
    const midonet = { type: 'midonet', agentSocket: agent.socket, tenant: 'acme', network: `web-${randomSuffix()}`, subnet: subnet.cidr, capabilities: { ips: true, mac: true }, someUnknownKey: { kept: true } };
    const plugins = pluginsFor(version, midonet);
    const text = version < '0.3.0' ? JSON.stringify({ cniVersion: version, name, ...midonet }) : JSON.stringify({ cniVersion: version, name, plugins });
    const list = parseNetworkConfig(text);
    const ns = await netns(t);
    const containerId = `sandbox${randomSuffix(6)}`;
    const rt: RuntimeConf = {
      containerId, netns: ns.path, ifname: 'eth0',
      args: [['IgnoreUnknown', '1'], ['K8S_POD_NAMESPACE', 'shop'], ['K8S_POD_NAME', 'web-0'], ['K8S_POD_UID', 'uid-1'], ['K8S_POD_INFRA_CONTAINER_ID', containerId], ['SOMETHING_ELSE', 'x']],
      capabilityArgs: { ips: [`${subnet.base}.77`], mac: '0a:58:0a:00:00:77', portMappings: [{ hostPort: 19000 + Math.floor(Math.random() * 1000), containerPort: 80, protocol: 'tcp' }] },
    };
    t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
    const result = (await h.addNetworkList(list, rt)) as Record<string, unknown>; // the harness checks the version's shape

    const [attach] = bodies<AttachRequest>(agent, '/v1/attach');
    t.like(attach, { orchestrator: 'cni', workloadId: containerId, ifname: 'eth0', netns: ns.path, tenant: 'acme', network: midonet.network, ips: [`${subnet.base}.77`], mac: '0a:58:0a:00:00:77' });
    t.deepEqual(attach!.create, { subnets: [{ cidr: subnet.cidr }] });
    t.deepEqual(attach!.labels, { 'k8s.pod.namespace': 'shop', 'k8s.pod.name': 'web-0', 'k8s.pod.uid': 'uid-1', 'k8s.pod.infraContainerId': containerId });
    t.is(attach!.portMappings, undefined, 'port mappings are left to portmap, which declared the capability');

    const eth0 = (await addrsIn(ns.name)).find((l) => l.ifname === 'eth0');
    t.true(eth0!.addr_info.some((a) => a.local === `${subnet.base}.77`));
    t.is(eth0!.address, '0a:58:0a:00:00:77');
    if (version < '0.3.0') {
      t.deepEqual(result.ip4, { ip: `${subnet.base}.77/24`, gateway: `${subnet.base}.1`, routes: [{ dst: '0.0.0.0/0', gw: `${subnet.base}.1` }] });
    } else {
      const ifaces = result.interfaces as { name: string; sandbox?: string; mac?: string }[];
      const ips = result.ips as { address: string; interface: number; version?: string }[];
      t.is(ifaces[ips[0]!.interface]!.name, 'eth0');
      t.is(ifaces[ips[0]!.interface]!.sandbox, ns.path);
      t.is(ips[0]!.address, `${subnet.base}.77/24`);
      t.is(ips[0]!.version, version < '1.0.0' ? '4' : undefined);
    }

    if (version >= '0.4.0') {
      if (version === '1.1.0') {
        await h.checkNetworkList(list, rt);
      } else {
        // midonet (first) passes; portmap 1.1.1 then trips on its IPv6 bug (containernetworking/plugins#819).
        const err = await t.throwsAsync(h.checkNetworkList(list, rt), { instanceOf: PluginError });
        t.is(err!.plugin, 'portmap');
        t.regex(err!.msg, /ipv6/);
      }
      t.like(bodies<CheckRequest>(agent, '/v1/check')[0], { workloadId: containerId, ifname: 'eth0', netns: ns.path });
      t.truthy(h.trace.find((c) => c.plugin === 'midonet' && c.command === 'CHECK')!.conf.prevResult);
      // Break what the agent made: CHECK must say so, in midonet's voice, with its own code.
      await sh('ip', ['-n', ns.name, 'addr', 'flush', 'dev', 'eth0']);
      const err = await t.throwsAsync(h.checkNetworkList(list, rt), { instanceOf: PluginError });
      t.is(err!.plugin, 'midonet');
      t.is(err!.code, 104);
      t.regex(err!.msg, /eth0 lacks/);
    }

    await h.delNetworkList(list, rt);
    t.like(bodies<DetachRequest>(agent, '/v1/detach')[0], { orchestrator: 'cni', workloadId: containerId, ifname: 'eth0' });
    t.is(agent.attachments.size, 0);
    t.falsy((await addrsIn(ns.name)).find((l) => l.ifname === 'eth0'));
    await h.delNetworkList(list, rt); // the agent answers not_found; DEL still succeeds
    await h.delNetworkList(list, { ...rt, netns: '' });
  });
}

test.serial('midonet chains after other plugins: prevResult is kept and our interface indexes shift (1.0.0)', async (t) => {
  const { agent, h, subnet } = await setup(t);
  const list = parseNetworkConfig(JSON.stringify({
    cniVersion: '1.0.0', name: `mn-${randomSuffix()}`,
    plugins: [{ type: 'loopback' }, { type: 'midonet', agentSocket: agent.socket, subnet: subnet.cidr }, { type: 'tuning', mtu: 1400 }],
  }));
  const ns = await netns(t);
  const rt: RuntimeConf = { containerId: `c${randomSuffix(6)}`, netns: ns.path, ifname: 'eth0' };
  t.teardown(() => h.delNetworkList(list, rt).catch(() => undefined));
  const r = (await h.addNetworkList(list, rt)) as { interfaces: { name: string }[]; ips: { address: string; interface: number }[] };
  t.is(r.interfaces[0]!.name, 'lo');
  // loopback gives lo two addresses (127.0.0.1/8, ::1/128); ours follows, pointing at eth0 past them.
  const names = r.ips.map((i) => r.interfaces[i.interface]!.name);
  t.is(names[0], 'lo');
  t.deepEqual(names.filter((n) => n !== 'lo'), ['eth0']);
  t.true(r.ips.at(-1)!.address.startsWith(subnet.base));
  t.is((await addrsIn(ns.name)).find((l) => l.ifname === 'eth0')!.mtu, 1400, 'tuning after us acted on our interface');
  await h.delNetworkList(list, rt);
});

test.serial('GC at 1.1.0 sends both attachment keys; the agent keeps only the valid attachments', async (t) => {
  const { agent, h, subnet } = await setup(t);
  const list = parseNetworkConfig(JSON.stringify({ cniVersion: '1.1.0', name: `mn-${randomSuffix()}`, plugins: [{ type: 'midonet', agentSocket: agent.socket, subnet: subnet.cidr }] }));
  const [a, b] = [await netns(t), await netns(t)];
  const ra: RuntimeConf = { containerId: `a${randomSuffix(6)}`, netns: a.path, ifname: 'eth0' };
  const rb: RuntimeConf = { containerId: `b${randomSuffix(6)}`, netns: b.path, ifname: 'eth0' };
  await h.addNetworkList(list, ra);
  await h.addNetworkList(list, rb);
  // The runtime forgot b without DEL (a crash); the agent still has it until GC.
  await h.cache.remove(list.name, rb.containerId, 'eth0');
  t.deepEqual(await h.gcNetworkList(list, [{ containerID: ra.containerId, ifname: 'eth0' }]), []);
  const gcConf = h.trace.find((c) => c.command === 'GC')!.conf;
  t.deepEqual(gcConf['cni.dev/valid-attachments'], [{ containerID: ra.containerId, ifname: 'eth0' }]);
  t.deepEqual(gcConf['cni.dev/attachments'], gcConf['cni.dev/valid-attachments']);
  t.like(bodies<GcRequest>(agent, '/v1/gc')[0], { orchestrator: 'cni', valid: [{ workloadId: ra.containerId, ifname: 'eth0' }], network: list.name });
  t.deepEqual([...agent.attachments.values()].map((x) => x.req.workloadId), [ra.containerId]);
  t.falsy((await addrsIn(b.name)).find((l) => l.ifname === 'eth0'));
  await h.delNetworkList(list, ra);
});

test.serial('STATUS at 1.1.0: ready passes, an unready agent is code 50 with its reason, no agent is code 50', async (t) => {
  const { agent, h } = await setup(t);
  const conf = { cniVersion: '1.1.0', name: `mn-${randomSuffix()}`, plugins: [{ type: 'midonet', agentSocket: agent.socket }] };
  await h.getStatusNetworkList(parseNetworkConfig(JSON.stringify(conf)));
  agent.ready = false;
  const unready = await t.throwsAsync(h.getStatusNetworkList(parseNetworkConfig(JSON.stringify(conf))), { instanceOf: PluginError });
  t.is(unready!.code, 50);
  t.regex(unready!.msg, /not ready for ADD: stand-in told to be unready/);
  conf.plugins[0]!.agentSocket = `${agent.socket}.missing`;
  const gone = await t.throwsAsync(h.getStatusNetworkList(parseNetworkConfig(JSON.stringify(conf))), { instanceOf: PluginError });
  t.is(gone!.code, 50);
  t.regex(gone!.msg, /cannot reach the bees agent/);
});

test.serial('agent refusals become CNI codes: duplicate ADD 102, full subnet 101, unknown network without subnet 7', async (t) => {
  const { agent, h, subnet } = await setup(t);
  const tiny = `${subnet.base}.0/30`; // one usable address after the gateway
  const list = parseNetworkConfig(JSON.stringify({ cniVersion: '1.0.0', name: `mn-${randomSuffix()}`, plugins: [{ type: 'midonet', agentSocket: agent.socket, subnet: tiny }] }));
  const [a, b] = [await netns(t), await netns(t)];
  const ra: RuntimeConf = { containerId: `a${randomSuffix(6)}`, netns: a.path, ifname: 'eth0' };
  t.teardown(() => h.delNetworkList(list, ra).catch(() => undefined));
  await h.addNetworkList(list, ra);
  const dup = await t.throwsAsync(h.addNetworkList(list, ra), { instanceOf: PluginError });
  t.is(dup!.code, 102);
  const full = await t.throwsAsync(h.addNetworkList(list, { containerId: `b${randomSuffix(6)}`, netns: b.path, ifname: 'eth0' }), { instanceOf: PluginError });
  t.is(full!.code, 101);
  t.regex(full!.msg, /no free address/);
  const nowhere = parseNetworkConfig(JSON.stringify({ cniVersion: '1.0.0', name: `mn-${randomSuffix()}`, plugins: [{ type: 'midonet', agentSocket: agent.socket }] }));
  const missing = await t.throwsAsync(h.addNetworkList(nowhere, { containerId: `c${randomSuffix(6)}`, netns: b.path, ifname: 'eth0' }), { instanceOf: PluginError });
  t.is(missing!.code, 7);
  t.regex(missing!.msg, /does not exist/);
});
