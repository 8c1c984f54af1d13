// The managed (v2) plugin's whole program, compiled by bun into its rootfs: accept dockerd's calls on the
// plugin socket and pipe each connection to the agent's plugin socket, reached through the /run/bees mount.
// It holds no state and no store connection; while the agent is down a call fails and dockerd retries it.
import { createConnection, createServer } from 'node:net';
import { rmSync } from 'node:fs';

const listenOn = process.env.BEES_PLUGIN_SOCKET || '/run/docker/plugins/midonet.sock';
const agent = process.env.BEES_AGENT_SOCKET || '/run/bees/docker-plugin.sock';

rmSync(listenOn, { force: true });
const server = createServer((client) => {
  const upstream = createConnection(agent);
  client.pipe(upstream).pipe(client);
  upstream.on('error', (err) => {
    process.stderr.write(`bees plugin proxy: ${agent}: ${err.message}\n`);
    client.destroy();
  });
  client.on('error', () => upstream.destroy());
});
server.listen(listenOn, () => process.stderr.write(`bees plugin proxy: ${listenOn} -> ${agent}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => server.close(() => process.exit(0)));
