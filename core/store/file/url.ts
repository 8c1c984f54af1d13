// The file store is named by a URL like the ZooKeeper one, so `--store` takes either; this turns the file: forms
// users write into a directory path, refusing what would silently point somewhere else (a remote host).
import path from 'node:path';
import { StoreError } from '../store.js';

/** Parses `file:/abs`, `file:///abs`, `file://localhost/abs` and `file:relative` into a filesystem path. */
export function fileUrlToDir(url: string): string {
  const m = /^file:(.*)$/i.exec(url);
  if (!m || m[1] === '') throw new StoreError('Invalid', `not a file store URL: ${JSON.stringify(url)}`);
  let rest = m[1]!;
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = slash < 0 ? rest.slice(2) : rest.slice(2, slash);
    if (host !== '' && host !== 'localhost') {
      throw new StoreError('Invalid', `file store URL names a remote host ${JSON.stringify(host)}: ${url}`);
    }
    rest = slash < 0 ? '' : rest.slice(slash);
    if (rest === '') throw new StoreError('Invalid', `file store URL has no path: ${url}`);
  }
  try {
    rest = decodeURIComponent(rest);
  } catch {
    throw new StoreError('Invalid', `file store URL has bad percent-encoding: ${url}`);
  }
  return path.resolve(rest);
}
