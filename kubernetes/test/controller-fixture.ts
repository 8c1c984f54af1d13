// Shared setup of the controller tests that run against e2e/kube's ApiServer — a test DOUBLE of kube-apiserver
// (list/watch, 410, strict validation), not Kubernetes — with the real @kubernetes/client-node and a real file
// store behind the real topology service.
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import * as k8s from '@kubernetes/client-node';
import { openStore } from '../../core/store/open.js';
import { Topology } from '../../core/topology/service.js';
import type { Kind, Port } from '../../core/model/types.js';
import { simulateExchange } from '../../core/policy/simulate.js';
import { ApiServer } from '../../e2e/kube/apiserver.js';
import { kinds } from '../../e2e/kube/kinds.js';
import { kubeConfigFor } from '../../e2e/kube/reach.js';
import { Controller, type ControllerOptions } from '../controller/controller.js';

export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 15_000,
): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export { kubeConfigFor };

/** A TCP relay to the API server that can go away (connections cut, nothing listening) and come back. */
export class Relay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  port = 0;
  constructor(private readonly to: URL) {}
  async up(): Promise<void> {
    const srv = createServer((c) => {
      const up = connect(Number(this.to.port), this.to.hostname);
      for (const s of [c, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => (s === c ? up : c).destroy());
      }
      c.pipe(up).pipe(c);
    });
    await new Promise<void>((r) => srv.listen(this.port, '127.0.0.1', r));
    this.port = (srv.address() as { port: number }).port;
    this.server = srv;
  }
  async down(): Promise<void> {
    const srv = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }
}

export type NamespaceSpec = string | { name: string; annotations?: Record<string, string> };

export async function setupController(t: ExecutionContext, namespaces: NamespaceSpec[], defaults: Partial<ControllerOptions> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'bees-k8sctl-'));
  const server = new ApiServer({ bookmarkIntervalMs: 500 });
  await server.start();
  // The leader-election Lease lives in kube-system.
  for (const n of namespaces.some((x) => x === 'kube-system') ? namespaces : ['kube-system', ...namespaces]) {
    const meta = typeof n === 'string' ? { name: n } : n;
    server.create(
      kinds.find((k) => k.kind === 'Namespace')!,
      undefined,
      { metadata: meta },
    );
  }
  const store = await openStore(`file:${join(dir, 'store')}`);
  const topology = new Topology(store);
  const controllers: Controller[] = [];
  t.teardown(async () => {
    for (const c of controllers) await c.stop().catch(() => undefined);
    await server.stop().catch(() => undefined);
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const kc = kubeConfigFor(server.url);
  const controller = (extra: Partial<ControllerOptions> = {}): Controller => {
    const c = new Controller({
      kc,
      topology,
      tenant: 'kubernetes',
      network: 'pods',
      podCidrs: ['10.128.0.0/16'],
      leaseDurationS: 2,
      renewDeadlineMs: 1500,
      retryPeriodMs: 200,
      resyncMs: 0,
      relistMs: 0,
      log: (l) => t.log(l),
      ...defaults,
      ...extra,
    });
    controllers.push(c);
    return c;
  };
  const core = kc.makeApiClient(k8s.CoreV1Api);
  /** What the node agent does at CNI ADD, as far as the store goes: a port labelled with the pod's identity. */
  const podPort = async (tenant: string, network: string, ns: string, name: string, ip: string): Promise<Port> => {
    const bridge = await eventually(`network ${tenant}/${network}`, () => topology.findBridge(tenant, network));
    return topology.create('Port', {
      type: 'bridge',
      bridgeId: bridge.id,
      ips: [ip],
      options: { 'k8s.pod.namespace': ns, 'k8s.pod.name': name },
    });
  };
  const pod = async (ns: string, name: string, labels: Record<string, string>): Promise<void> => {
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name, labels }, spec: { containers: [{ name: 'c', image: 'agnhost' }] } },
    });
  };
  return { dir, server, store, topology, kc, core, controller, podPort, pod };
}

/** Does a TCP connection from port `from` to port `to` on `dport` get through the filters now in the store? */
export async function reaches(topology: Topology, from: Port, to: Port, dport: number): Promise<boolean> {
  const [chains, rules, ipAddrGroups, ports, bridge] = await Promise.all([
    topology.list('Chain'),
    topology.list('Rule'),
    topology.list('IpAddrGroup'),
    topology.list('Port'),
    topology.get('Bridge', from.bridgeId!),
  ]);
  const packet = {
    srcMac: from.mac,
    dstMac: to.mac,
    srcIp: from.ips[0],
    dstIp: to.ips[0],
    proto: 6,
    srcPort: 40000,
    dstPort: dport,
    inPortId: from.id,
    outPortId: to.id,
  };
  return simulateExchange({ chains, rules, ipAddrGroups, ports }, bridge, packet).delivered;
}

export const OWNED_KINDS: Kind[] = [
  'Tenant',
  'PortGroup',
  'Chain',
  'Rule',
  'Bridge',
  'Port',
  'LoadBalancer',
  'Pool',
  'PoolMember',
  'Vip',
  'Router',
];

/** Every object of the kinds the controller writes, for before/after comparisons. */
export async function snapshot(topology: Topology): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const k of OWNED_KINDS) out[k] = await topology.list(k);
  return out;
}
