// `bees mesos config --out DIR`: what a Mesos agent needs to put tasks on a bees network through its
// `network/cni` isolator: agent flags, and one single-plugin 0.2.0 config (Mesos reads neither conflists nor
// results newer than 0.2.0: with a 0.3+ result it gets no IP for the task).
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CliError, parse, printJson, type Command } from '../core/cli/command.js';
import { isCidr } from '../core/net/ip.js';
import { DEFAULT_NETWORK } from '../core/workload/types.js';

export interface MesosConfigOptions {
  out: string;
  /** The CNI network name tasks ask for (`network_infos[].name`, Marathon `networks[].name`). */
  name: string;
  network: string;
  tenant: string;
  subnet?: string;
  pluginsDir: string;
  agentSocket?: string;
}

export function mesosNetworkConfig(o: Omit<MesosConfigOptions, 'out' | 'pluginsDir'>): Record<string, unknown> {
  const conf: Record<string, unknown> = { cniVersion: '0.2.0', name: o.name, type: 'midonet', tenant: o.tenant, network: o.network };
  if (o.subnet) conf.subnet = o.subnet;
  if (o.agentSocket) conf.agentSocket = o.agentSocket;
  return conf;
}

export async function writeMesosConfig(o: MesosConfigOptions): Promise<{ configDir: string; config: string; flags: string; env: string }> {
  const configDir = join(o.out, 'net.d');
  await mkdir(configDir, { recursive: true });
  const config = join(configDir, `${o.name}.json`);
  await writeFile(config, JSON.stringify(mesosNetworkConfig(o), null, 2) + '\n');
  const flags = join(o.out, 'mesos-agent.flags');
  await writeFile(
    flags,
    [`--isolation=filesystem/linux,network/cni`, `--network_cni_config_dir=${configDir}`, `--network_cni_plugins_dir=${o.pluginsDir}`].join(
      '\n',
    ) + '\n',
  );
  const env = join(o.out, 'mesos-agent.env');
  await writeFile(
    env,
    [
      `MESOS_ISOLATION=filesystem/linux,network/cni`,
      `MESOS_NETWORK_CNI_CONFIG_DIR=${configDir}`,
      `MESOS_NETWORK_CNI_PLUGINS_DIR=${o.pluginsDir}`,
    ].join('\n') + '\n',
  );
  return { configDir, config, flags, env };
}

const mesosConfig: Command = {
  name: 'mesos config',
  summary: 'Write Mesos agent flags and a CNI config putting tasks on a bees network',
  usage: `bees mesos config --out DIR [--name NAME] [--network NAME] [--tenant NAME] [--subnet CIDR]
                  [--plugins-dir DIR] [--agent-socket PATH] [--json]
  --out DIR            where to write net.d/NAME.json, mesos-agent.flags and mesos-agent.env
  --name NAME          the CNI network name tasks ask for (default "midonet", as \`bees cni install\` names it)
  --network NAME       virtual network (default "${DEFAULT_NETWORK}", the one \`bees up\` creates)
  --tenant NAME        its tenant (default "default")
  --subnet CIDR        create the network with this subnet on first use
  --plugins-dir DIR    where the midonet binary is (default /opt/cni/bin; see \`bees cni install\`)`,
  async run(args, io) {
    const { values } = parse(
      mesosConfig,
      args,
      {
        out: { type: 'string' },
        name: { type: 'string' },
        network: { type: 'string' },
        tenant: { type: 'string' },
        subnet: { type: 'string' },
        'plugins-dir': { type: 'string' },
        'agent-socket': { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    if (!values.out) throw new CliError('mesos config: --out DIR is required', 2);
    const subnet = values.subnet;
    if (subnet !== undefined && !isCidr(subnet)) throw new CliError(`--subnet: '${values.subnet}' is not a CIDR such as 10.1.0.0/24`, 2);
    const name = values.name ?? 'midonet';
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
      throw new CliError(`--name: '${name}' must start with a letter or digit, then letters, digits, '_', '.', '-'`, 2);
    const o: MesosConfigOptions = {
      out: resolve(values.out),
      name,
      network: values.network ?? DEFAULT_NETWORK,
      tenant: values.tenant ?? 'default',
      pluginsDir: resolve(values['plugins-dir'] ?? '/opt/cni/bin'),
    };
    if (values.subnet) o.subnet = values.subnet;
    if (values['agent-socket']) o.agentSocket = resolve(values['agent-socket']);
    const written = await writeMesosConfig(o);
    if (values.json) printJson(io, written);
    else io.out(`wrote ${written.config}\nwrote ${written.flags} and ${written.env}: start mesos-agent with these flags\n`);
    return 0;
  },
};

export const commands = [mesosConfig];
