// Picks a store backend by URL scheme: `file:` for one host, `zk://` for a cluster.
import { StoreError, type Store } from './store.js';
import type { FileStoreOptions } from './file.js';
import type { ZooKeeperStoreOptions } from './zookeeper.js';
import { redactUrl } from './validate.js';

export interface OpenStoreOptions {
  file?: FileStoreOptions;
  zookeeper?: ZooKeeperStoreOptions;
}

export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  if (typeof url !== 'string') throw new StoreError('Invalid', 'store URL must be a string');
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]?.toLowerCase();
  switch (scheme) {
    case 'file': {
      const { FileStore } = await import('./file.js');
      return FileStore.open(url, options.file);
    }
    case 'zk': {
      const { ZooKeeperStore } = await import('./zookeeper.js');
      return ZooKeeperStore.open(url, options.zookeeper);
    }
    default:
      throw new StoreError(
        'Invalid',
        `unsupported store URL ${JSON.stringify(redactUrl(url))}: expected file:/path or zk://host:port/root`,
      );
  }
}
