// The few libc calls the netlink client needs, bound in-process through koffi (FFI), so that a kernel operation
// costs a system call instead of a process. Bound lazily: importing the datapath must not require libc to load
// (the caller decides what to do when it cannot).
import koffi from 'koffi';
import { constants } from 'node:os';
import { inspect } from 'node:util';

export interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): number;
  /** sendto on a libuv pool thread: the kernel runs a netlink request inside the sender's sendto(). */
  sendtoAsync(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): Promise<number>;
  recv(fd: number, buf: Buffer, len: number, flags: number): number;
  close(fd: number): number;
  /** close on a libuv pool thread: closing a packet socket waits for an RCU grace period (af_packet's release). */
  closeAsync(fd: number): Promise<number>;
  setns(fd: number, nstype: number): number;
  strerror(errnum: number): string;
  /** glibc's malloc_trim: hands the free pages of every malloc arena back to the kernel; 1 if any were. */
  mallocTrim(pad: number): number;
}

let bound: Libc | undefined;

export function libc(): Libc {
  if (bound) return bound;
  const lib = koffi.load('libc.so.6');
  const sendto = lib.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)');
  const close = lib.func('int close(int)');
  bound = {
    socket: lib.func('int socket(int, int, int)'),
    bind: lib.func('int bind(int, const void *, uint32_t)'),
    setsockopt: lib.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    sendto,
    sendtoAsync: (...args: unknown[]) => onPoolThread<number>(sendto, args),
    recv: lib.func('intptr_t recv(int, _Out_ void *, size_t, int)'),
    close,
    closeAsync: (fd: number) => onPoolThread<number>(close, [fd]),
    setns: lib.func('int setns(int, int)'),
    strerror: lib.func('const char *strerror(int)'),
    mallocTrim: lib.func('int malloc_trim(size_t)'),
  };
  return bound;
}

/** A koffi function run by its `.async` form on a libuv pool thread, as a promise. */
export function onPoolThread<T>(f: { async: (...args: unknown[]) => void }, args: unknown[]): Promise<T> {
  return new Promise((resolve, reject) => {
    f.async(...args, (err: unknown, result: T) =>
      err ? reject(err instanceof Error ? err : new Error(typeof err === 'string' ? err : inspect(err))) : resolve(result),
    );
  });
}

/** errno of the last failed call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

const codes = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** Symbolic name of an errno value, e.g. 17 → "EEXIST". */
export function errnoCode(errno: number): string {
  return codes.get(errno) ?? `E${errno}`;
}

/**
 * A system call or netlink request the kernel refused: `errno`, its symbolic `code` ("EEXIST") and its text
 * ("File exists") after what we were doing, plus the kernel's extended-ack explanation when it gave one.
 */
export class KernelError extends Error {
  readonly code: string;
  constructor(
    readonly operation: string,
    readonly errno: number,
    detail?: string,
  ) {
    super(`${operation}: ${libc().strerror(errno)}${detail ? ` (${detail})` : ''}`);
    this.name = 'KernelError';
    this.code = errnoCode(errno);
  }
}
