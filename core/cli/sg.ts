// `bees sg …`: security groups (allow-lists per port, Neutron's model on MidoNet's chains).
import type { ApiClient } from '../api/client.js';
import { tenantId } from '../model/ids.js';
import type { SecurityGroup, SecurityGroupRule } from '../topology/security-groups.js';
import { apiClient, CliError, details, intOption, parse, printJson, reply, table, tableSection, type Command } from './command.js';
import { getOrUndefined } from './resolve.js';

const tenantOpt = { tenant: { type: 'string' } } as const;
const BASE = '/v1/security-groups';
const at = (id: string, tail = '') => `${BASE}/${encodeURIComponent(id)}${tail}`;

async function findGroup(api: ApiClient, tenant: string, nameOrId: string): Promise<SecurityGroup> {
  const all = await api.request<SecurityGroup[]>('GET', `${BASE}?tenantId=${encodeURIComponent(tenantId(tenant))}`);
  const found = all.find((g) => g.name === nameOrId) ?? (await getOrUndefined(api.request<SecurityGroup>('GET', at(nameOrId))));
  if (!found) throw new CliError(`security group '${nameOrId}' not found${tenant === 'default' ? '' : ` in tenant '${tenant}'`}`);
  return found;
}

function ruleRow(r: SecurityGroupRule, names: Map<string, string>): string[] {
  const ports =
    r.portMin === undefined
      ? 'any'
      : r.protocol?.startsWith('icmp')
        ? `type ${r.portMin}${r.portMax !== undefined ? ` code ${r.portMax}` : ''}`
        : r.portMin === r.portMax
          ? String(r.portMin)
          : `${r.portMin}-${r.portMax}`;
  const remote = r.remoteGroupId ? `group ${names.get(r.remoteGroupId) ?? r.remoteGroupId}` : (r.remoteCidr ?? 'any');
  return [r.id, r.direction, r.ethertype, r.protocol ?? 'any', ports, remote];
}

const create: Command = {
  name: 'sg create',
  summary: 'Create a security group (no rules: its members accept only return flows and ARP)',
  usage: 'bees sg create NAME [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(create, args, tenantOpt, { min: 1, max: 1 });
    const g = await apiClient(values, io).request<SecurityGroup>('POST', BASE, {
      name: positionals[0]!,
      tenant: values.tenant ?? 'default',
    });
    reply(io, values, g, g.id);
  },
};

const ls: Command = {
  name: 'sg ls',
  summary: 'List security groups',
  usage: 'bees sg ls [--tenant T]',
  async run(args, io) {
    const { values } = parse(ls, args, tenantOpt, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const groups = await api.request<SecurityGroup[]>(
      'GET',
      values.tenant ? `${BASE}?tenantId=${encodeURIComponent(tenantId(values.tenant))}` : BASE,
    );
    if (values.json) return printJson(io, groups);
    io.out(
      table(
        ['NAME', 'ID', 'RULES', 'PORTS'],
        groups.map((g) => [g.name, g.id, String(g.rules.length), String(g.portIds.length)]),
      ),
    );
  },
};

const show: Command = {
  name: 'sg show',
  summary: 'Show a security group: rules and member ports',
  usage: 'bees sg show NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(show, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const g = await findGroup(api, values.tenant ?? 'default', positionals[0]!);
    if (values.json) return printJson(io, g);
    const names = new Map((await api.request<SecurityGroup[]>('GET', BASE)).map((x) => [x.id, x.name]));
    io.out(
      details([
        ['name', g.name],
        ['id', g.id],
        ['ports', g.portIds.join(', ') || '-'],
        ['chains', `in ${g.inboundChainId}, out ${g.outboundChainId}`],
      ]),
    );
    tableSection(
      io,
      ['RULE', 'DIRECTION', 'ETHERTYPE', 'PROTOCOL', 'PORTS', 'REMOTE'],
      g.rules.map((r) => ruleRow(r, names)),
    );
  },
};

const rm: Command = {
  name: 'sg rm',
  summary: 'Remove a security group (refused while it has ports or another group names it)',
  usage: 'bees sg rm NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(rm, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const g = await findGroup(api, values.tenant ?? 'default', positionals[0]!);
    await api.request('DELETE', at(g.id));
    reply(io, values, { deleted: g.id }, g.name);
  },
};

const ruleAdd: Command = {
  name: 'sg rule add',
  summary: 'Allow traffic to (ingress) or from (egress) the members of a security group',
  usage: `bees sg rule add SG ingress|egress [--ethertype ipv4|ipv6] [--proto P] [--port A[-B]]
         [--icmp-type T [--icmp-code C]] [--remote-cidr CIDR | --remote-group SG] [--tenant T]
  --proto P          tcp, udp, icmp, icmpv6, sctp, any or a protocol number (default any)
  --port A[-B]       destination port or range (tcp, udp, sctp)
  --remote-cidr      the peers' prefix; --remote-group: the members of that group (default: anyone)`,
  async run(args, io) {
    const { values, positionals } = parse(
      ruleAdd,
      args,
      {
        ...tenantOpt,
        ethertype: { type: 'string' },
        proto: { type: 'string' },
        port: { type: 'string' },
        'icmp-type': { type: 'string' },
        'icmp-code': { type: 'string' },
        'remote-cidr': { type: 'string' },
        'remote-group': { type: 'string' },
      },
      { min: 2, max: 2 },
    );
    const direction = positionals[1]!;
    if (direction !== 'ingress' && direction !== 'egress')
      throw new CliError(`sg rule add: direction '${direction}' is not ingress or egress`, 2);
    const body: Record<string, unknown> = { direction, ethertype: values.ethertype ?? 'ipv4' };
    if (values.proto !== undefined) body.protocol = values.proto;
    if (values.port !== undefined) {
      const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(values.port);
      if (!m) throw new CliError(`--port: '${values.port}' is not a port or a range A-B`, 2);
      body.portMin = Number(m[1]);
      body.portMax = Number(m[2] ?? m[1]);
    }
    const type = intOption('icmp-type', values['icmp-type']);
    const code = intOption('icmp-code', values['icmp-code']);
    if (type !== undefined) body.portMin = type;
    if (code !== undefined) body.portMax = code;
    if (values['remote-cidr'] !== undefined) body.remoteCidr = values['remote-cidr'];
    const api = apiClient(values, io);
    const tenant = values.tenant ?? 'default';
    if (values['remote-group'] !== undefined) body.remoteGroupId = (await findGroup(api, tenant, values['remote-group'])).id;
    const g = await findGroup(api, tenant, positionals[0]!);
    const rule = await api.request<SecurityGroupRule>('POST', at(g.id, '/rules'), body);
    reply(io, values, rule, rule.id);
  },
};

const ruleRm: Command = {
  name: 'sg rule rm',
  summary: 'Remove a rule from a security group',
  usage: 'bees sg rule rm SG RULE-ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(ruleRm, args, tenantOpt, { min: 2, max: 2 });
    const api = apiClient(values, io);
    const g = await findGroup(api, values.tenant ?? 'default', positionals[0]!);
    await api.request('DELETE', at(g.id, `/rules/${encodeURIComponent(positionals[1]!)}`));
    reply(io, values, { deleted: positionals[1] }, positionals[1]!);
  },
};

function membership(name: 'attach' | 'detach', summary: string): Command {
  const cmd: Command = {
    name: `sg ${name}`,
    summary,
    usage: `bees sg ${name} SG PORT-ID [--tenant T]`,
    async run(args, io) {
      const { values, positionals } = parse(cmd, args, tenantOpt, { min: 2, max: 2 });
      const api = apiClient(values, io);
      const g = await findGroup(api, values.tenant ?? 'default', positionals[0]!);
      const after = await api.request<SecurityGroup>('POST', at(g.id, `/${name}`), { portId: positionals[1]! });
      reply(io, values, after, positionals[1]!);
    },
  };
  return cmd;
}

export const commands = [
  create,
  ls,
  show,
  rm,
  ruleAdd,
  ruleRm,
  membership('attach', 'Make a port a member: it then accepts only what its groups allow (and return flows)'),
  membership('detach', "End a port's membership; a port with no group left is unfiltered again"),
];
