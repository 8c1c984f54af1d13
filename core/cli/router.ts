// `bees router …`: virtual routers and their links to networks.
import { tenantId } from '../model/ids.js';
import { apiClient, parse, printJson, table, type Command } from './command.js';
import { findNetwork, findRouter, tenantNames } from './resolve.js';

const tenantOpt = { tenant: { type: 'string' } } as const;

const create: Command = {
  name: 'router create',
  summary: 'Create a virtual router',
  usage: 'bees router create NAME [--tenant T] [--no-snat]',
  async run(args, io) {
    const { values, positionals } = parse(create, args, { ...tenantOpt, 'no-snat': { type: 'boolean' } }, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const r = await api.create('Router', {
      name: positionals[0]!,
      tenant: values.tenant ?? 'default',
      ...(values['no-snat'] ? { snat: false } : {}),
    });
    if (values.json) printJson(io, r);
    else io.out(`${r.id}\n`);
  },
};

const attach: Command = {
  name: 'router attach',
  summary: 'Link a router to a network (router port on the gateway address, routes to the subnets)',
  usage: `bees router attach ROUTER NET [--address CIDR] [--tenant T]
  --address CIDR   the router's address on the network (default: the subnet gateway)`,
  async run(args, io) {
    const { values, positionals } = parse(attach, args, { ...tenantOpt, address: { type: 'string' } }, { min: 2, max: 2 });
    const api = apiClient(values, io);
    const tenant = values.tenant ?? 'default';
    const r = await findRouter(api, tenant, positionals[0]!);
    const b = await findNetwork(api, tenant, positionals[1]!);
    const link = await api.attachRouter(r.id, b.id, values.address);
    if (values.json) printJson(io, link);
    else io.out(`${r.name} -> ${b.name}: ${link.routerPort.ips.join(', ')} (port ${link.routerPort.id})\n`);
  },
};

const detach: Command = {
  name: 'router detach',
  summary: 'Remove the link between a router and a network',
  usage: 'bees router detach ROUTER NET [--tenant T]',
  async run(args, io) {
    const { values, positionals } = parse(detach, args, tenantOpt, { min: 2, max: 2 });
    const api = apiClient(values, io);
    const tenant = values.tenant ?? 'default';
    const r = await findRouter(api, tenant, positionals[0]!);
    const b = await findNetwork(api, tenant, positionals[1]!);
    await api.detachRouter(r.id, b.id);
    if (values.json) printJson(io, { routerId: r.id, bridgeId: b.id });
  },
};

const ls: Command = {
  name: 'router ls',
  summary: 'List virtual routers and the networks they link',
  usage: 'bees router ls [--tenant T]',
  async run(args, io) {
    const { values } = parse(ls, args, tenantOpt, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const routers = await api.list('Router', values.tenant ? { tenantId: tenantId(values.tenant) } : {});
    if (values.json) return printJson(io, routers);
    const [tenants, ports, bridges] = await Promise.all([tenantNames(api), api.list('Port'), api.list('Bridge')]);
    const byId = new Map(ports.map((p) => [p.id, p]));
    const bridgeName = new Map(bridges.map((b) => [b.id, b.name]));
    const rows = routers.map((r) => {
      const links = ports
        .filter((p) => p.routerId === r.id && p.peerId)
        .map((p) => {
          const peer = byId.get(p.peerId!);
          return `${bridgeName.get(peer?.bridgeId ?? '') ?? '?'}(${p.ips.join(',')})`;
        });
      return [r.name, tenants.get(r.tenantId) ?? r.tenantId, r.id, r.snat ? 'yes' : 'no', links.join(' ') || '-'];
    });
    io.out(table(['NAME', 'TENANT', 'ID', 'SNAT', 'NETWORKS'], rows));
  },
};

export const commands = [create, attach, detach, ls];
