// Which object refers to which, and what deleting the referred object does to the referrer. One table drives both
// the write-time check (a reference must name an existing object) and the delete-time one (refuse with 409 naming
// the referrers, or cascade where the referrer only exists to serve the deleted object, as MidoNet's store bindings
// do for a bridge's router-link ports, a router's routes, a chain's rules and a load balancer's pools).
import type { Kind, Models, Port, Rule } from '../model/types.js';

export type OnDelete = 'restrict' | 'cascade';

export interface Reference {
  from: Kind;
  /** The field of `from` holding the reference, as named in error messages. */
  field: string;
  to: Kind;
  /** The ids this object refers to through `field`. */
  ids(value: unknown): string[];
  onDelete(referrer: unknown): OnDelete;
}

const one =
  (field: string) =>
  (v: unknown): string[] => {
    const x = (v as Record<string, unknown>)[field];
    return typeof x === 'string' && x !== '' ? [x] : [];
  };
const always = (d: OnDelete) => (): OnDelete => d;

function ref(from: Kind, field: string, to: Kind, onDelete: OnDelete | ((referrer: unknown) => OnDelete), ids = one(field)): Reference {
  return { from, field, to, ids, onDelete: typeof onDelete === 'function' ? onDelete : always(onDelete) };
}

function conditionIds(pick: (r: Rule) => string[] | string | undefined) {
  return (v: unknown): string[] => {
    const x = pick(v as Rule);
    return x === undefined ? [] : Array.isArray(x) ? x : [x];
  };
}

/** A link port (one end of a router-bridge link) exists only for its link: it goes with either end. */
const linkPortsCascade = (p: unknown): OnDelete => ((p as Port).peerId || (p as Port).type === 'router' ? 'cascade' : 'restrict');

export const REFERENCES: readonly Reference[] = [
  ref('Bridge', 'tenantId', 'Tenant', 'restrict'),
  ref('Bridge', 'inboundFilterId', 'Chain', 'restrict'),
  ref('Bridge', 'outboundFilterId', 'Chain', 'restrict'),
  ref('Router', 'tenantId', 'Tenant', 'restrict'),
  ref('Router', 'inboundFilterId', 'Chain', 'restrict'),
  ref('Router', 'outboundFilterId', 'Chain', 'restrict'),
  ref('Router', 'loadBalancerId', 'LoadBalancer', 'restrict'),
  ref('Port', 'tenantId', 'Tenant', 'restrict'),
  ref('Port', 'bridgeId', 'Bridge', linkPortsCascade),
  ref('Port', 'routerId', 'Router', linkPortsCascade),
  ref('Port', 'peerId', 'Port', 'cascade'),
  ref('Port', 'hostId', 'Host', 'restrict'),
  ref('Port', 'inboundFilterId', 'Chain', 'restrict'),
  ref('Port', 'outboundFilterId', 'Chain', 'restrict'),
  ref('Port', 'portGroupIds', 'PortGroup', 'restrict', (v) => (v as Port).portGroupIds ?? []),
  ref('Host', 'tunnelZones', 'TunnelZone', 'restrict', (v) => ((v as Models['Host']).tunnelZones ?? []).map((z) => z.zoneId)),
  ref('Route', 'routerId', 'Router', 'cascade'),
  ref('Route', 'nextHopPortId', 'Port', 'cascade'),
  ref('Chain', 'tenantId', 'Tenant', 'restrict'),
  ref('Rule', 'chainId', 'Chain', 'cascade'),
  ref('Rule', 'jumpChainId', 'Chain', 'restrict'),
  ref(
    'Rule',
    'condition.inPortIds',
    'Port',
    'restrict',
    conditionIds((r) => r.condition?.inPortIds),
  ),
  ref(
    'Rule',
    'condition.outPortIds',
    'Port',
    'restrict',
    conditionIds((r) => r.condition?.outPortIds),
  ),
  ref(
    'Rule',
    'condition.portGroupSrc',
    'PortGroup',
    'restrict',
    conditionIds((r) => r.condition?.portGroupSrc),
  ),
  ref(
    'Rule',
    'condition.portGroupDst',
    'PortGroup',
    'restrict',
    conditionIds((r) => r.condition?.portGroupDst),
  ),
  ref(
    'Rule',
    'condition.ipAddrGroupSrc',
    'IpAddrGroup',
    'restrict',
    conditionIds((r) => r.condition?.ipAddrGroupSrc),
  ),
  ref(
    'Rule',
    'condition.ipAddrGroupDst',
    'IpAddrGroup',
    'restrict',
    conditionIds((r) => r.condition?.ipAddrGroupDst),
  ),
  ref('PortGroup', 'tenantId', 'Tenant', 'restrict'),
  ref('IpAddrGroup', 'tenantId', 'Tenant', 'restrict'),
  ref('LoadBalancer', 'routerId', 'Router', 'cascade'),
  ref('Pool', 'loadBalancerId', 'LoadBalancer', 'cascade'),
  ref('Pool', 'healthMonitorId', 'HealthMonitor', 'restrict'),
  ref('PoolMember', 'poolId', 'Pool', 'cascade'),
  ref('Vip', 'poolId', 'Pool', 'cascade'),
  ref('IpamBlock', 'bridgeId', 'Bridge', 'cascade'),
];

export function referencesFrom(kind: Kind): Reference[] {
  return REFERENCES.filter((r) => r.from === kind);
}

export function referencesTo(kind: Kind): Reference[] {
  return REFERENCES.filter((r) => r.to === kind);
}
