// IPAM pool ids carry everything the pool is (tenant, CIDR, --ip-range), so the IPAM driver needs no table of
// pools and answers identical RequestPool calls identically, across restarts too.
import { DriverError } from './backend.js';
import { networkOf, parseCidr } from './cidr.js';

export interface PoolRef {
  tenant: string;
  cidr: string;
  /** Docker's --ip-range: addresses are handed out from here only. */
  range?: string;
}

const SEP = '|';

export function encodePoolId(p: PoolRef): string {
  return [encodeURIComponent(p.tenant), p.cidr, p.range ?? ''].join(SEP);
}

export function decodePoolId(id: string): PoolRef {
  const parts = id.split(SEP);
  const bad = () => new DriverError(`unknown pool id ${JSON.stringify(id)}`);
  if (parts.length !== 3) throw bad();
  const [tenantRaw, cidr, range] = parts as [string, string, string];
  let tenant: string;
  try {
    tenant = decodeURIComponent(tenantRaw);
  } catch {
    throw bad();
  }
  const c = parseCidr(cidr);
  if (!tenant || !c || networkOf(c) !== cidr) throw bad();
  if (range && !parseCidr(range)) throw bad();
  return range ? { tenant, cidr, range } : { tenant, cidr };
}
