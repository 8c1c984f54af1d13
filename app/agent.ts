// The agent with its adapters: `bees agent` and `bees up`. Core's agent knows no adapter; here it gets the CNI
// shim's route on its workload server (cni/plugin/route.ts) and, when asked for, the Docker plugin as a hosted
// service (swarm/driver/daemon.ts). Heavy modules load inside run(), so `bees help` stays quick; the flags are
// turned into the agent's options in ./agent-options.ts.
import { CliError, parse, type Command, type CommandModule } from '../core/cli/command.js';
import { DEFAULT_TUNNEL_PORT } from '../core/model/defaults.js';
import { DEFAULT_NETWORK } from '../core/workload/types.js';

export const AGENT_USAGE = `bees agent --store URL [--host-id UUID] [--host-name NAME] [--underlay-ip IP] [--tunnel-port ${DEFAULT_TUNNEL_PORT}]
           [--listen unix:PATH|tcp://HOST:PORT] [--token-file FILE] [--read-token-file FILE]
           [--tls-cert FILE --tls-key FILE] [--workload-socket PATH]
           [--state-dir DIR] [--run-dir DIR] [--router-ns-prefix P] [--flow-log] [--log-format text|json] [--network-linger SECONDS]
           [--docker-plugin [unix:PATH]] [--docker-scope local|global] [--docker-host unix://PATH]
           [--k8s-kubeconfig PATH|in-cluster] [--k8s-tenancy flat|namespace]
           [--metrics-listen ADDR:PORT [--metrics-token-file FILE]] [--fast-path on|off]`;

const agent: Command = {
  name: 'agent',
  summary: 'Run the per-host agent (API, workload API, datapath reconciliation)',
  usage: AGENT_USAGE,
  rawArgs: true,
  async run(args) {
    const { runAgentUntilSignal } = await import('../core/agent/run.js');
    const { agentOptionsFrom } = await import('./agent-options.js');
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
       [--docker | --no-docker] [--run-dir DIR] [--router-ns-prefix P]
  Starts the agent on file:<state-dir>/store (default /var/lib/bees), creates the default network ("${DEFAULT_NETWORK}",
  10.244.0.0/16 and fd00:bee::/64 unless given), shows two workloads on it reaching each other, the gateway and the
  host, then keeps serving the CNI plugin and the Docker driver until interrupted. The Docker driver ("midonet",
  local scope, on /run/docker/plugins/midonet.sock) is served when /run/docker/plugins exists (dockerd runs here)
  or --docker. The API sockets are in the run directory (default /run/bees); router namespaces are named
  P<router id> (P defaults to br-).`,
  rawArgs: true,
  async run(args, io) {
    const { values } = parse(
      up,
      args,
      {
        'state-dir': { type: 'string' },
        network: { type: 'string' },
        subnet: { type: 'string' },
        subnet6: { type: 'string' },
        'no-demo': { type: 'boolean' },
        'underlay-ip': { type: 'string' },
        store: { type: 'string' },
        docker: { type: 'boolean' },
        'no-docker': { type: 'boolean' },
        'router-ns-prefix': { type: 'string' },
        'run-dir': { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    if (values.docker && values['no-docker']) throw new CliError('up: --docker and --no-docker contradict each other', 2);
    const { existsSync } = await import('node:fs');
    const docker = values.docker || (!values['no-docker'] && existsSync('/run/docker/plugins'));
    const { runAgentUntilSignal } = await import('../core/agent/run.js');
    const { localDemo, ensureDefaultNetwork } = await import('../core/agent/up.js');
    const { cniRoute } = await import('../cni/plugin/route.js');
    const { startDockerPlugin } = await import('../swarm/driver/daemon.js');
    const stateDir = values['state-dir'] ?? '/var/lib/bees';
    await runAgentUntilSignal(
      {
        store: values.store ?? `file:${stateDir}/store`,
        stateDir,
        workloadRoutes: [cniRoute],
        ...(values['underlay-ip'] ? { underlayIp: values['underlay-ip'] } : {}),
        ...(values['router-ns-prefix'] ? { routerNsPrefix: values['router-ns-prefix'] } : {}),
        ...(values['run-dir'] ? { runDir: values['run-dir'] } : {}),
        ...(docker ? { extraServices: [(a) => startDockerPlugin(a)] } : {}),
      },
      async (a, interrupted) => {
        const net = await ensureDefaultNetwork(a, {
          name: values.network ?? DEFAULT_NETWORK,
          subnet: values.subnet ?? '10.244.0.0/16',
          subnet6: values.subnet6 ?? 'fd00:bee::/64',
        });
        io.out(`bees: agent ready on host ${a.hostId}; network '${net.name}' (${net.subnets.map((s) => s.cidr).join(', ')})\n`);
        io.out(`bees: API ${a.apiEndpoint}, workload API ${a.workloadEndpoint}\n`);
        if (docker)
          io.out(
            'bees: Docker driver "midonet" on /run/docker/plugins/midonet.sock (docker network create -d midonet --ipam-driver midonet …)\n',
          );
        if (!values['no-demo']) await localDemo(a, net.name, io, interrupted);
        if (interrupted.aborted) return;
        io.out('bees: serving; Ctrl-C stops the agent (workloads keep their network)\n');
      },
    );
  },
};

export const commands: Command[] = [agent, up];
export default { commands } satisfies CommandModule;
