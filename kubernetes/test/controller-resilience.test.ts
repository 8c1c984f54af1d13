// Controller resilience (issue 11 Show) against e2e/kube's ApiServer — a test DOUBLE of kube-apiserver, not
// Kubernetes — with the real client-node and a real file store: a controller that dies (its lease left to
// expire), a watch cut with 410 Gone, and an API server outage (the controller reaches the double through a TCP
// relay that is closed and reopened on the same port). Cluster changes are made during each disruption; after
// it, the store must have converged: the policy enforced as the cluster says (read back with the policy
// simulator), the Services' pools and members as the cluster says, no object duplicated (names unique), nothing
// removed while the API server is unreachable, and a fresh controller finding nothing to write.
import test, { type ExecutionContext } from 'ava';
import * as k8s from '@kubernetes/client-node';
import type { Port } from '../../core/model/types.js';
import type { Topology } from '../../core/topology/service.js';
import type { Controller } from '../controller/controller.js';
import { eventually, kubeConfigFor, reaches, Relay, setupController, snapshot } from './controller-fixture.js';

/** No object the controller writes appears twice under its natural key. */
async function duplicates(topology: Topology): Promise<string[]> {
  const keys: [string, string[]][] = [
    ['PortGroup', (await topology.list('PortGroup')).map((g) => `${g.tenantId}/${g.name}`)],
    ['Chain', (await topology.list('Chain')).map((c) => `${c.tenantId}/${c.name}`)],
    ['Bridge', (await topology.list('Bridge')).map((b) => `${b.tenantId}/${b.name}`)],
    ['Vip', (await topology.list('Vip')).map((v) => `${v.address}:${v.port}/${v.protocol}`)],
    ['PoolMember', (await topology.list('PoolMember')).map((m) => `${m.poolId}/${m.address}:${m.port}`)],
  ];
  const out: string[] = [];
  for (const [kind, ks] of keys) {
    const seen = new Set<string>();
    for (const k of ks)
      if (seen.has(k)) out.push(`${kind} ${k}`);
      else seen.add(k);
  }
  return out;
}

const SLICE = (svc: string, addrs: string[]): k8s.V1EndpointSlice => ({
  metadata: { name: `${svc}-1`, labels: { 'kubernetes.io/service-name': svc, 'endpointslice.kubernetes.io/managed-by': 'test' } },
  addressType: 'IPv4',
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  endpoints: addrs.map((a) => ({ addresses: [a], conditions: { ready: true } })),
});

test.serial(
  'controller restart, watch cut (410) and API server outage: the store converges, nothing duplicated or lost',
  async (t: ExecutionContext) => {
    t.timeout(180_000);
    const s = await setupController(t, ['default', 'x', 'y']);
    const relay = new Relay(new URL(s.server.url));
    await relay.up();
    t.teardown(() => relay.down());
    // The controllers reach the API server through the relay; the test's own client goes direct.
    const viaRelay = kubeConfigFor(`http://127.0.0.1:${relay.port}`);
    const ctl = (identity: string): Controller => s.controller({ kc: viaRelay, identity });
    const net = s.kc.makeApiClient(k8s.NetworkingV1Api);
    const disc = s.kc.makeApiClient(k8s.DiscoveryV1Api);
    const merge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);
    const fresh = (p: Port) => s.topology.get('Port', p.id);
    const allowed = async (from: Port, to: Port) => reaches(s.topology, await fresh(from), await fresh(to), 80);
    /** Every Service's members (web's are 10.128.0.5x, api's 10.128.0.6x). */
    const members = async () =>
      (await s.topology.list('PoolMember'))
        .map((m) => m.address)
        .sort()
        .join();
    /** Converged: nothing duplicated, and a controller started afresh (the current one handing over) writes nothing. */
    const converged = async (current: Controller, next: string): Promise<Controller> => {
      await current.settled();
      t.deepEqual(await duplicates(s.topology), [], 'no object duplicated');
      await current.stop();
      const checker = ctl(next);
      await checker.start();
      await eventually(`${next} leads and passed`, () => checker.isLeader && checker.passes > 0, 20_000);
      await checker.settled();
      t.deepEqual(checker.lastStats, { created: 0, updated: 0, deleted: 0, ports: 0 }, `${next} finds the store converged`);
      return checker;
    };

    await s.pod('x', 'a', { pod: 'a' });
    await s.pod('x', 'b', { pod: 'b' });
    await s.pod('y', 'a', { pod: 'a' });
    let c = ctl('c1');
    await c.start();
    const xa = await s.podPort('kubernetes', 'pods', 'x', 'a', '10.128.0.10');
    const xb = await s.podPort('kubernetes', 'pods', 'x', 'b', '10.128.0.11');
    const ya = await s.podPort('kubernetes', 'pods', 'y', 'a', '10.128.0.12');
    await net.createNamespacedNetworkPolicy({
      namespace: 'x',
      body: {
        metadata: { name: 'a-from-b' },
        spec: { podSelector: { matchLabels: { pod: 'a' } }, ingress: [{ _from: [{ podSelector: { matchLabels: { pod: 'b' } } }] }] },
      },
    });
    await s.core.createNamespacedService({
      namespace: 'x',
      body: { metadata: { name: 'web' }, spec: { selector: { app: 'web' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    });
    await disc.createNamespacedEndpointSlice({ namespace: 'x', body: SLICE('web', ['10.128.0.50']) });
    await eventually('x/a isolated but for x/b', async () => (await allowed(xb, xa)) && !(await allowed(ya, xa)));
    await eventually('web has its member', async () => (await members()) === '10.128.0.50');

    // 1. The controller dies (no lease release); the cluster changes meanwhile; a new one takes over.
    await c.stop({ release: false });
    await s.core.patchNamespacedPod({ namespace: 'x', name: 'b', body: { metadata: { labels: { pod: 'c' } } } }, merge);
    await net.createNamespacedNetworkPolicy({
      namespace: 'y',
      body: { metadata: { name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
    });
    await disc.patchNamespacedEndpointSlice(
      { namespace: 'x', name: 'web-1', body: { endpoints: SLICE('web', ['10.128.0.51', '10.128.0.52']).endpoints } },
      merge,
    );
    c = ctl('c2');
    await c.start();
    await eventually(
      'the changes made while no controller ran',
      async () => !(await allowed(xb, xa)) && !(await allowed(xa, ya)) && (await members()) === '10.128.0.51,10.128.0.52',
      30_000,
    );
    c = await converged(c, 'c3');

    // 2. A watch cut with 410: the watches stall, the cluster changes, the history is compacted, the streams end.
    s.server.stallWatches();
    await net.deleteNamespacedNetworkPolicy({ namespace: 'y', name: 'deny' });
    await s.core.patchNamespacedPod({ namespace: 'x', name: 'b', body: { metadata: { labels: { pod: 'b' } } } }, merge);
    await s.core.createNamespacedService({
      namespace: 'y',
      body: { metadata: { name: 'api' }, spec: { selector: { app: 'api' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] } },
    });
    await disc.createNamespacedEndpointSlice({ namespace: 'y', body: SLICE('api', ['10.128.0.60']) });
    s.server.compact();
    s.server.closeWatches();
    await eventually(
      'the changes made during the cut',
      async () => (await allowed(xb, xa)) && (await allowed(xa, ya)) && (await members()) === '10.128.0.51,10.128.0.52,10.128.0.60',
      30_000,
    );
    c = await converged(c, 'c4');

    // 3. The API server is unreachable: nothing in the store may go; the cluster changes; it comes back.
    await c.settled();
    const before = await snapshot(s.topology);
    await relay.down();
    await s.core.deleteNamespacedService({ namespace: 'x', name: 'web' });
    await disc.deleteNamespacedEndpointSlice({ namespace: 'x', name: 'web-1' });
    await net.createNamespacedNetworkPolicy({
      namespace: 'x',
      body: { metadata: { name: 'deny' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
    });
    await net.deleteNamespacedNetworkPolicy({ namespace: 'x', name: 'a-from-b' });
    c.kick(); // a resync during the outage: it must not take the unreachable API server for an empty cluster
    await new Promise((r) => setTimeout(r, 4000)); // longer than the lease: the leader stops writing
    await c.settled();
    t.deepEqual(await snapshot(s.topology), before, 'nothing changed in the store while the API server was unreachable');
    t.false(c.isLeader, 'the leader stepped down when it could not renew');
    await relay.up();
    await eventually(
      'the changes made during the outage',
      async () => !(await allowed(xb, xa)) && !(await allowed(ya, xa)) && (await members()) === '10.128.0.60',
      60_000,
    );
    t.true(c.isLeader, 'it leads again');
    await converged(c, 'c5');
  },
);
