// What the Docker driver needs from MidoNet Bees, and nothing more. The driver holds no state of its own:
// every fact it must remember across restarts is written here, on bridges (labels/options) and ports.
// Implementation: agent-backend.ts (inside the agent process).
import type { Bridge, Options, Subnet } from '../../core/model/types.js';
import type { AttachRequest, AttachResult, DetachRequest } from '../../core/workload/types.js';

export interface BridgeSpec {
  id: string;
  tenant: string;
  name: string;
  subnets: Subnet[];
  mtu?: number;
  internal: boolean;
  /** VXLAN network identifier asked for with `-o vni=`; the topology picks one otherwise. */
  tunnelKey?: number;
  /** Router the bridge is linked to (its gateway lives there); none for a bridge without gateway. */
  router?: string;
  labels: Options;
  options: Options;
}

export interface DockerBackend {
  getBridge(id: string): Promise<Bridge | undefined>;
  listBridges(): Promise<Bridge[]>;
  /** Create the bridge and link it to its router; a bridge that already has this id is returned as it is. */
  ensureBridge(spec: BridgeSpec): Promise<Bridge>;
  /** Merge labels into the bridge's labels. */
  setBridgeLabels(id: string, labels: Options): Promise<void>;
  /** Remove the bridge, its router link and its IPAM blocks. Absent already: no error. */
  deleteBridge(id: string): Promise<void>;
  /** How many workload ports (router links excluded) the bridge still carries, on any host. */
  workloadPorts(bridgeId: string): Promise<number>;
  /** Hand out one address of the bridge (`requested`, or any free one of `family`) to `owner`; returns the plain IP. */
  allocateAddress(bridgeId: string, owner: string, family: 4 | 6, requested?: string): Promise<string>;
  /**
   * Give an address back, only if `owner` (when given) is who holds it. Not allocated: no error. `awaitMs`: the
   * address is known to be allocated (another host may have just done it): wait that long for it to be visible.
   */
  releaseAddress(bridgeId: string, address: string, owner?: string, awaitMs?: number): Promise<void>;
  attach(req: AttachRequest): Promise<AttachResult>;
  detach(req: DetachRequest): Promise<void>;
}

/** Owner of addresses the IPAM driver handed out that no endpoint holds yet. */
export const IPAM_OWNER = 'docker-ipam';

/** An error the driver reports to Docker as an application error (HTTP 200 with Err/Error set). */
export class DriverError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DriverError';
  }
}
