// Stable identities. An orchestrator's name for a thing always maps to the same UUID (UUIDv5), so adapters
// can re-translate an object idempotently and delete it without a lookup (as midonet-kubernetes does).
import { v4 as uuidv4, v5 as uuidv5 } from 'uuid';

/** Namespace of every MidoNet Bees identity; bump `ID_VERSION` to re-key everything. */
const BEES_NAMESPACE = '3f1c2b6e-7d0a-5b8e-9c4f-6a2d1e0b7c35';
const ID_VERSION = '1';

/** The id of an object known by a path of names, e.g. stableId('Bridge', tenantId, 'default'). */
export function stableId(kind: string, ...names: string[]): string {
  return uuidv5(`${ID_VERSION}/${kind}/${names.join('/')}`, BEES_NAMESPACE);
}

export function tenantId(name: string): string {
  return stableId('Tenant', name);
}

export function bridgeId(tenant: string, name: string): string {
  return stableId('Bridge', tenantId(tenant), name);
}

export function routerId(tenant: string, name: string): string {
  return stableId('Router', tenantId(tenant), name);
}

/** The port of one workload interface on one bridge: the same attach always lands on the same port. */
export function workloadPortId(bridge: string, workloadId: string, ifname: string): string {
  return stableId('Port', bridge, workloadId, ifname);
}

export function randomId(): string {
  return uuidv4();
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** A locally administered unicast MAC derived from an id, so a port keeps its MAC across re-creation. */
export function macFor(id: string): string {
  const hex = uuidv5(`mac/${id}`, BEES_NAMESPACE).replace(/-/g, '');
  const bytes = [0x02, 0xbe];
  for (let i = 0; i < 4; i++) bytes.push(parseInt(hex.slice(i * 2, i * 2 + 2), 16));
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}
