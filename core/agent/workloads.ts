// The workload API's logic: attach a workload interface to a virtual port, detach it, check it, collect what no
// valid attachment holds. Every adapter (CNI, Docker, Mesos, Kubernetes, the CLI) ends up here.
//
// An attachment is keyed by (orchestrator, workload id, interface name) on one bridge; its port id is derived from
// that key (UUIDv5), so repeating an attach finds the same port, the same addresses and the same interface.
import { existsSync } from 'node:fs';
import type { Bridge, Port } from '../model/types.js';
import { macFor, workloadPortId } from '../model/ids.js';
import { isMac, normalizeMac, parseIp } from '../net/ip.js';
import type { Ipam, IpamResult } from '../ipam/ipam.js';
import type { Topology } from '../topology/service.js';
import { DEFAULT_TENANT } from '../topology/service.js';
import { TopologyError } from '../topology/errors.js';
import type {
  AttachRequest,
  AttachResult,
  CheckRequest,
  CheckResult,
  DetachRequest,
  GcRequest,
  GcResult,
  PortMapping,
  StatusResult,
  WorkloadRef,
} from '../workload/types.js';
import type { PlugSpec } from '../datapath/types.js';
import { checkBandwidth } from '../datapath/bandwidth.js';
import { PortMapError, publishPorts, unpublishPorts } from '../datapath/nft/index.js';
import type { TopologyCache } from './cache.js';
import type { Reconciler } from './reconciler.js';
import { bareIp } from './reconciler.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import { startTrace, type Trace } from './trace.js';
import { ensureGateway, resolveBridge } from './network-resolve.js';
import { addressesOf, hostIfnameOf, invalid, ORCHESTRATORS, ownerKey, requestedIp, validateRef, withoutTenant } from './workload-args.js';
import type { PortGroupResolver } from './port-groups.js';
import type { WorkloadNetworkResolver } from './workload-network.js';

export { hostIfnameOf, ownerKey } from './workload-args.js';

export interface WorkloadDeps {
  hostId: string;
  topology: Topology;
  ipam: Ipam;
  cache: TopologyCache;
  reconciler: Reconciler;
  storeUrl: string;
  /** Name of the router a bridge with a gateway is attached to when it has none ("none" disables). */
  defaultRouter?: string;
  ready: () => { ready: boolean; reason?: string };
  /** An orchestrator's policy: the groups a new port joins before attach returns (port-groups.ts). */
  portGroups?: PortGroupResolver;
  /** An orchestrator's placement: the network a new workload joins instead of the named one (workload-network.ts). */
  networkOf?: WorkloadNetworkResolver;
}

export class Workloads {
  /** One operation at a time per attachment key: the runtime may retry while we are still working. */
  private readonly locks = new KeyedMutex();
  /** Store-side halves of detaches done while the store was unreachable, replayed once it is back. */
  private pending: { what: string; run: () => Promise<void> }[] = [];
  private flushing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /**
   * Ports this agent attached that its cache has not seen yet. The cache follows the store's change stream, so a
   * port written a moment ago may not be in it when the store becomes unreachable: a detach then (the runtime
   * tearing the sandbox down) must still find it to remove its interface.
   */
  private readonly unseen = new Map<string, Port>();

  constructor(private readonly d: WorkloadDeps) {
    d.cache.on('changed', (c: { kind?: string; id?: string }) => {
      if (this.unseen.size === 0) return;
      if (c.kind === 'Port' && c.id) this.unseen.delete(c.id);
      else if (c.kind === undefined) for (const id of this.unseen.keys()) if (d.cache.get('Port', id)) this.unseen.delete(id);
    });
  }

  async attach(request: AttachRequest): Promise<AttachResult> {
    validateRef(request);
    const req = await this.placed(request);
    if (!req.hostSideOnly) {
      if (typeof req.netns !== 'string' || req.netns === '') throw invalid('netns is required', 'netns');
      if (!existsSync(req.netns)) throw invalid(`netns ${req.netns} does not exist`, 'netns');
    }
    if (typeof req.network !== 'string' || req.network === '') throw invalid('network is required', 'network');
    if (req.mac !== undefined && !isMac(req.mac)) throw invalid(`mac ${JSON.stringify(req.mac)} is not a MAC address`, 'mac');
    if (req.bandwidth) {
      try {
        checkBandwidth(req.bandwidth, 'attach');
      } catch (e) {
        throw invalid((e as Error).message, 'bandwidth');
      }
    }
    const requested = (req.ips ?? []).map((ip, i) => requestedIp(ip, `ips[${i}]`));
    // Fail at once rather than after the store's timeouts, with nothing made: the runtime retries later.
    const health = this.d.ready();
    if (!health.ready) throw new TopologyError('unavailable', `cannot attach now: ${health.reason ?? 'the agent is not ready'}`);
    const tr = startTrace(`attach ${ownerKey(req)}`);
    try {
      const bridge = await tr.phase('resolve', () => resolveBridge(this.d, req));
      const portId = workloadPortId(bridge.id, ownerKey(req), req.ifname);
      const r = await this.serialised(portId, () => this.attachLocked(req, bridge, portId, requested, tr));
      tr.end();
      return r;
    } catch (e) {
      tr.end('failed');
      throw e;
    }
  }

  private async attachLocked(req: AttachRequest, bridge: Bridge, portId: string, requested: string[], tr: Trace): Promise<AttachResult> {
    const { topology, ipam, hostId } = this.d;
    await tr.phase('gateway', () => ensureGateway(this.d, bridge));
    const hostIfname = hostIfnameOf(portId);
    const owner = ownerKey(req);
    let existing: Port | undefined;
    try {
      existing = await tr.phase('getPort', () => topology.get('Port', portId));
    } catch (e) {
      if (!(e instanceof TopologyError && e.code === 'not_found')) throw e;
    }
    let addresses: IpamResult[] = [];
    let created = false;
    const mac = req.mac ? normalizeMac(req.mac) : (existing?.mac ?? macFor(portId));
    // A new port's veth pair (recorded in the datapath's inventory first) is made while IPAM writes its addresses
    // to the store: neither needs the other. It stays down and out of the bridge until the plug below.
    const prepared = existing
      ? Promise.resolve(false)
      : this.d.reconciler.preparePort(portId, bridge, this.plugSpec(req, bridge, hostIfname, mac, []), tr);
    try {
      addresses = await tr.phase('ipam', () => ipam.allocate(bridge, owner, req.ifname, requested.length ? { requested } : {}));
      const ips = addresses.map((a) => a.address);
      const labels = { ...(req.labels ?? {}) };
      // The port is recorded already up: one store write on the attach path instead of two. The reconciler pins
      // the new veth and its bridge until its cache sees the port, so no sweep removes them.
      const spec = this.plugSpec(req, bridge, hostIfname, mac, addresses);
      // A new port is recorded while the interface is made (the store write and the processes overlap); attach
      // returns once both are done, and a failure of either undoes both below.
      // The orchestrator's policy groups, decided before the port exists (and only for a new port: a re-attach
      // keeps what the port has, which the orchestrator's controller maintains).
      const portGroupIds = existing ? existing.portGroupIds : await tr.phase('portGroups', () => this.groupsOf(req, bridge));
      const draft: Port = {
        id: portId,
        tenantId: bridge.tenantId,
        type: 'bridge',
        bridgeId: bridge.id,
        mac,
        ips,
        hostId,
        interfaceName: hostIfname,
        owner: { orchestrator: req.orchestrator, workloadId: req.workloadId, ifname: req.ifname },
        adminStateUp: true,
        status: 'up',
        portSecurity: true,
        portGroupIds,
        options: labels,
      };
      const { tenantId: _tenant, ...input } = draft;
      const record = existing
        ? Promise.resolve()
        : tr
            .phase('createPort', () => topology.create('Port', input))
            .then(() => {
              created = true;
            });
      // The plug is given the port as it will be written, so its groups are in force from its first frame.
      const plugging = prepared.then((made) =>
        this.d.reconciler.plugPort(portId, bridge, made ? { ...spec, prepared: true } : spec, tr, existing ? undefined : draft),
      );
      const [p, r] = await Promise.allSettled([plugging, record]);
      if (p.status === 'rejected') {
        await record.catch(() => undefined);
        throw p.reason;
      }
      if (r.status === 'rejected') throw r.reason;
      const plugged = p.value;
      if (
        existing &&
        (existing.hostId !== hostId ||
          existing.mac !== mac ||
          existing.interfaceName !== hostIfname ||
          existing.ips.join() !== ips.join() ||
          existing.status !== 'up')
      ) {
        // Re-binding (the workload moved here, or an earlier attach stopped half-way): the port follows it.
        await topology.update('Port', portId, { hostId, mac, ips, interfaceName: hostIfname, options: labels, status: 'up' });
      }
      // Present: the port's published host ports become exactly these ([] unpublishes); absent: left as they are.
      if (req.portMappings !== undefined) await this.publish(portId, req.portMappings, addresses);
      this.d.reconciler.trigger();
      if (!this.d.cache.get('Port', portId)) this.unseen.set(portId, draft);
      const result = this.result(bridge, portId, req, spec, plugged.hostIfname, addresses);
      if (plugged.peerIfname) result.peerInterface = plugged.peerIfname;
      return result;
    } catch (err) {
      // Leave nothing half-made: a failed attach is followed by a detach anyway, but an operator running
      // `bees attach` by hand should not have to.
      if (!existing) {
        // A veth still being prepared is waited for: removed after it is made, never before.
        await prepared.catch(() => undefined);
        await this.d.reconciler.unplugPort(portId, hostIfname).catch(() => undefined);
        if (created) await topology.delete('Port', portId).catch(() => undefined);
        await ipam.release(bridge.id, owner, req.ifname).catch(() => undefined);
      }
      throw err;
    }
  }

  private async publish(portId: string, mappings: PortMapping[], addresses: IpamResult[]): Promise<void> {
    if (!Array.isArray(mappings)) throw invalid('portMappings must be a list', 'portMappings');
    const ip = addresses.find((a) => a.family === 4)?.address;
    if (mappings.length > 0 && !ip) throw invalid('portMappings need an IPv4 address on the port', 'portMappings');
    try {
      await publishPorts(
        undefined,
        portId,
        mappings.map((m) => ({
          protocol: m.protocol,
          hostPort: m.hostPort,
          port: m.containerPort,
          ip: ip!,
          ...(m.hostIP ? { hostIP: m.hostIP } : {}),
        })),
      );
    } catch (e) {
      if (e instanceof PortMapError) throw new TopologyError(e.kind, e.message, 'portMappings');
      throw e;
    }
  }

  private plugSpec(req: AttachRequest, bridge: Bridge, hostIfname: string, mac: string, addresses: IpamResult[]): PlugSpec {
    const gateways = bridge.internal ? [] : addresses.flatMap((a) => (a.gateway ? [a.gateway] : []));
    return {
      vni: bridge.tunnelKey,
      netns: req.netns ?? '',
      ifname: req.ifname,
      hostIfname,
      mac,
      ips: addresses.map((a) => `${a.address}/${a.prefixLength}`),
      gateways,
      mtu: this.mtuOf(bridge),
      portSecurity: true,
      hostSideOnly: req.hostSideOnly === true,
      ...(req.bandwidth ? { bandwidth: req.bandwidth } : {}),
    };
  }

  private mtuOf(bridge: Bridge): number {
    // The first workload of a bridge on this host comes before the bridge is in the plan: same rule as the plan.
    return bridge.mtu ?? this.d.reconciler.plan().bridges.get(bridge.id)?.mtu ?? this.d.reconciler.underlayMtu - 50;
  }

  private result(
    bridge: Bridge,
    portId: string,
    req: AttachRequest,
    spec: PlugSpec,
    hostIfname: string,
    addresses: IpamResult[],
  ): AttachResult {
    const routes = (spec.gateways ?? []).map((gw) => ({ dst: parseIp(gw).family === 4 ? '0.0.0.0/0' : '::/0', gw }));
    return {
      portId,
      bridgeId: bridge.id,
      tenantId: bridge.tenantId,
      interface: { name: req.ifname, mac: spec.mac, mtu: spec.mtu ?? 1450, sandbox: req.netns ?? '' },
      hostInterface: { name: hostIfname, mac: '' },
      ips: addresses.map((a) => ({
        address: `${a.address}/${a.prefixLength}`,
        ...(a.gateway && !bridge.internal ? { gateway: a.gateway } : {}),
        family: a.family,
      })),
      routes,
      mtu: spec.mtu ?? 1450,
    };
  }

  async detach(request: DetachRequest): Promise<void> {
    validateRef(request);
    const req = this.anyNetwork(request);
    const tr = startTrace(`detach ${ownerKey(req)}`);
    try {
      await this.detachTraced(req, tr);
      tr.end();
    } catch (e) {
      tr.end('failed');
      throw e;
    }
  }

  private async detachTraced(req: DetachRequest, tr: Trace): Promise<void> {
    if (!this.d.ready().ready) return this.detachOffline(req, tr);
    const ports = await tr.phase('portsOf', () => this.portsOf(req));
    for (const port of ports) {
      await this.serialised(port.id, () => this.detachPort(port, tr));
    }
    // Addresses held without a port (an attach that died before recording it) are still freed: on the named
    // network, or on every network when the port is unknown.
    if (ports.length > 0) return;
    const owner = ownerKey(req);
    const named = req.network ? await this.d.topology.findBridge(req.tenant ?? DEFAULT_TENANT, req.network) : undefined;
    for (const b of named ? [named] : this.d.cache.list('Bridge')) {
      await this.d.ipam.release(b.id, owner, req.ifname);
    }
  }

  private async detachPort(port: Port, tr?: Trace): Promise<void> {
    this.unseen.delete(port.id);
    const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> => (tr ? tr.phase(name, fn) : fn());
    // Published ports, the interface and the port's record are removed side by side: the veth's deletion waits in
    // the kernel for RCU grace periods, the record's in the store. Should the unplug fail, the veth stays in the
    // datapath's inventory and no port wants it, so the next sweep removes it. The addresses are never handed out
    // while the interface holding them is in use: released once it is gone, or beside its deletion under IPAM's
    // quarantine (ipam/quarantine.ts) where the store has no other writer.
    const deleted = phase('deletePort', () => this.d.topology.delete('Port', port.id)).catch((e: unknown) => {
      if (!(e instanceof TopologyError && e.code === 'not_found')) throw e;
    });
    const kernelDone = Promise.all([
      phase('unpublish', () => unpublishPorts(undefined, port.id)),
      port.interfaceName ? phase('unplug', () => this.d.reconciler.unplugPort(port.id, port.interfaceName!)) : undefined,
    ]);
    const owner = port.owner;
    const bridgeId = port.bridgeId;
    // Where IPAM can quarantine (this process alone writes the store), the release goes beside the veth's
    // deletion too: freed in the store now, kept from this host's allocations until the veth is gone.
    const early =
      owner && bridgeId && this.d.ipam.canQuarantine
        ? phase('release', () => this.d.ipam.releaseWhile(bridgeId, ownerKey(owner), owner.ifname, kernelDone))
        : undefined;
    const [kernel, store, released] = await Promise.allSettled([kernelDone, deleted, early]);
    if (kernel.status === 'rejected') throw kernel.reason;
    if (store.status === 'rejected') throw store.reason;
    if (released.status === 'rejected') throw released.reason;
    if (owner && bridgeId && !early) await phase('release', () => this.d.ipam.release(bridgeId, ownerKey(owner), owner.ifname));
    this.d.reconciler.trigger();
  }

  /**
   * Detach while the store is unreachable: the kernel side goes now (the runtime is tearing the sandbox down and
   * must not be held), found through the agent's cache; the store side (port record, addresses) is queued and
   * replayed when the store is back.
   */
  private async detachOffline(req: DetachRequest, tr: Trace): Promise<void> {
    const owner = ownerKey(req);
    const bridges = req.network
      ? new Set(
          this.d.cache
            .list('Bridge')
            .filter((b) => b.name === req.network)
            .map((b) => b.id),
        )
      : undefined;
    const known = new Map(this.d.cache.list('Port').map((p) => [p.id, p]));
    for (const p of this.unseen.values()) if (!known.has(p.id)) known.set(p.id, p);
    const ports = [...known.values()].filter(
      (p) =>
        p.hostId === this.d.hostId &&
        p.owner &&
        ownerKey(p.owner) === owner &&
        p.owner.ifname === req.ifname &&
        (!bridges || bridges.size === 0 || bridges.has(p.bridgeId ?? '')),
    );
    for (const port of ports) {
      this.unseen.delete(port.id);
      await this.serialised(port.id, async () => {
        await Promise.all([
          tr.phase('unpublish', () => unpublishPorts(undefined, port.id)),
          port.interfaceName ? tr.phase('unplug', () => this.d.reconciler.unplugPort(port.id, port.interfaceName!)) : undefined,
        ]);
      });
      this.defer(`port ${port.id} of ${owner}`, () =>
        this.serialised(port.id, async () => {
          try {
            await this.d.topology.delete('Port', port.id);
          } catch (e) {
            if (!(e instanceof TopologyError && e.code === 'not_found')) throw e;
          }
          if (port.bridgeId) await this.d.ipam.release(port.bridgeId, owner, req.ifname);
          this.d.reconciler.trigger();
        }),
      );
    }
    // Unknown to the cache (an attach that died before recording its port): the whole detach, store side only.
    if (ports.length === 0) {
      this.defer(`addresses of ${owner} ${req.ifname}`, () => this.detachTraced(req, startTrace(`detach ${owner} (replayed)`)));
    }
  }

  private defer(what: string, run: () => Promise<void>): void {
    this.pending.push({ what, run });
  }

  /** Store-side work queued by detaches while the store was down. */
  pendingCount(): number {
    return this.pending.length;
  }

  /** Replays the queued store-side work (call when the store is back); retries while some of it fails. */
  flushPending(): Promise<void> {
    this.flushing ??= (async () => {
      clearTimeout(this.retryTimer);
      while (this.pending.length > 0 && this.d.ready().ready) {
        const next = this.pending[0]!;
        try {
          await next.run();
          this.pending.shift();
        } catch (e) {
          process.emitWarning(`bees agent: replaying the release of ${next.what} failed, will retry: ${(e as Error).message}`);
          this.retryTimer = setTimeout(() => void this.flushPending(), 1000);
          this.retryTimer.unref();
          return;
        }
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  stop(): void {
    clearTimeout(this.retryTimer);
  }

  /** Ports of this workload interface bound to this host (on the named network, when given). */
  private async portsOf(ref: WorkloadRef & { network?: string; tenant?: string }): Promise<Port[]> {
    if (ref.network) {
      const bridge = await this.d.topology.findBridge(ref.tenant ?? DEFAULT_TENANT, ref.network);
      if (bridge) {
        const id = workloadPortId(bridge.id, ownerKey(ref), ref.ifname);
        try {
          return [await this.d.topology.get('Port', id)];
        } catch {
          return [];
        }
      }
    }
    const ports = await this.d.topology.list('Port', { hostId: this.d.hostId });
    return ports.filter(
      (p) => p.owner && p.owner.orchestrator === ref.orchestrator && p.owner.workloadId === ref.workloadId && p.owner.ifname === ref.ifname,
    );
  }

  async check(request: CheckRequest): Promise<CheckResult> {
    validateRef(request);
    const req = this.anyNetwork(request);
    const ports = await this.portsOf(req);
    if (ports.length === 0) return { ok: false, problems: [`no attachment of ${ownerKey(req)} ${req.ifname} on this host`] };
    const problems: string[] = [];
    for (const port of ports) {
      const bridge = this.d.cache.get('Bridge', port.bridgeId ?? '') ?? (await this.d.topology.get('Bridge', port.bridgeId!));
      if (port.hostId !== this.d.hostId) problems.push(`port ${port.id} is bound to host ${port.hostId ?? 'none'}, not this host`);
      const held = (await this.d.ipam.allocations(bridge.id))
        .filter((a) => a.owner === ownerKey(req) && a.ifname === req.ifname)
        .map((a) => a.address);
      for (const ip of port.ips) if (!held.includes(bareIp(ip))) problems.push(`address ${ip} is no longer reserved for ${ownerKey(req)}`);
      const addresses = addressesOf(bridge, port.ips);
      const spec = this.plugSpec(
        withoutTenant({ ...req, network: bridge.id }),
        bridge,
        port.interfaceName ?? hostIfnameOf(port.id),
        port.mac,
        addresses,
      );
      problems.push(...(await this.d.reconciler.checkPlug(spec)));
    }
    return { ok: problems.length === 0, problems };
  }

  async gc(request: GcRequest): Promise<GcResult> {
    const req = this.anyNetwork(request);
    if (!ORCHESTRATORS.includes(req.orchestrator)) throw invalid(`orchestrator must be one of ${ORCHESTRATORS.join(', ')}`, 'orchestrator');
    if (!Array.isArray(req.valid)) throw invalid('valid must be a list of {workloadId, ifname}', 'valid');
    const valid = new Set(req.valid.map((v) => `${v.workloadId}\0${v.ifname}`));
    let bridgeFilter: string | undefined;
    if (req.network) {
      const b = await this.d.topology.findBridge(req.tenant ?? DEFAULT_TENANT, req.network);
      if (!b) return { removed: [] };
      bridgeFilter = b.id;
    }
    const removed: WorkloadRef[] = [];
    const ports = await this.d.topology.list('Port', { hostId: this.d.hostId });
    for (const p of ports) {
      if (!p.owner || p.owner.orchestrator !== req.orchestrator) continue;
      if (bridgeFilter && p.bridgeId !== bridgeFilter) continue;
      if (valid.has(`${p.owner.workloadId}\0${p.owner.ifname}`)) continue;
      await this.serialised(p.id, () => this.detachPort(p));
      removed.push({ ...p.owner });
    }
    // Addresses of this host's workloads that no port and no valid attachment explains.
    const prefix = `${req.orchestrator}:`;
    const freed = await this.d.ipam.gc((owner, ifname, hostId) => {
      if (!owner.startsWith(prefix) || hostId !== this.d.hostId) return true;
      return valid.has(`${owner.slice(prefix.length)}\0${ifname}`);
    }, bridgeFilter);
    for (const f of freed) {
      const workloadId = f.owner.slice(prefix.length);
      if (!removed.some((r) => r.workloadId === workloadId && r.ifname === f.ifname))
        removed.push({ orchestrator: req.orchestrator, workloadId, ifname: f.ifname });
    }
    return { removed };
  }

  status(): StatusResult {
    const r = this.d.ready();
    return { ready: r.ready, hostId: this.d.hostId, store: this.d.storeUrl, ...(r.reason ? { reason: r.reason } : {}) };
  }

  /** The request on the network the orchestrator places it on (which the orchestrator creates, not the runtime). */
  private async placed(req: AttachRequest): Promise<AttachRequest> {
    if (!this.d.networkOf || typeof req.network !== 'string' || req.network === '') return req;
    let to: { tenant: string; network: string } | undefined;
    try {
      to = await this.d.networkOf({
        orchestrator: req.orchestrator,
        workloadId: req.workloadId,
        labels: req.labels ?? {},
        tenant: req.tenant,
        network: req.network,
      });
    } catch (e) {
      throw new TopologyError('unavailable', `cannot attach now: the workload's network is unknown (${(e as Error).message})`);
    }
    if (!to) return req;
    const { create: _create, ...rest } = req;
    return { ...rest, tenant: to.tenant, network: to.network };
  }

  /** With a placement hook the named network is not where ports were made: look for them on every network. */
  private anyNetwork<T extends { network?: string | undefined; tenant?: string | undefined }>(req: T): T {
    if (!this.d.networkOf) return req;
    const { network: _n, tenant: _t, ...rest } = req;
    return rest as T;
  }

  /** The groups the orchestrator's policy puts a new port in, among those that exist. */
  private async groupsOf(req: AttachRequest, bridge: Bridge): Promise<string[]> {
    if (!this.d.portGroups) return [];
    let ids: string[];
    try {
      ids = await this.d.portGroups({
        tenantId: bridge.tenantId,
        bridgeId: bridge.id,
        orchestrator: req.orchestrator,
        workloadId: req.workloadId,
        labels: req.labels ?? {},
      });
    } catch (e) {
      throw new TopologyError('unavailable', `cannot attach now: the port's policy groups are unknown (${(e as Error).message})`);
    }
    const out: string[] = [];
    for (const id of new Set(ids)) {
      if (this.d.cache.get('PortGroup', id)) out.push(id);
      else if (
        await this.d.topology.get('PortGroup', id).then(
          () => true,
          () => false,
        )
      )
        out.push(id);
    }
    return out;
  }

  private serialised<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(key, fn);
  }
}
