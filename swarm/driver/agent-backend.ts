// DockerBackend inside the agent process: the agent's own topology service, IPAM and workload logic, on the
// agent's store client. One client per host means the driver's writes and the agent's view never race, and the
// embedded (single-process) file store works too.
import type { Ipam } from '../../core/ipam/ipam.js';
import type { Bridge, Options } from '../../core/model/types.js';
import { TopologyError } from '../../core/topology/errors.js';
import type { Topology } from '../../core/topology/service.js';
import type { AttachRequest, AttachResult, DetachRequest } from '../../core/workload/types.js';
import type { BridgeSpec, DockerBackend } from './backend.js';

/** What the backend uses of the agent (core/agent/agent.ts exposes these). */
export interface AgentParts {
  topology: Topology;
  ipam: Ipam;
  workloads: { attach(req: AttachRequest): Promise<AttachResult>; detach(req: DetachRequest): Promise<void> };
}

export class AgentBackend implements DockerBackend {
  constructor(private readonly agent: AgentParts) {}

  private get topology(): Topology {
    return this.agent.topology;
  }

  private get ipam(): Ipam {
    return this.agent.ipam;
  }

  async getBridge(id: string): Promise<Bridge | undefined> {
    try {
      return await this.topology.get('Bridge', id);
    } catch (err) {
      if (err instanceof TopologyError && err.code === 'not_found') return undefined;
      throw err;
    }
  }

  listBridges(): Promise<Bridge[]> {
    return this.topology.list('Bridge');
  }

  async ensureBridge(spec: BridgeSpec): Promise<Bridge> {
    const existing = await this.getBridge(spec.id);
    if (existing) return existing;
    const input: Record<string, unknown> = {
      id: spec.id,
      tenant: spec.tenant,
      name: spec.name,
      subnets: spec.subnets,
      internal: spec.internal,
      labels: spec.labels,
      options: spec.options,
    };
    if (spec.mtu !== undefined) input.mtu = spec.mtu;
    if (spec.tunnelKey !== undefined) input.tunnelKey = spec.tunnelKey;
    let bridge: Bridge;
    try {
      bridge = await this.topology.create('Bridge', input);
    } catch (err) {
      // Another host of the swarm made it first.
      const again = await this.getBridge(spec.id);
      if (again) return again;
      throw err;
    }
    if (spec.router && bridge.subnets.some((s) => s.gateway !== '')) {
      try {
        const router = await this.ensureRouter(spec.tenant, spec.router);
        await this.topology.attachRouter(router.id, bridge.id);
      } catch (err) {
        await this.topology.delete('Bridge', bridge.id).catch(() => undefined);
        throw err;
      }
    }
    return bridge;
  }

  private async ensureRouter(tenant: string, name: string) {
    const found = await this.topology.findRouter(tenant, name);
    if (found) return found;
    try {
      return await this.topology.create('Router', { tenant, name });
    } catch (err) {
      const again = await this.topology.findRouter(tenant, name);
      if (again) return again;
      throw err;
    }
  }

  async setBridgeLabels(id: string, labels: Options): Promise<void> {
    const bridge = await this.getBridge(id);
    if (!bridge) return;
    await this.topology.update('Bridge', id, { labels: { ...bridge.labels, ...labels } });
  }

  async deleteBridge(id: string): Promise<void> {
    try {
      await this.topology.delete('Bridge', id);
    } catch (err) {
      if (err instanceof TopologyError && err.code === 'not_found') return;
      throw err;
    }
  }

  async workloadPorts(bridgeId: string): Promise<number> {
    return (await this.topology.list('Port', { bridgeId })).filter((p) => !p.peerId).length;
  }

  async allocateAddress(bridgeId: string, owner: string, family: 4 | 6, requested?: string): Promise<string> {
    const bridge = await this.topology.get('Bridge', bridgeId);
    // One reservation per request (the IPAM answers a repeated owner+ifname with what it holds already): the
    // interface name only has to be unique for the owner.
    const ifname = `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    if (requested) return (await this.ipam.reserveAddress(bridge, requested, owner, ifname)).address;
    const [got] = await this.ipam.allocate(bridge, owner, ifname, { families: [family] });
    return got!.address;
  }

  async releaseAddress(bridgeId: string, address: string, owner?: string, awaitMs = 0): Promise<void> {
    if (owner !== undefined) {
      // The IPAM lists blocks from the store's change-log cache: a block another host made a moment ago (the swarm
      // manager reserving a task's address) may not be listed here yet.
      const deadline = Date.now() + awaitMs;
      let held = (await this.ipam.allocations(bridgeId)).find((a) => a.address === address);
      for (let delay = 20; !held && Date.now() < deadline; delay = Math.min(delay * 2, 250)) {
        await new Promise((r) => setTimeout(r, delay));
        held = (await this.ipam.allocations(bridgeId)).find((a) => a.address === address);
      }
      if (!held || held.owner !== owner) return;
    }
    await this.ipam.releaseAddress(bridgeId, address);
  }

  attach(req: AttachRequest): Promise<AttachResult> {
    return this.agent.workloads.attach(req);
  }

  detach(req: DetachRequest): Promise<void> {
    return this.agent.workloads.detach(req);
  }
}
