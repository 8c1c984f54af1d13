// Kubernetes commands: `bees image build` (the node agent's image), `bees k8s agent` (the DaemonSet's agent: `bees
// agent` that writes the node's conflist once ready) and `bees k8s probe` (the DaemonSet's probes).
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { apiClient, CliError, COMMON_OPTIONS, parse, printJson, type Command, type CommandModule } from '../core/cli/command.js';
import { isCidr } from '../core/net/ip.js';

const imageBuild: Command = {
  name: 'image build',
  summary: "Build the node agent's container image (an OCI tarball for ctr images import / docker load)",
  usage: `bees image build --out FILE [--dist DIR] [--ref REF] [--tools LIST] [--json]
  --out FILE    the image tarball to write
  --dist DIR    the built project (default: dist/ of this checkout; run npm run build and npm run build:cni)
  --ref REF     image reference (default docker.io/midonet/bees:<package version>)
  --tools LIST  comma-separated system tools to copy with their libraries (default: those the datapath spawns)`,
  async run(args, io) {
    const { values } = parse(
      imageBuild,
      args,
      {
        out: { type: 'string' },
        dist: { type: 'string' },
        ref: { type: 'string' },
        tools: { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    if (!values.out) throw new CliError('image build: --out FILE is required', 2);
    const { buildImage, projectRoot } = await import('./image/build.js');
    let report;
    try {
      report = await buildImage({
        root: projectRoot(),
        out: values.out,
        ...(values.dist ? { dist: values.dist } : {}),
        ...(values.ref ? { ref: values.ref } : {}),
        ...(values.tools ? { tools: values.tools.split(',').filter(Boolean) } : {}),
      });
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    if (values.json) return printJson(io, report);
    io.out(
      `wrote ${report.out} (${(report.bytes / 1e6).toFixed(1)} MB, ${report.files} files): ${report.ref} ${report.manifestDigest}\n` +
        `load it with: ctr -n k8s.io images import ${report.out}   or   docker load -i ${report.out}\n`,
    );
  },
};

const K8S_AGENT_USAGE = `bees k8s agent [--cni-conf-dir DIR] [--network NAME] [--tenant NAME] [--pod-cidr CIDR]... [--mtu N]
               -- AGENT-OPTIONS (those of bees agent: --store URL --host-name NAME ...)
  Runs the agent; once it is ready, writes DIR/10-midonet.conflist (cniVersion 1.1.0) atomically.
  --cni-conf-dir DIR  where kubelet's runtime reads CNI configs (default /etc/cni/net.d)
  --network NAME      the pods' virtual network (default "default"), --tenant NAME (default "default")
  --pod-cidr CIDR     subnet(s) the network is created with on first use (IPv4 and/or IPv6)
  --mtu N             the pods' interface MTU
  --cni-version V     the conflist's cniVersion (default 1.1.0, which makes runtimes call STATUS; 1.0.0 for
                      runtimes whose libcni cannot read 1.1.0 results, such as containerd 1.6)
  --node-name NAME    the Kubernetes Node this agent serves (default $NODE_NAME): the Host is the Node (host id from
                      its name, underlay = its first InternalIP), annotated and NetworkUnavailable=false once ready
  --daemonset NAME    the agent's own DaemonSet in $POD_NAMESPACE (default bees-agent): on stop, the conflist is
                      removed only if it is gone (uninstall), kept if it is there (upgrade)`;

const k8sAgent: Command = {
  name: 'k8s agent',
  summary: 'Run the node agent for Kubernetes (bees agent + the conflist once ready)',
  usage: K8S_AGENT_USAGE,
  rawArgs: true,
  async run(args, io) {
    const dash = args.indexOf('--');
    const own = dash < 0 ? args : args.slice(0, dash);
    const agentArgs = dash < 0 ? [] : args.slice(dash + 1);
    let values;
    try {
      ({ values } = parseArgs({
        args: own,
        strict: true,
        allowPositionals: false,
        options: {
          'cni-conf-dir': { type: 'string' },
          network: { type: 'string' },
          tenant: { type: 'string' },
          'pod-cidr': { type: 'string', multiple: true },
          mtu: { type: 'string' },
          'cni-version': { type: 'string' },
          'node-name': { type: 'string' },
          daemonset: { type: 'string' },
        },
      }));
    } catch (err) {
      throw new CliError(`k8s agent: ${(err as Error).message}\nusage: ${K8S_AGENT_USAGE}`, 2);
    }
    const cidrs = values['pod-cidr'] ?? [];
    // A boolean, not an inferred `c is never` predicate (isCidr narrows unknown to string).
    const badCidr = cidrs.find((c): boolean => !isCidr(c));
    if (badCidr !== undefined) throw new CliError(`k8s agent: --pod-cidr '${badCidr}' is not a CIDR`, 2);
    const cniVersion = values['cni-version'];
    if (cniVersion !== undefined && !['1.0.0', '1.1.0'].includes(cniVersion))
      throw new CliError(`k8s agent: --cni-version '${cniVersion}' must be 1.0.0 or 1.1.0`, 2);
    const mtu = values.mtu === undefined ? undefined : Number(values.mtu);
    if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535))
      throw new CliError(`k8s agent: --mtu '${values.mtu}' must be an integer between 576 and 65535`, 2);
    // The agent as `bees agent` composes it (app/agent-options.ts: with the CNI shim's route, which pods need).
    const [{ runAgentUntilSignal }, { agentOptionsFrom }] = await Promise.all([
      import('../core/agent/run.js'),
      import('../app/agent-options.js'),
    ]);
    let opts: ReturnType<typeof agentOptionsFrom>;
    try {
      opts = agentOptionsFrom(agentArgs);
    } catch (err) {
      throw new CliError(`k8s agent: ${(err as Error).message}\nusage: ${K8S_AGENT_USAGE}`, 2);
    }
    // Node → Host, when the agent knows its Node (the DaemonSet sets NODE_NAME from spec.nodeName).
    const nodeName = values['node-name'] ?? io.env.NODE_NAME;
    const node = nodeName ? await nodeOf(nodeName) : undefined;
    if (node) {
      opts = {
        ...opts,
        hostName: opts.hostName ?? node.host.hostName,
        hostId: opts.hostId ?? node.host.hostId,
        ...(opts.underlayIp === undefined && node.host.underlayIp !== undefined ? { underlayIp: node.host.underlayIp } : {}),
      };
    }
    const agentOpts = opts;
    const { k8sConflist, writeConflistAtomically, K8S_CONFLIST_NAME } = await import('./node/conflist.js');
    const path = join(resolve(values['cni-conf-dir'] ?? '/etc/cni/net.d'), K8S_CONFLIST_NAME);
    await runAgentUntilSignal(agentOpts, async (agent, stopping) => {
      await writeConflistAtomically(
        path,
        k8sConflist({
          network: values.network ?? 'default',
          tenant: values.tenant ?? 'default',
          subnets: cidrs,
          ...(mtu !== undefined ? { mtu } : {}),
          ...(cniVersion !== undefined ? { cniVersion } : {}),
          // The socket the agent serves, always named: the shim must not guess it from its own default.
          agentSocket: agentOpts.workloadSocket ?? agent.workloadEndpoint.replace(/^unix:/, ''),
        }),
      );
      process.stderr.write(`bees-agent: ready on host ${agent.hostId}; wrote ${path}\n`);
      if (!node) return;
      const { reportNodeNetwork, daemonSetGone } = await import('./node/node-host.js');
      await reportNodeNetwork(node.kc, { ...node.host, hostId: agent.hostId }, agentOpts.underlayIp ?? '').catch((err: Error) =>
        process.stderr.write(`bees-agent: could not report on Node ${node.host.nodeName}: ${err.message}\n`),
      );
      // Stay until the agent is told to stop, then tell an uninstall from an upgrade.
      if (!stopping.aborted) await new Promise((r) => stopping.addEventListener('abort', r, { once: true }));
      const namespace = io.env.POD_NAMESPACE;
      if (namespace && (await daemonSetGone(node.kc, namespace, values.daemonset ?? 'bees-agent'))) {
        await rm(path, { force: true });
        process.stderr.write(`bees-agent: DaemonSet ${namespace}/${values.daemonset ?? 'bees-agent'} is gone: removed ${path}\n`);
      }
    });
  },
};

/** The Node and a client for it, from the kubeconfig kubectl would use ($KUBECONFIG, ~/.kube/config, in-cluster). */
async function nodeOf(
  nodeName: string,
): Promise<{ kc: import('@kubernetes/client-node').KubeConfig; host: import('./node/node-host.js').NodeHost }> {
  const [k8s, { hostOfNode, readNode }] = await Promise.all([import('@kubernetes/client-node'), import('./node/node-host.js')]);
  const kc = new k8s.KubeConfig();
  kc.loadFromDefault();
  try {
    return { kc, host: hostOfNode(await readNode(kc, nodeName)) };
  } catch (err) {
    throw new CliError(`k8s agent: ${(err as Error).message}`);
  }
}

const k8sProbe: Command = {
  name: 'k8s probe',
  summary: 'Probe the local agent for kubelet: alive (its API answers) or ready (and its store answers, and the conflist is written)',
  usage: `bees k8s probe [--ready] [--conflist PATH] [--api ENDPOINT]
  exit 0: alive (or ready with --ready); 1: not
  --conflist PATH  with --ready, also require this file (default /etc/cni/net.d/10-midonet.conflist)`,
  async run(args, io) {
    const { values } = parse(
      k8sProbe,
      args,
      { ...COMMON_OPTIONS, ready: { type: 'boolean' }, conflist: { type: 'string' } },
      { min: 0, max: 0 },
    );
    const st = await apiClient(values, io).status(); // throws (exit 1) when the API does not answer
    if (!values.ready) return 0;
    if (!st.reachable) throw new CliError(`not ready: store unreachable (${st.error ?? 'unknown error'})`);
    const conflist = values.conflist ?? '/etc/cni/net.d/10-midonet.conflist';
    if (!existsSync(conflist)) throw new CliError(`not ready: ${conflist} not written yet`);
    if (values.json) printJson(io, { ready: true });
    return 0;
  },
};

const installCni: Command = {
  name: 'k8s install-cni',
  summary: "Install the midonet CNI shim into a bin dir (the DaemonSet's init container; the agent writes the conflist)",
  usage: `bees k8s install-cni [--bin-dir DIR] [--binary PATH]
  --bin-dir DIR  the host's CNI bin dir as mounted (default /opt/cni/bin)
  --binary PATH  the shim (default $BEES_CNI_BINARY, set in the image)`,
  async run(args, io) {
    const { values } = parse(installCni, args, { 'bin-dir': { type: 'string' }, binary: { type: 'string' } }, { min: 0, max: 0 });
    const binary = values.binary ?? io.env.BEES_CNI_BINARY;
    if (!binary) throw new CliError('k8s install-cni: --binary PATH or $BEES_CNI_BINARY is required', 2);
    const { installShim } = await import('./node/install-cni.js');
    const dest = await installShim(resolve(binary), resolve(values['bin-dir'] ?? '/opt/cni/bin'));
    io.out(`installed ${dest}\n`);
  },
};

const K8S_CONTROLLER_USAGE = `bees k8s controller --store URL [--kubeconfig PATH|in-cluster] [--tenant NAME] [--network NAME]
               [--pod-cidr CIDR]... [--tenancy flat|namespace] [--namespace-subnet-prefix N] [--identity ID] [--lease-namespace NS] [--lease-name NAME]
               [--beside-kube-proxy] [--skip-host-check] [--health-port N]
  Translates Namespaces, Pods, NetworkPolicies, Services and EndpointSlices into the store; one replica writes
  (a coordination.k8s.io Lease). Refuses to start while kube-proxy runs unless --beside-kube-proxy.
  --kubeconfig        default: in-cluster when KUBERNETES_SERVICE_HOST is set, else $KUBECONFIG or ~/.kube/config
  --tenant, --network the flat pod network (default "default", "default"), created with --pod-cidr if missing
  --tenancy MODE      flat (default): one network for every pod; namespace: a tenant per Namespace (or per its
                      bees.midonet.org/tenant, /network annotations) with network --network, whose subnet is the
                      first free /N (--namespace-subnet-prefix, default 24) of each --pod-cidr pool
  --skip-host-check   look for kube-proxy's DaemonSet only, not for its nft/iptables rules on this host
  --health-port N     serve /healthz (alive) and /readyz (caches listed) on 127.0.0.1:N`;

const k8sController: Command = {
  name: 'k8s controller',
  summary: 'Run the Kubernetes controller (NetworkPolicy -> chains, Services -> load balancers; leader-elected)',
  usage: K8S_CONTROLLER_USAGE,
  async run(args, io) {
    const { values } = parse(
      k8sController,
      args,
      {
        store: { type: 'string' },
        kubeconfig: { type: 'string' },
        tenant: { type: 'string' },
        network: { type: 'string' },
        'pod-cidr': { type: 'string', multiple: true },
        tenancy: { type: 'string' },
        'namespace-subnet-prefix': { type: 'string' },
        identity: { type: 'string' },
        'lease-namespace': { type: 'string' },
        'lease-name': { type: 'string' },
        'beside-kube-proxy': { type: 'boolean' },
        'skip-host-check': { type: 'boolean' },
        'health-port': { type: 'string' },
      },
      { min: 0, max: 0 },
    );
    const storeUrl = values.store ?? io.env.BEES_STORE;
    if (!storeUrl) throw new CliError('k8s controller: --store URL is required', 2);
    const cidrs = values['pod-cidr'] ?? [];
    const badCidr = cidrs.find((c): boolean => !isCidr(c));
    if (badCidr !== undefined) throw new CliError(`k8s controller: --pod-cidr '${badCidr}' is not a CIDR`, 2);
    const healthPort = values['health-port'] === undefined ? undefined : Number(values['health-port']);
    if (healthPort !== undefined && (!Number.isInteger(healthPort) || healthPort < 1 || healthPort > 65535))
      throw new CliError(`k8s controller: --health-port '${values['health-port']}' is not a port`, 2);
    const tenancy = values.tenancy ?? 'flat';
    if (tenancy !== 'flat' && tenancy !== 'namespace')
      throw new CliError(`k8s controller: --tenancy '${tenancy}' is not flat or namespace`, 2);
    const subnetPrefix = values['namespace-subnet-prefix'] === undefined ? undefined : Number(values['namespace-subnet-prefix']);
    if (subnetPrefix !== undefined && (!Number.isInteger(subnetPrefix) || subnetPrefix < 1 || subnetPrefix > 30))
      throw new CliError(`k8s controller: --namespace-subnet-prefix '${values['namespace-subnet-prefix']}' is not 1 to 30`, 2);
    const [k8s, { Controller }, { openStore }, { Topology }, { createServer }] = await Promise.all([
      import('@kubernetes/client-node'),
      import('./controller/controller.js'),
      import('../core/store/open.js'),
      import('../core/topology/service.js'),
      import('node:http'),
    ]);
    const kc = new k8s.KubeConfig();
    const where = values.kubeconfig ?? (io.env.KUBERNETES_SERVICE_HOST ? 'in-cluster' : undefined);
    if (where === 'in-cluster') kc.loadFromCluster();
    else if (where) kc.loadFromFile(where);
    else kc.loadFromDefault();
    const store = await openStore(storeUrl);
    const ctl = new Controller({
      kc,
      topology: new Topology(store),
      tenant: values.tenant ?? 'default',
      network: values.network ?? 'default',
      podCidrs: cidrs,
      tenancy,
      ...(subnetPrefix !== undefined ? { namespaceSubnetPrefix: subnetPrefix } : {}),
      hostCheck: !values['skip-host-check'],
      besideKubeProxy: values['beside-kube-proxy'] ?? false,
      ...(values.identity ? { identity: values.identity } : {}),
      ...(values['lease-namespace'] ? { leaseNamespace: values['lease-namespace'] } : {}),
      ...(values['lease-name'] ? { leaseName: values['lease-name'] } : {}),
    });
    try {
      await ctl.start();
    } catch (err) {
      await store.close();
      throw new CliError(`k8s controller: ${(err as Error).message}`);
    }
    const health = healthPort
      ? createServer((req, res) => {
          const ok = req.url === '/healthz' || (req.url === '/readyz' && ctl.synced);
          res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not ready\n');
        }).listen(healthPort, '127.0.0.1')
      : undefined;
    io.err(`bees-controller: running as ${ctl.identity}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    health?.close();
    await ctl.stop();
    await store.close();
  },
};

export const commands: Command[] = [imageBuild, k8sAgent, k8sProbe, installCni, k8sController];
export default { commands } satisfies CommandModule;
