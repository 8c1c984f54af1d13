// The one safe way bees listens: on a unix socket it never steals the path from a live server (a second agent
// started by mistake fails instead of silently taking over), removes a stale socket file a dead one left, and
// restricts the socket to root (mode 0600); or on TCP. Used by the REST API, the workload API and the Docker plugin.
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';

/** Listen on a unix socket: a live server's socket is refused, a stale one replaced; mode 0600. */
export async function listenUnix(app: FastifyInstance, file: string): Promise<void> {
  if (!file) throw new Error('listen: no socket path');
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  if (await exists(file)) {
    if (await answers(file)) throw new Error(`listen: ${file} is in use by another server`);
    await rm(file, { force: true });
  }
  await app.listen({ path: file });
  await chmod(file, 0o600);
}

/**
 * Listens on `unix:/path` (see listenUnix) or `tcp://host:port`. Returns the endpoint actually bound (the port
 * filled in for tcp://host:0).
 */
export async function listen(app: FastifyInstance, endpoint: string): Promise<string> {
  if (endpoint.startsWith('unix:')) {
    const file = endpoint.slice('unix:'.length);
    if (!file) throw new Error(`listen: ${endpoint}: no socket path`);
    await listenUnix(app, file);
    return `unix:${file}`;
  }
  const m = /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(endpoint);
  if (!m) throw new Error(`listen: ${JSON.stringify(endpoint)} is neither unix:/path nor tcp://host:port`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  await app.listen({ host, port: Number(m[2]) });
  const addr = app.server.address() as net.AddressInfo;
  return `tcp://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

function answers(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}
