// The network an attach names, and its gateway: found (or created, when the request says how), and a bridge with a
// gateway attached to its tenant's default router on first use.
import type { Bridge } from '../model/types.js';
import type { Topology } from '../topology/service.js';
import { DEFAULT_TENANT } from '../topology/service.js';
import { TopologyError } from '../topology/errors.js';
import type { AttachRequest } from '../workload/types.js';
import type { TopologyCache } from './cache.js';
import { invalid } from './workload-args.js';

/** What finding a network needs of the agent. */
export interface NetworkDeps {
  topology: Topology;
  cache: TopologyCache;
  /** Name of the router a bridge with a gateway is attached to when it has none ("none" disables). */
  defaultRouter?: string;
}

export async function resolveBridge(d: NetworkDeps, req: AttachRequest): Promise<Bridge> {
  const tenant = req.tenant ?? DEFAULT_TENANT;
  if (typeof tenant !== 'string' || tenant === '') throw invalid('tenant must be a non-empty string', 'tenant');
  let bridge = await d.topology.findBridge(tenant, req.network);
  if (!bridge && req.create) {
    const t = await d.topology.ensureTenant(tenant);
    try {
      bridge = await d.topology.create('Bridge', {
        tenantId: t.id,
        name: req.network,
        subnets: req.create.subnets,
        ...(req.create.mtu ? { mtu: req.create.mtu } : {}),
      });
    } catch (e) {
      // Another host created it first.
      if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
      bridge = await d.topology.findBridge(tenant, req.network);
    }
  }
  if (!bridge) throw new TopologyError('not_found', `network '${req.network}' not found in tenant '${tenant}'`, 'network');
  return bridge;
}

/**
 * A bridge with a gateway needs a router to answer it: attach the tenant's default router on first use
 * (idempotent: ids are stable, a concurrent attach by another host conflicts harmlessly).
 */
export async function ensureGateway(d: NetworkDeps, bridge: Bridge): Promise<void> {
  const routerName = bridge.options.router ?? d.defaultRouter ?? 'default';
  if (routerName === 'none' || bridge.subnets.every((s) => s.gateway === '')) return;
  const ports = d.cache.portsOfBridge(bridge.id);
  if (ports.some((p) => p.peerId && d.cache.get('Port', p.peerId)?.type === 'router')) return;
  const tenant = d.cache.get('Tenant', bridge.tenantId);
  const tenantName = tenant?.name ?? (await d.topology.get('Tenant', bridge.tenantId)).name;
  let router = await d.topology.findRouter(tenantName, routerName);
  if (!router) {
    try {
      router = await d.topology.create('Router', { tenantId: bridge.tenantId, name: routerName });
    } catch (e) {
      if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
      router = await d.topology.findRouter(tenantName, routerName);
    }
  }
  if (!router) throw new TopologyError('unavailable', `could not create router '${routerName}' for network ${bridge.name}`);
  try {
    await d.topology.attachRouter(router.id, bridge.id);
  } catch (e) {
    if (!(e instanceof TopologyError && e.code === 'conflict')) throw e;
  }
}
