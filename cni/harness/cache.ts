// The harness's result cache (libcni keeps one under /var/lib/cni/results): the last ADD result per attachment,
// sent back as prevResult on CHECK and DEL, and the list of attachments GC compares with the valid ones.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RuntimeConf } from './types.js';

export interface CacheEntry {
  kind: 'cniCacheV1';
  networkName: string;
  containerId: string;
  ifName: string;
  netns: string;
  cniArgs?: [string, string][];
  capabilityArgs?: Record<string, unknown>;
  result: unknown;
}

export class ResultCache {
  constructor(readonly dir: string) {}

  private file(net: string, containerId: string, ifname: string): string {
    return join(this.dir, 'results', `${net}-${containerId}-${ifname}`);
  }

  async put(net: string, rt: RuntimeConf, result: unknown): Promise<void> {
    const entry: CacheEntry = {
      kind: 'cniCacheV1',
      networkName: net,
      containerId: rt.containerId,
      ifName: rt.ifname,
      netns: rt.netns,
      result,
    };
    if (rt.args) entry.cniArgs = rt.args;
    if (rt.capabilityArgs) entry.capabilityArgs = rt.capabilityArgs;
    const f = this.file(net, rt.containerId, rt.ifname);
    await mkdir(join(this.dir, 'results'), { recursive: true });
    // Write then rename: a crash never leaves half a JSON file that would break the next DEL.
    await writeFile(`${f}.tmp`, JSON.stringify(entry));
    await rename(`${f}.tmp`, f);
  }

  async get(net: string, containerId: string, ifname: string): Promise<CacheEntry | undefined> {
    try {
      return JSON.parse(await readFile(this.file(net, containerId, ifname), 'utf8')) as CacheEntry;
    } catch {
      return undefined;
    }
  }

  async remove(net: string, containerId: string, ifname: string): Promise<void> {
    await rm(this.file(net, containerId, ifname), { force: true });
  }

  /** Every cached attachment of network `net`. */
  async list(net: string): Promise<CacheEntry[]> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, 'results'));
    } catch {
      return [];
    }
    const out: CacheEntry[] = [];
    for (const n of names) {
      if (!n.startsWith(`${net}-`) || n.endsWith('.tmp')) continue;
      try {
        const e = JSON.parse(await readFile(join(this.dir, 'results', n), 'utf8')) as CacheEntry;
        if (e.networkName === net) out.push(e);
      } catch {
        // a foreign or broken file: not ours to judge
      }
    }
    return out;
  }
}
