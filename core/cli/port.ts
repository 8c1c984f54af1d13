// `bees port ls`: virtual ports, with their bindings.
import type { ListFilter } from '../topology/service.js';
import { apiClient, parse, printJson, table, type Command } from './command.js';
import { findHost, findNetwork } from './resolve.js';

const ls: Command = {
  name: 'port ls',
  summary: 'List ports (workload interfaces and router links)',
  usage: 'bees port ls [--network N] [--host H] [--tenant T]',
  async run(args, io) {
    const { values } = parse(
      ls,
      args,
      { network: { type: 'string' }, host: { type: 'string' }, tenant: { type: 'string' } },
      { min: 0, max: 0 },
    );
    const api = apiClient(values, io);
    const filter: ListFilter = {};
    if (values.network) filter.bridgeId = (await findNetwork(api, values.tenant ?? 'default', values.network)).id;
    if (values.host) filter.hostId = (await findHost(api, values.host)).id;
    const ports = await api.list('Port', filter);
    if (values.json) return printJson(io, ports);
    const [bridges, routers, hosts] = await Promise.all([api.list('Bridge'), api.list('Router'), api.list('Host')]);
    const name = new Map<string, string>([...bridges, ...routers, ...hosts].map((o) => [o.id, o.name]));
    io.out(
      table(
        ['ID', 'TYPE', 'ON', 'MAC', 'IPS', 'HOST', 'INTERFACE', 'STATUS', 'OWNER'],
        ports.map((p) => [
          p.id,
          p.peerId ? `${p.type}-link` : p.type,
          name.get(p.bridgeId ?? p.routerId ?? '') ?? p.bridgeId ?? p.routerId ?? '-',
          p.mac,
          p.ips.join(',') || '-',
          p.hostId ? (name.get(p.hostId) ?? p.hostId) : '-',
          p.interfaceName ?? '-',
          p.status,
          p.owner ? `${p.owner.orchestrator}:${p.owner.workloadId.slice(0, 12)}/${p.owner.ifname}` : '-',
        ]),
      ),
    );
  },
};

export const commands = [ls];
