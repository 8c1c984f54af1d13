// `bees port ls`: virtual ports, with their bindings; `bees port set`: a port's admin state.
import type { ListFilter } from '../topology/service.js';
import { apiClient, CliError, COMMON_USAGE, parse, printJson, reply, table, type Command } from './command.js';
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
        ['ID', 'TYPE', 'ON', 'MAC', 'IPS', 'HOST', 'INTERFACE', 'STATUS', 'ADMIN', 'OWNER'],
        ports.map((p) => [
          p.id,
          p.peerId ? `${p.type}-link` : p.type,
          name.get(p.bridgeId ?? p.routerId ?? '') ?? p.bridgeId ?? p.routerId ?? '-',
          p.mac,
          p.ips.join(',') || '-',
          p.hostId ? (name.get(p.hostId) ?? p.hostId) : '-',
          p.interfaceName ?? '-',
          p.status,
          p.adminStateUp ? 'up' : 'down',
          p.owner ? `${p.owner.orchestrator}:${p.owner.workloadId.slice(0, 12)}/${p.owner.ifname}` : '-',
        ]),
      ),
    );
  },
};

const set: Command = {
  name: 'port set',
  summary: 'Change a port: its admin state (a down port drops all its traffic, in and out)',
  usage: `bees port set PORT --admin-state up|down [--json]
  PORT: port id (bees port ls). A workload port or either end of a router link; the agents of the hosts
  concerned drop or forward again at once, without re-plugging.
${COMMON_USAGE}`,
  async run(args, io) {
    const { values, positionals } = parse(set, args, { 'admin-state': { type: 'string' } }, { min: 1, max: 1 });
    const state = values['admin-state'];
    if (state === undefined) throw new CliError('port set: nothing to change (--admin-state up|down)', 2);
    if (state !== 'up' && state !== 'down') throw new CliError(`port set: --admin-state must be up or down, not '${state}'`, 2);
    const api = apiClient(values, io);
    const after = await api.update('Port', positionals[0]!, { adminStateUp: state === 'up' });
    reply(io, values, after, `${after.id} admin state ${after.adminStateUp ? 'up' : 'down'}`);
  },
};

export const commands = [ls, set];
