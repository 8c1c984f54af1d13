// Security groups, the everyday face of chains, built the way Neutron built them on MidoNet
// (../shared/reference/chains-lb.md §1.9): a group is a PortGroup (its members), an IpAddrGroup holding its members'
// addresses (what other groups' rules name as a remote group) and two chains: `inbound` holds the egress rules
// (traffic entering the network from a member), `outbound` the ingress rules (traffic leaving it to a member).
// A port with groups gets two chains of its own, set as its inbound and outbound filters: accept return flows,
// jump to each group's chain (whose rules accept), then drop everything but ARP. A port with no group keeps no
// chain of ours and today's behaviour. Everything is written as plain objects in one transaction, so the agent
// needs to know nothing about groups, and the port's policy exists from the transaction that plugs it.
import { stableId } from '../model/ids.js';
import type { Chain, Condition, IpAddrGroup, Port, PortGroup, Rule } from '../model/types.js';
import { formatCidr, parseCidr } from '../net/ip.js';
import { TopologyError } from './errors.js';
import type { Topology } from './service.js';
import type { Tx } from './tx.js';
import { createIn, updateIn } from './write.js';

export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;
export const ETH_ARP = 0x0806;

const PROTOCOLS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };
const PORTED = new Set([6, 17, 132]);
const ICMPS = new Set([1, 58]);

/** Neutron's security-group rule: what to allow, in which direction, from or to whom. */
export interface SecurityGroupRule {
  /** The id of the chain rule it is. */
  id: string;
  /** `ingress`: to the group's members; `egress`: from them. */
  direction: 'ingress' | 'egress';
  ethertype: 'ipv4' | 'ipv6';
  /** A name (tcp, udp, icmp, icmpv6, sctp) or an IP protocol number; absent: any protocol. */
  protocol?: string;
  /** TCP/UDP/SCTP: the destination port range. ICMP: portMin is the type, portMax the code. */
  portMin?: number;
  portMax?: number;
  /** The peer's addresses: a prefix, or the members of a group (its id). At most one; neither: anyone. */
  remoteCidr?: string;
  remoteGroupId?: string;
}

/** A rule as asked for: no id yet, and the ethertype defaults to ipv4. */
export type SecurityGroupRuleInput = Omit<SecurityGroupRule, 'id' | 'ethertype'> & { ethertype?: SecurityGroupRule['ethertype'] };

export interface SecurityGroup {
  /** Also the id of its port group. */
  id: string;
  tenantId: string;
  name: string;
  ipAddrGroupId: string;
  /** Holds the egress rules (MidoNet's port-inbound side). */
  inboundChainId: string;
  /** Holds the ingress rules. */
  outboundChainId: string;
  /** Member ports. */
  portIds: string[];
  rules: SecurityGroupRule[];
}

export const securityGroupId = (tenantId: string, name: string): string => stableId('SecurityGroup', tenantId, name);
const addrGroupIdOf = (sgId: string): string => stableId('IpAddrGroup', 'security-group', sgId);
const sgChainId = (sgId: string, dir: 'in' | 'out'): string => stableId('Chain', 'security-group', sgId, dir);
const portChainId = (portId: string, dir: 'in' | 'out'): string => stableId('Chain', 'port-security', portId, dir);
const portRuleId = (chainId: string, ...what: string[]): string => stableId('Rule', chainId, ...what);

/** Is this port group a security group (does it own its chains)? */
async function isSecurityGroup(tx: Tx, pgId: string): Promise<boolean> {
  return (await tx.read('Chain', sgChainId(pgId, 'in'))) !== undefined;
}

// --------------------------------------------------------------------------------------- ports and their chains

/**
 * Makes a port's filter chains agree with the security groups among its port groups (called by the topology
 * service for every port write, with the port as it will be written; sets its filter ids), and the groups'
 * address sets with its addresses.
 */
export async function syncPortSecurity(tx: Tx, port: Port): Promise<void> {
  const groups: string[] = [];
  for (const g of port.portGroupIds) if (await isSecurityGroup(tx, g)) groups.push(g);
  const ids = { in: portChainId(port.id, 'in'), out: portChainId(port.id, 'out') };
  if (groups.length === 0) {
    if (port.inboundFilterId === ids.in) delete port.inboundFilterId;
    if (port.outboundFilterId === ids.out) delete port.outboundFilterId;
    await dropPortChains(tx, port.id);
  } else {
    if (port.type !== 'bridge') throw new TopologyError('invalid', 'security groups apply to bridge ports only', 'portGroupIds');
    for (const g of groups) {
      const pg = await tx.need('PortGroup', g, 'portGroupIds');
      if (pg.tenantId !== port.tenantId)
        throw new TopologyError('invalid', `security group "${pg.name}" belongs to another tenant`, 'portGroupIds');
    }
    for (const [dir, field] of [
      ['in', 'inboundFilterId'],
      ['out', 'outboundFilterId'],
    ] as const) {
      const own = ids[dir];
      const cur = port[field];
      if (cur !== undefined && cur !== own) {
        throw new TopologyError(
          'conflict',
          `port ${port.id} has ${field} ${cur} of its own; security groups need that filter (clear it first)`,
          field,
        );
      }
      await syncPortChain(tx, port, own, dir, groups);
      port[field] = own;
    }
  }
  const before = (await tx.read('Port', port.id))?.value.portGroupIds ?? [];
  await syncAddresses(tx, new Set([...before, ...port.portGroupIds]), new Map([[port.id, port]]));
}

async function syncPortChain(tx: Tx, port: Port, chainId: string, dir: 'in' | 'out', groups: string[]): Promise<void> {
  if (!(await tx.read('Chain', chainId))) {
    await createIn(tx, 'Chain', { id: chainId, tenantId: port.tenantId, name: `port-${dir}-${chainId}` });
  }
  const want: Rule[] = [
    {
      id: portRuleId(chainId, 'return-flow'),
      chainId,
      position: 1,
      action: 'accept',
      condition: { matchReturnFlow: true },
      description: 'return flow',
    },
    ...groups.map((g, i): Rule => ({
      id: portRuleId(chainId, 'jump', g),
      chainId,
      position: i + 2,
      action: 'jump',
      condition: {},
      jumpChainId: sgChainId(g, dir),
      description: `security group ${g}`,
    })),
    {
      id: portRuleId(chainId, 'drop'),
      chainId,
      position: groups.length + 2,
      action: 'drop',
      condition: { ethertype: ETH_ARP, invEthertype: true },
      description: 'not allowed by a security group',
    },
  ];
  const have = (await tx.list('Rule')).filter((r) => r.value.chainId === chainId);
  const wanted = new Set(want.map((r) => r.id));
  for (const r of have) if (!wanted.has(r.value.id)) tx.remove('Rule', r.value.id, r.version);
  for (const r of want) {
    const cur = have.find((h) => h.value.id === r.id);
    if (cur) await updateIn(tx, 'Rule', r, cur);
    else await createIn(tx, 'Rule', r);
  }
}

async function dropPortChains(tx: Tx, portId: string): Promise<void> {
  for (const dir of ['in', 'out'] as const) {
    const id = portChainId(portId, dir);
    const chain = await tx.read('Chain', id);
    if (!chain) continue;
    for (const r of await tx.list('Rule')) if (r.value.chainId === id) tx.remove('Rule', r.value.id, r.version);
    tx.remove('Chain', id, chain.version);
  }
}

/** The address sets of these security groups, from their members (ports in `override` as given, or gone). */
async function syncAddresses(tx: Tx, groupIds: Set<string>, override: Map<string, Port | undefined>): Promise<void> {
  if (groupIds.size === 0) return; // most port writes: no group, nothing to read
  const ports = (await tx.list('Port')).map((p) => p.value).filter((p) => !override.has(p.id));
  for (const p of override.values()) if (p) ports.push(p);
  for (const g of groupIds) {
    const iag = await tx.read('IpAddrGroup', addrGroupIdOf(g));
    if (!iag) continue;
    const addresses = [
      ...new Set(ports.filter((p) => p.portGroupIds.includes(g)).flatMap((p) => p.ips.map((ip) => ip.split('/')[0]!))),
    ].sort();
    await updateIn(tx, 'IpAddrGroup', { ...iag.value, addresses }, iag);
  }
}

/** Ports being deleted: their chains go, their addresses leave their groups (same transaction). */
export async function portsGone(tx: Tx, ports: Port[]): Promise<void> {
  for (const p of ports) await dropPortChains(tx, p.id);
  await syncAddresses(tx, new Set(ports.flatMap((p) => p.portGroupIds)), new Map(ports.map((p) => [p.id, undefined])));
}

// --------------------------------------------------------------------------------------- rules

const bad = (field: string, why: string) => new TopologyError('invalid', `${field}: ${why}`, field);

async function conditionOf(tx: Tx, sg: PortGroup, r: SecurityGroupRuleInput): Promise<Condition> {
  if (r.direction !== 'ingress' && r.direction !== 'egress') throw bad('direction', 'must be ingress or egress');
  const ethertype = r.ethertype ?? 'ipv4';
  if (ethertype !== 'ipv4' && ethertype !== 'ipv6') throw bad('ethertype', 'must be ipv4 or ipv6');
  const c: Condition = { ethertype: ethertype === 'ipv4' ? ETH_IPV4 : ETH_IPV6 };
  let proto: number | undefined;
  if (r.protocol !== undefined && r.protocol !== 'any') {
    proto = PROTOCOLS[r.protocol] ?? (/^[0-9]{1,3}$/.test(r.protocol) ? Number(r.protocol) : undefined);
    if (proto === undefined || proto > 255)
      throw bad('protocol', `'${r.protocol}' is not tcp, udp, icmp, icmpv6, sctp, any or a protocol number`);
    if (proto === 1 && ethertype === 'ipv6') throw bad('protocol', 'icmp is IPv4; use icmpv6 for ipv6');
    if (proto === 58 && ethertype === 'ipv4') throw bad('protocol', 'icmpv6 is IPv6; use icmp for ipv4');
    c.nwProto = proto;
  }
  for (const f of ['portMin', 'portMax'] as const) {
    const v = r[f];
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 65535)) throw bad(f, 'must be a whole number from 0 to 65535');
  }
  if (r.portMin !== undefined || r.portMax !== undefined) {
    if (proto === undefined) throw bad('portMin', 'ports need a protocol');
    if (PORTED.has(proto)) {
      const start = r.portMin ?? r.portMax!;
      const end = r.portMax ?? start;
      if (start > end) throw bad('portMax', `is below portMin (${start})`);
      if (start < 1) throw bad('portMin', 'ports start at 1');
      c.tpDst = { start, end };
    } else if (ICMPS.has(proto)) {
      // Neutron: port_range_min is the ICMP type, port_range_max the code; MidoNet matches them in tpSrc/tpDst.
      if (r.portMin === undefined) throw bad('portMin', 'an ICMP code needs its type (portMin)');
      if (r.portMin > 255) throw bad('portMin', 'an ICMP type is at most 255');
      c.tpSrc = { start: r.portMin, end: r.portMin };
      if (r.portMax !== undefined) {
        if (r.portMax > 255) throw bad('portMax', 'an ICMP code is at most 255');
        c.tpDst = { start: r.portMax, end: r.portMax };
      }
    } else {
      throw bad('portMin', `protocol ${r.protocol} has no ports`);
    }
  }
  if (r.remoteCidr !== undefined && r.remoteGroupId !== undefined) throw bad('remoteGroupId', 'give remoteCidr or remoteGroupId, not both');
  const ingress = r.direction === 'ingress';
  if (r.remoteCidr !== undefined) {
    const net = parseCidr(r.remoteCidr, 'remoteCidr');
    if ((net.family === 4) !== (ethertype === 'ipv4')) throw bad('remoteCidr', `is not an ${ethertype} prefix`);
    c[ingress ? 'nwSrc' : 'nwDst'] = formatCidr(net);
  }
  if (r.remoteGroupId !== undefined) {
    if (typeof r.remoteGroupId !== 'string' || !(await isSecurityGroup(tx, r.remoteGroupId)))
      throw bad('remoteGroupId', `security group ${JSON.stringify(r.remoteGroupId)} not found`);
    const remote = await tx.need('PortGroup', r.remoteGroupId, 'remoteGroupId');
    if (remote.tenantId !== sg.tenantId) throw bad('remoteGroupId', 'names a group of another tenant');
    c[ingress ? 'ipAddrGroupSrc' : 'ipAddrGroupDst'] = addrGroupIdOf(r.remoteGroupId);
  }
  return c;
}

/** The security-group rule a chain rule of a group is (the inverse of conditionOf). */
function sgRuleOf(rule: Rule, direction: 'ingress' | 'egress', groupByAddrGroup: Map<string, string>): SecurityGroupRule {
  const c = rule.condition;
  const out: SecurityGroupRule = { id: rule.id, direction, ethertype: c.ethertype === ETH_IPV6 ? 'ipv6' : 'ipv4' };
  if (c.nwProto !== undefined) out.protocol = Object.entries(PROTOCOLS).find(([, n]) => n === c.nwProto)?.[0] ?? String(c.nwProto);
  if (c.nwProto !== undefined && ICMPS.has(c.nwProto)) {
    if (c.tpSrc) out.portMin = c.tpSrc.start;
    if (c.tpDst) out.portMax = c.tpDst.start;
  } else if (c.tpDst) {
    out.portMin = c.tpDst.start;
    out.portMax = c.tpDst.end;
  }
  const cidr = c.nwSrc ?? c.nwDst;
  if (cidr !== undefined) out.remoteCidr = cidr;
  const iag = c.ipAddrGroupSrc ?? c.ipAddrGroupDst;
  if (iag !== undefined) out.remoteGroupId = groupByAddrGroup.get(iag) ?? iag;
  return out;
}

// --------------------------------------------------------------------------------------- the service

/** Security groups over the topology service: each operation is one transaction. */
export class SecurityGroups {
  constructor(private readonly topology: Topology) {}

  private async view(tx: Tx, pg: PortGroup): Promise<SecurityGroup> {
    const rules = (await tx.list('Rule')).map((r) => r.value);
    const groups = (await tx.list('PortGroup')).map((g) => g.value.id);
    const byAddrGroup = new Map(groups.map((g) => [addrGroupIdOf(g), g]));
    const of = (dir: 'in' | 'out', direction: 'ingress' | 'egress') =>
      rules
        .filter((r) => r.chainId === sgChainId(pg.id, dir))
        .sort((a, b) => a.position - b.position)
        .map((r) => sgRuleOf(r, direction, byAddrGroup));
    return {
      id: pg.id,
      tenantId: pg.tenantId,
      name: pg.name,
      ipAddrGroupId: addrGroupIdOf(pg.id),
      inboundChainId: sgChainId(pg.id, 'in'),
      outboundChainId: sgChainId(pg.id, 'out'),
      portIds: (await tx.list('Port'))
        .map((p) => p.value)
        .filter((p) => p.portGroupIds.includes(pg.id))
        .map((p) => p.id)
        .sort(),
      rules: [...of('out', 'ingress'), ...of('in', 'egress')],
    };
  }

  private async need(tx: Tx, id: string): Promise<PortGroup> {
    const pg = await tx.read('PortGroup', id);
    if (!pg || !(await isSecurityGroup(tx, id)))
      throw new TopologyError('not_found', `security group ${JSON.stringify(id)} not found`, 'id');
    return pg.value;
  }

  async create(input: { name: string; tenant?: string }): Promise<SecurityGroup> {
    if (typeof input?.name !== 'string') throw bad('name', 'is required');
    if (input.name.length > 100) throw bad('name', 'at most 100 characters');
    const tenant = await this.topology.ensureTenant(input.tenant ?? 'default');
    return this.topology.transact(async (tx) => {
      const id = securityGroupId(tenant.id, input.name);
      const existing = await tx.read('PortGroup', id);
      if (existing) throw new TopologyError('conflict', `security group "${input.name}" already exists`, 'name');
      const pg = await createIn(tx, 'PortGroup', { id, tenantId: tenant.id, name: input.name, stateful: false });
      await createIn(tx, 'IpAddrGroup', {
        id: addrGroupIdOf(id),
        tenantId: tenant.id,
        name: `sg-${input.name}`,
        addresses: [],
      } satisfies Partial<IpAddrGroup>);
      for (const dir of ['in', 'out'] as const) {
        await createIn(tx, 'Chain', {
          id: sgChainId(id, dir),
          tenantId: tenant.id,
          name: `sg-${input.name}-${dir}`,
        } satisfies Partial<Chain>);
      }
      return this.view(tx, pg);
    }, 'PortGroup');
  }

  async list(filter: { tenantId?: string } = {}): Promise<SecurityGroup[]> {
    return this.topology.transact(async (tx) => {
      const out: SecurityGroup[] = [];
      for (const { value } of await tx.list('PortGroup')) {
        if (filter.tenantId !== undefined && value.tenantId !== filter.tenantId) continue;
        if (await isSecurityGroup(tx, value.id)) out.push(await this.view(tx, value));
      }
      return out.sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
    }, 'PortGroup');
  }

  async get(id: string): Promise<SecurityGroup> {
    return this.topology.transact(async (tx) => this.view(tx, await this.need(tx, id)), 'PortGroup');
  }

  /** Deletes a group with no member port that no other group's rule names. */
  async delete(id: string): Promise<void> {
    await this.topology.transact(async (tx) => {
      const pg = await this.need(tx, id);
      const members = (await tx.list('Port')).filter((p) => p.value.portGroupIds.includes(id));
      if (members.length) {
        throw new TopologyError(
          'conflict',
          `security group "${pg.name}" still has ports: ${members
            .slice(0, 10)
            .map((p) => p.value.id)
            .join(', ')} (detach them first)`,
          'id',
        );
      }
      const own = new Set([sgChainId(id, 'in'), sgChainId(id, 'out')]);
      const iag = addrGroupIdOf(id);
      const rules = await tx.list('Rule');
      const users = rules.filter(
        (r) => !own.has(r.value.chainId) && (r.value.condition.ipAddrGroupSrc === iag || r.value.condition.ipAddrGroupDst === iag),
      );
      if (users.length) {
        throw new TopologyError(
          'conflict',
          `security group "${pg.name}" is the remote group of rules ${users
            .slice(0, 10)
            .map((r) => r.value.id)
            .join(', ')}`,
          'id',
        );
      }
      for (const r of rules) if (own.has(r.value.chainId)) tx.remove('Rule', r.value.id, r.version);
      for (const c of own) tx.remove('Chain', c, (await tx.read('Chain', c))!.version);
      const g = await tx.read('IpAddrGroup', iag);
      if (g) tx.remove('IpAddrGroup', iag, g.version);
      tx.remove('PortGroup', id, (await tx.read('PortGroup', id))!.version);
    }, 'PortGroup');
  }

  async addRule(id: string, input: SecurityGroupRuleInput): Promise<SecurityGroupRule> {
    return this.topology.transact(async (tx) => {
      const pg = await this.need(tx, id);
      const condition = await conditionOf(tx, pg, input);
      const chainId = sgChainId(id, input.direction === 'ingress' ? 'out' : 'in');
      const rule = await createIn(tx, 'Rule', { chainId, action: 'accept', condition });
      return sgRuleOf(
        rule,
        input.direction,
        new Map(input.remoteGroupId ? [[addrGroupIdOf(input.remoteGroupId), input.remoteGroupId]] : []),
      );
    }, 'Rule');
  }

  async removeRule(id: string, ruleId: string): Promise<void> {
    await this.topology.transact(async (tx) => {
      await this.need(tx, id);
      const r = await tx.read('Rule', ruleId);
      if (!r || (r.value.chainId !== sgChainId(id, 'in') && r.value.chainId !== sgChainId(id, 'out'))) {
        throw new TopologyError('not_found', `rule ${JSON.stringify(ruleId)} is not a rule of this security group`, 'ruleId');
      }
      tx.remove('Rule', ruleId, r.version);
    }, 'Rule');
  }

  /** Makes a port a member: its filters now allow only what its groups allow (and return flows). */
  async attach(id: string, portId: string): Promise<SecurityGroup> {
    return this.membership(id, portId, true);
  }

  /** Ends a membership; a port left with no group gets its filters removed (all allowed again). */
  async detach(id: string, portId: string): Promise<SecurityGroup> {
    return this.membership(id, portId, false);
  }

  private async membership(id: string, portId: string, member: boolean): Promise<SecurityGroup> {
    return this.topology.transact(async (tx) => {
      const pg = await this.need(tx, id);
      const cur = await tx.read('Port', portId);
      if (!cur) throw new TopologyError('not_found', `port ${JSON.stringify(portId)} not found`, 'portId');
      const port = structuredClone(cur.value);
      const has = port.portGroupIds.includes(id);
      if (member && !has) port.portGroupIds.push(id);
      if (!member && !has) throw new TopologyError('not_found', `port ${portId} is not in security group "${pg.name}"`, 'portId');
      if (!member) port.portGroupIds = port.portGroupIds.filter((g) => g !== id);
      await syncPortSecurity(tx, port);
      await updateIn(tx, 'Port', port, cur);
      return this.view(tx, pg);
    }, 'Port');
  }
}
