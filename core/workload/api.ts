// The workload API as an interface (core/workload/types.ts has the protocol) and the errors every implementation
// fails with. Implemented in-process inside the agent (core/agent/workload-server.ts, handed to the routes adapters
// add to the workload server) and over HTTP by clients in other processes (cni/plugin/agent-client.ts).
import type {
  AttachRequest,
  AttachResult,
  CheckRequest,
  CheckResult,
  DetachRequest,
  GcRequest,
  StatusResult,
  WorkloadErrorBody,
} from './types.js';

export interface WorkloadApi {
  attach(req: AttachRequest): Promise<AttachResult>;
  detach(req: DetachRequest): Promise<unknown>;
  check(req: CheckRequest): Promise<CheckResult>;
  gc(req: GcRequest): Promise<unknown>;
  status(): Promise<StatusResult>;
}

/** The agent answered with an error body (HTTP 4xx/5xx): its kind is `body.code`. */
export class AgentError extends Error {
  constructor(
    readonly status: number,
    readonly body: WorkloadErrorBody,
  ) {
    super(body.error);
    this.name = 'AgentError';
  }
}

/** Nobody (or something that is not the agent) is at the socket. */
export class AgentUnreachable extends Error {
  constructor(
    readonly socket: string,
    readonly reason: string,
  ) {
    super(`cannot reach the bees agent at ${socket}: ${reason}`);
    this.name = 'AgentUnreachable';
  }
}

/** The agent answered, but not with the workload API's JSON. */
export class AgentProtocolError extends Error {
  override name = 'AgentProtocolError';
}
