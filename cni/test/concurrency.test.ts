// 100 containers ADDed at once, then DELed at once, through the built plugin executable and the real agent: every
// container gets its own address, and afterwards the agent holds no port, no allocation and no veth.
import test from 'ava';
import type { IpamBlock, Port } from '../../core/model/types.js';
import { parseNetworkConfig } from '../harness/config.js';
import { CniHarness } from '../harness/libcni.js';
import { randomSuffix } from '../harness/netns.js';
import type { RuntimeConf } from '../harness/types.js';
import { buildPlugin, tempDir } from './helpers.js';
import { startAgents, workloadVeths } from './real-agent.js';

const N = 100;

test('100 concurrent ADDs then DELs: distinct addresses, nothing left behind', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(1);
  t.teardown(() => cluster.close());
  const agent = cluster.agents[0]!;
  const { harness } = cluster;
  const h = new CniHarness({ pluginDirs: [bin], cacheDir: await tempDir(t, 'cache'), hostNetns: agent.host.netns });
  const network = `conc-${randomSuffix()}`;
  const list = parseNetworkConfig(
    JSON.stringify({
      cniVersion: '1.1.0',
      name: network,
      plugins: [{ type: 'midonet', agentSocket: agent.socket, network, subnet: '10.200.0.0/23' }],
    }),
  );
  const spaces = await Promise.all(Array.from({ length: N }, (_, i) => harness.addWorkload(agent.host, `c${i}`)));
  const rts: RuntimeConf[] = spaces.map((netns, i) => ({ containerId: `conc${i}-${randomSuffix()}`, netns, ifname: 'eth0' }));

  const results = await Promise.allSettled(rts.map((rt) => h.addNetworkList(list, rt)));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`${rts[i]!.containerId}: ${(r.reason as Error).message}`] : []));
  t.deepEqual(failed, [], 'every ADD succeeded');
  const addresses = results.map((r) => (r.status === 'fulfilled' ? (r.value as { ips: { address: string }[] }).ips[0]!.address : ''));
  t.is(new Set(addresses).size, N, 'no address given twice');
  // What the kernel has agrees with what the results said.
  const inKernel = await Promise.all(
    spaces.map(async (ns) => {
      const r = await harness.exec(ns, ['ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0']);
      const j = JSON.parse(r.stdout || '[]') as { addr_info: { local: string; prefixlen: number }[] }[];
      return j[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)[0] ?? '';
    }),
  );
  t.deepEqual(inKernel, addresses);
  t.is((await workloadVeths(harness, agent.host)).length, N);
  const ports = (await agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni');
  t.is(ports.length, N);

  const dels = await Promise.allSettled(rts.map((rt) => h.delNetworkList(list, rt)));
  t.deepEqual(
    dels.flatMap((r, i) => (r.status === 'rejected' ? [`${rts[i]!.containerId}: ${(r.reason as Error).message}`] : [])),
    [],
    'every DEL succeeded',
  );
  t.deepEqual(
    (await agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni'),
    [],
    'no port left',
  );
  const held = (await agent.api<IpamBlock[]>('/v1/ipam-blocks'))
    .flatMap((b) => Object.values(b.allocations))
    .filter((a) => a.owner.startsWith('cni:'));
  t.deepEqual(held, [], 'no allocation left');
  t.deepEqual(await workloadVeths(harness, agent.host), [], 'no veth left in the host namespace (ip link)');
  const leftInWorkloads = (await Promise.all(spaces.map((ns) => harness.exec(ns, ['ip', '-j', 'link', 'show'])))).flatMap((r) =>
    (JSON.parse(r.stdout) as { ifname: string }[]).filter((l) => l.ifname !== 'lo'),
  );
  t.deepEqual(leftInWorkloads, [], 'no interface left in any workload namespace');
});
