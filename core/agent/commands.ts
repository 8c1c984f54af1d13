// `bees attach`, `bees detach`: using the local agent's workload API by hand (MidoNet's `mm-ctl --bind-port`, in
// spirit). `bees agent` and `bees up`, which run the agent with its adapters, are app/agent.ts's.
import { CliError, parse, printJson, table, type Command, type CommandModule, type Io } from '../cli/command.js';
import { DEFAULT_WORKLOAD_SOCKET, WorkloadClient, WorkloadApiError } from '../workload/client.js';
import type { AttachResult } from '../workload/types.js';

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

const attach: Command = {
  name: 'attach',
  summary: 'Attach a network namespace to a virtual network (through the local agent)',
  usage: `bees attach --netns PATH --network NET [--tenant T] [--ifname eth0] [--ip IP]... [--mac MAC] [--id WORKLOAD]
  [--socket PATH] [--json]
  --id WORKLOAD   workload identity (default: the netns path); attaching again returns the same port`,
  async run(args, io) {
    const { values } = parse(
      attach,
      args,
      {
        netns: { type: 'string' },
        network: { type: 'string' },
        tenant: { type: 'string' },
        ifname: { type: 'string' },
        ip: { type: 'string', multiple: true },
        mac: { type: 'string' },
        id: { type: 'string' },
        socket: { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    if (!values.netns) throw new CliError('attach: --netns PATH is required', 2);
    if (!values.network) throw new CliError('attach: --network NET is required', 2);
    const res: AttachResult = await call('attach', () =>
      workloadClient(values, io).attach({
        orchestrator: 'cli',
        workloadId: values.id ?? values.netns!,
        ifname: values.ifname ?? 'eth0',
        netns: values.netns!,
        network: values.network!,
        ...(values.tenant ? { tenant: values.tenant } : {}),
        ...(values.ip?.length ? { ips: values.ip } : {}),
        ...(values.mac ? { mac: values.mac } : {}),
      }),
    );
    if (values.json) return printJson(io, res);
    io.out(
      table(
        ['PORT', 'INTERFACE', 'MAC', 'ADDRESSES', 'GATEWAY', 'MTU'],
        [
          [
            res.portId,
            `${res.interface.name} (host ${res.hostInterface.name})`,
            res.interface.mac,
            res.ips.map((i) => i.address).join(' '),
            res.ips
              .map((i) => i.gateway ?? '')
              .filter(Boolean)
              .join(' '),
            String(res.mtu),
          ],
        ],
      ),
    );
  },
};

const detach: Command = {
  name: 'detach',
  summary: 'Detach a workload interface (idempotent)',
  usage: 'bees detach (--id WORKLOAD | --netns PATH) [--network NET] [--tenant T] [--ifname eth0] [--socket PATH]',
  async run(args, io) {
    const { values } = parse(
      detach,
      args,
      {
        netns: { type: 'string' },
        network: { type: 'string' },
        tenant: { type: 'string' },
        ifname: { type: 'string' },
        id: { type: 'string' },
        socket: { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    const id = values.id ?? values.netns;
    if (!id) throw new CliError('detach: --id WORKLOAD or --netns PATH is required', 2);
    await call('detach', () =>
      workloadClient(values, io).detach({
        orchestrator: 'cli',
        workloadId: id,
        ifname: values.ifname ?? 'eth0',
        ...(values.network ? { network: values.network } : {}),
        ...(values.tenant ? { tenant: values.tenant } : {}),
      }),
    );
    if (values.json) return printJson(io, {});
    io.out(`detached ${id} ${values.ifname ?? 'eth0'}\n`);
  },
};

export const commands: Command[] = [attach, detach];
export default { commands } satisfies CommandModule;
