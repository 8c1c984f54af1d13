// libbpf (Debian's libbpf1) bound through koffi: what the fast path needs to load its object, reach its maps and
// attach its programs to tc, in-process. Bound lazily, as libnftables is (../nft/lib.ts): importing the datapath
// must not require libbpf; the caller turns "cannot load" into "fast path off".
import koffi from 'koffi';
import { lastErrno, onPoolThread } from '../netlink/libc.js';

const LIBRARY = 'libbpf.so.1';

type Fn = ((...args: unknown[]) => number) & { async: (...args: unknown[]) => void };

export interface Libbpf {
  openFile(path: string, opts: null): unknown;
  load: Fn;
  close(obj: unknown): void;
  findProgram(obj: unknown, name: string): unknown;
  programFd(prog: unknown): number;
  mapFd(obj: unknown, name: string): number;
  update(fd: number, key: Buffer, value: Buffer, flags: bigint): number;
  lookup(fd: number, key: Buffer, value: Buffer): number;
  remove(fd: number, key: Buffer): number;
  nextKey(fd: number, key: Buffer | null, next: Buffer): number;
  hookCreate(hook: Buffer): number;
  attach(hook: Buffer, opts: Buffer): number;
  detach(hook: Buffer, opts: Buffer): number;
  possibleCpus(): number;
  setPrint(fn: null): unknown;
}

let lib: Libbpf | undefined;
let loadError: Error | undefined;

/** The bound library, or undefined when it cannot be loaded (then `whyUnavailable()` says why). */
export function libbpf(): Libbpf | undefined {
  if (lib || loadError) return lib;
  try {
    const l = koffi.load(LIBRARY);
    const obj = koffi.pointer('bpf_object', koffi.opaque());
    const prog = koffi.pointer('bpf_program', koffi.opaque());
    lib = {
      openFile: l.func('bpf_object__open_file', obj, ['const char *', 'void *']),
      load: l.func('bpf_object__load', 'int', [obj]) as Fn,
      close: l.func('bpf_object__close', 'void', [obj]),
      findProgram: l.func('bpf_object__find_program_by_name', prog, [obj, 'const char *']),
      programFd: l.func('bpf_program__fd', 'int', [prog]),
      mapFd: l.func('bpf_object__find_map_fd_by_name', 'int', [obj, 'const char *']),
      update: l.func('int bpf_map_update_elem(int, const void *, const void *, uint64_t)'),
      lookup: l.func('int bpf_map_lookup_elem(int, const void *, _Out_ void *)'),
      remove: l.func('int bpf_map_delete_elem(int, const void *)'),
      nextKey: l.func('int bpf_map_get_next_key(int, const void *, _Out_ void *)'),
      hookCreate: l.func('int bpf_tc_hook_create(void *)'),
      attach: l.func('int bpf_tc_attach(const void *, _Inout_ void *)'),
      detach: l.func('int bpf_tc_detach(const void *, const void *)'),
      possibleCpus: l.func('int libbpf_num_possible_cpus(void)'),
      // libbpf writes its warnings to stderr (an existing clsact, which we expect, among them); every failure we act
      // on reaches us as its return value, so its printing is turned off.
      setPrint: l.func('void *libbpf_set_print(void *)'),
    };
    lib.setPrint(null);
  } catch (e) {
    loadError = e as Error;
  }
  return lib;
}

export function whyUnavailable(): string | undefined {
  libbpf();
  return loadError?.message;
}

/** bpf_object__load on a pool thread: the verifier takes tens of milliseconds, the event loop goes on. */
export function loadAsync(l: Libbpf, obj: unknown): Promise<number> {
  return onPoolThread<number>(l.load, [obj]);
}

/** libbpf 1.x returns -errno from the bpf_* wrappers and NULL + errno from the object calls. */
export function errnoOf(rc: number): number {
  return rc < 0 ? -rc : lastErrno();
}

// struct bpf_tc_hook { size_t sz; int ifindex; enum bpf_tc_attach_point attach_point; __u32 parent; size_t :0; }
const TC_HOOK_SIZE = 24;
const BPF_TC_INGRESS = 1;
// struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags; __u32 prog_id; __u32 handle; __u32 priority; size_t :0; }
const TC_OPTS_SIZE = 32;
export const BPF_TC_F_REPLACE = 1;

export function tcIngressHook(ifindex: number): Buffer {
  const b = Buffer.alloc(TC_HOOK_SIZE);
  b.writeBigUInt64LE(BigInt(TC_HOOK_SIZE), 0);
  b.writeInt32LE(ifindex, 8);
  b.writeUInt32LE(BPF_TC_INGRESS, 12);
  return b;
}

export function tcOpts(o: { progFd?: number; flags?: number; handle: number; priority: number }): Buffer {
  const b = Buffer.alloc(TC_OPTS_SIZE);
  b.writeBigUInt64LE(BigInt(TC_OPTS_SIZE), 0);
  b.writeInt32LE(o.progFd ?? 0, 8);
  b.writeUInt32LE(o.flags ?? 0, 12);
  b.writeUInt32LE(o.handle, 20);
  b.writeUInt32LE(o.priority, 24);
  return b;
}
