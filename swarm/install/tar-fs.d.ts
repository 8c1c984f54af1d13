// tar-fs ships no types (dockerode depends on it to send build contexts); only `pack` is used here.
declare module 'tar-fs' {
  import type { Readable } from 'node:stream';
  /** A tar stream of the directory tree at `dir`, paths relative to it. */
  export function pack(dir: string): Readable;
}
