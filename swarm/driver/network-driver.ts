// NetworkDriver.*: libnetwork's network/endpoint lifecycle translated into bridges (topology) and workload
// attachments (agent). The driver remembers nothing: a bridge is found from the Docker network id (stable id),
// a port from (docker, endpoint id, ifname), so a restarted driver carries on where it stopped.
import { tenantId, workloadPortId } from '../../core/model/ids.js';
import type { Bridge } from '../../core/model/types.js';
import type { AttachRequest, AttachResult, PortMapping } from '../../core/workload/types.js';
import type { DockerBackend } from './backend.js';
import { DriverError, IPAM_OWNER } from './backend.js';
import { lookupNetworkName } from './docker-names.js';
import type { IpamDriver } from './ipam-driver.js';
import { BridgeLabel, bridgeIdOf, bridgeSpecOf, type NetworkDefaults } from './network-options.js';
import type { CreateEndpointRequest, CreateNetworkRequest, EndpointRequest, JoinRequest, JoinResponse, StaticRoute } from './protocol.js';
import { Label } from './protocol.js';
import { familyOf, stripPrefix } from './cidr.js';

/** The interface name the driver uses in the workload identity; libnetwork picks the real one (DstPrefix+n). */
const IFNAME = 'eth0';
export const DST_PREFIX = 'eth';

export interface NetworkDriverConfig extends NetworkDefaults {
  /** libnetwork scope: "global" lets swarm allocate networks of this driver. */
  scope: 'local' | 'global';
  /** Docker Engine API socket used to learn network names; none: names are not recorded. */
  dockerSocket?: string;
}

const DEFAULT_ROUTES = new Set(['0.0.0.0/0', '::/0']);
const PROTOCOLS: Record<number, PortMapping['protocol']> = { 6: 'tcp', 17: 'udp', 132: 'sctp' };

export class NetworkDriver {
  private readonly nameLookups = new Set<Promise<void>>();
  private closed = false;

  constructor(
    private readonly backend: DockerBackend,
    private readonly config: NetworkDriverConfig,
    private readonly ipam?: IpamDriver,
  ) {}

  capabilities() {
    return { Scope: this.config.scope, ConnectivityScope: this.config.scope };
  }

  private async bridgeOf(networkId: string): Promise<Bridge> {
    const bridge = await this.backend.getBridge(bridgeIdOf(networkId));
    if (!bridge) throw new DriverError(`network ${networkId} is not a midonet network (no bridge ${bridgeIdOf(networkId)})`);
    return bridge;
  }

  /** The tenant name of a bridge the driver made (kept as a label: the selector of the workload API wants names). */
  private tenantOf(bridge: Bridge): string {
    return bridge.labels[BridgeLabel.tenant] ?? this.config.tenant;
  }

  async createNetwork(req: CreateNetworkRequest): Promise<object> {
    const spec = bridgeSpecOf(req, this.config, (pool) => this.ipam?.rangeOf(pool));
    spec.labels[BridgeLabel.tenant] = spec.tenant;
    const existing = await this.backend.getBridge(spec.id);
    // Every swarm node calls CreateNetwork for the same network: the first one creates, the others join it.
    if (existing) {
      if (existing.tenantId !== tenantId(spec.tenant)) {
        throw new DriverError(`bridge ${spec.id} exists in another tenant`);
      }
    } else {
      await this.backend.ensureBridge(spec);
    }
    for (const s of spec.subnets) this.ipam?.poolCreated(s.cidr);
    this.recordName(req.NetworkID, spec.id);
    return {};
  }

  private recordName(networkId: string, bridgeId: string): void {
    const socket = this.config.dockerSocket;
    if (!socket) return;
    const job = (async () => {
      const name = await lookupNetworkName(socket, networkId, () => this.closed);
      if (name && !this.closed) {
        await this.backend.setBridgeLabels(bridgeId, { [BridgeLabel.networkName]: name }).catch(() => undefined);
      }
    })();
    this.nameLookups.add(job);
    void job.finally(() => this.nameLookups.delete(job));
  }

  /**
   * Swarm manager, once per swarm network: the manager allocates task (and VIP) addresses from our IPAM before
   * any node calls CreateNetwork, so the bridge is made here. Swarm passes the user's `-o` options flat, not
   * nested as CreateNetwork's, and no `--internal`/`--ipv6` flags: a swarm network's bridge is never internal.
   */
  async allocateNetwork(req: CreateNetworkRequest): Promise<object> {
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.Options ?? {})) {
      if (typeof v !== 'string') throw new DriverError(`option ${k}: value must be a string`);
      flat[k] = v;
    }
    const ipv6 = (req.IPv6Data ?? []).length > 0;
    await this.createNetwork({ ...req, Options: { [Label.generic]: flat, ...(ipv6 ? { [Label.enableIPv6]: true } : {}) } });
    return { Options: {} };
  }

  async freeNetwork(req: { NetworkID: string }): Promise<object> {
    await this.removeIfUnused(req.NetworkID);
    return {};
  }

  async deleteNetwork(req: { NetworkID: string }): Promise<object> {
    await this.removeIfUnused(req.NetworkID);
    return {};
  }

  /** A bridge is shared by every host of a swarm network: the last host to let go removes it. */
  private async removeIfUnused(networkId: string): Promise<void> {
    const id = bridgeIdOf(networkId);
    const bridge = await this.backend.getBridge(id);
    if (!bridge) return;
    if ((await this.backend.workloadPorts(id)) > 0) return;
    await this.backend.deleteBridge(id);
  }

  private attachRequest(bridge: Bridge, endpointId: string): AttachRequest {
    return {
      orchestrator: 'docker',
      workloadId: endpointId,
      ifname: IFNAME,
      network: bridge.id,
      tenant: this.tenantOf(bridge),
      netns: '',
      hostSideOnly: true,
      labels: {
        [BridgeLabel.networkId]: bridge.labels[BridgeLabel.networkId] ?? '',
        'docker.endpoint.id': endpointId,
      },
    };
  }

  async createEndpoint(req: CreateEndpointRequest): Promise<object> {
    const bridge = await this.bridgeOf(req.NetworkID);
    const iface = req.Interface ?? {};
    const given = [iface.Address, iface.AddressIPv6].filter((a): a is string => !!a);
    const attach = this.attachRequest(bridge, req.EndpointID);
    if (given.length > 0) attach.ips = given;
    if (iface.MacAddress) attach.mac = iface.MacAddress;
    // Addresses from our IPAM are held by a reservation until now; the port takes them over.
    for (const a of given) await this.backend.releaseAddress(bridge.id, stripPrefix(a), IPAM_OWNER, 5000);
    let result: AttachResult;
    try {
      result = await this.attachAfterHandover(attach);
    } catch (err) {
      // Put the reservations back, so Docker's ReleaseAddress finds things as it left them.
      for (const a of given) {
        await this.backend.allocateAddress(bridge.id, IPAM_OWNER, familyOf(stripPrefix(a)), stripPrefix(a)).catch(() => undefined);
      }
      throw err;
    }
    if (given.length > 0 || iface.MacAddress) return {};
    // Docker gave no address (no IPAM addresses): say which ones the port got.
    const v4 = result.ips.find((i) => i.family === 4);
    const v6 = result.ips.find((i) => i.family === 6);
    return {
      Interface: {
        MacAddress: result.interface.mac,
        ...(v4 ? { Address: v4.address } : {}),
        ...(v6 ? { AddressIPv6: v6.address } : {}),
      },
    };
  }

  /**
   * The IPAM lists blocks from the store's change-log cache, which may not show our release yet (nor, in a swarm,
   * the reservation the manager's agent made): while it still names the reservation as the holder, ask again for
   * a short while.
   */
  private async attachAfterHandover(req: AttachRequest): Promise<AttachResult> {
    const deadline = Date.now() + 5000;
    for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await this.backend.attach(req);
      } catch (err) {
        if (!(err instanceof Error && err.message.includes(IPAM_OWNER)) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  async endpointOperInfo(req: EndpointRequest): Promise<object> {
    const bridge = await this.bridgeOf(req.NetworkID);
    // The agent keys ports by "<orchestrator>:<workload id>" (core/agent/workloads.ts ownerKey).
    return { Value: { bridge: bridge.id, port: workloadPortId(bridge.id, `docker:${req.EndpointID}`, IFNAME) } };
  }

  async deleteEndpoint(req: EndpointRequest): Promise<object> {
    const bridge = await this.backend.getBridge(bridgeIdOf(req.NetworkID));
    await this.backend.detach({
      orchestrator: 'docker',
      workloadId: req.EndpointID,
      ifname: IFNAME,
      ...(bridge ? { network: bridge.id, tenant: this.tenantOf(bridge) } : {}),
    });
    return {};
  }

  async join(req: JoinRequest): Promise<JoinResponse> {
    const bridge = await this.bridgeOf(req.NetworkID);
    // Attach is idempotent: this finds the port CreateEndpoint made (and re-creates its veth if it is gone).
    const result = await this.backend.attach(this.attachRequest(bridge, req.EndpointID));
    // hostSideOnly leaves the workload end of the veth in the host namespace for libnetwork to move and rename.
    if (!result.peerInterface) throw new DriverError(`the agent returned no workload interface for endpoint ${req.EndpointID}`);
    const res: JoinResponse = {
      InterfaceName: { SrcName: result.peerInterface, DstPrefix: DST_PREFIX },
      StaticRoutes: staticRoutesOf(result),
    };
    if (bridge.internal) {
      res.DisableGatewayService = true;
    } else {
      const gw4 = result.ips.find((i) => i.family === 4 && i.gateway)?.gateway;
      const gw6 = result.ips.find((i) => i.family === 6 && i.gateway)?.gateway;
      if (gw4) res.Gateway = gw4;
      if (gw6) res.GatewayIPv6 = gw6;
    }
    return res;
  }

  async leave(req: EndpointRequest): Promise<object> {
    // libnetwork moves the interface back out of the sandbox; the port lives until DeleteEndpoint.
    await this.bridgeOf(req.NetworkID);
    return {};
  }

  async programExternalConnectivity(req: EndpointRequest): Promise<object> {
    const bridge = await this.bridgeOf(req.NetworkID);
    const mappings = portMappingsOf(req.Options?.[Label.portMap]);
    if (mappings.length === 0) return {};
    await this.backend.attach({ ...this.attachRequest(bridge, req.EndpointID), portMappings: mappings });
    return {};
  }

  async revokeExternalConnectivity(req: EndpointRequest): Promise<object> {
    const bridge = await this.backend.getBridge(bridgeIdOf(req.NetworkID));
    if (!bridge) return {};
    await this.backend.attach({ ...this.attachRequest(bridge, req.EndpointID), portMappings: [] });
    return {};
  }

  /** Stop background work (name lookups) and wait for it. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.nameLookups]);
  }
}

function staticRoutesOf(result: AttachResult): StaticRoute[] {
  return result.routes
    .filter((r) => !DEFAULT_ROUTES.has(r.dst))
    .map((r) => (r.gw ? { Destination: r.dst, RouteType: 0, NextHop: r.gw } : { Destination: r.dst, RouteType: 1 }));
}

/** libnetwork's portmap option: [{Proto, IP, Port, HostIP, HostPort, HostPortEnd}] (types.PortBinding). */
export function portMappingsOf(raw: unknown): PortMapping[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new DriverError(`${Label.portMap} must be a list`);
  const out: PortMapping[] = [];
  for (const [i, b] of raw.entries()) {
    const pb = b as { Proto?: unknown; Port?: unknown; HostIP?: unknown; HostPort?: unknown };
    const protocol = typeof pb.Proto === 'number' ? PROTOCOLS[pb.Proto] : undefined;
    const port = (v: unknown) => (typeof v === 'number' && Number.isInteger(v) && v > 0 && v < 65536 ? v : undefined);
    const containerPort = port(pb.Port);
    const hostPort = port(pb.HostPort);
    if (!protocol || !containerPort || !hostPort) {
      throw new DriverError(`${Label.portMap}[${i}]: needs Proto (6, 17, 132), Port and HostPort`);
    }
    // With a host port range libnetwork has already picked one port (HostPort) by the time it calls a driver.
    const m: PortMapping = { hostPort, containerPort, protocol };
    if (typeof pb.HostIP === 'string' && pb.HostIP) m.hostIP = pb.HostIP;
    out.push(m);
  }
  return out;
}
