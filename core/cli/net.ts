// `bees net …`: virtual networks (bridges).
import type { Bridge, Subnet } from '../model/types.js';
import { tenantId } from '../model/ids.js';
import { apiClient, CliError, details, intOption, parse, printJson, table, type Command } from './command.js';
import { findNetwork, tenantNames } from './resolve.js';

const tenantOpt = { tenant: { type: 'string' } } as const;

const create: Command = {
  name: 'net create',
  summary: 'Create a virtual network',
  usage: `bees net create NAME --subnet CIDR [--subnet6 CIDR] [--gateway IP] [--tenant T] [--mtu N] [--vni N]
  --subnet CIDR    IPv4 (or IPv6) subnet
  --subnet6 CIDR   an IPv6 subnet besides it
  --gateway IP     gateway of the subnet it belongs to (default: first usable address)
  --tenant T       tenant name (default "default")
  --mtu N          workload MTU (default: underlay MTU minus VXLAN overhead)
  --vni N          VXLAN network identifier (default: lowest free)`,
  async run(args, io) {
    const { values, positionals } = parse(
      create,
      args,
      {
        ...tenantOpt,
        subnet: { type: 'string' },
        subnet6: { type: 'string' },
        gateway: { type: 'string' },
        mtu: { type: 'string' },
        vni: { type: 'string' },
      },
      { min: 1, max: 1 },
    );
    const subnets: Subnet[] = [];
    if (values.subnet) subnets.push({ cidr: values.subnet });
    if (values.subnet6) subnets.push({ cidr: values.subnet6 });
    if (subnets.length === 0) throw new CliError('net create: --subnet CIDR is required', 2);
    if (values.gateway) {
      const v6 = values.gateway.includes(':');
      const target = subnets.find((s) => s.cidr.includes(':') === v6);
      if (!target) throw new CliError(`net create: --gateway ${values.gateway} matches no subnet of its IP family`, 2);
      target.gateway = values.gateway;
    }
    const mtu = intOption('mtu', values.mtu);
    const vni = intOption('vni', values.vni);
    const api = apiClient(values, io);
    const bridge = await api.create('Bridge', {
      name: positionals[0]!,
      tenant: values.tenant ?? 'default',
      subnets,
      ...(mtu !== undefined ? { mtu } : {}),
      ...(vni !== undefined ? { tunnelKey: vni } : {}),
    });
    if (values.json) printJson(io, bridge);
    else io.out(`${bridge.id}\n`);
  },
};

function row(b: Bridge, tenants: Map<string, string>): string[] {
  return [
    b.name,
    tenants.get(b.tenantId) ?? b.tenantId,
    b.id,
    String(b.tunnelKey),
    b.subnets.map((s) => s.cidr).join(',') || '-',
    b.subnets.map((s) => s.gateway || '-').join(',') || '-',
    b.mtu === undefined ? 'auto' : String(b.mtu),
  ];
}

const ls: Command = {
  name: 'net ls',
  summary: 'List virtual networks',
  usage: 'bees net ls [--tenant T]',
  async run(args, io) {
    const { values } = parse(ls, args, tenantOpt, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const nets = await api.list('Bridge', values.tenant ? { tenantId: tenantId(values.tenant) } : {});
    if (values.json) return printJson(io, nets);
    const tenants = await tenantNames(api);
    io.out(
      table(
        ['NAME', 'TENANT', 'ID', 'VNI', 'SUBNETS', 'GATEWAYS', 'MTU'],
        nets.map((b) => row(b, tenants)),
      ),
    );
  },
};

const show: Command = {
  name: 'net show',
  summary: 'Show one virtual network, with its ports and routers',
  usage: 'bees net show NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(show, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const b = await findNetwork(api, values.tenant ?? 'default', positionals[0]!);
    if (values.json) return printJson(io, b);
    const tenants = await tenantNames(api);
    const ports = await api.list('Port', { bridgeId: b.id });
    const links = ports.filter((p) => p.peerId).length;
    io.out(
      details([
        ['name', b.name],
        ['id', b.id],
        ['tenant', tenants.get(b.tenantId) ?? b.tenantId],
        ['vni', String(b.tunnelKey)],
        ...b.subnets.map((s, i): [string, string] => [`subnet[${i}]`, `${s.cidr} gateway ${s.gateway || 'none'} blocks /${s.blockPrefix}`]),
        ['mtu', b.mtu === undefined ? 'auto' : String(b.mtu)],
        ['internal', String(!!b.internal)],
        ['admin state', b.adminStateUp ? 'up' : 'down'],
        ['ports', `${ports.length - links} workload, ${links} router link`],
        ...Object.entries(b.labels).map(([k, v]): [string, string] => [`label ${k}`, v]),
      ]),
    );
  },
};

const rm: Command = {
  name: 'net rm',
  summary: 'Remove a virtual network (refused while workloads are attached)',
  usage: 'bees net rm NAME|ID [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(rm, args, tenantOpt, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const b = await findNetwork(api, values.tenant ?? 'default', positionals[0]!);
    await api.delete('Bridge', b.id);
    if (values.json) printJson(io, { deleted: b.id });
    else io.out(`${b.name}\n`);
  },
};

export const commands = [create, ls, show, rm];
