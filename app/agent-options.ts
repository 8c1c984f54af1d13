// `bees agent`'s flags as the agent's options: core's flags (core/agent/run.ts), the CNI shim's route always, the
// Docker plugin (swarm/driver/daemon.ts) when `--docker-plugin` asks for it, and Kubernetes NetworkPolicy groups at
// CNI ADD (kubernetes/node/pod-groups.ts) with `--k8s-kubeconfig PATH` (or `in-cluster`), and with
// `--k8s-tenancy namespace` each pod on its namespace's network (kubernetes/controller/tenancy.ts).
import { parseArgs } from 'node:util';
import type { AgentOptions } from '../core/agent/agent.js';
import type { PortGroupResolver } from '../core/agent/port-groups.js';
import type { WorkloadNetworkResolver } from '../core/agent/workload-network.js';
import { AGENT_FLAGS, agentOptionsOf } from '../core/agent/run.js';
import { cniRoute } from '../cni/plugin/route.js';
import { dockerPluginConfigOf, startDockerPlugin } from '../swarm/driver/daemon.js';

const K8S_FLAGS = { 'k8s-kubeconfig': { type: 'string' }, 'k8s-tenancy': { type: 'string' } } as const;

/** The Kubernetes placement of a new pod on its namespace's network (namespace tenancy), loaded when asked for. */
function k8sNetworkOf(kubeconfig: string): WorkloadNetworkResolver {
  let resolver: Promise<WorkloadNetworkResolver> | undefined;
  return async (req) => {
    resolver ??= (async () => {
      const [k8s, { namespaceNetworkResolver }] = await Promise.all([
        import('@kubernetes/client-node'),
        import('../kubernetes/controller/tenancy.js'),
      ]);
      const kc = new k8s.KubeConfig();
      if (kubeconfig === 'in-cluster') kc.loadFromCluster();
      else kc.loadFromFile(kubeconfig);
      return namespaceNetworkResolver(kc, 'namespace');
    })();
    return (await resolver)(req);
  };
}

/** The Kubernetes resolver of a new pod's policy groups, loaded (with client-node) only when asked for. */
function k8sPortGroups(kubeconfig: string): PortGroupResolver {
  let resolver: Promise<PortGroupResolver> | undefined;
  return async (req) => {
    resolver ??= (async () => {
      const [k8s, { podGroupsResolver }] = await Promise.all([
        import('@kubernetes/client-node'),
        import('../kubernetes/node/pod-groups.js'),
      ]);
      const kc = new k8s.KubeConfig();
      if (kubeconfig === 'in-cluster') kc.loadFromCluster();
      else kc.loadFromFile(kubeconfig);
      return podGroupsResolver(kc);
    })();
    return (await resolver)(req);
  };
}

const DOCKER_FLAGS = {
  'docker-plugin': { type: 'string' },
  'docker-scope': { type: 'string' },
  'docker-host': { type: 'string' },
} as const;

/** `--docker-plugin` may come without a value (then: the socket where dockerd discovers legacy plugins). */
function withOptionalValues(argv: string[]): string[] {
  return argv.flatMap((a, i) => (a === '--docker-plugin' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--')) ? [a, ''] : [a]));
}

export function agentOptionsFrom(argv: string[]): AgentOptions {
  const { values } = parseArgs({
    args: withOptionalValues(argv),
    strict: true,
    allowPositionals: false,
    options: { ...AGENT_FLAGS, ...DOCKER_FLAGS, ...K8S_FLAGS },
  });
  const opts = agentOptionsOf(values);
  const docker = dockerPluginConfigOf(
    { plugin: values['docker-plugin'], scope: values['docker-scope'], host: values['docker-host'] },
    opts.runDir,
  );
  const kubeconfig = values['k8s-kubeconfig'];
  const tenancy = values['k8s-tenancy'] ?? 'flat';
  if (tenancy !== 'flat' && tenancy !== 'namespace') throw new Error(`--k8s-tenancy '${tenancy}' is not flat or namespace`);
  if (tenancy === 'namespace' && !kubeconfig) throw new Error('--k8s-tenancy namespace needs --k8s-kubeconfig');
  return {
    ...opts,
    workloadRoutes: [cniRoute],
    ...(docker ? { extraServices: [(agent) => startDockerPlugin(agent, docker)] } : {}),
    ...(kubeconfig ? { portGroups: k8sPortGroups(kubeconfig), portGroupsSource: 'kubernetes' } : {}),
    ...(kubeconfig && tenancy === 'namespace' ? { networkOf: k8sNetworkOf(kubeconfig) } : {}),
  };
}
