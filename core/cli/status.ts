// `bees status`: is the API up, which store it uses, whether the store answers, how much it holds.
import { apiClient, details, parse, printJson, type Command } from './command.js';

const status: Command = {
  name: 'status',
  summary: 'Show the API endpoint, its store, and object counts',
  usage: 'bees status',
  async run(args, io) {
    const { values } = parse(status, args, {}, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const st = await api.status();
    if (values.json) printJson(io, { api: api.endpoint, ...st });
    else {
      const counts = Object.entries(st.counts)
        .filter(([, n]) => n)
        .map(([k, n]) => `${k}=${n}`)
        .join(' ');
      io.out(
        details([
          ['api', api.endpoint],
          ['api version', st.version],
          ['store', st.store],
          ['store reachable', st.reachable ? 'yes' : `no (${st.error ?? 'unknown error'})`],
          ['objects', counts || 'none'],
        ]),
      );
    }
    return st.reachable ? 0 : 1;
  },
};

export const commands = [status];
