// Timeouts node-zookeeper-client lacks. It bounds the TCP connect, but not the handshake that follows nor the
// silence of an established connection, so two real failures leave it waiting forever:
//  - a server that accepts a connection while starting up can fail to answer or close it (ZooKeeper 3.8 throws
//    "ZooKeeperServer not running" and then a NullPointerException while closing, leaving the socket open), and the
//    client sits in CONNECTING for good — seen here after every kind of server restart;
//  - a server that hangs, or a path that black-holes packets, keeps the TCP connection up with nothing arriving.
// The Java client bounds both (connect timeout over the handshake, read timeout = 2/3 of the session timeout);
// this watchdog does the same from outside the library: it resets the socket, and the library's own retry
// moves on (to the next server of the ensemble, keeping the session).
import type { Socket } from 'node:net';
import type { Client } from 'node-zookeeper-client';

/** The library's connection manager, read through its (untyped) internals. States as in its ConnectionManager.js. */
interface ConnectionManager {
  socket?: Socket;
  state: number;
  sessionTimeout: number;
}
const CONNECTING = 1;
const CONNECTED = 2;
const CONNECTED_READ_ONLY = 3;

export interface WatchdogOptions {
  /** Longest wait from the start of a connection attempt to the server's handshake answer. */
  handshakeMs: number;
  /** Checking period. */
  tickMs?: number;
  /** Called with what was reset and why (diagnostics). */
  onReset?: (why: string) => void;
}

/** Watch one client until the returned function is called. */
export function watchConnection(client: Client, options: WatchdogOptions): () => void {
  // The socket lives in the client's undeclared connectionManager: the library types none of it, so look it up.
  const cm = (client as unknown as { connectionManager?: ConnectionManager }).connectionManager;
  if (!cm) return () => undefined; // a library version without this field: nothing we can do from outside
  let seen: Socket | undefined;
  let attemptStart = 0;
  let lastRx = 0;
  const tick = () => {
    const socket = cm.socket;
    if (!socket) return;
    const now = Date.now();
    if (socket !== seen) {
      seen = socket;
      attemptStart = now;
      lastRx = now;
      socket.on('data', () => (lastRx = Date.now()));
      return;
    }
    if (socket.destroyed) return;
    if (cm.state === CONNECTING && now - attemptStart > options.handshakeMs) {
      options.onReset?.(`no handshake answer in ${now - attemptStart} ms`);
      socket.destroy();
    } else if ((cm.state === CONNECTED || cm.state === CONNECTED_READ_ONLY) && cm.sessionTimeout > 0) {
      // The library pings after a third of the session timeout without traffic, so a live server speaks at least
      // that often; the Java client gives up after two thirds.
      const readTimeout = Math.floor((cm.sessionTimeout * 2) / 3);
      if (now - lastRx > readTimeout) {
        options.onReset?.(`nothing received for ${now - lastRx} ms on an established connection`);
        socket.destroy();
      }
    }
  };
  const timer = setInterval(tick, options.tickMs ?? 100);
  timer.unref();
  return () => clearInterval(timer);
}
