// Fixture: one harness host (testbed/cluster.ts: real agent, store in real ZooKeeper) whose agent serves the
// midonet plugin under a unique legacy plugin name, and a dockerd of its own (live-restore, so containers outlive
// a daemon restart) in the host's namespace. Used by the e2e tests and bench/docker.ts.
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { openStore } from '../../core/store/open.js';
import type { Store } from '../../core/store/store.js';
import { ZooKeeperStore } from '../../core/store/zookeeper.js';
import { Cluster, type ClusterHost } from '../../testbed/cluster.js';
import { startDockerd, type Dockerd } from './dockerd.js';

export { eventually } from '../../testbed/cluster.js';

export interface SingleHost {
  cluster: Cluster;
  host: ClusterHost;
  /** Absent when asked for none. */
  dockerd: Dockerd;
  /** The plugin's name (what `-d` and `--ipam-driver` take). */
  name: string;
  /** The plugin's socket, for direct calls. */
  socket: string;
  /** A client of the cluster's store, for tests to look at what the plugin wrote (never to write). */
  store: Store;
  close(): Promise<void>;
}

export interface SingleHostOptions {
  /** Start a dockerd (default true). */
  dockerd?: boolean;
  /** The agent's plugin socket: absolute, or relative to its run directory (default: the legacy socket of `name`). */
  socket?: string;
  /** A dockerd with Docker's own networking and iptables rules as shipped (dockerd.ts `stock`). */
  stockDockerd?: boolean;
}

export async function startSingleHost(opts: SingleHostOptions = {}): Promise<SingleHost> {
  const name = `mn${randomBytes(3).toString('hex')}`;
  const given = opts.socket ?? `/run/docker/plugins/${name}.sock`;
  // Local scope: a dockerd outside swarm mode refuses networks of global-scope drivers.
  const cluster = await Cluster.start({
    hosts: 1,
    agentArgs: ['--docker-plugin', `unix:${given}`, '--docker-scope', 'local', '--docker-host', 'unix://docker.sock'],
  });
  const socket = isAbsolute(given) ? given : join(cluster.host(0).runDir, given);
  try {
    const host = cluster.host(0);
    const store = syncedReads(await openStore(cluster.storeUrl));
    const dockerd =
      opts.dockerd === false
        ? undefined
        : await startDockerd({
            netns: host.host.nsName,
            socket: join(host.runDir, 'docker.sock'),
            extraArgs: ['--live-restore'],
            ...(opts.stockDockerd ? { stock: true } : {}),
          });
    return {
      cluster,
      host,
      dockerd: dockerd!,
      name,
      socket,
      store,
      async close() {
        await dockerd?.stop().catch(() => undefined);
        await store.close().catch(() => undefined);
        await cluster.close();
        // A killed agent leaves its socket where every dockerd of the machine looks.
        await rm(socket, { force: true });
      },
    };
  } catch (err) {
    await cluster.close();
    await rm(socket, { force: true });
    throw err;
  }
}

/**
 * The test's client is not the agent's: its list() may lag the agent's writes by a moment. Every read first catches
 * up with everything committed before it (ZooKeeperStore.sync), so assertions see what the plugin has done.
 */
export function syncedReads(store: Store): Store {
  const zk = store instanceof ZooKeeperStore ? store : undefined;
  if (!zk) return store;
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (prop !== 'get' && prop !== 'list') return fn.bind(target);
      return async (...args: unknown[]) => {
        await zk.sync();
        return fn.apply(target, args);
      };
    },
  });
}
