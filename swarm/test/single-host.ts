// Fixture: one harness host running a real agent (store in real ZooKeeper), a dockerd of its own in the host's
// namespace, and the midonet driver under a unique plugin name. Used by the e2e test and bench/docker.ts.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadOrCreateHostId } from '../../core/agent/identity.js';
import { ZooKeeperServer } from '../../core/testing/zookeeper.js';
import { Harness, type HarnessHost } from '../../e2e/harness/index.js';
import { startDriver, type RunningDriver } from '../driver/daemon.js';
import { WorkloadClient } from '../driver/workload-client.js';
import { startDockerd, type Dockerd } from './dockerd.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface SingleHost {
  harness: Harness;
  host: HarnessHost;
  dockerd: Dockerd;
  driver: RunningDriver;
  /** The driver's plugin name (what `-d` and `--ipam-driver` take). */
  name: string;
  close(): Promise<void>;
}

export async function eventually<T>(fn: () => Promise<T | undefined>, withinMs: number, what: string): Promise<T> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export async function startSingleHost(): Promise<SingleHost> {
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
  };
  try {
    const zk = await ZooKeeperServer.start({ clientPortAddress: '0.0.0.0' });
    closers.push(() => zk.stop());
    const harness = await Harness.create({ hosts: 1 });
    closers.push(() => harness.destroy());
    const host = harness.hosts[0]!;
    const root = `/bees-docker-${randomBytes(3).toString('hex')}`;
    const run = join(host.stateDir, 'run');
    const workloadSocket = join(run, 'workload.sock');
    harness.spawn(host, [
      process.execPath, '--import', 'tsx', join(ROOT, 'swarm/test/agent-proc.ts'),
      '--store', `zk://${harness.rootIp}:${zk.port}${root}`, '--state-dir', host.stateDir, '--run-dir', run,
      '--underlay-ip', host.underlayIp, '--router-ns-prefix', host.routerNsPrefix, '--listen', `unix:${join(run, 'api.sock')}`,
    ], { logName: 'agent', env: { ...process.env, NODE_OPTIONS: '' } });
    const client = new WorkloadClient(workloadSocket);
    await eventually(async () => ((await client.status()).ready ? true : undefined), 60_000, 'agent ready');
    const dockerd = await startDockerd({ netns: host.nsName });
    closers.push(() => dockerd.stop());
    const name = `mn${randomBytes(3).toString('hex')}`;
    // Local scope: a dockerd outside swarm mode refuses networks of global-scope drivers.
    const driver = await startDriver({
      socket: `/run/docker/plugins/${name}.sock`, store: `zk://127.0.0.1:${zk.port}${root}`, workloadSocket,
      dockerSocket: dockerd.socket, hostId: loadOrCreateHostId(host.stateDir), stateDir: host.stateDir, scope: 'local',
    });
    closers.push(() => driver.close());
    return { harness, host, dockerd, driver, name, close };
  } catch (err) {
    await close();
    throw err;
  }
}
