// The bees chart applied by the real kubectl to the API server DOUBLE (HTTPS, a bearer token), on 3 e2e harness
// hosts each with a kubelet-lite (a kubelet DOUBLE) over a REAL private containerd (CRI), real agents and one REAL
// ZooKeeper. The DaemonSet's agent runs as a CONTAINER of the image `bees image build` makes, imported into each
// node's containerd (ctr -n k8s.io images import), in a sandbox with the node's network namespace, privileged, with
// the chart's hostPath mounts (/run/netns Bidirectional) and its own command, args and env; in-cluster config from
// the mounted service account token and the chart's k8sServiceHost. install-cni runs first (an init container);
// the conflist appears once the agent is ready; the Node becomes the Host. BEES_KUBELET_HOST_NETWORK=process runs
// the hostNetwork pods as processes instead (kubelet-lite's fallback, no image).
// A Deployment's pods (CRI sandboxes through the installed conflist) land on all three nodes by the round-robin
// scheduler double and reach each other across hosts; a pod's static IP and MAC come from its annotations; a
// rolling upgrade of the agent keeps the conflist and the pods' traffic; deleting the DaemonSet removes the conflist.
// The chart's controller Deployment runs as containers as well (kube-proxy replaced): a NodePort Service over the
// Deployment is reached by ClusterIP from a pod on every host and by NodePort from the harness's outside namespace,
// through controller → load balancer objects in the store → every agent's kernel; a scale-down takes the removed
// endpoint out; sessionAffinity ClientIP keeps a client on one endpoint; a UDP flow to a ClusterIP follows its
// endpoint as it moves between pods (no reply from a removed one once it moved); externalTrafficPolicy Local: a
// NodePort from outside answers only on a node with a local endpoint, with the client's address kept.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import YAML from 'yaml';
import { ApiClient } from '../../../core/api/client.js';
import { ZooKeeperServer } from '../../../core/testing/zookeeper.js';
import { Harness } from '../../harness/index.js';
import { beesArgv } from '../../../testbed/bees-entry.js';
import { buildPlugin, busyboxRootfsTar, pauseImageArchive } from '../../../cni/test/helpers.js';
import { workloadVeths } from '../../../cni/test/real-agent.js';
import { renderChart } from '../../../kubernetes/chart/manifest.js';
import { HOST_ID_ANNOTATION, hostIdOfNode, TUNNEL_IP_ANNOTATION } from '../../../kubernetes/node/node-host.js';
import { ApiServer } from '../apiserver.js';
import { beesImageArchive } from '../cri-image.js';
import { makeTestPki } from '../pki.js';
import { kinds } from '../kinds.js';
import { KubeletLite, type ProcessImage } from '../kubelet.js';
import { startNodeRuntime, type NodeRuntime } from '../node-runtime.js';
import { EndpointSliceController } from '../endpointslices.js';
import { RoundRobinScheduler } from '../scheduler.js';
import { WorkloadControllers } from '../workloads.js';

const run = promisify(execFile);

// What each web pod serves on 8080 (its containers do not run: a server in the sandbox's netns stands for them):
// "<pod> <client address it saw>".
const SERVER = `
import socketserver,sys
name=sys.argv[1].encode()
class T(socketserver.BaseRequestHandler):
  def handle(self): self.request.sendall(name+b' '+self.client_address[0].encode())
socketserver.ThreadingTCPServer.allow_reuse_address=True
socketserver.ThreadingTCPServer.daemon_threads=True
socketserver.ThreadingTCPServer(('0.0.0.0',8080),T).serve_forever()
`;

// N TCP connections to ADDR:PORT, one after the other; prints {"<pod> <seen client>": count} (errors as "error …").
const TCP_CLIENT = `
import socket,sys,json,collections
c=collections.Counter()
for i in range(int(sys.argv[3])):
  try:
    s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=3); c[s.recv(64).decode()]+=1; s.close()
  except Exception as e: c['error '+str(e)]+=1
print(json.dumps(c))
`;

// A UDP echo on 8081: answers each datagram with "<pod>".
const UDP_SERVER = `
import socket,sys
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',8081))
while True:
  d,a=s.recvfrom(64); s.sendto(sys.argv[1].encode(),a)
`;

// One UDP flow (one socket, one source port) to ADDR:PORT, a datagram every 50 ms; prints "<unix time> <pod>" per reply.
const UDP_CLIENT = `
import socket,sys,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.connect((sys.argv[1],int(sys.argv[2]))); s.settimeout(0.05)
while True:
  try: s.send(b'x')
  except OSError: pass
  t=time.time()
  try:
    d=s.recv(64); print('%.3f %s' % (t,d.decode()),flush=True)
  except OSError: pass
  time.sleep(max(0,0.05-(time.time()-t)))
`;

const AGENT = 'app.kubernetes.io/name=bees-agent';
const IMAGE_0 = 'docker.io/midonet/bees:0.1.0';
const IMAGE_1 = 'docker.io/midonet/bees:0.1.1';
const CONTROLLER = 'app.kubernetes.io/name=bees-controller';
const nsKind = kinds.find((k) => k.kind === 'Namespace')!;

/** Progress on stderr with BEES_TEST_DEBUG=1 (a hung run shows where it stands before ava's timeout). */
const step = (s: string): void =>
  void (process.env.BEES_TEST_DEBUG && process.stderr.write(`[kubelet.test ${new Date().toISOString()}] ${s}\n`));

async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, withinMs = 90_000): Promise<T> {
  step(`waiting for ${what}`);
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const HOST_NETWORK = process.env.BEES_KUBELET_HOST_NETWORK === 'process' ? 'process' : 'cri';

test(`kubectl apply of the chart on 3 kubelet-lite nodes (agent ${HOST_NETWORK === 'cri' ? 'in its image' : 'as a process'}, real containerd CRI): pods across hosts, upgrade, Services, uninstall`, async (t) => {
  t.timeout(25 * 60_000);
  const closers: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    // Each step bounded: a stuck one must not keep the rest (namespaces, processes) from being cleaned up.
    for (const c of closers.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 60_000).unref())]);
  });
  const zk = await ZooKeeperServer.start({ clientPortAddress: '0.0.0.0' });
  closers.push(() => zk.stop());
  const harness = await Harness.create({ hosts: 3 });
  closers.push(() => harness.destroy());
  // The image, built while the rest is set up (BEES_TEST_IMAGE: one built beforehand, named IMAGE_0).
  const image = HOST_NETWORK === 'cri' ? beesImageArchive(harness.baseDir, IMAGE_0) : undefined;
  image?.catch(() => undefined); // awaited below; a failure must not be an unhandled rejection meanwhile
  // HTTPS with a token, as the in-cluster config requires; the certificate names the address agents reach it at.
  const api = new ApiServer({ tls: await makeTestPki(harness.baseDir, [harness.rootIp]), token: `t-${harness.tag}` });
  await api.start(0, harness.rootIp);
  closers.push(() => api.stop());
  api.create(nsKind, undefined, { metadata: { name: 'default' } });
  api.create(nsKind, undefined, { metadata: { name: 'kube-system' } });
  const kubeconfig = join(harness.baseDir, 'kubeconfig');
  await api.writeKubeconfig(kubeconfig);
  // Process mode: the pods' kubeconfig stands for the service account mount.
  const podKubeconfig = join(harness.baseDir, 'pod-kubeconfig');
  await api.writeKubeconfig(podKubeconfig, 'kube-system');
  // The service account token, CA and namespace every container gets at its in-cluster path.
  await api.writeServiceAccount(harness.baseDir, 'kube-system');
  const serviceAccountDir = join(harness.baseDir, 'var/run/secrets/kubernetes.io/serviceaccount');
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const apps = kc.makeApiClient(k8s.AppsV1Api);
  const kubectl = async (...args: string[]): Promise<string> =>
    (await run('kubectl', args, { env: { ...process.env, KUBECONFIG: kubeconfig } })).stdout;

  // Process mode only: the image's programs as processes, `bees` from this checkout, the CNI shim built as
  // `npm run build:cni` does.
  const shim = HOST_NETWORK === 'process' ? join(await buildPlugin(), 'midonet') : '';
  const beesImage: ProcessImage = {
    entrypoints: { '/usr/bin/bees': beesArgv() },
    env: (hostPath) => ({ BEES_CNI_BINARY: shim, BEES_API: `unix:${hostPath('/run/bees/api.sock')}` }),
  };
  const pauseArchive = await pauseImageArchive(harness, harness.hosts[0]!, await busyboxRootfsTar(harness.baseDir), harness.baseDir);

  const nodes: { name: string; runtime: NodeRuntime; kubelet: KubeletLite }[] = [];
  for (const host of harness.hosts) {
    const nodeRoot = join(host.stateDir, 'node-root');
    const runtime = await startNodeRuntime(harness, host, {
      dir: join(host.stateDir, 'containerd'),
      binDir: join(nodeRoot, 'opt/cni/bin'),
      confDir: join(nodeRoot, 'etc/cni/net.d'),
      pauseArchive,
      // The CNI plugin containerd runs finds the agent's socket at /run/bees/workload.sock, as the conflist says.
      binds: { '/run/bees': join(nodeRoot, 'run/bees') },
    });
    closers.push(() => runtime.close());
    if (image) {
      await runtime.importImage(await image);
      await runtime.tagImage(IMAGE_0, IMAGE_1); // the upgrade's tag: the same content under a new name
    }
    // Node names carry the harness tag: the agents' router namespaces ($(NODE_NAME)-r-…) are then the harness's.
    const name = `${harness.tag}-${host.name}`;
    const kubelet = new KubeletLite({
      kc,
      harness,
      host,
      nodeName: name,
      cri: runtime.cri,
      nodeRoot,
      hostNetwork: HOST_NETWORK,
      serviceAccountDir,
      images: { [IMAGE_0]: beesImage, [IMAGE_1]: beesImage },
      podKubeconfig,
    });
    await kubelet.start();
    closers.push(() => kubelet.stop({ pods: true }));
    nodes.push({ name, runtime, kubelet });
  }
  const controllers = new WorkloadControllers(kc);
  const scheduler = new RoundRobinScheduler(kc);
  const slices = new EndpointSliceController(kc);
  await controllers.start();
  await scheduler.start();
  await slices.start();
  closers.push(() => controllers.stop());
  closers.push(() => scheduler.stop());
  closers.push(() => slices.stop());
  const conflistOf = (n: (typeof nodes)[number]): string => join(n.kubelet.confDir, '10-midonet.conflist');
  try {
    // The chart, rendered as the committed manifest is (helm template) with the harness's ZooKeeper as the store.
    const octet = 16 + Math.floor(Math.random() * 200);
    const values = (tag: string): string =>
      YAML.stringify({
        image: { tag },
        store: { url: `zk://${harness.rootIp}:${zk.port}/bees-k8s-${harness.tag}` },
        podCIDRs: [`10.${octet}.0.0/16`],
        mtu: 1400,
        // containerd 1.6 here: its libcni refuses 1.1.0 results.
        agent: { extraArgs: ['--router-ns-prefix=$(NODE_NAME)-r-'], cniVersion: '1.0.0' },
        // No kube-proxy here: the controller serves every Service (its host check finds no kube-proxy rules in the
        // harness hosts' namespaces, where it runs).
        kubeProxyReplacement: true,
        // So the agents and the controller reach the API server without a ClusterIP (kube-proxy replaced).
        k8sServiceHost: harness.rootIp,
        k8sServicePort: new URL(api.url).port,
      });
    const apply = async (tag: string): Promise<void> => {
      const file = join(harness.baseDir, `values-${tag}.yaml`);
      await writeFile(file, values(tag));
      const manifest = join(harness.baseDir, `bees-${tag}.yaml`);
      await writeFile(manifest, await renderChart({ values: [file] }));
      await kubectl('apply', '-f', manifest);
    };
    await apply('0.1.0');

    // Every node: the shim installed, the conflist once the agent is ready, the Node Ready and mapped to its Host.
    for (const n of nodes) {
      // The agent starts in its container first: minutes on a loaded machine.
      await until(`the conflist on ${n.name}`, () => existsSync(conflistOf(n)), 300_000);
      t.true(existsSync(join(n.kubelet.hostPathOf('/opt/cni/bin'), 'midonet')), `install-cni ran on ${n.name}`);
      const node = await until(`Node ${n.name} mapped`, async () => {
        const x = await core.readNode({ name: n.name });
        const reported = x.status?.conditions?.some((c) => c.type === 'NetworkUnavailable');
        return x.metadata?.annotations?.[HOST_ID_ANNOTATION] && reported ? x : undefined;
      });
      const host = harness.hosts[nodes.indexOf(n)]!;
      t.is(node.metadata!.annotations![HOST_ID_ANNOTATION], hostIdOfNode(n.name));
      t.is(node.metadata!.annotations![TUNNEL_IP_ANNOTATION], host.underlayIp);
      t.like(
        node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable'),
        { status: 'False' },
      );
      await until(`Node ${n.name} Ready`, async () =>
        (await core.readNode({ name: n.name })).status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
      );
    }
    const conf = JSON.parse(await readFile(conflistOf(nodes[0]!), 'utf8')) as { cniVersion: string; plugins: { type: string }[] };
    t.is(conf.cniVersion, '1.0.0', 'as the values ask');

    // The chart's controller Deployment (hostNetwork) runs as processes too: two replicas, Ready by their httpGet
    // probe (/readyz: caches listed), one holding the Lease; it writes port groups and the load balancer into the
    // same store as the agents.
    const controllerPods = await until('2 controller pods Ready', async () => {
      const pods = (await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: CONTROLLER })).items;
      return pods.length === 2 && pods.every((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) && pods;
    });
    const coordination = kc.makeApiClient(k8s.CoordinationV1Api);
    const holder = await until('a controller holding the Lease', async () => {
      const lease = await coordination
        .readNamespacedLease({ namespace: 'kube-system', name: 'midonet-bees-controller' })
        .catch(() => undefined);
      return lease?.spec?.holderIdentity;
    });
    t.true(
      controllerPods.some((p) => p.metadata!.name === holder),
      `the Lease holder ${holder} is a controller pod`,
    );

    // A Deployment of 3 pods, spread by the scheduler, and one pod with a static IP and MAC from its annotations.
    const podLabels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: podLabels },
          template: {
            metadata: { labels: podLabels },
            spec: { containers: [{ name: 'sh', image: 'localhost/bb:latest', command: ['sleep', '3600'] }] },
          },
        },
      },
    });
    const staticIp = `10.${octet}.200.7`;
    const staticMac = '02:be:00:11:22:33';
    await core.createNamespacedPod({
      namespace: 'default',
      body: {
        metadata: { name: 'fixed', annotations: { 'bees.midonet.org/ip': staticIp, 'bees.midonet.org/mac': staticMac } },
        spec: { containers: [{ name: 'sh', image: 'localhost/bb:latest' }] },
      },
    });
    const running = await until('4 pods Running with IPs', async () => {
      const pods = (await core.listNamespacedPod({ namespace: 'default' })).items;
      return pods.length === 4 && pods.every((p) => p.status?.phase === 'Running' && p.status.podIP) ? pods : undefined;
    });
    const web = running.filter((p) => p.metadata?.labels?.app === 'web');
    t.deepEqual(web.map((p) => p.spec!.nodeName).sort(), nodes.map((n) => n.name).sort(), 'one web pod on each node');
    const fixed = running.find((p) => p.metadata!.name === 'fixed')!;
    t.is(fixed.status!.podIP, staticIp);
    t.deepEqual(
      fixed.status!.podIPs?.map((x) => x.ip),
      [staticIp],
    );
    const netnsOf = (p: k8s.V1Pod): string =>
      nodes.find((n) => n.name === p.spec!.nodeName)!.kubelet.netnsOf('default', p.metadata!.name!)!;
    const link = JSON.parse((await run('nsenter', [`--net=${netnsOf(fixed)}`, 'ip', '-j', 'link', 'show', 'eth0'])).stdout) as {
      address: string;
    }[];
    t.is(link[0]!.address, staticMac);
    for (const a of web)
      for (const b of [...web, fixed])
        if (a !== b)
          t.true(
            await harness.pingEventually(netnsOf(a), b.status!.podIP!, 10_000),
            `${a.metadata!.name} (${a.spec!.nodeName}) reaches ${b.metadata!.name} (${b.spec!.nodeName})`,
          );

    // Upgrade: a new image tag rolls the agents one node at a time; the conflist stays, pods keep their traffic.
    const [a, b] = [web[0]!, web[1]!];
    const oldPods = new Set((await core.listNamespacedPod({ namespace: 'kube-system' })).items.map((p) => p.metadata!.uid));
    const ping = spawn('nsenter', [`--net=${netnsOf(a)}`, 'ping', '-n', '-i', '0.2', '-W', '1', b.status!.podIP!], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    closers.push(async () => void ping.kill('SIGKILL'));
    let out = '';
    ping.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let conflistMissing = 0;
    const watchConflist = setInterval(() => {
      for (const n of nodes) if (!existsSync(conflistOf(n))) conflistMissing++;
    }, 100);
    // Cleared in teardown too: a step failing before the clearInterval below must not keep the worker alive.
    closers.push(async () => clearInterval(watchConflist));
    await apply('0.1.1');
    // The agents (DaemonSet) and the controllers (Deployment) are both rolled.
    const replaced = async (selector: string, n: number): Promise<boolean> => {
      const pods = (await core.listNamespacedPod({ namespace: 'kube-system', labelSelector: selector })).items;
      return (
        pods.length === n &&
        pods.every((p) => !oldPods.has(p.metadata!.uid) && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
      );
    };
    await until(
      'every agent and controller replaced and Ready',
      async () => (await replaced(AGENT, 3)) && (await replaced(CONTROLLER, 2)),
      600_000, // each agent restarts in its container and passes its probes first; minutes on a loaded machine
    );
    await new Promise((r) => setTimeout(r, 1000));
    clearInterval(watchConflist);
    const exited = new Promise((r) => ping.once('exit', r));
    ping.kill('SIGINT');
    await exited;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    t.truthy(m, out);
    const [sent, got] = [Number(m![1]), Number(m![2])];
    t.true(sent > 20, `the ping ran through the upgrade (${sent} sent)`);
    t.true(got >= sent - 2, `pods kept their traffic during the agents' restart: ${got}/${sent} replies`);
    t.is(conflistMissing, 0, 'the conflist stayed in place through the upgrade');

    // Services (kube-proxy replaced): a NodePort Service over the web pods. The controller turns it and its
    // EndpointSlice (the double's slice controller) into the router's load balancer; every agent's kernel translates.
    const servers = web.map((p) =>
      harness.spawn(netnsOf(p), ['python3', '-c', SERVER, p.metadata!.name!], { logName: `server-${p.metadata!.name}` }),
    );
    closers.push(async () => servers.forEach((x) => x.kill('SIGKILL')));
    for (const p of web)
      await until(
        `the server in ${p.metadata!.name}`,
        async () => (await harness.exec(netnsOf(p), ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
      );
    const nodePort = 30000 + Math.floor(Math.random() * 2700);
    await core.createNamespacedService({
      namespace: 'default',
      body: {
        metadata: { name: 'web' },
        spec: { type: 'NodePort', selector: podLabels, ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort }] },
      },
    });
    // A headless twin: DNS only, so the controller gives it no pool or VIP (checked in the store below).
    await core.createNamespacedService({
      namespace: 'default',
      body: {
        metadata: { name: 'web-headless' },
        spec: { clusterIP: 'None', selector: podLabels, ports: [{ port: 80, targetPort: 8080 }] },
      },
    });
    const clusterIP = (await core.readNamespacedService({ namespace: 'default', name: 'web' })).spec!.clusterIP!;
    /** `n` connections from `netns` to addr:port: {"<pod> <client seen>": count}. */
    const connect = async (netns: string, addr: string, port: number, n: number): Promise<Record<string, number>> => {
      const r = await harness.exec(netns, ['python3', '-c', TCP_CLIENT, addr, String(port), String(n)]);
      if (r.code !== 0) throw new Error(`client in ${netns}: ${r.stderr}`);
      return JSON.parse(r.stdout) as Record<string, number>;
    };
    const podsIn = (r: Record<string, number>): Set<string> => new Set(Object.keys(r).map((k) => k.split(' ')[0]!));
    const webNames = new Set(web.map((p) => p.metadata!.name!));
    /** Eventually `n` connections all answered by pods in `want` (every one of them, with `all`). */
    const served = (netns: string, addr: string, port: number, want: Set<string>, all: boolean, n = 15): Promise<Record<string, number>> =>
      until(`${addr}:${port} served by ${[...want].join(',')} from ${netns}`, async () => {
        const r = await connect(netns, addr, port, n);
        const seen = podsIn(r);
        return [...seen].every((x) => want.has(x)) && (!all || seen.size === want.size) && r;
      });
    // ClusterIP from a pod on every host (the web pods themselves: a member may be answered by itself) and from the
    // fixed pod, whose address the member sees (no SNAT inside the cluster).
    const seenFromPods = new Set<string>();
    for (const p of web) for (const x of podsIn(await served(netnsOf(p), clusterIP, 80, webNames, false))) seenFromPods.add(x);
    const fromFixed = await served(netnsOf(fixed), clusterIP, 80, webNames, true, 30);
    t.deepEqual([...seenFromPods].sort(), [...webNames].sort(), 'the ClusterIP spreads over every endpoint');
    t.true(
      Object.keys(fromFixed).every((k) => k.endsWith(` ${staticIp}`)),
      `the client address is kept: ${JSON.stringify(fromFixed)}`,
    );
    // NodePort from the harness's outside namespace, on every host's address.
    const outside = `/run/netns/${harness.outsideNs}`;
    for (const h of harness.hosts) await served(outside, h.underlayIp, nodePort, webNames, false);

    // Endpoint change: scaled down to 2 (by the real kubectl), the removed pod leaves the slice and the load balancer.
    await kubectl('patch', 'deployment', 'web', '-n', 'default', '-p', '{"spec":{"replicas":2}}');
    const kept = await until('2 web pods', async () => {
      const pods = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items;
      return pods.length === 2 && new Set(pods.map((p) => p.metadata!.name!));
    });
    await served(netnsOf(fixed), clusterIP, 80, kept, true, 30);
    for (const h of harness.hosts) await served(outside, h.underlayIp, nodePort, kept, false);

    // sessionAffinity ClientIP: every connection of one client goes to one endpoint.
    await core.patchNamespacedService(
      { namespace: 'default', name: 'web', body: { spec: { sessionAffinity: 'ClientIP' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    await until('affinity by client address', async () => podsIn(await connect(netnsOf(fixed), clusterIP, 80, 20)).size === 1);
    const sticky = await connect(netnsOf(fixed), clusterIP, 80, 20);
    t.is(podsIn(sticky).size, 1, `one endpoint for one client: ${JSON.stringify(sticky)}`);
    t.true(kept.has([...podsIn(sticky)][0]!));
    // What the controller wrote (read through an agent's REST API): one pool (web's one port) with the two kept
    // endpoints, one VIP (the ClusterIP, carrying the nodePort and the affinity); nothing for the headless Service.
    const store = new ApiClient(`unix:${nodes[0]!.kubelet.hostPathOf('/run/bees/api.sock')}`);
    const keptIps = (await core.listNamespacedPod({ namespace: 'default', labelSelector: 'app=web' })).items.map((p) => p.status!.podIP!);
    t.is((await store.list('Pool')).length, 1);
    t.deepEqual((await store.list('PoolMember')).map((m) => `${m.address}:${m.port}`).sort(), keptIps.map((ip) => `${ip}:8080`).sort());
    const vips = await store.list('Vip');
    t.is(vips.length, 1);
    t.like(vips[0], {
      address: clusterIP,
      port: 80,
      nodePort,
      sessionPersistence: 'source_ip',
    });
    for (const x of servers) x.kill('SIGKILL');

    // Endpoint churn under UDP traffic: one flow (one client socket in the fixed pod) to a UDP Service whose
    // endpoints are the web pods labelled udp=on. Moving the label from one pod to the other moves the flow: a UDP
    // "connection" never ends, so its conntrack entry must be cut when its endpoint goes (UDP pools' memberRemoval
    // `cut`, kubernetes#48370), or it keeps going to the removed pod, whose server still answers here.
    const [pa, pb] = web.filter((p) => kept.has(p.metadata!.name!));
    const udpServers = [pa!, pb!].map((p) =>
      harness.spawn(netnsOf(p), ['python3', '-c', UDP_SERVER, p.metadata!.name!], { logName: `udp-${p.metadata!.name}` }),
    );
    closers.push(async () => udpServers.forEach((x) => x.kill('SIGKILL')));
    const label = (p: k8s.V1Pod, on: boolean) =>
      core.patchNamespacedPod(
        { namespace: 'default', name: p.metadata!.name!, body: { metadata: { labels: { udp: on ? 'on' : null } } } },
        k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
      );
    await label(pa!, true);
    await core.createNamespacedService({
      namespace: 'default',
      body: {
        metadata: { name: 'echo' },
        spec: { selector: { udp: 'on' }, ports: [{ name: 'u', port: 53, protocol: 'UDP', targetPort: 8081 }] },
      },
    });
    const echoIp = (await core.readNamespacedService({ namespace: 'default', name: 'echo' })).spec!.clusterIP!;
    const udpClient = spawn('nsenter', [`--net=${netnsOf(fixed)}`, 'python3', '-c', UDP_CLIENT, echoIp, '53'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    closers.push(async () => void udpClient.kill('SIGKILL'));
    const replies: { at: number; pod: string }[] = [];
    let partial = '';
    udpClient.stdout.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop()!;
      for (const l of lines) {
        const [at, pod] = l.split(' ');
        replies.push({ at: Number(at) * 1000, pod: pod! });
      }
    });
    const na = pa!.metadata!.name!;
    await until(`UDP replies from ${na}`, () => replies.some((r) => r.pod === na), 120_000);
    /** Moves the endpoint from `from` to `to`; the flow must follow within `within` ms and never go back. */
    const move = async (from: k8s.V1Pod, to: k8s.V1Pod): Promise<void> => {
      const [nFrom, nTo] = [from.metadata!.name!, to.metadata!.name!];
      await label(to, true);
      const t0 = Date.now();
      await label(from, false);
      const first = await until(
        `the UDP flow moved from ${nFrom} to ${nTo}`,
        () => replies.find((r) => r.at >= t0 && r.pod === nTo),
        60_000,
      );
      await new Promise((r) => setTimeout(r, 3000));
      const stuck = replies.filter((r) => r.at > first.at + 500 && r.pod === nFrom);
      t.is(stuck.length, 0, `no reply from the removed ${nFrom} once the flow moved (${stuck.length})`);
      t.true(replies.filter((r) => r.at > first.at + 500).length > 20, `traffic resumed to ${nTo}`);
      t.log(`UDP flow ${nFrom} -> ${nTo}: ${Math.round(first.at - t0)} ms from the relabel to the first reply from ${nTo}`);
    };
    await move(pa!, pb!);
    await move(pb!, pa!);
    udpClient.kill('SIGKILL');
    udpServers.forEach((x) => x.kill('SIGKILL'));

    // externalTrafficPolicy Local: a NodePort connection from outside is served only by an endpoint on the node it
    // arrives at (none: no answer), and keeps the client's source address.
    const tcpServers = [pa!, pb!].map((p) =>
      harness.spawn(netnsOf(p), ['python3', '-c', SERVER, p.metadata!.name!], { logName: `server2-${p.metadata!.name}` }),
    );
    closers.push(async () => tcpServers.forEach((x) => x.kill('SIGKILL')));
    for (const p of [pa!, pb!])
      await until(
        `the server in ${p.metadata!.name} again`,
        async () => (await harness.exec(netnsOf(p), ['sh', '-c', 'ss -ltn | grep -q ":8080 "'])).code === 0,
      );
    await core.patchNamespacedService(
      { namespace: 'default', name: 'web', body: { spec: { externalTrafficPolicy: 'Local', sessionAffinity: 'None' } } },
      k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch),
    );
    for (const [i, n] of nodes.entries()) {
      const address = harness.hosts[i]!.underlayIp;
      const local = [pa!, pb!].find((p) => p.spec!.nodeName === n.name);
      if (local) {
        const r = await served(outside, address, nodePort, new Set([local.metadata!.name!]), true, 10);
        t.deepEqual(
          Object.keys(r),
          [`${local.metadata!.name} ${harness.outsideIp}`],
          `${n.name}: its own endpoint, the client's address kept`,
        );
      } else {
        const r = await until(`no answer on ${n.name} (no local endpoint)`, async () => {
          const x = await connect(outside, address, nodePort, 3);
          return Object.keys(x).every((k) => k.startsWith('error')) && x;
        });
        t.true(
          Object.keys(r).every((k) => k.startsWith('error')),
          `${n.name} has no endpoint: ${JSON.stringify(r)}`,
        );
      }
    }
    t.true(
      nodes.some((n) => ![pa!, pb!].some((p) => p.spec!.nodeName === n.name)),
      'one node has no web pod left (the no-answer case was checked)',
    );
    tcpServers.forEach((x) => x.kill('SIGKILL'));

    // Deleting the pods: their sandboxes go (CNI DEL through the agents), no veth left on any host.
    await apps.deleteNamespacedDeployment({ namespace: 'default', name: 'web' });
    await core.deleteNamespacedPod({ namespace: 'default', name: 'fixed' });
    await until('no pod sandbox left', async () => {
      for (const host of harness.hosts) if ((await workloadVeths(harness, host)).length > 0) return false;
      return nodes.every((n) => n.kubelet.netnsOf('default', 'fixed') === undefined);
    });

    // Uninstall: deleting the DaemonSet removes the conflist from every node.
    await kubectl('delete', 'daemonset', '-n', 'kube-system', 'bees-agent');
    for (const n of nodes) await until(`the conflist removed from ${n.name}`, () => !existsSync(conflistOf(n)), 60_000);
    t.deepEqual(
      nodes.flatMap((n) => [...n.kubelet.startErrors.values()]),
      [],
    );
  } catch (err) {
    // The agents' and containerd's logs, for the failure message.
    for (const host of harness.hosts) {
      const r = await run('sh', ['-c', `tail -n 15 ${host.stateDir}/*.log`]).catch((e: Error) => ({ stdout: e.message }));
      t.log(`--- ${host.name}\n${r.stdout}`);
    }
    for (const n of nodes) t.log(n.name, [...n.kubelet.startErrors.values()], n.kubelet.errors.slice(0, 3));
    throw err;
  }
});
