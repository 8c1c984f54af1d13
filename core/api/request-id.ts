// Request ids, shared by the REST API and the agent's workload API: the caller's X-Request-Id when it is a short
// plain token (so one id follows an operation across services; it goes into logs and headers as is), else a new one.
import { randomUUID } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';

export function requestIdOf(given: string | string[] | undefined): string {
  return typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given) ? given : randomUUID();
}
