// `bees cni install`: put the midonet plugin where container runtimes look for it (/opt/cni/bin) and a conflist
// for the local agent's default network in /etc/cni/net.d — midonet first, then portmap for hostPorts. The
// binary goes in before the conflist: runtimes start using a network the moment its file appears.
import { execFile } from 'node:child_process';
import { access, chmod, constants, copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CliError, parse, printJson, type Command } from '../core/cli/command.js';
import { isCidr } from '../core/net/ip.js';
import { DEFAULT_NETWORK } from '../core/workload/types.js';

const run = promisify(execFile);

export const DEFAULT_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const CONFLIST_NAME = '10-midonet.conflist';
/** Where Debian's containernetworking-plugins live, for portmap when the bin dir has none. */
const SYSTEM_PLUGIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];
const OUR_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];

async function exists(p: string): Promise<boolean> {
  return access(p, constants.X_OK).then(
    () => true,
    () => false,
  );
}

/** The built plugin: $BEES_CNI_BINARY, else dist/cni/midonet of the package this file belongs to. */
async function findBuiltBinary(env: NodeJS.ProcessEnv): Promise<string> {
  if (env.BEES_CNI_BINARY) return env.BEES_CNI_BINARY;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'dist', 'cni', 'midonet');
    if (await exists(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new CliError('cni install: no built plugin found (run `npm run build:cni`, or pass --binary PATH)');
}

/** Copy then rename: a runtime executing the old binary never sees a half-written one ("text file busy"). */
async function installFile(src: string, dest: string, mode: number): Promise<void> {
  const tmp = join(dirname(dest), `.${dest.split('/').pop()}.tmp-${process.pid}`);
  try {
    await copyFile(src, tmp);
    await chmod(tmp, mode);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function writeAtomically(dest: string, text: string): Promise<void> {
  const tmp = join(dirname(dest), `.${dest.split('/').pop()}.tmp-${process.pid}`);
  await writeFile(tmp, text, { mode: 0o644 });
  await rename(tmp, dest);
}

/** The versions a plugin binary says it speaks (CNI VERSION). */
async function versionsOf(binary: string): Promise<string[]> {
  const child = run(binary, [], { env: { CNI_COMMAND: 'VERSION' } });
  child.child.stdin?.end('{"cniVersion":"0.4.0"}');
  const { stdout } = await child;
  const v = JSON.parse(stdout) as { supportedVersions?: unknown };
  if (!Array.isArray(v.supportedVersions)) throw new Error(`${binary} VERSION printed no supportedVersions`);
  return v.supportedVersions.map(String);
}

export interface InstallOptions {
  binDir: string;
  confDir: string;
  binary: string;
  network: string;
  tenant: string;
  subnet?: string;
  agentSocket?: string;
  /** Leave portmap out of the chain. */
  noPortmap: boolean;
}

export interface InstallReport {
  binary: string;
  conflist: string;
  cniVersion: string;
  portmap?: string;
}

export function buildConflist(
  o: Pick<InstallOptions, 'network' | 'tenant' | 'subnet' | 'agentSocket'>,
  cniVersion: string,
  portmap: boolean,
): Record<string, unknown> {
  const midonet: Record<string, unknown> = {
    type: 'midonet',
    tenant: o.tenant,
    network: o.network,
    // The agent does the shaping and honours static IP/MAC requests; hostPorts are portmap's.
    capabilities: { ips: true, mac: true, bandwidth: true },
  };
  if (o.subnet) midonet.subnet = o.subnet;
  if (o.agentSocket) midonet.agentSocket = o.agentSocket;
  const plugins: Record<string, unknown>[] = [midonet];
  if (portmap) plugins.push({ type: 'portmap', capabilities: { portMappings: true }, snat: true });
  return { cniVersion, name: 'midonet', plugins };
}

export async function install(o: InstallOptions): Promise<InstallReport> {
  if (!(await exists(o.binary))) throw new CliError(`cni install: ${o.binary} is not an executable file`);
  await mkdir(o.binDir, { recursive: true });
  await mkdir(o.confDir, { recursive: true });
  const dest = join(o.binDir, 'midonet');
  await installFile(o.binary, dest, 0o755);
  const report: InstallReport = { binary: dest, conflist: join(o.confDir, CONFLIST_NAME), cniVersion: '1.0.0' };
  // The list's version must be one every plugin in it speaks: ask them, take the highest in common.
  let common = await versionsOf(dest);
  if (!o.noPortmap) {
    const portmap = join(o.binDir, 'portmap');
    if (!(await exists(portmap))) {
      const found = (
        await Promise.all(SYSTEM_PLUGIN_DIRS.map(async (d) => ((await exists(join(d, 'portmap'))) ? join(d, 'portmap') : undefined)))
      ).find(Boolean);
      if (!found)
        throw new CliError(
          `cni install: portmap is not in ${o.binDir} nor ${SYSTEM_PLUGIN_DIRS.join(', ')} (install containernetworking-plugins, or pass --no-portmap)`,
        );
      await installFile(found, portmap, 0o755);
    }
    report.portmap = portmap;
    const pm = await versionsOf(portmap);
    common = common.filter((v) => pm.includes(v));
  }
  const best = OUR_VERSIONS.filter((v) => common.includes(v) && v >= '0.4.0').at(-1); // CHECK needs 0.4.0+ (Kubernetes)
  if (!best) throw new CliError(`cni install: midonet and portmap share no CNI version >= 0.4.0 (${common.join(', ') || 'none'})`);
  report.cniVersion = best;
  await writeAtomically(report.conflist, JSON.stringify(buildConflist(o, best, !o.noPortmap), null, 2) + '\n');
  return report;
}

const cniInstall: Command = {
  name: 'cni install',
  summary: "Install the midonet CNI plugin and a conflist for the local agent's network",
  usage: `bees cni install [--bin-dir DIR] [--conf-dir DIR] [--binary PATH] [--network NAME] [--tenant NAME]
                 [--subnet CIDR] [--agent-socket PATH] [--no-portmap] [--json]
  --bin-dir DIR        where runtimes find plugins (default ${DEFAULT_BIN_DIR})
  --conf-dir DIR       where runtimes find network configs (default ${DEFAULT_CONF_DIR})
  --binary PATH        the plugin executable to install (default: dist/cni/midonet, or $BEES_CNI_BINARY)
  --network NAME       virtual network the pods join (default "${DEFAULT_NETWORK}", the one \`bees up\` creates)
  --tenant NAME        its tenant (default "default")
  --subnet CIDR        create the network with this subnet on first use
  --agent-socket PATH  the agent's workload API socket (default /run/bees/workload.sock)
  --no-portmap         leave portmap (hostPort support) out of the chain`,
  async run(args, io) {
    const { values } = parse(
      cniInstall,
      args,
      {
        'bin-dir': { type: 'string' },
        'conf-dir': { type: 'string' },
        binary: { type: 'string' },
        network: { type: 'string' },
        tenant: { type: 'string' },
        subnet: { type: 'string' },
        'agent-socket': { type: 'string' },
        'no-portmap': { type: 'boolean' },
      },
      { min: 0, max: 0 },
    );
    const subnet = values.subnet;
    if (subnet !== undefined && !isCidr(subnet)) throw new CliError(`--subnet: '${values.subnet}' is not a CIDR such as 10.1.0.0/24`, 2);
    const o: InstallOptions = {
      binDir: resolve(values['bin-dir'] ?? DEFAULT_BIN_DIR),
      confDir: resolve(values['conf-dir'] ?? DEFAULT_CONF_DIR),
      binary: values.binary ? resolve(values.binary) : await findBuiltBinary(io.env),
      network: values.network ?? DEFAULT_NETWORK,
      tenant: values.tenant ?? 'default',
      noPortmap: values['no-portmap'] ?? false,
    };
    if (values.subnet) o.subnet = values.subnet;
    if (values['agent-socket']) o.agentSocket = resolve(values['agent-socket']);
    const report = await install(o);
    if (values.json) printJson(io, report);
    else
      io.out(
        `installed ${report.binary}${report.portmap ? ` (with ${report.portmap})` : ''}\nwrote ${report.conflist} (cniVersion ${report.cniVersion})\n`,
      );
    return 0;
  },
};

export const commands = [cniInstall];
