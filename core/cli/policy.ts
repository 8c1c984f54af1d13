// `bees chain …` and `bees rule …`: filter chains and their rules, MidoNet's model as is (for the everyday case,
// `bees sg`). A rule's condition takes the common fields as flags and every other field as --condition JSON.
import type { ApiClient } from '../api/client.js';
import { tenantId } from '../model/ids.js';
import type { Chain, Condition, PortRange, Rule, RuleAction } from '../model/types.js';
import { apiClient, CliError, details, intOption, parse, printJson, reply, table, tableSection, type Command } from './command.js';
import { getOrUndefined } from './resolve.js';

const tenantOpt = { tenant: { type: 'string' } } as const;

export async function findChain(api: ApiClient, tenant: string, nameOrId: string): Promise<Chain> {
  const found =
    (await api.list('Chain', { tenantId: tenantId(tenant), name: nameOrId }))[0] ?? (await getOrUndefined(api.get('Chain', nameOrId)));
  if (!found) throw new CliError(`chain '${nameOrId}' not found`);
  return found;
}

const ETHERTYPES: Record<string, number> = { ipv4: 0x0800, ipv6: 0x86dd, arp: 0x0806 };
const PROTOS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58, sctp: 132 };

function portRange(flag: string, text: string | undefined): PortRange | undefined {
  if (text === undefined) return undefined;
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(text);
  if (!m) throw new CliError(`--${flag}: '${text}' is not a port or a range A-B`, 2);
  return { start: Number(m[1]), end: Number(m[2] ?? m[1]) };
}

function numberOf(flag: string, text: string | undefined, names: Record<string, number>): number | undefined {
  if (text === undefined) return undefined;
  const n = names[text.toLowerCase()] ?? (/^(0x[0-9a-f]+|[0-9]+)$/i.test(text) ? Number(text) : undefined);
  if (n === undefined) throw new CliError(`--${flag}: '${text}' is not one of ${Object.keys(names).join(', ')} or a number`, 2);
  return n;
}

function describe(c: Condition): string {
  const parts: string[] = [];
  const not = (inv?: boolean) => (inv ? '!' : '');
  if (c.conjunctionInv) parts.push('NOT(');
  if (c.matchReturnFlow) parts.push('return-flow');
  if (c.matchForwardFlow) parts.push('forward-flow');
  if (c.ethertype !== undefined)
    parts.push(
      `ethertype ${not(c.invEthertype)}${Object.entries(ETHERTYPES).find(([, v]) => v === c.ethertype)?.[0] ?? `0x${c.ethertype.toString(16)}`}`,
    );
  if (c.nwProto !== undefined)
    parts.push(`proto ${not(c.invNwProto)}${Object.entries(PROTOS).find(([, v]) => v === c.nwProto)?.[0] ?? c.nwProto}`);
  if (c.nwSrc) parts.push(`src ${not(c.invNwSrc)}${c.nwSrc}`);
  if (c.nwDst) parts.push(`dst ${not(c.invNwDst)}${c.nwDst}`);
  const r = (x: PortRange) => (x.start === x.end ? `${x.start}` : `${x.start}-${x.end}`);
  if (c.tpSrc) parts.push(`sport ${not(c.invTpSrc)}${r(c.tpSrc)}`);
  if (c.tpDst) parts.push(`dport ${not(c.invTpDst)}${r(c.tpDst)}`);
  if (c.ipAddrGroupSrc) parts.push(`src-group ${not(c.invIpAddrGroupSrc)}${c.ipAddrGroupSrc}`);
  if (c.ipAddrGroupDst) parts.push(`dst-group ${not(c.invIpAddrGroupDst)}${c.ipAddrGroupDst}`);
  if (c.portGroupSrc) parts.push(`in-port-group ${not(c.invPortGroupSrc)}${c.portGroupSrc}`);
  if (c.portGroupDst) parts.push(`out-port-group ${not(c.invPortGroupDst)}${c.portGroupDst}`);
  if (c.inPortIds?.length) parts.push(`in-port ${not(c.invInPorts)}${c.inPortIds.join(',')}`);
  if (c.outPortIds?.length) parts.push(`out-port ${not(c.invOutPorts)}${c.outPortIds.join(',')}`);
  const shown = new Set([
    'conjunctionInv',
    'matchReturnFlow',
    'matchForwardFlow',
    'ethertype',
    'invEthertype',
    'nwProto',
    'invNwProto',
    'nwSrc',
    'invNwSrc',
    'nwDst',
    'invNwDst',
    'tpSrc',
    'invTpSrc',
    'tpDst',
    'invTpDst',
    'ipAddrGroupSrc',
    'invIpAddrGroupSrc',
    'ipAddrGroupDst',
    'invIpAddrGroupDst',
    'portGroupSrc',
    'invPortGroupSrc',
    'portGroupDst',
    'invPortGroupDst',
    'inPortIds',
    'invInPorts',
    'outPortIds',
    'invOutPorts',
  ]);
  for (const [k, v] of Object.entries(c)) if (!shown.has(k)) parts.push(`${k}=${JSON.stringify(v)}`);
  if (c.conjunctionInv) parts.push(')');
  return parts.join(' ') || 'any';
}

function ruleRows(rules: Rule[], chains: Map<string, string>): string[][] {
  return rules
    .sort((a, b) => a.position - b.position)
    .map((r) => [
      String(r.position),
      r.id,
      r.action === 'jump'
        ? `jump ${chains.get(r.jumpChainId ?? '') ?? r.jumpChainId}`
        : r.flowAction
          ? `${r.action} then ${r.flowAction}`
          : r.action,
      describe(r.condition),
      r.description ?? '',
    ]);
}

const RULE_HEADERS = ['POS', 'ID', 'ACTION', 'MATCH', 'DESCRIPTION'];

const chainCreate: Command = {
  name: 'chain create',
  summary: 'Create a filter chain',
  usage: 'bees chain create NAME [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(chainCreate, args, tenantOpt, { min: 1, max: 1 });
    const chain = await apiClient(values, io).create('Chain', { name: positionals[0]!, tenant: values.tenant ?? 'default' });
    reply(io, values, chain, chain.id);
  },
};

const chainLs: Command = {
  name: 'chain ls',
  summary: 'List filter chains',
  usage: 'bees chain ls [--tenant T]',
  async run(args, io) {
    const { values } = parse(chainLs, args, tenantOpt, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const chains = await api.list('Chain', values.tenant ? { tenantId: tenantId(values.tenant) } : {});
    if (values.json) return printJson(io, chains);
    const rules = await api.list('Rule');
    io.out(
      table(
        ['NAME', 'ID', 'RULES'],
        chains.map((c) => [c.name, c.id, String(rules.filter((r) => r.chainId === c.id).length)]),
      ),
    );
  },
};

const chainShow: Command = {
  name: 'chain show',
  summary: 'Show a chain and its rules in order',
  usage: 'bees chain show NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(chainShow, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const chain = await findChain(api, values.tenant ?? 'default', positionals[0]!);
    const rules = await api.list('Rule', { chainId: chain.id });
    if (values.json) return printJson(io, { ...chain, rules: rules.sort((a, b) => a.position - b.position) });
    const names = new Map((await api.list('Chain')).map((c) => [c.id, c.name]));
    io.out(
      details([
        ['name', chain.name],
        ['id', chain.id],
        ['rules', String(rules.length)],
      ]),
    );
    tableSection(io, RULE_HEADERS, ruleRows(rules, names));
  },
};

const chainRm: Command = {
  name: 'chain rm',
  summary: 'Remove a chain and its rules (refused while a port, device or jump uses it)',
  usage: 'bees chain rm NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(chainRm, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const chain = await findChain(api, values.tenant ?? 'default', positionals[0]!);
    await api.delete('Chain', chain.id);
    reply(io, values, { deleted: chain.id }, chain.name);
  },
};

const ACTIONS: RuleAction[] = ['accept', 'drop', 'reject', 'jump', 'return', 'continue', 'snat', 'dnat', 'rev_snat', 'rev_dnat'];

const ruleAdd: Command = {
  name: 'rule add',
  summary: 'Add a rule to a chain',
  usage: `bees rule add CHAIN ACTION [--jump CHAIN] [--proto P] [--ethertype E] [--src CIDR] [--dst CIDR]
         [--sport A[-B]] [--dport A[-B]] [--return-flow|--forward-flow] [--condition JSON] [--position N]
         [--flow-action accept|continue|return] [--description TEXT] [--tenant T]
  ACTION            ${ACTIONS.join(', ')}
  --jump CHAIN      target of a jump rule
  --proto P         tcp, udp, icmp, icmpv6, sctp or a protocol number
  --ethertype E     ipv4, ipv6, arp or a number
  --condition JSON  any other condition field (inversions, MACs, groups…), merged with the flags
  --position N      place it (default: last)`,
  async run(args, io) {
    const { values, positionals } = parse(
      ruleAdd,
      args,
      {
        ...tenantOpt,
        jump: { type: 'string' },
        proto: { type: 'string' },
        ethertype: { type: 'string' },
        src: { type: 'string' },
        dst: { type: 'string' },
        sport: { type: 'string' },
        dport: { type: 'string' },
        'return-flow': { type: 'boolean' },
        'forward-flow': { type: 'boolean' },
        condition: { type: 'string' },
        position: { type: 'string' },
        'flow-action': { type: 'string' },
        description: { type: 'string' },
      },
      { min: 2, max: 2 },
    );
    const action = positionals[1]! as RuleAction;
    if (!ACTIONS.includes(action)) throw new CliError(`rule add: action '${action}' is not one of ${ACTIONS.join(', ')}`, 2);
    let condition: Condition = {};
    if (values.condition !== undefined) {
      try {
        condition = JSON.parse(values.condition) as Condition;
      } catch (err) {
        throw new CliError(`--condition: not JSON: ${(err as Error).message}`, 2);
      }
      if (typeof condition !== 'object' || condition === null || Array.isArray(condition))
        throw new CliError('--condition: must be a JSON object', 2);
    }
    const set = <K extends keyof Condition>(k: K, v: Condition[K] | undefined) => {
      if (v !== undefined) condition[k] = v;
    };
    set('nwProto', numberOf('proto', values.proto, PROTOS));
    set('ethertype', numberOf('ethertype', values.ethertype, ETHERTYPES));
    set('nwSrc', values.src);
    set('nwDst', values.dst);
    set('tpSrc', portRange('sport', values.sport));
    set('tpDst', portRange('dport', values.dport));
    if (values['return-flow']) condition.matchReturnFlow = true;
    if (values['forward-flow']) condition.matchForwardFlow = true;
    const api = apiClient(values, io);
    const tenant = values.tenant ?? 'default';
    const chain = await findChain(api, tenant, positionals[0]!);
    const position = intOption('position', values.position);
    const rule = await api.create('Rule', {
      chainId: chain.id,
      action,
      condition,
      ...(values.jump !== undefined ? { jumpChainId: (await findChain(api, tenant, values.jump)).id } : {}),
      ...(position !== undefined ? { position } : {}),
      ...(values['flow-action'] !== undefined ? { flowAction: values['flow-action'] } : {}),
      ...(values.description !== undefined ? { description: values.description } : {}),
    } as Partial<Rule>);
    reply(io, values, rule, rule.id);
  },
};

const ruleLs: Command = {
  name: 'rule ls',
  summary: 'List the rules of a chain in order',
  usage: 'bees rule ls CHAIN [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(ruleLs, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const chain = await findChain(api, values.tenant ?? 'default', positionals[0]!);
    const rules = (await api.list('Rule', { chainId: chain.id })).sort((a, b) => a.position - b.position);
    if (values.json) return printJson(io, rules);
    const names = new Map((await api.list('Chain')).map((c) => [c.id, c.name]));
    io.out(table(RULE_HEADERS, ruleRows(rules, names)));
  },
};

const ruleRm: Command = {
  name: 'rule rm',
  summary: 'Remove a rule',
  usage: 'bees rule rm ID',
  async run(args, io) {
    const { values, positionals } = parse(ruleRm, args, {}, { min: 1, max: 1 });
    await apiClient(values, io).delete('Rule', positionals[0]!);
    reply(io, values, { deleted: positionals[0] }, positionals[0]!);
  },
};

export const commands = [chainCreate, chainLs, chainShow, chainRm, ruleAdd, ruleLs, ruleRm];
