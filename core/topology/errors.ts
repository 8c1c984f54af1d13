// Errors of the topology service, shaped so every adapter can answer in its own protocol's form
// (HTTP status, CNI code, libnetwork Err) without parsing messages.

export type TopologyErrorCode = 'invalid' | 'not_found' | 'conflict' | 'exhausted' | 'unavailable';

export class TopologyError extends Error {
  constructor(
    readonly code: TopologyErrorCode,
    message: string,
    /** The request field at fault, e.g. "subnets[0].cidr". */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'TopologyError';
  }
}

/** HTTP status for an error code: a client's mistake is never a 500. */
export function httpStatusOf(code: TopologyErrorCode): number {
  switch (code) {
    case 'invalid': return 400;
    case 'not_found': return 404;
    case 'conflict': return 409;
    case 'exhausted': return 409;
    case 'unavailable': return 503;
  }
}
