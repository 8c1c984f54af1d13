// Assembles the Docker plugin in one visible place: backend, IPAM driver, network driver, HTTP server.
import type { FastifyInstance } from 'fastify';
import { loadOrCreateHostId } from '../../core/agent/identity.js';
import { Ipam } from '../../core/ipam/ipam.js';
import { openStore } from '../../core/store/open.js';
import type { Store } from '../../core/store/store.js';
import { DEFAULT_TENANT, Topology } from '../../core/topology/service.js';
import { IpamDriver } from './ipam-driver.js';
import { NetworkDriver } from './network-driver.js';
import { buildServer, listenUnix } from './server.js';
import { StoreBackend } from './store-backend.js';
import { DEFAULT_WORKLOAD_SOCKET, WorkloadClient } from './workload-client.js';

export const PLUGIN_NAME = 'midonet';
export const DEFAULT_PLUGIN_SOCKET = `/run/docker/plugins/${PLUGIN_NAME}.sock`;

export interface DriverConfig {
  /** Where the plugin listens (dockerd discovers /run/docker/plugins/<name>.sock). */
  socket: string;
  /** Topology store URL (file:/… or zk://…). */
  store: string;
  workloadSocket: string;
  /** Engine API socket, to record network names on bridges; "" to skip. */
  dockerSocket: string;
  /** This host's id (the agent's), for IPAM block affinity; read from stateDir when absent. */
  hostId?: string;
  stateDir: string;
  tenant: string;
  router: string;
  scope: 'local' | 'global';
  log: boolean;
}

export const DEFAULTS: DriverConfig = {
  socket: DEFAULT_PLUGIN_SOCKET,
  store: process.env.BEES_STORE ?? 'file:/var/lib/bees/store',
  workloadSocket: DEFAULT_WORKLOAD_SOCKET,
  dockerSocket: '/var/run/docker.sock',
  stateDir: '/var/lib/bees',
  tenant: DEFAULT_TENANT,
  router: 'default',
  scope: 'global',
  log: false,
};

export interface RunningDriver {
  app: FastifyInstance;
  network: NetworkDriver;
  ipam: IpamDriver;
  store: Store;
  close(): Promise<void>;
}

export async function startDriver(partial: Partial<DriverConfig> = {}): Promise<RunningDriver> {
  const config: DriverConfig = { ...DEFAULTS, ...partial };
  const store = await openStore(config.store);
  try {
    const hostId = config.hostId ?? loadOrCreateHostId(config.stateDir);
    const backend = new StoreBackend(new Topology(store), new Ipam(store, hostId), new WorkloadClient(config.workloadSocket));
    const ipam = new IpamDriver(backend, {
      tenant: config.tenant,
      v4Pool: { base: '10.200.0.0/16', prefix: 24 },
      v6Pool: { base: 'fd00:bee5::/48', prefix: 64 },
    });
    const network = new NetworkDriver(backend, {
      tenant: config.tenant, router: config.router, scope: config.scope,
      ...(config.dockerSocket ? { dockerSocket: config.dockerSocket } : {}),
    }, ipam);
    const app = buildServer({ network, ipam, log: config.log });
    await listenUnix(app, config.socket);
    return {
      app, network, ipam, store,
      async close() {
        await network.close();
        await app.close();
        await store.close();
      },
    };
  } catch (err) {
    await store.close().catch(() => undefined);
    throw err;
  }
}
