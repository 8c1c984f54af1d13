// kubelet-lite's hostNetwork pods as REAL containers through a REAL private containerd (CRI) in one e2e harness
// host, with a busybox image (no build needed): the sandbox is in the node's network namespace, init containers run
// first, the command and args are the manifest's with $(VAR) expanded, env comes from values, the downward API and
// ConfigMaps, hostPath mounts land in the node's root, /run/netns with Bidirectional propagation shows a namespace
// mounted inside on the machine, the service account is mounted, exec probes decide readiness, a failing liveness
// probe restarts the container, and deleting the pod stops and removes it all.
import test from 'ava';
import { existsSync, statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { Harness } from '../../harness/index.js';
import { execArgv } from '../../../testbed/shell.js';
import { busyboxRootfsTar, PAUSE_IMAGE, pauseImageArchive } from '../../../cni/test/helpers.js';
import { ApiServer } from '../apiserver.js';
import { kinds } from '../kinds.js';
import { makeTestPki } from '../pki.js';
import { KubeletLite } from '../kubelet.js';
import { startNodeRuntime } from '../node-runtime.js';

const nsKind = kinds.find((k) => k.kind === 'Namespace')!;

async function until<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, withinMs = 120_000): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('a hostNetwork pod runs as containers through the CRI: node network, env, mounts, propagation, probes, restart, deletion', async (t) => {
  t.timeout(10 * 60_000);
  const closers: (() => Promise<unknown>)[] = [];
  t.teardown(async () => {
    for (const c of closers.reverse()) await Promise.race([c().catch(() => undefined), new Promise((r) => setTimeout(r, 60_000).unref())]);
  });
  const harness = await Harness.create({ hosts: 1 });
  closers.push(() => harness.destroy());
  const host = harness.hosts[0]!;
  const api = new ApiServer({ tls: await makeTestPki(harness.baseDir) });
  await api.start(0, '127.0.0.1');
  closers.push(() => api.stop());
  api.create(nsKind, undefined, { metadata: { name: 'kube-system' } });
  const kubeconfig = join(harness.baseDir, 'kubeconfig');
  await api.writeKubeconfig(kubeconfig);
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfig);
  const core = kc.makeApiClient(k8s.CoreV1Api);

  const pauseArchive = await pauseImageArchive(harness, host, await busyboxRootfsTar(harness.baseDir), harness.baseDir);
  const nodeRoot = join(host.stateDir, 'node-root');
  const runtime = await startNodeRuntime(harness, host, {
    dir: join(host.stateDir, 'containerd'),
    binDir: join(nodeRoot, 'opt/cni/bin'),
    confDir: join(nodeRoot, 'etc/cni/net.d'),
    pauseArchive,
  });
  closers.push(() => runtime.close());
  const saDir = join(harness.baseDir, 'sa');
  await execArgv(['mkdir', '-p', saDir]);
  await writeFile(join(saDir, 'token'), 'sa-token-xyz');
  const nodeName = `${harness.tag}-n1`;
  const kubelet = new KubeletLite({ kc, harness, host, nodeName, cri: runtime.cri, nodeRoot, serviceAccountDir: saDir });
  await kubelet.start();
  closers.push(() => kubelet.stop({ pods: true }));
  // On failure: what kubelet-lite saw, and the containers' logs.
  closers.push(async () => {
    if (t.passed) return;
    t.log([...kubelet.startErrors.values()], kubelet.errors.slice(0, 5).map(String));
    const logs = await execArgv(['sh', '-c', `tail -n 5 $(find ${host.stateDir}/pods -name '*.log')`]);
    t.log(logs.stdout);
  });

  // A namespace mounted from inside the container under /run/netns: with Bidirectional it is the machine's.
  const nsName = `${harness.tag}-probe-ns`;
  closers.push(() => execArgv(['sh', '-c', `umount /run/netns/${nsName}; rm -f /run/netns/${nsName}`]));
  await core.createNamespacedConfigMap({
    namespace: 'kube-system',
    body: { metadata: { name: 'cfg' }, data: { GREETING: 'hello', FROM_ENVFROM: 'yes' } },
  });
  const state = '/var/lib/kcri-test';
  await core.createNamespacedPod({
    namespace: 'kube-system',
    body: {
      metadata: { name: 'hn' },
      spec: {
        nodeName,
        hostNetwork: true,
        terminationGracePeriodSeconds: 2,
        volumes: [
          { name: 'netns', hostPath: { path: '/run/netns' } },
          { name: 'state', hostPath: { path: state, type: 'DirectoryOrCreate' } },
        ],
        initContainers: [
          {
            name: 'init',
            image: PAUSE_IMAGE,
            command: ['sh', '-c', 'echo done > /state/init'],
            volumeMounts: [{ name: 'state', mountPath: '/state' }],
          },
        ],
        containers: [
          {
            name: 'main',
            image: PAUSE_IMAGE,
            command: ['sh', '-c'],
            args: [
              [
                'rm -f /state/kill-me /state/ready',
                'echo start >> /state/starts',
                // kubelet expands $(VAR) and turns $$ into $: the shell then expands $FROM_ENVFROM (from envFrom).
                'echo "$(NODE_NAME) $(GREETING) $$FROM_ENVFROM" > /state/args',
                'cat /var/run/secrets/kubernetes.io/serviceaccount/token > /state/token',
                `[ -e /run/netns/${nsName} ] || { touch /run/netns/${nsName} && mount --bind /proc/self/ns/net /run/netns/${nsName}; }`,
                'touch /state/ready',
                'exec sleep 100000',
              ].join('; '),
            ],
            env: [
              { name: 'NODE_NAME', valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } } },
              { name: 'GREETING', valueFrom: { configMapKeyRef: { name: 'cfg', key: 'GREETING' } } },
            ],
            envFrom: [{ configMapRef: { name: 'cfg' } }],
            securityContext: { privileged: true },
            volumeMounts: [
              { name: 'netns', mountPath: '/run/netns', mountPropagation: 'Bidirectional' },
              { name: 'state', mountPath: '/state' },
            ],
            readinessProbe: { exec: { command: ['test', '-f', '/state/ready'] }, periodSeconds: 1 },
            livenessProbe: { exec: { command: ['sh', '-c', 'test ! -f /state/kill-me'] }, periodSeconds: 1, failureThreshold: 2 },
          },
        ],
      },
    },
  });
  const ready = async (): Promise<boolean> =>
    !!(await core.readNamespacedPod({ namespace: 'kube-system', name: 'hn' })).status?.conditions?.some(
      (c) => c.type === 'Ready' && c.status === 'True',
    );
  await until('the pod Ready', ready);
  const stateDir = join(nodeRoot, state);
  t.is(await readFile(join(stateDir, 'init'), 'utf8'), 'done\n', 'the init container ran, its hostPath under the node root');
  t.is(await readFile(join(stateDir, 'args'), 'utf8'), `${nodeName} hello yes\n`);
  t.is(await readFile(join(stateDir, 'token'), 'utf8'), 'sa-token-xyz', 'the service account is mounted');
  t.false(existsSync(state), "the machine's own path is untouched");
  t.true(existsSync(`/run/netns/${nsName}`), 'a namespace mounted in the container is on the machine (Bidirectional)');
  t.is(statSync(`/run/netns/${nsName}`).ino, statSync(host.netns).ino, "the container's network namespace is the node's");
  const status = (await core.readNamespacedPod({ namespace: 'kube-system', name: 'hn' })).status!;
  t.is(status.podIP, host.underlayIp, 'a hostNetwork pod has the node address');

  // Liveness: failing twice in a row restarts the container (its command runs again).
  await writeFile(join(stateDir, 'kill-me'), '');
  await until('a restart', async () => (await readFile(join(stateDir, 'starts'), 'utf8')).split('\n').filter(Boolean).length === 2);
  await until('Ready again', ready);

  // Deletion: the containers and the sandbox go.
  await core.deleteNamespacedPod({ namespace: 'kube-system', name: 'hn' });
  await until('no container left', async () => {
    const r = await execArgv(['ctr', '--address', runtime.socket, '-n', 'k8s.io', 'containers', 'ls', '-q']);
    return r.code === 0 && r.stdout.trim() === '';
  });
  t.deepEqual([...kubelet.startErrors.values()], []);
});
