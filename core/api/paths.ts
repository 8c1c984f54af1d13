// URL names of the model kinds, shared by the server's routes and the client.
import type { Kind } from '../model/types.js';

export const KIND_PATHS: Record<Kind, string> = {
  Tenant: 'tenants',
  Bridge: 'bridges',
  Router: 'routers',
  Port: 'ports',
  Host: 'hosts',
  TunnelZone: 'tunnel-zones',
  Route: 'routes',
  Chain: 'chains',
  Rule: 'rules',
  PortGroup: 'port-groups',
  IpAddrGroup: 'ip-addr-groups',
  LoadBalancer: 'load-balancers',
  Pool: 'pools',
  PoolMember: 'pool-members',
  Vip: 'vips',
  HealthMonitor: 'health-monitors',
  IpamBlock: 'ipam-blocks',
};

/** Answer of GET /v1/status. */
export interface ApiStatus {
  store: string;
  reachable: boolean;
  /** Why the store is unreachable, when it is. */
  error?: string;
  lastSeq?: number;
  counts: Partial<Record<Kind, number>>;
  version: string;
}

/** Body of every 4xx/5xx answer. */
export interface ApiErrorBody {
  error: string;
  message: string;
  field?: string;
  /** On a create conflict: the id of the object that already exists. */
  id?: string;
}

/** The ephemeral-record prefix under which agents announce their hosts (`hosts/<hostId>`). */
export const HOST_LIVENESS_PREFIX = 'hosts/';
