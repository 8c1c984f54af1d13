// The one safe way bees listens: on a unix socket it never steals the path from a live server (a second agent
// started by mistake fails instead of silently taking over), removes a stale socket file a dead one left, and
// restricts the socket to root (mode 0600); or on TCP, where a listener beyond loopback must have TLS and a token
// (a bearer token in clear text is anyone's who can watch the wire). Used by the REST API, the workload API and
// the Docker plugin.
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type http from 'node:http';
import type https from 'node:https';

/**
 * A fastify app serving plain HTTP or, given a certificate, HTTPS. fastify types the two apart by their node server;
 * everything bees does with an app (routes, hooks, inject, listen) is the same for both.
 */
export type ServerApp = FastifyInstance<http.Server | https.Server>;

/** Listen on a unix socket: a live server's socket is refused, a stale one replaced; mode 0600. */
export async function listenUnix(app: ServerApp, file: string): Promise<void> {
  if (!file) throw new Error('listen: no socket path');
  await mkdir(path.dirname(file), { recursive: true, mode: 0o755 });
  if (await exists(file)) {
    if (await answers(file)) throw new Error(`listen: ${file} is in use by another server`);
    await rm(file, { force: true });
  }
  await app.listen({ path: file });
  await chmod(file, 0o600);
}

/** What listen() needs to know about an app: whether it can be exposed beyond this machine. */
export interface ListenGuard {
  tls: boolean;
  token: boolean;
  /** Set by listen(): the unix socket needs no token, anything else (TCP, or not listened yet: inject) does. */
  unix: boolean;
}
const guards = new WeakMap<ServerApp, ListenGuard>();

/** Registers what an app offers (TLS, a token); an app without one listens on unix sockets and loopback only. */
export function setListenGuard(app: ServerApp, guard: ListenGuard): void {
  guards.set(app, guard);
}

/** 127.0.0.0/8, ::1 and localhost: a listener there is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  if (net.isIPv4(host)) return host.startsWith('127.');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(host);
  return !!mapped && mapped[1]!.startsWith('127.');
}

/**
 * Listens on `unix:/path` (see listenUnix) or `tcp://host:port` (`https://host:port` too, which insists on TLS).
 * A TCP listener beyond loopback is refused unless the app has both TLS and a token. Returns the endpoint actually
 * bound (the port filled in for port 0; https:// when serving TLS).
 */
export async function listen(app: ServerApp, endpoint: string): Promise<string> {
  const guard = guards.get(app) ?? { tls: false, token: false, unix: false };
  if (endpoint.startsWith('unix:')) {
    guard.unix = true;
    const file = endpoint.slice('unix:'.length);
    if (!file) throw new Error(`listen: ${endpoint}: no socket path`);
    await listenUnix(app, file);
    return `unix:${file}`;
  }
  const m = /^(tcp|https):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(endpoint);
  if (!m) throw new Error(`listen: ${JSON.stringify(endpoint)} is neither unix:/path nor tcp://host:port`);
  const host = m[2]!.replace(/^\[|\]$/g, '');
  if (m[1] === 'https' && !guard.tls) throw new Error(`listen: ${endpoint}: https needs a certificate and key (--tls-cert, --tls-key)`);
  if (!isLoopback(host) && !(guard.tls && guard.token)) {
    const missing = [guard.tls ? '' : 'TLS (--tls-cert, --tls-key)', guard.token ? '' : 'a token (--token-file or $BEES_API_TOKEN)']
      .filter(Boolean)
      .join(' and ');
    throw new Error(`listen: refusing ${endpoint}: a TCP listener beyond loopback needs TLS and a token; missing ${missing}`);
  }
  await app.listen({ host, port: Number(m[3]) });
  const addr = app.server.address() as net.AddressInfo;
  return `${guard.tls ? 'https' : 'tcp'}://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
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
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
