// The workload API's arguments: the keys an attachment is known by, and checking and reading what a request says.
import { createHash } from 'node:crypto';
import type { Bridge, PortOwner } from '../model/types.js';
import { contains, parseCidr, parseIp } from '../net/ip.js';
import { IFNAME_RULES, ifnameProblem } from '../net/ifname.js';
import { subnetGateway, type IpamResult } from '../ipam/ipam.js';
import { TopologyError } from '../topology/errors.js';
import type { WorkloadRef } from '../workload/types.js';
import { bareIp } from './reconciler.js';

export const ORCHESTRATORS: readonly PortOwner['orchestrator'][] = ['cni', 'docker', 'mesos', 'kubernetes', 'cli', 'api'];

/** The IPAM owner key of a workload: one namespace per orchestrator, so ids of two orchestrators never collide. */
export function ownerKey(ref: Pick<WorkloadRef, 'orchestrator' | 'workloadId'>): string {
  return `${ref.orchestrator}:${ref.workloadId}`;
}

/** Host end of a port's veth: stable per port, at most 15 characters. */
export function hostIfnameOf(portId: string): string {
  return `bv${createHash('sha1').update(portId).digest('hex').slice(0, 11)}`;
}

export function invalid(message: string, field: string): TopologyError {
  return new TopologyError('invalid', message, field);
}

export function validateRef(ref: WorkloadRef): void {
  if (!ORCHESTRATORS.includes(ref.orchestrator)) throw invalid(`orchestrator must be one of ${ORCHESTRATORS.join(', ')}`, 'orchestrator');
  if (typeof ref.workloadId !== 'string' || ref.workloadId === '') throw invalid('workloadId is required', 'workloadId');
  const problem = ifnameProblem(ref.ifname);
  if (problem) throw invalid(`ifname ${JSON.stringify(ref.ifname)} is not a valid interface name (${problem}; ${IFNAME_RULES})`, 'ifname');
}

/** A requested address: a plain IP, or a CIDR whose host part is the address. */
export function requestedIp(text: unknown, field: string): string {
  if (typeof text !== 'string') throw invalid(`${field} must be a string`, field);
  try {
    if (text.includes('/')) {
      parseCidr(text, field);
      return bareIp(text);
    }
    parseIp(text, field);
    return text;
  } catch (e) {
    throw invalid((e as Error).message, field);
  }
}

/** The IPAM view of addresses a port already holds: prefix and gateway from the bridge subnet containing each. */
export function addressesOf(bridge: Bridge, ips: string[]): IpamResult[] {
  const out: IpamResult[] = [];
  for (const ip of ips.map(bareIp)) {
    const addr = parseIp(ip);
    const subnet = bridge.subnets.find((s) => contains(s.cidr, addr));
    if (!subnet) continue;
    const cidr = parseCidr(subnet.cidr);
    const gateway = subnetGateway(subnet);
    out.push({ address: ip, prefixLength: cidr.prefix, subnet: subnet.cidr, family: addr.family, ...(gateway ? { gateway } : {}) });
  }
  return out;
}

/** A request naming its network by id: the tenant it may carry no longer selects anything. */
export function withoutTenant<T extends { tenant?: string }>(req: T): Omit<T, 'tenant'> {
  const { tenant: _tenant, ...rest } = req;
  return rest;
}
