// Network namespaces without nsenter. A socket belongs to the namespace it was created in, whatever thread uses
// it later; so to talk to another namespace's kernel tables we move the calling thread there (setns), create the
// socket, and move straight back. Node runs JavaScript on one thread and nothing else runs on it between the two
// setns calls (the function in between is synchronous), so no other code ever sees the foreign namespace.
import { closeSync, openSync } from 'node:fs';
import { KernelError, lastErrno, libc } from './libc.js';
import { NetlinkSocket } from './socket.js';

const CLONE_NEWNET = 0x40000000;

/** The namespace this thread started in, opened once: where every excursion returns to. */
let home: number | undefined;

function homeFd(): number {
  home ??= openSync('/proc/thread-self/ns/net', 'r');
  return home;
}

/** Open a namespace file (/run/netns/x, /proc/pid/ns/net) for setns or IFLA_NET_NS_FD; the caller closes it. */
export function openNamespace(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new KernelError(`network namespace ${path}`, -(err.errno ?? -2));
  }
}

/**
 * Run `fn` with the calling thread inside the network namespace at `path` (the current one when undefined),
 * and come back. `fn` must be synchronous. If coming back fails the process is in the wrong namespace and every
 * later operation would silently act on the wrong host: that is thrown as an error nobody should swallow.
 */
export function inNamespace<T>(path: string | undefined, fn: () => T): T {
  if (path === undefined) return fn();
  const back = homeFd();
  const fd = openNamespace(path);
  const c = libc();
  try {
    if (c.setns(fd, CLONE_NEWNET) !== 0) throw new KernelError(`enter network namespace ${path}`, lastErrno());
    try {
      return fn();
    } finally {
      if (c.setns(back, CLONE_NEWNET) !== 0) {
        const e = new KernelError(
          `FATAL: could not return from network namespace ${path}; this process is now in the wrong namespace`,
          lastErrno(),
        );
        process.emitWarning(e);
        throw e;
      }
    }
  } finally {
    closeSync(fd);
  }
}

/** A route-netlink socket of the namespace at `path` (current one when undefined). */
export function openSocket(path: string | undefined): NetlinkSocket {
  return inNamespace(path, () => NetlinkSocket.open());
}

/** Run `fn` with a netlink socket of the namespace at `path`; the socket is closed afterwards (opening one is cheap). */
export async function withNetlink<T>(path: string | undefined, fn: (s: NetlinkSocket) => T | Promise<T>): Promise<T> {
  const s = openSocket(path);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}
