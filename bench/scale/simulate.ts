// The host simulator: registers simulated hosts and their workload ports in the store the way agents and attaches
// would (Host objects in the default tunnel zone, bound bridge ports with a MAC, an address and an owner), through
// the Store API only: no kernel, no agent process per host. The topology around them (tenant, tunnel zone, one
// bridge per `portsPerNetwork` ports) goes through the topology service, so its ids and defaults are the real ones.
import { randomUUID } from 'node:crypto';
import type { Host, Port } from '../../core/model/types.js';
import type { Op, Store } from '../../core/store/store.js';
import { DEFAULT_TENANT, Topology } from '../../core/topology/service.js';

export interface SimSpec {
  hosts: number;
  ports: number;
  /** Ports per simulated network (bridge). Default 1,000. */
  portsPerNetwork?: number;
}

export interface SimWorld {
  tenantId: string;
  zoneId: string;
  /** Bridge ids, network `sim<k>` at index k. */
  bridges: string[];
  hosts: string[];
  /** Ports written so far (the next port's index). */
  ports: number;
}

/** The name of simulated network k (the real agent attaches a workload to sim0). */
export const networkName = (k: number): string => `sim${k}`;

/** Simulated network k's subnet: a /16 per network; simulated ports take addresses from its upper half. */
const subnetOf = (k: number): string => `10.${100 + k}.0.0/16`;

/** A simulated host's underlay address (never routed anywhere: FDB entries point at it, no packet goes there). */
const hostIp = (i: number): string => `172.${16 + (i >> 16)}.${(i >> 8) & 255}.${(i & 255) + 1}`;

function mac(n: number): string {
  const b = [0x0a, 0x58, (n >> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** Network k's `j`th simulated address: 10.(100+k).128.0 + j + 1, clear of the real agent's IPAM blocks. */
function portIp(k: number, j: number): string {
  const n = 128 * 256 + j + 1;
  return `10.${100 + k}.${n >> 8}.${n & 255}`;
}

export function simHost(world: Pick<SimWorld, 'zoneId'>, i: number, id: string = randomUUID()): Host {
  const ip = hostIp(i);
  return { id, name: `simhost-${i}`, addresses: [ip], tunnelZones: [{ zoneId: world.zoneId, ip }], tunnelPort: 4789, underlayMtu: 1500 };
}

/** Port `n` of the world: network n mod networks, host n mod hosts. */
export function simPort(world: SimWorld, n: number): Port {
  const k = n % world.bridges.length;
  const j = Math.floor(n / world.bridges.length);
  return {
    id: randomUUID(),
    tenantId: world.tenantId,
    type: 'bridge',
    bridgeId: world.bridges[k]!,
    mac: mac(n),
    ips: [portIp(k, j)],
    hostId: world.hosts[n % world.hosts.length]!,
    interfaceName: `sim${n.toString(36)}`,
    owner: { orchestrator: 'cni', workloadId: `sim-${n}`, ifname: 'eth0' },
    adminStateUp: true,
    status: 'up',
    portSecurity: true,
    portGroupIds: [],
    options: {},
  };
}

/** Runs `jobs` with at most `concurrency` in flight. */
async function pool(jobs: (() => Promise<unknown>)[], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, jobs.length) }, async () => {
      for (let i = next++; i < jobs.length; i = next++) await jobs[i]!();
    }),
  );
}

/** Creates the tenant, tunnel zone and networks the simulated ports live on. */
export async function makeWorld(store: Store, spec: SimSpec): Promise<SimWorld> {
  const topology = new Topology(store);
  const tenant = await topology.ensureTenant(DEFAULT_TENANT);
  const zone =
    (await topology.list('TunnelZone', { name: 'default' }))[0] ??
    (await topology.create('TunnelZone', { name: 'default', type: 'vxlan' }));
  const per = spec.portsPerNetwork ?? 1000;
  const networks = Math.max(1, Math.ceil(spec.ports / per));
  if (networks > 150) throw new Error(`${networks} networks: the simulator's address plan holds 150 (raise portsPerNetwork)`);
  const bridges: string[] = [];
  for (let k = 0; k < networks; k++) {
    const b = await topology.create('Bridge', { tenantId: tenant.id, name: networkName(k), subnets: [{ cidr: subnetOf(k), gateway: '' }] });
    bridges.push(b.id);
  }
  return { tenantId: tenant.id, zoneId: zone.id, bridges, hosts: [], ports: 0 };
}

/** Registers `count` more hosts, `batch` per commit. */
export async function addHosts(store: Store, world: SimWorld, count: number, batch = 200, concurrency = 4): Promise<void> {
  const jobs: (() => Promise<unknown>)[] = [];
  for (let i = 0; i < count; i += batch) {
    const ops: Op[] = [];
    for (let n = i; n < Math.min(count, i + batch); n++) {
      const h = simHost(world, world.hosts.length + n);
      ops.push({ op: 'create', kind: 'Host', value: h });
    }
    jobs.push(() => store.commit(ops));
  }
  const before = world.hosts.length;
  await pool(jobs, concurrency);
  // Ids in index order (the commits above ran out of order).
  const hosts = await store.list('Host');
  const byName = new Map(hosts.map((h) => [h.value.name, h.value.id]));
  for (let n = before; n < before + count; n++) world.hosts.push(byName.get(`simhost-${n}`)!);
}

/**
 * Writes `count` more ports, `batch` per commit with `concurrency` commits in flight; calls `onCommit` with the
 * ports written so far after each commit. A batch of 1 is what attaches write (one port per transaction). Resolves with
 * the new ports' ids.
 */
export async function addPorts(
  store: Store,
  world: SimWorld,
  count: number,
  opts: { batch?: number; concurrency?: number; onCommit?: (written: number) => void } = {},
): Promise<string[]> {
  if (world.hosts.length === 0) throw new Error('simulated ports need simulated hosts');
  const batch = opts.batch ?? 250;
  const jobs: (() => Promise<unknown>)[] = [];
  const start = world.ports;
  let written = 0;
  const ids: string[] = [];
  for (let i = 0; i < count; i += batch) {
    const n = Math.min(batch, count - i);
    const ops: Op[] = Array.from({ length: n }, (_, j) => ({ op: 'create', kind: 'Port', value: simPort(world, start + i + j) }));
    for (const o of ops) if (o.op === 'create') ids.push(o.value.id);
    jobs.push(async () => {
      await store.commit(ops);
      written += n;
      opts.onCommit?.(written);
    });
  }
  world.ports += count;
  await pool(jobs, opts.concurrency ?? 4);
  return ids;
}

/** Deletes ports (by id), `batch` per commit, 4 commits in flight. */
export async function removePorts(store: Store, ids: string[], batch = 250): Promise<void> {
  const jobs: (() => Promise<unknown>)[] = [];
  for (let i = 0; i < ids.length; i += batch) {
    const ops: Op[] = ids.slice(i, i + batch).map((id) => ({ op: 'delete', kind: 'Port', id }));
    jobs.push(() => store.commit(ops));
  }
  await pool(jobs, 4);
}
