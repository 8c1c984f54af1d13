// A topology service on a real file store in a fresh directory, and the assertion on its refusals: shared by the
// tests of the service's rules (topology, policy model, security groups).
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openStore } from '../store/open.js';
import { TopologyError, type TopologyErrorCode } from '../topology/errors.js';
import { Topology } from '../topology/service.js';

/** A topology on a new file store under a `prefix` directory; closed and removed at teardown. */
export async function freshTopology(t: ExecutionContext, prefix: string): Promise<Topology> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const store = await openStore(`file:${dir}`);
  t.teardown(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return new Topology(store);
}

/** Asserts the promise rejects with a TopologyError of that code (and field, when given). */
export async function rejects(t: ExecutionContext, p: Promise<unknown>, code: TopologyErrorCode, field?: string): Promise<TopologyError> {
  const err = await t.throwsAsync(p, { instanceOf: TopologyError });
  t.is(err.code, code, err.message);
  if (field !== undefined) t.is(err.field, field, err.message);
  return err;
}
