// Errors of the topology service, shaped so every adapter can answer in its own protocol's form
// (HTTP status, CNI code, libnetwork Err) without parsing messages: the code is a kind of core/errors.ts.
import type { RefusalKind } from '../errors.js';

export { httpStatusOf } from '../errors.js';

export type TopologyErrorCode = RefusalKind;

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
