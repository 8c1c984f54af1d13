// `bees api`: serves the REST API on a store until SIGTERM/SIGINT.
import { ENV, serverSecrets } from '../api/credentials.js';
import { CliError, parse, type Command } from './command.js';

const api: Command = {
  name: 'api',
  summary: 'Run the topology REST API on a store',
  usage: `bees api --store URL --listen unix:PATH|tcp://HOST:PORT [--token-file FILE] [--read-token-file FILE]
         [--tls-cert FILE --tls-key FILE]
  --store URL             file:/var/lib/bees/store or zk://host:port/root
  --listen EP             where to serve; a unix socket gets mode 0600 and needs no token; TCP beyond loopback
                          needs TLS and a token
  --token-file FILE       bearer token demanded on TCP (default $${ENV.token}); never on the command line
  --read-token-file FILE  a token that may only GET, /metrics included (default $${ENV.readToken})
  --tls-cert FILE         serve HTTPS with this certificate (PEM), with --tls-key FILE its key
  --log                   log every request (fastify/pino JSON on stdout)`,
  async run(args, io) {
    const { values } = parse(
      api,
      args,
      {
        store: { type: 'string' },
        listen: { type: 'string' },
        log: { type: 'boolean' },
        'read-token-file': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    if (!values.store) throw new CliError('api: --store URL is required', 2);
    if (!values.listen) throw new CliError('api: --listen unix:PATH|tcp://HOST:PORT is required', 2);
    let secrets;
    try {
      secrets = serverSecrets(
        {
          tokenFile: values['token-file'],
          readTokenFile: values['read-token-file'],
          tlsCert: values['tls-cert'],
          tlsKey: values['tls-key'],
        },
        io.env,
      );
    } catch (err) {
      throw new CliError(`api: ${(err as Error).message}`, 2);
    }
    // Heavy modules load only when this command runs.
    const { openStore } = await import('../store/open.js');
    const { Topology } = await import('../topology/service.js');
    const { buildApi, listen } = await import('../api/server.js');
    const store = await openStore(values.store);
    const app = buildApi({ topology: new Topology(store), store, ...secrets, logger: !!values.log });
    let where: string;
    try {
      where = await listen(app, values.listen);
    } catch (err) {
      await app.close();
      await store.close();
      throw new CliError((err as Error).message);
    }
    if (!where.startsWith('unix:') && !secrets.token && !secrets.readToken)
      io.err('bees api: warning: TCP listener without a token: anyone on this machine can change the topology\n');
    io.err(`bees api: listening on ${where} (store ${store.url})\n`);
    process.on('unhandledRejection', (err) => io.err(`bees api: unhandled: ${(err as Error)?.stack ?? String(err)}\n`));
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        io.err(`bees api: ${sig}, stopping\n`);
        resolve();
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    await app.close();
    await store.close();
    return 0;
  },
};

export const commands = [api];
