// `bees docker driver`: run the libnetwork plugin (also the entrypoint of the managed plugin's rootfs).
import { parseArgs } from 'node:util';
import { DEFAULTS, startDriver, type DriverConfig } from './daemon.js';

export const DRIVER_USAGE = `usage: bees docker driver [--socket PATH] [--store URL] [--workload-socket PATH] [--docker-socket PATH]
       [--host-id UUID] [--state-dir DIR] [--tenant NAME] [--router NAME|none] [--scope global|local] [--log]
Serves Docker's NetworkDriver and IpamDriver plugin APIs (driver name "midonet").`;

export function parseDriverArgs(argv: string[]): Partial<DriverConfig> {
  const { values } = parseArgs({
    args: argv,
    options: {
      socket: { type: 'string' }, store: { type: 'string' }, 'workload-socket': { type: 'string' },
      'docker-socket': { type: 'string' }, 'host-id': { type: 'string' }, 'state-dir': { type: 'string' },
      tenant: { type: 'string' }, router: { type: 'string' }, scope: { type: 'string' }, log: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.scope !== undefined && values.scope !== 'global' && values.scope !== 'local') {
    throw new Error(`--scope must be global or local, got ${values.scope}`);
  }
  const out: Partial<DriverConfig> = {};
  if (values.socket) out.socket = values.socket;
  if (values.store) out.store = values.store;
  if (values['workload-socket']) out.workloadSocket = values['workload-socket'];
  if (values['docker-socket'] !== undefined) out.dockerSocket = values['docker-socket'];
  if (values['host-id']) out.hostId = values['host-id'];
  if (values['state-dir']) out.stateDir = values['state-dir'];
  if (values.tenant) out.tenant = values.tenant;
  if (values.router) out.router = values.router;
  if (values.scope) out.scope = values.scope as DriverConfig['scope'];
  if (values.log) out.log = true;
  return out;
}

/** Runs until SIGINT/SIGTERM; returns the exit code. */
export async function runDriver(argv: string[]): Promise<number> {
  let config: Partial<DriverConfig>;
  try {
    config = parseDriverArgs(argv);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${DRIVER_USAGE}\n`);
    return 2;
  }
  const driver = await startDriver(config);
  process.stderr.write(`midonet docker driver listening on ${config.socket ?? DEFAULTS.socket}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await driver.close();
  return 0;
}

// Run directly (node/tsx, or the bun-compiled executable of the managed plugin).
const entry = process.argv[1] ?? '';
if (/swarm\/driver\/main\.[jt]s$/.test(entry) || process.env.BEES_DOCKER_DRIVER_MAIN === '1') {
  runDriver(process.argv.slice(2)).then((code) => process.exit(code), (err: Error) => {
    process.stderr.write(`midonet docker driver: ${err.message}\n`);
    process.exit(1);
  });
}
