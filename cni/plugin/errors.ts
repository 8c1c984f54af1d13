// CNI errors: every failure the plugin reports is a CniError, printed as the spec's error object on stdout.
// Codes 1-99 are the spec's (SPEC.md "Error"); 100+ are ours and listed here so users can look them up.

export const Code = {
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  badEnv: 4,
  ioFailure: 5,
  decode: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  unavailable: 50,
  unavailableDegraded: 51,
  /** The agent failed in a way that is not the caller's fault. */
  agentInternal: 100,
  /** The network has no free address left. */
  addressExhausted: 101,
  /** The attachment (or a static address / MAC it asks for) already exists. */
  conflict: 102,
  /** The agent answered something that is not the workload API. */
  agentProtocol: 103,
  /** CHECK found the attachment missing or different. */
  checkFailed: 104,
} as const;

export type CniCode = (typeof Code)[keyof typeof Code];

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** Extra context for a person: the agent's own words, the offending value. */
    readonly details?: string,
  ) {
    super(message);
    this.name = 'CniError';
  }

  toJSON(cniVersion: string): { cniVersion: string; code: number; msg: string; details?: string } {
    const body: { cniVersion: string; code: number; msg: string; details?: string } = { cniVersion, code: this.code, msg: this.message };
    if (this.details) body.details = this.details;
    return body;
  }
}
