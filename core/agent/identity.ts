// Who this host is. The host id is kept on disk in the agent's state directory so a restarted agent is the same
// Host in the topology (MidoNet keeps it in /etc/midonet_host_id.properties), and ports bound to it stay bound.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import { execFileSync } from 'node:child_process';
import { isUuid, randomId } from '../model/ids.js';

export function loadOrCreateHostId(stateDir: string, requested?: string): string {
  mkdirSync(stateDir, { recursive: true });
  const file = join(stateDir, 'host_uuid');
  let existing: string | undefined;
  try {
    existing = readFileSync(file, 'utf8')
      .trim()
      .replace(/^host_uuid=/, '');
  } catch {
    existing = undefined;
  }
  if (requested !== undefined) {
    if (!isUuid(requested)) throw new Error(`--host-id must be a UUID, got '${requested}'`);
    if (existing !== requested) persist(file, requested);
    return requested;
  }
  if (existing && isUuid(existing)) return existing;
  const id = randomId();
  persist(file, id);
  return id;
}

function persist(file: string, id: string): void {
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `host_uuid=${id}\n`, { mode: 0o644 });
  renameSync(tmp, file);
}

/** The device and MTU of a given local underlay address (--underlay-ip). */
export function underlayOfAddress(ip: string): { ip: string; ifname: string; mtu: number } {
  const addrs = JSON.parse(execFileSync('ip', ['-j', 'addr', 'show'], { encoding: 'utf8' })) as IpAddrJson[];
  for (const link of addrs) {
    if (link.addr_info?.some((a) => a.local === ip)) return { ip, ifname: link.ifname, mtu: link.mtu };
  }
  throw new Error(`--underlay-ip ${ip} is not an address of this host`);
}

interface IpAddrJson {
  ifname: string;
  mtu: number;
  addr_info?: { local: string }[];
}

export function defaultHostName(): string {
  return hostname();
}
