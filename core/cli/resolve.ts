// Finding objects by the names people type (network and router names within a tenant, or ids).
import type { ApiClient } from '../api/client.js';
import { ApiError } from '../api/client.js';
import { bridgeId, isUuid, routerId, tenantId } from '../model/ids.js';
import type { Bridge, Host, Router } from '../model/types.js';
import { CliError } from './command.js';

/** The object `p` fetches, or undefined where the API answers that there is none (404, or 400 for a malformed id). */
export async function getOrUndefined<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ApiError && (err.status === 404 || err.status === 400)) return undefined;
    throw err;
  }
}

export async function findNetwork(api: ApiClient, tenant: string, nameOrId: string): Promise<Bridge> {
  const found =
    (await getOrUndefined(api.get('Bridge', bridgeId(tenant, nameOrId)))) ??
    (await api.list('Bridge', { tenantId: tenantId(tenant), name: nameOrId }))[0] ??
    (isUuid(nameOrId) || nameOrId.length > 12 ? await getOrUndefined(api.get('Bridge', nameOrId)) : undefined);
  if (!found) throw new CliError(`network '${nameOrId}' not found${tenant === 'default' ? '' : ` in tenant '${tenant}'`}`);
  return found;
}

export async function findRouter(api: ApiClient, tenant: string, nameOrId: string): Promise<Router> {
  const found =
    (await getOrUndefined(api.get('Router', routerId(tenant, nameOrId)))) ??
    (await api.list('Router', { tenantId: tenantId(tenant), name: nameOrId }))[0] ??
    (isUuid(nameOrId) ? await getOrUndefined(api.get('Router', nameOrId)) : undefined);
  if (!found) throw new CliError(`router '${nameOrId}' not found${tenant === 'default' ? '' : ` in tenant '${tenant}'`}`);
  return found;
}

export async function findHost(api: ApiClient, nameOrId: string): Promise<Host> {
  const hosts = await api.list('Host');
  const found = hosts.find((h) => h.id === nameOrId) ?? hosts.find((h) => h.name === nameOrId);
  if (!found) throw new CliError(`host '${nameOrId}' not found`);
  return found;
}

/** tenant id -> name, for tables. */
export async function tenantNames(api: ApiClient): Promise<Map<string, string>> {
  return new Map((await api.list('Tenant')).map((t) => [t.id, t.name]));
}
