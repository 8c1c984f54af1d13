// containerd's CRI plugin driven as kubelet drives it (RunPodSandbox / PodSandboxStatus / StopPodSandbox /
// RemovePodSandbox over gRPC) on two e2e harness hosts, each with a private containerd (own root, state, socket,
// CNI bin/conf dirs holding our plugin) and a real agent, sharing one real ZooKeeper. The pause image is built
// from busybox-static and imported locally.
import test from 'ava';
import { join } from 'node:path';
import type { Port } from '../../core/model/types.js';
import { randomSuffix } from '../harness/netns.js';
import { CriRuntime } from '../../testbed/cri.js';
import { buildPlugin, busyboxRootfsTar, pauseImageArchive, randomSubnet, sandboxNetns, startContainerd, tempDir } from './helpers.js';
import { startAgents, workloadVeths, type HostAgent } from './real-agent.js';

interface Containerd {
  cri: CriRuntime;
  agent: HostAgent;
}

test('CRI pods on two hosts get addresses from the agents, reach each other, and leave nothing when removed', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(2);
  t.teardown(() => cluster.close());
  const work = await tempDir(t, 'pause');
  const archive = await pauseImageArchive(cluster.harness, cluster.harness.hosts[0]!, await busyboxRootfsTar(work), work);
  const netName = `pods${randomSuffix()}`;
  const subnet = randomSubnet();
  const conflist = {
    cniVersion: '1.0.0',
    name: netName,
    plugins: [
      { type: 'midonet', agentSocket: '', network: netName, subnet: subnet.cidr },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  };
  const [c1, c2] = await Promise.all(
    cluster.agents.map(async (agent): Promise<Containerd> => {
      const list = { ...conflist, plugins: [{ ...conflist.plugins[0], agentSocket: agent.socket }, conflist.plugins[1]] };
      const c = await startContainerd(cluster.harness, agent.host, {
        dir: join(agent.host.stateDir, 'containerd'),
        pluginDir: bin,
        conflist: list,
        pauseArchive: archive,
      });
      t.teardown(() => c.close());
      return { cri: new CriRuntime(c.socket), agent };
    }),
  );
  const sandboxes: [Containerd, string][] = [];
  t.teardown(async () => {
    for (const [c, id] of sandboxes) {
      await c.cri.stopPodSandbox(id).catch(() => undefined);
      await c.cri.removePodSandbox(id).catch(() => undefined);
    }
    c1!.cri.close();
    c2!.cri.close();
  });
  t.is((await c1!.cri.version()).runtime_api_version, 'v1');

  const run = async (c: Containerd, name: string) => {
    const id = await c.cri.runPodSandbox({
      metadata: { name, uid: `uid-${randomSuffix()}`, namespace: 'shop', attempt: 0 },
      hostname: name,
      port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: 18000 + Math.floor(Math.random() * 1000) }],
    });
    sandboxes.push([c, id]);
    const { status, info } = await c.cri.podSandboxStatus(id);
    return { id, ip: status.network?.ip ?? '', state: status.state, netns: sandboxNetns(info) };
  };
  const p1 = await run(c1!, 'web');
  const p2 = await run(c2!, 'client');
  t.is(p1.state, 'SANDBOX_READY');
  t.true(p1.ip.startsWith(subnet.base) && p2.ip.startsWith(subnet.base), `${p1.ip}, ${p2.ip}`);
  t.not(p1.ip, p2.ip);
  // The agent labelled the port with kubelet's pod identity (K8S_POD_* in CNI_ARGS from the CRI).
  const [port] = (await c1!.agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.workloadId === p1.id);
  t.like(port?.options, { 'k8s.pod.namespace': 'shop', 'k8s.pod.name': 'web' });
  t.true(await cluster.harness.pingEventually(p2.netns, p1.ip), 'a pod on h2 reaches a pod on h1');

  for (const [c, id] of sandboxes.splice(0)) {
    await c.cri.stopPodSandbox(id);
    await c.cri.removePodSandbox(id);
  }
  for (const a of cluster.agents) {
    t.deepEqual(
      (await a.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni'),
      [],
      `no port left (${a.host.name})`,
    );
    t.deepEqual(await workloadVeths(cluster.harness, a.host), [], `no veth left (${a.host.name})`);
  }
});
