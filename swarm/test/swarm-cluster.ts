// Fixture: a Docker swarm over e2e harness hosts. One real agent per host (store in real ZooKeeper) serving the
// plugin socket in its run directory with global scope, one dockerd per host namespace (init on the first, join on
// the others), the managed plugin (a proxy to the local agent) enabled on every node under a unique name.
// Used by swarm.test.ts and bench/docker.ts.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from '../../testbed/cluster.js';
import { AGENT_PLUGIN_SOCKET_NAME } from '../driver/plugin-name.js';
import { buildManagedPlugin } from '../install/managed.js';
import { dockerClient, installManagedPlugin } from '../install/plugin-lifecycle.js';
import { startDockerd, type Dockerd } from './dockerd.js';

export interface Swarm {
  cluster: Cluster;
  /** One dockerd per cluster host, in the same order; the first is the manager. */
  daemons: Dockerd[];
  manager: Dockerd;
  /** The plugin's name on every node (what `-d` and `--ipam-driver` take). */
  plugin: string;
  close(): Promise<void>;
}

export async function startSwarm(hosts: number): Promise<Swarm> {
  const cluster = await Cluster.start({
    hosts,
    agentArgs: ['--docker-plugin', `unix:${AGENT_PLUGIN_SOCKET_NAME}`, '--docker-scope', 'global', '--docker-host', 'unix://docker.sock'],
  });
  const daemons: Dockerd[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'bees-swarm-plugin-'));
  const close = async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await cluster.close();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const [pluginDir] = await Promise.all([
      buildManagedPlugin({ out: join(dir, 'plugin') }),
      ...cluster.hosts.map(async (h, i) => {
        daemons[i] = await startDockerd({ netns: h.host.nsName, socket: join(h.runDir, 'docker.sock') });
      }),
    ]);
    const plugin = `bees-test/mn${randomBytes(3).toString('hex')}:latest`;
    await Promise.all(
      daemons.map(async (d, i) => {
        await installManagedPlugin(dockerClient(d.host), { name: plugin, dir: pluginDir, runDir: cluster.host(i).runDir });
      }),
    );
    const [manager, ...workers] = daemons as [Dockerd, ...Dockerd[]];
    const ip0 = cluster.host(0).host.underlayIp;
    await manager.docker(['swarm', 'init', '--advertise-addr', ip0, '--listen-addr', `${ip0}:2377`]);
    const token = await manager.docker(['swarm', 'join-token', '-q', 'worker']);
    await Promise.all(
      workers.map((d, i) => {
        const ip = cluster.host(i + 1).host.underlayIp;
        return d.docker(['swarm', 'join', '--token', token, '--advertise-addr', ip, '--listen-addr', `${ip}:2377`, `${ip0}:2377`]);
      }),
    );
    return { cluster, daemons, manager, plugin, close };
  } catch (err) {
    await close();
    throw err;
  }
}
