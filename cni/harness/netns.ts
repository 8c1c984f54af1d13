// Named network namespaces for tests and benchmarks (`ip netns`), removed even when the caller failed.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function sh(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await run(cmd, args, { maxBuffer: 16 << 20 });
  return stdout;
}

export interface Netns {
  name: string;
  path: string;
  remove(): Promise<void>;
}

export async function createNetns(prefix = 'cni'): Promise<Netns> {
  const name = `${prefix}-${randomBytes(4).toString('hex')}`;
  await sh('ip', ['netns', 'add', name]);
  return {
    name,
    path: `/run/netns/${name}`,
    remove: async () => {
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    },
  };
}

/** `ip -j addr` inside a namespace. */
export async function addrsIn(ns: string): Promise<
  {
    ifname: string;
    operstate?: string;
    address?: string;
    mtu?: number;
    addr_info: { local: string; prefixlen: number; family: string }[];
  }[]
> {
  return JSON.parse(await sh('ip', ['-n', ns, '-j', 'addr', 'show'])) as Awaited<ReturnType<typeof addrsIn>>;
}

export function randomSuffix(bytes = 3): string {
  return randomBytes(bytes).toString('hex');
}
