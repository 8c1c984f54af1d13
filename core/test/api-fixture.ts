// The REST API served from this process on a real file store in a fresh directory, for the tests of the API's
// answers: on a unix socket (no token there, as the CLI reaches it) or on a loopback TCP port (where tokens apply).
// Closed, with its store, and removed at teardown.
import type { ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { buildApi, listen, type ApiOptions } from '../api/server.js';
import type { ServerApp } from '../api/listen.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { Topology } from '../topology/service.js';

export interface ServedApi {
  dir: string;
  store: Store;
  topology: Topology;
  app: ServerApp;
  /** Where it listens: unix:PATH or tcp://127.0.0.1:PORT. */
  endpoint: string;
  /** The TCP listener as an http:// URL, for fetch(); the endpoint itself on a unix socket. */
  base: string;
}

/** Serves the API under a new `prefix` directory, on its unix socket or (`on: 'tcp'`) a free loopback port. */
export async function serveApi(
  t: ExecutionContext,
  prefix: string,
  opts: Omit<ApiOptions, 'topology' | 'store'> & { on?: 'unix' | 'tcp' } = {},
): Promise<ServedApi> {
  const { on = 'unix', ...apiOpts } = opts;
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const store = await openStore(`file:${path.join(dir, 'store')}`);
  const topology = new Topology(store);
  const app = buildApi({ topology, store, ...apiOpts });
  const endpoint = await listen(app, on === 'tcp' ? 'tcp://127.0.0.1:0' : `unix:${path.join(dir, 'api.sock')}`);
  t.teardown(async () => {
    await app.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });
  const base = on === 'tcp' ? endpoint.replace('tcp://', 'http://') : endpoint;
  return { dir, store, topology, app, endpoint, base };
}
