// The workload API: the one entry point every adapter (CNI, Docker, Mesos, Kubernetes, the CLI) uses to put a
// workload on the virtual network. The agent serves it on a root-only unix socket as JSON over HTTP:
//   POST /v1/attach  AttachRequest  -> AttachResult
//   POST /v1/detach  DetachRequest  -> {}
//   POST /v1/check   CheckRequest   -> CheckResult
//   POST /v1/gc      GcRequest      -> GcResult
//   GET  /v1/status                 -> StatusResult
// Errors: HTTP 4xx/5xx with WorkloadErrorBody.
import type { ErrorKind } from '../errors.js';
import type { PortOwner } from '../model/types.js';

/** The network every adapter puts workloads on when none is named (`bees up` creates it). */
export const DEFAULT_NETWORK = 'default';

export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: 'tcp' | 'udp' | 'sctp';
  hostIP?: string;
}

export interface Bandwidth {
  /** bits per second */
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** Identity of one workload interface. Attach/detach/check are keyed by (orchestrator, workloadId, ifname). */
export interface WorkloadRef {
  orchestrator: PortOwner['orchestrator'];
  /** The orchestrator's id of the workload: CNI container id, Docker endpoint id, Mesos container id… */
  workloadId: string;
  /** Interface name inside the workload's network namespace. */
  ifname: string;
}

export interface NetworkSelector {
  /** Tenant name (default "default"). */
  tenant?: string;
  /** Virtual network (bridge) name or id. */
  network: string;
  /** Create the network on first use with these settings if it does not exist. */
  create?: { subnets: { cidr: string; gateway?: string }[]; mtu?: number };
}

export interface AttachRequest extends WorkloadRef, NetworkSelector {
  /**
   * Network namespace path of the workload (/proc/PID/ns/net, /run/netns/NAME…). Optional in the schema: the
   * agent answers its absence with an 'invalid' naming the field unless hostSideOnly is set.
   */
  netns?: string;
  /** Requested static addresses (plain IPs, or CIDRs whose prefix must match the subnet). */
  ips?: string[];
  mac?: string;
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  /** Orchestrator labels kept on the port (pod namespace/name/uid, Mesos labels…). */
  labels?: Record<string, string>;
  /**
   * Only create the host side and return it, leaving the move into the namespace to the caller
   * (libnetwork moves the interface itself). When set, `netns` may be empty.
   */
  hostSideOnly?: boolean;
}

export interface AttachedIp {
  /** CIDR form, e.g. "10.1.0.5/24". */
  address: string;
  gateway?: string;
  family: 4 | 6;
}

export interface AttachedRoute {
  dst: string;
  gw?: string;
}

export interface AttachResult {
  portId: string;
  bridgeId: string;
  tenantId: string;
  /** The interface inside the workload. */
  interface: { name: string; mac: string; mtu: number; sandbox: string };
  /** The host end of the veth. */
  hostInterface: { name: string; mac: string };
  /** With hostSideOnly: the workload end, left in the host namespace for the caller to move and rename. */
  peerInterface?: string;
  ips: AttachedIp[];
  routes: AttachedRoute[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  mtu: number;
}

export interface DetachRequest extends WorkloadRef {
  /** When known; detach finds the port by identity alone otherwise. */
  network?: string;
  tenant?: string;
  netns?: string;
}

export interface CheckRequest extends WorkloadRef {
  /** Optional in the schema, which has always let a check without it through. */
  netns?: string;
  network?: string;
  tenant?: string;
}

export interface CheckResult {
  ok: boolean;
  /** Everything found missing or different, one line each, for a person. */
  problems: string[];
}

export interface GcRequest {
  orchestrator: PortOwner['orchestrator'];
  /** Attachments that are still valid; every other attachment of this orchestrator on this host is removed. */
  valid: { workloadId: string; ifname: string }[];
  /** Limit the collection to these networks (CNI GC is per network). */
  network?: string;
  tenant?: string;
}

export interface GcResult {
  removed: WorkloadRef[];
}

export interface StatusResult {
  ready: boolean;
  hostId: string;
  store: string;
  /** Why not ready, for a person. */
  reason?: string;
}

export interface WorkloadErrorBody {
  error: string;
  /** Machine-readable: a kind of core/errors.ts ('invalid' is the caller's fault, 'internal' ours). */
  code: ErrorKind;
  /** The offending field, when there is one. */
  field?: string;
}
