// The set-up the health-monitor tests share: LbHealth on the real topology service and a real file store, a
// router with a load balancer and a pool watched by a TCP monitor (1 s delay, 2 retries), and a probe the test
// decides (`up`: member id → healthy). The real TCP and HTTP probes run in e2e/test/lb.test.ts against real servers.
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { LbHealth } from '../agent/lb-health.js';
import type { HealthTarget } from '../agent/plan-lb.js';
import type { PoolMember } from '../model/types.js';
import { openStore } from '../store/open.js';
import { Topology } from '../topology/service.js';

export async function lbHealthFixture(t: ExecutionContext) {
  const dir = await mkdtemp(path.join(tmpdir(), 'bees-lb-health-'));
  const store = await openStore(`file:${dir}`);
  const topo = new Topology(store);
  const up = new Map<string, boolean>();
  const health = new LbHealth(
    topo,
    () => '/nonexistent',
    () => undefined,
    () => async (target) => up.get(target.memberId) ?? false,
  );
  t.teardown(async () => {
    health.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const router = await topo.create('Router', { name: 'r' });
  const lb = await topo.create('LoadBalancer', { routerId: router.id });
  const monitor = await topo.create('HealthMonitor', { type: 'tcp', delay: 1, timeout: 1, maxRetries: 2 });
  const pool = await topo.create('Pool', { loadBalancerId: lb.id, healthMonitorId: monitor.id });
  /** What a reconciler pass hands LbHealth for a member checked on this host. */
  const target = (m: Pick<PoolMember, 'id' | 'address'>): HealthTarget => ({
    memberId: m.id,
    address: m.address,
    port: 80,
    routerId: router.id,
    monitor,
  });
  return { topo, health, up, pool, target };
}
