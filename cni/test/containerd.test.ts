// containerd's CRI plugin driven as kubelet drives it (RunPodSandbox / PodSandboxStatus / StopPodSandbox /
// RemovePodSandbox over gRPC) on two e2e harness hosts, each with a private containerd (own root, state, socket,
// CNI bin/conf dirs holding our plugin) and a real agent, sharing one real ZooKeeper. The pause image is built
// from busybox-static and imported locally.
import test from 'ava';
import { copyFile, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Port } from '../../core/model/types.js';
import { randomSuffix } from '../harness/netns.js';
import { CriClient } from './cri/client.js';
import { buildPlugin, randomSubnet, tempDir } from './helpers.js';
import { startAgents, workloadVeths, type AgentCluster, type HostAgent } from './real-agent.js';

const PAUSE = 'localhost/bees-pause:1';

/** A docker-archive of busybox-static with /pause as its command (made with a private podman, then saved). */
async function pauseArchive(cluster: AgentCluster, dir: string): Promise<string> {
  const h = cluster.harness;
  const host = h.hosts[0]!;
  await mkdir(join(dir, 'rootfs', 'bin'), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'rootfs', 'bin', 'busybox'));
  await h.exec(host, ['sh', '-c', `cd ${dir}/rootfs/bin && for a in $(./busybox --list); do [ "$a" = busybox ] || ln -s busybox "$a"; done && printf '#!/bin/sh\\nexec sleep 100000\\n' > ../pause && chmod +x ../pause && tar -C ${dir}/rootfs -cf ${dir}/rootfs.tar .`]);
  const pod = ['podman', '--root', join(dir, 'proot'), '--runroot', join(dir, 'prun'), '--tmpdir', join(dir, 'ptmp'), '--storage-driver', 'vfs'];
  const must = async (argv: string[]) => {
    const r = await h.exec(host, argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr}`);
  };
  await must([...pod, 'import', '--change', 'CMD ["/pause"]', join(dir, 'rootfs.tar'), PAUSE]);
  await must([...pod, 'save', '--format', 'docker-archive', '-o', join(dir, 'pause.tar'), PAUSE]);
  await must([...pod, 'rmi', '-a', '-f']);
  return join(dir, 'pause.tar');
}

interface Containerd { cri: CriClient; socket: string; agent: HostAgent }

async function startContainerd(cluster: AgentCluster, agent: HostAgent, pluginBin: string, archive: string, netName: string, subnet: string): Promise<Containerd> {
  const dir = join(agent.host.stateDir, 'containerd');
  const [binDir, confDir] = [join(dir, 'cni-bin'), join(dir, 'net.d')];
  await mkdir(binDir, { recursive: true });
  await mkdir(confDir, { recursive: true });
  // containerd 1.6 takes one CNI bin dir: ours, plus the reference loopback (the CRI sets up lo) and portmap.
  await copyFile(join(pluginBin, 'midonet'), join(binDir, 'midonet'));
  for (const p of ['loopback', 'portmap']) await symlink(`/usr/lib/cni/${p}`, join(binDir, p));
  await writeFile(join(confDir, '10-bees.conflist'), JSON.stringify({
    cniVersion: '1.0.0', name: netName,
    plugins: [
      { type: 'midonet', agentSocket: agent.socket, network: netName, subnet },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
    ],
  }));
  const socket = join(dir, 'containerd.sock');
  await writeFile(join(dir, 'config.toml'), `version = 2
root = "${dir}/root"
state = "${dir}/state"
[grpc]
  address = "${socket}"
[ttrpc]
  address = "${socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${binDir}"
    conf_dir = "${confDir}"
    max_conf_num = 1
`);
  cluster.harness.spawn(agent.host, ['containerd', '--config', join(dir, 'config.toml')], { logName: 'containerd' });
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await cluster.harness.exec(agent.host, ['ctr', '--address', socket, 'version']);
    if (r.code === 0) break;
    if (Date.now() > deadline) throw new Error(`containerd on ${agent.host.name} did not start: ${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }
  const imp = await cluster.harness.exec(agent.host, ['ctr', '--address', socket, '-n', 'k8s.io', 'images', 'import', archive]);
  if (imp.code !== 0) throw new Error(`ctr images import: ${imp.stderr}`);
  return { cri: new CriClient(socket), socket, agent };
}

/** The sandbox's network namespace path, from the verbose status (containerd's runtimeSpec). */
function netnsOf(info: Record<string, string>): string {
  const spec = JSON.parse(info.info ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
  const ns = spec.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path;
  if (!ns) throw new Error('no network namespace in the sandbox status');
  return ns;
}

test('CRI pods on two hosts get addresses from the agents, reach each other, and leave nothing when removed', async (t) => {
  const bin = await buildPlugin();
  const cluster = await startAgents(2);
  t.teardown(() => cluster.close());
  const archive = await pauseArchive(cluster, await tempDir(t, 'pause'));
  const netName = `pods${randomSuffix()}`;
  const subnet = randomSubnet();
  const [c1, c2] = await Promise.all(cluster.agents.map((a) => startContainerd(cluster, a, bin, archive, netName, subnet.cidr)));
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
    const id = await c.cri.runPodSandbox({ metadata: { name, uid: `uid-${randomSuffix()}`, namespace: 'shop', attempt: 0 }, hostname: name, port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: 18000 + Math.floor(Math.random() * 1000) }] });
    sandboxes.push([c, id]);
    const { status, info } = await c.cri.podSandboxStatus(id);
    return { id, ip: status.network?.ip ?? '', state: status.state, netns: netnsOf(info) };
  };
  const p1 = await run(c1!, 'web');
  const p2 = await run(c2!, 'client');
  t.is(p1.state, 'SANDBOX_READY');
  t.true(p1.ip.startsWith(subnet.base) && p2.ip.startsWith(subnet.base), `${p1.ip}, ${p2.ip}`);
  t.not(p1.ip, p2.ip);
  // The agent labelled the port with kubelet's pod identity (K8S_POD_* in CNI_ARGS from the CRI).
  const [port] = (await c1!.agent.api<Port[]>('/v1/ports')).filter((p) => p.owner?.workloadId === p1.id);
  t.like(port?.options, { 'k8s.pod.namespace': 'shop', 'k8s.pod.name': 'web' });
  t.true(await cluster.harness.pingEventually(p2.netns, p1.ip, 8000), 'a pod on h2 reaches a pod on h1');

  for (const [c, id] of sandboxes.splice(0)) {
    await c.cri.stopPodSandbox(id);
    await c.cri.removePodSandbox(id);
  }
  for (const a of cluster.agents) {
    t.deepEqual((await a.api<Port[]>('/v1/ports')).filter((p) => p.owner?.orchestrator === 'cni'), [], `no port left (${a.host.name})`);
    t.deepEqual(await workloadVeths(cluster.harness, a.host), [], `no veth left (${a.host.name})`);
  }
});
