// The DaemonSet's node agent for real, on an e2e harness host (its own network namespace, a file store): install-cni
// puts the shim in place; `bees k8s agent` writes the 1.1.0 conflist only once the agent serves; the probes answer
// as kubelet needs (alive, then ready); a pod gets its network through the written conflist and the shim; with the
// agent down the probe fails and the shim's STATUS says "plugin not available" (50), so the node goes NotReady.
import test from 'ava';
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildPlugin, randomSubnet } from '../../cni/test/helpers.js';
import { CniHarness } from '../../cni/harness/libcni.js';
import { parseNetworkConfig } from '../../cni/harness/config.js';
import { createNetns } from '../../cni/harness/netns.js';
import { PluginError } from '../../cni/harness/types.js';
import { Harness } from '../../e2e/harness/index.js';

const exec = promisify(execFile);
const BEES = [process.execPath, '--import', 'tsx', fileURLToPath(new URL('./bees.ts', import.meta.url))];

test('install-cni, the conflist once ready, the probes, a pod through the shim, STATUS with the agent down', async (t) => {
  const harness = await Harness.create({ hosts: 1 });
  let agent: ChildProcess | undefined;
  const pod = await createNetns('k8sp');
  try {
    const host = harness.hosts[0]!;
    const run = join(host.stateDir, 'run');
    const bin = join(host.stateDir, 'opt-cni-bin');
    const netd = join(host.stateDir, 'net.d');
    await mkdir(netd, { recursive: true });
    const beesIn = (args: string[]) =>
      exec('nsenter', [`--net=${host.netns}`, ...BEES, ...args], { env: { ...process.env, NODE_OPTIONS: '' } });

    // install-cni: the shim, by copy + rename, nothing else.
    const shim = join(await buildPlugin(), 'midonet');
    await beesIn(['k8s', 'install-cni', '--bin-dir', bin, '--binary', shim]);
    t.deepEqual(await readdir(bin), ['midonet']);
    t.deepEqual(await readdir(netd), [], 'no conflist before the agent is ready');

    // Not alive before the agent runs.
    const api = `unix:${join(run, 'api.sock')}`;
    await t.throwsAsync(beesIn(['k8s', 'probe', '--api', api]));

    const { cidr } = randomSubnet();
    agent = harness.spawn(
      host,
      [
        ...BEES,
        'k8s',
        'agent',
        '--cni-conf-dir',
        netd,
        '--pod-cidr',
        cidr,
        '--mtu',
        '1400',
        '--',
        '--store',
        `file:${join(host.stateDir, 'store')}`,
        '--state-dir',
        host.stateDir,
        '--run-dir',
        run,
        '--workload-socket',
        join(run, 'workload.sock'),
        '--underlay-ip',
        host.underlayIp,
        '--router-ns-prefix',
        host.routerNsPrefix,
      ],
      { logName: 'k8s-agent', env: { ...process.env, NODE_OPTIONS: '' } },
    );
    const conflist = join(netd, '10-midonet.conflist');
    for (const deadline = Date.now() + 60_000; !existsSync(conflist);) {
      if (agent.exitCode !== null) throw new Error(`the agent exited with ${agent.exitCode}`);
      if (Date.now() > deadline) throw new Error('no conflist within 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    t.deepEqual(await readdir(netd), ['10-midonet.conflist'], 'written by rename: no temp file left');
    const text = await readFile(conflist, 'utf8');
    const conf = JSON.parse(text) as {
      cniVersion: string;
      plugins: { type: string; capabilities: Record<string, boolean>; subnets: { cidr: string }[]; mtu: number }[];
    };
    t.is(conf.cniVersion, '1.1.0');
    t.is(conf.plugins.length, 1);
    t.like(conf.plugins[0], { type: 'midonet', mtu: 1400, subnets: [{ cidr }] });
    t.true(conf.plugins[0]!.capabilities['io.kubernetes.cri.pod-annotations']);
    t.true(conf.plugins[0]!.capabilities.portMappings);

    // Probes: alive, ready (store answers, conflist there), and not ready when the conflist is missing.
    await beesIn(['k8s', 'probe', '--api', api]);
    await beesIn(['k8s', 'probe', '--ready', '--api', api, '--conflist', conflist]);
    await t.throwsAsync(beesIn(['k8s', 'probe', '--ready', '--api', api, '--conflist', join(netd, 'nope.conflist')]), {
      message: /not written yet/,
    });

    // A pod through the written conflist, as a runtime would run it (libcni semantics, on that host).
    const cni = new CniHarness({ pluginDirs: [bin], cacheDir: join(host.stateDir, 'cni-cache'), hostNetns: host.netns });
    const list = parseNetworkConfig(text);
    await cni.getStatusNetworkList(list);
    const rt = {
      containerId: 'k8s-pod-1',
      netns: pod.path,
      ifname: 'eth0',
      args: [
        ['K8S_POD_NAMESPACE', 'default'],
        ['K8S_POD_NAME', 'p1'],
      ] as [string, string][],
    };
    const result = (await cni.addNetworkList(list, rt)) as { ips: { address: string }[] };
    t.is(result.ips.length, 1);
    const { stdout } = await exec('ip', ['-n', pod.name, '-j', 'link', 'show', 'eth0']);
    t.is((JSON.parse(stdout) as { mtu: number }[])[0]!.mtu, 1400);
    await cni.delNetworkList(list, rt);

    // Agent down: the liveness probe fails and STATUS answers 50, which keeps the node NotReady.
    const exited = new Promise((r) => agent!.once('exit', r));
    agent.kill('SIGTERM');
    await exited;
    await t.throwsAsync(beesIn(['k8s', 'probe', '--api', api]));
    const err = await t.throwsAsync(cni.getStatusNetworkList(list), { instanceOf: PluginError });
    t.is(err.code, 50);
  } finally {
    if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
    await pod.remove().catch(() => undefined);
    await harness.destroy();
  }
});
