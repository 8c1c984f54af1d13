// `bees host ls`: hosts known to the topology, alive while their agent holds its ephemeral record.
import { apiClient, parse, printJson, table, type Command } from './command.js';

const ls: Command = {
  name: 'host ls',
  summary: 'List hosts and whether their agent is alive',
  usage: 'bees host ls',
  async run(args, io) {
    const { values } = parse(ls, args, {}, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const [hosts, alive, ports] = await Promise.all([api.list('Host'), api.hostLiveness(), api.list('Port')]);
    if (values.json)
      return printJson(
        io,
        hosts.map((h) => ({ ...h, alive: h.id in alive })),
      );
    io.out(
      table(
        ['NAME', 'ID', 'ADDRESSES', 'TUNNEL PORT', 'PORTS', 'ALIVE'],
        hosts.map((h) => [
          h.name,
          h.id,
          h.addresses.join(',') || '-',
          String(h.tunnelPort),
          String(ports.filter((p) => p.hostId === h.id).length),
          h.id in alive ? 'yes' : 'no',
        ]),
      ),
    );
  },
};

export const commands = [ls];
