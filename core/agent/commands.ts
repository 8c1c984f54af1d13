// `bees agent`, `bees up`, `bees attach`, `bees detach`: running the per-host agent and using its workload API
// by hand (MidoNet's `mm-ctl --bind-port`, in spirit).
import { CliError, parse, printJson, table, type Command, type CommandModule, type Io } from '../cli/command.js';
import { DEFAULT_WORKLOAD_SOCKET, WorkloadClient, WorkloadApiError } from '../workload/client.js';
import type { AttachResult } from '../workload/types.js';
import { AGENT_USAGE } from './run.js';

function workloadClient(values: { socket?: string }, io: Io): WorkloadClient {
  return new WorkloadClient(values.socket ?? io.env.BEES_WORKLOAD_SOCKET ?? DEFAULT_WORKLOAD_SOCKET);
}

/** Run a workload API call, turning its errors into the CLI's one-line form. */
async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof WorkloadApiError) throw new CliError(`${what}: ${err.message}`, err.status === 503 ? 3 : 1);
    throw err;
  }
}

const agent: Command = {
  name: 'agent',
  summary: 'Run the per-host agent (API, workload API, datapath reconciliation)',
  usage: AGENT_USAGE,
  rawArgs: true,
  async run(args) {
    const { agentOptionsFrom, runAgentUntilSignal } = await import('./run.js');
    let opts;
    try {
      opts = agentOptionsFrom(args);
    } catch (err) {
      throw new CliError(`agent: ${(err as Error).message}\nusage: ${AGENT_USAGE.split('\n')[0]}`, 2);
    }
    await runAgentUntilSignal(opts);
  },
};

const up: Command = {
  name: 'up',
  summary: 'Run an agent on this machine on the embedded store, with a default network and a quick demo',
  usage: `bees up [--state-dir DIR] [--network NAME] [--subnet CIDR] [--subnet6 CIDR] [--no-demo] [--underlay-ip IP]
       [--docker | --no-docker]
  Starts the agent on file:<state-dir>/store (default /var/lib/bees), creates the default network (10.244.0.0/16 and
  fd00:bee::/64 unless given), shows two workloads on it reaching each other, the gateway and the host, then keeps
  serving the CNI plugin and the Docker driver until interrupted. The Docker driver ("midonet", local scope, on
  /run/docker/plugins/midonet.sock) is served when /run/docker/plugins exists (dockerd runs here) or --docker.`,
  rawArgs: true,
  async run(args, io) {
    const { values } = parse(up, args, {
      'state-dir': { type: 'string' }, network: { type: 'string' }, subnet: { type: 'string' }, subnet6: { type: 'string' },
      'no-demo': { type: 'boolean' }, 'underlay-ip': { type: 'string' }, store: { type: 'string' },
      docker: { type: 'boolean' }, 'no-docker': { type: 'boolean' },
    }, { min: 0, max: 0 });
    if (values.docker && values['no-docker']) throw new CliError('up: --docker and --no-docker contradict each other', 2);
    const { existsSync } = await import('node:fs');
    const docker = values.docker || (!values['no-docker'] && existsSync('/run/docker/plugins'));
    const { runAgentUntilSignal } = await import('./run.js');
    const { localDemo, ensureDefaultNetwork } = await import('./up.js');
    const stateDir = values['state-dir'] ?? '/var/lib/bees';
    await runAgentUntilSignal(
      {
        store: values.store ?? `file:${stateDir}/store`, stateDir,
        ...(values['underlay-ip'] ? { underlayIp: values['underlay-ip'] } : {}),
        ...(docker ? { extraServices: [async (a) => (await import('../../swarm/driver/daemon.js')).startDockerPlugin(a)] } : {}),
      },
      async (a) => {
        const net = await ensureDefaultNetwork(a, {
          name: values.network ?? 'default', subnet: values.subnet ?? '10.244.0.0/16', subnet6: values.subnet6 ?? 'fd00:bee::/64',
        });
        io.out(`bees: agent ready on host ${a.hostId}; network '${net.name}' (${net.subnets.map((s) => s.cidr).join(', ')})\n`);
        io.out(`bees: API ${a.apiEndpoint}, workload API ${a.workloadEndpoint}\n`);
        if (docker) io.out('bees: Docker driver "midonet" on /run/docker/plugins/midonet.sock (docker network create -d midonet --ipam-driver midonet …)\n');
        if (!values['no-demo']) await localDemo(a, net.name, io);
        io.out('bees: serving; Ctrl-C stops the agent (workloads keep their network)\n');
      },
    );
  },
};

const attach: Command = {
  name: 'attach',
  summary: 'Attach a network namespace to a virtual network (through the local agent)',
  usage: `bees attach --netns PATH --network NET [--tenant T] [--ifname eth0] [--ip IP]... [--mac MAC] [--id WORKLOAD]
  [--socket PATH] [--json]
  --id WORKLOAD   workload identity (default: the netns path); attaching again returns the same port`,
  async run(args, io) {
    const { values } = parse(attach, args, {
      netns: { type: 'string' }, network: { type: 'string' }, tenant: { type: 'string' }, ifname: { type: 'string' },
      ip: { type: 'string', multiple: true }, mac: { type: 'string' }, id: { type: 'string' }, socket: { type: 'string' },
    }, { min: 0, max: 0 });
    if (!values.netns) throw new CliError('attach: --netns PATH is required', 2);
    if (!values.network) throw new CliError('attach: --network NET is required', 2);
    const res: AttachResult = await call('attach', () => workloadClient(values, io).attach({
      orchestrator: 'cli', workloadId: values.id ?? values.netns!, ifname: values.ifname ?? 'eth0', netns: values.netns!,
      network: values.network!, ...(values.tenant ? { tenant: values.tenant } : {}),
      ...(values.ip?.length ? { ips: values.ip } : {}), ...(values.mac ? { mac: values.mac } : {}),
    }));
    if (values.json) return printJson(io, res);
    io.out(table(['PORT', 'INTERFACE', 'MAC', 'ADDRESSES', 'GATEWAY', 'MTU'], [[
      res.portId, `${res.interface.name} (host ${res.hostInterface.name})`, res.interface.mac,
      res.ips.map((i) => i.address).join(' '), res.ips.map((i) => i.gateway ?? '').filter(Boolean).join(' '), String(res.mtu),
    ]]));
  },
};

const detach: Command = {
  name: 'detach',
  summary: 'Detach a workload interface (idempotent)',
  usage: 'bees detach (--id WORKLOAD | --netns PATH) [--network NET] [--tenant T] [--ifname eth0] [--socket PATH]',
  async run(args, io) {
    const { values } = parse(detach, args, {
      netns: { type: 'string' }, network: { type: 'string' }, tenant: { type: 'string' }, ifname: { type: 'string' },
      id: { type: 'string' }, socket: { type: 'string' },
    }, { min: 0, max: 0 });
    const id = values.id ?? values.netns;
    if (!id) throw new CliError('detach: --id WORKLOAD or --netns PATH is required', 2);
    await call('detach', () => workloadClient(values, io).detach({
      orchestrator: 'cli', workloadId: id, ifname: values.ifname ?? 'eth0',
      ...(values.network ? { network: values.network } : {}), ...(values.tenant ? { tenant: values.tenant } : {}),
    }));
    if (values.json) return printJson(io, {});
    io.out(`detached ${id} ${values.ifname ?? 'eth0'}\n`);
  },
};

export const commands: Command[] = [agent, up, attach, detach];
export default { commands } satisfies CommandModule;
