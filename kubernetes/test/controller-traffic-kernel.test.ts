// Controller disruptions seen from the pods (issue 11 Show: "a controller restart, a watch cut (410) and an API
// server outage: existing pods lose no traffic, and everything converges afterwards"). controller-resilience shows
// the store converging; this shows the kernel meanwhile: real agents on two e2e harness hosts (network namespaces
// on an underlay bridge, one real ZooKeeper), the Kubernetes API played by e2e/kube's ApiServer — a test DOUBLE of
// kube-apiserver, not Kubernetes — and the controller in this process, reaching the double through a relay that
// the test takes down. Two probes run through all three disruptions, a new TCP connection every 100 ms each:
// - an allowed client connects to a policed pod on the other host, directly and through its ClusterIP: no
//   connection may fail (a controller that rewrote its objects on start, or took an unreachable API server for an
//   empty cluster, would open or close a gap here);
// - a client the policy does not allow: no connection may succeed.
// A policy change made during each disruption must reach the kernel after it.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { eventually } from '../../testbed/cluster.js';
import { kubeCluster } from './kernel-fixture.js';

const PROBE = `
import json, os, socket, sys, time
stop, targets = sys.argv[1], [(a.rsplit(':', 1)[0], int(a.rsplit(':', 1)[1])) for a in sys.argv[2:]]
ok, fail, fails, oks = 0, 0, [], []
while not os.path.exists(stop):
    for ip, port in targets:
        s = socket.socket(); s.settimeout(1.0)
        try:
            s.connect((ip, port)); ok += 1; oks.append('%.2f %s:%d' % (time.time(), ip, port))
        except OSError as e:
            fail += 1; fails.append('%.2f %s:%d %s' % (time.time(), ip, port, e))
        finally:
            s.close()
    time.sleep(0.1)
print(json.dumps({'ok': ok, 'fail': fail, 'fails': fails[:10], 'oks': oks[:10]}))
`;

interface ProbeResult {
  ok: number;
  fail: number;
  fails: string[];
  oks: string[];
}

test('controller restart, watch cut (410) and API server outage: pods keep their traffic, the policy holds, changes converge', async (t) => {
  t.timeout(600_000);
  const k = await kubeCluster(t, ['x'], { viaRelay: true });
  const srv = await k.pod('x', 'srv', { app: 'srv' }, 0);
  const cl = await k.pod('x', 'cl', { app: 'cl' }, 1);
  const other = await k.pod('x', 'other', { app: 'other' }, 1);
  await k.listen(srv); // TCP 80 and 81
  const disc = k.kc.makeApiClient(k8s.DiscoveryV1Api);
  const svc = await k.core.createNamespacedService({
    namespace: 'x',
    body: {
      metadata: { name: 'srv', labels: { 'service.kubernetes.io/service-proxy-name': 'midonet-bees' } },
      spec: { selector: { app: 'srv' }, ports: [{ name: 'http', port: 8080, targetPort: 80 }] },
    },
  });
  await disc.createNamespacedEndpointSlice({
    namespace: 'x',
    body: {
      metadata: { name: 'srv-1', labels: { 'kubernetes.io/service-name': 'srv', 'endpointslice.kubernetes.io/managed-by': 'test' } },
      addressType: 'IPv4',
      ports: [{ name: 'http', port: 80, protocol: 'TCP' }],
      endpoints: [{ addresses: [srv.ip4!], conditions: { ready: true } }],
    },
  });
  const clusterIp = svc.spec!.clusterIP!;
  const spec = (ports: number[], from: string[]): k8s.V1NetworkPolicySpec => ({
    podSelector: { matchLabels: { app: 'srv' } },
    policyTypes: ['Ingress'],
    ingress: [
      { _from: from.map((app) => ({ podSelector: { matchLabels: { app } } })), ports: ports.map((port) => ({ port, protocol: 'TCP' })) },
    ],
  });
  const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
  // A patch body goes on the wire as it is (client-node renames `_from` only in typed bodies): `from` here.
  const setPolicy = (ports: number[], from: string[]) =>
    k.net.patchNamespacedNetworkPolicy(
      {
        namespace: 'x',
        name: 'srv',
        body: {
          spec: {
            ingress: [
              {
                from: from.map((app) => ({ podSelector: { matchLabels: { app } } })),
                ports: ports.map((port) => ({ port, protocol: 'TCP' })),
              },
            ],
          },
        },
      },
      merge,
    );
  await k.net.createNamespacedNetworkPolicy({ namespace: 'x', body: { metadata: { name: 'srv' }, spec: spec([80], ['cl']) } });
  await eventually(
    async () =>
      (await k.reach(cl.netns, srv.ip4!, 80)) &&
      (await k.reach(cl.netns, clusterIp, 8080)) &&
      !(await k.reach(cl.netns, srv.ip4!, 81)) &&
      !(await k.reach(other.netns, srv.ip4!, 80)),
    60_000,
    'the policy and the Service in force',
  );

  const dir = await mkdtemp(join(tmpdir(), 'bees-ctl-traffic-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const probe = (name: string, netns: string, targets: string[]) => {
    const stop = join(dir, name);
    const run = k.c.harness.exec(netns, ['python3', '-c', PROBE, stop, ...targets]);
    t.teardown(() => writeFile(stop, '')); // a failed assertion must not leave the probe running
    return {
      async stop(): Promise<ProbeResult> {
        await writeFile(stop, '');
        const r = await run;
        if (r.code !== 0) throw new Error(`probe ${name} failed: ${r.stderr}`);
        return JSON.parse(r.stdout) as ProbeResult;
      },
    };
  };
  const allowed = probe('allowed', cl.netns, [`${srv.ip4}:80`, `${clusterIp}:8080`]);
  const denied = probe('denied', other.netns, [`${srv.ip4}:80`]);

  const mark = (what: string) => t.log(`${(Date.now() / 1000).toFixed(2)} ${what}`);
  mark('probes started');
  // 1. The controller dies without releasing its lease; port 81 is allowed meanwhile; a new one takes over.
  await k.ctl.stop({ release: false });
  await setPolicy([80, 81], ['cl']);
  const next = k.newController('restarted');
  await next.start();
  await eventually(() => k.reach(cl.netns, srv.ip4!, 81), 60_000, 'port 81 allowed once the new controller leads');

  mark('restart converged');
  // 2. A watch cut with 410: the watches stall, port 81 goes again, the history is compacted, the streams end.
  k.api.stallWatches();
  await setPolicy([80], ['cl']);
  k.api.compact();
  k.api.closeWatches();
  await eventually(async () => !(await k.reach(cl.netns, srv.ip4!, 81)), 60_000, 'port 81 denied again after the relist');

  mark('relist converged');
  // 3. The API server is unreachable for longer than the lease; the policy is widened to `other` meanwhile.
  await k.relay.down();
  mark('relay down');
  t.false(await k.reach(other.netns, srv.ip4!, 80), 'other denied before the outage');
  await setPolicy([80], ['cl', 'other']);
  await new Promise((r) => setTimeout(r, 4000));
  t.false(await k.reach(other.netns, srv.ip4!, 80), 'nothing changed in the kernel while the API server was unreachable');
  const deniedResult = await denied.stop();
  await k.relay.up();
  await eventually(() => k.reach(other.netns, srv.ip4!, 80), 60_000, 'other allowed once the API server is back');
  const allowedResult = await allowed.stop();

  t.log(`allowed client: ${allowedResult.ok} connections, ${allowedResult.fail} failed; denied client: ${deniedResult.ok} got through`);
  t.is(allowedResult.fail, 0, `the allowed client lost connections:\n${allowedResult.fails.join('\n')}`);
  t.true(allowedResult.ok >= 40, `the allowed probe ran through the disruptions (${allowedResult.ok} connections)`);
  t.is(deniedResult.ok, 0, `the client the policy denies never got through:\n${deniedResult.oks.join('\n')}`);
  t.true(deniedResult.fail >= 5, `the denied probe ran through the disruptions (${deniedResult.fail} attempts)`);
});
