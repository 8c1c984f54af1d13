// `bees lb …`: the distributed L4 load balancer (core/lb/README.md). A load balancer belongs to a router and, as the
// CLI shapes it, holds one pool: its members (address:port, weight, backup, enabled) and its VIPs (address:port,
// protocol, affinity, a port published on every host). Everything goes through the REST API's generic objects
// (LoadBalancer, Pool, PoolMember, Vip, HealthMonitor), so what the CLI does a script can do with curl.
import type { ApiClient } from '../api/client.js';
import type { HealthMonitor, LoadBalancer, Pool, PoolMember, Vip } from '../model/types.js';
import { isIp } from '../net/ip.js';
import { apiClient, CliError, details, intOption, parse, printJson, reply, table, tableSection, type Command } from './command.js';
import { findRouter, getOrUndefined, tenantNames } from './resolve.js';

const tenantOpt = { tenant: { type: 'string' } } as const;

/** The load balancer with its pool (the first one: the CLI makes exactly one). */
interface Lb {
  lb: LoadBalancer;
  pool: Pool | undefined;
}

async function findLb(api: ApiClient, id: string): Promise<Lb> {
  const lb = await getOrUndefined(api.get('LoadBalancer', id));
  if (!lb) throw new CliError(`load balancer '${id}' not found`);
  const pool = (await api.list('Pool', { loadBalancerId: lb.id }))[0];
  return { lb, pool };
}

function needPool(l: Lb): Pool {
  if (!l.pool) throw new CliError(`load balancer ${l.lb.id} has no pool (made outside the CLI?)`);
  return l.pool;
}

/** "ADDRESS:PORT" (IPv6 as [ADDRESS]:PORT). */
function addressPort(what: string, s: string): { address: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(s) ?? /^([^:]+):(\d+)$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !isIp(m[1]) || !(port >= 1 && port <= 65535)) throw new CliError(`${what}: '${s}' is not ADDRESS:PORT`, 2);
  return { address: m[1], port };
}

function oneOf<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new CliError(`--${flag}: '${v}' is not one of ${allowed.join(', ')}`, 2);
  return v as T;
}

const hostPort = (address: string, port: number): string => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
const vipText = (v: Vip): string =>
  `${v.protocol} ${hostPort(v.address, v.port)}${v.nodePort ? ` node:${v.nodePort}` : ''}${v.sessionPersistence ? ' sticky' : ''}`;
const memberState = (m: PoolMember): string => (m.adminStateUp ? m.status : 'disabled');

const monitorOpts = {
  monitor: { type: 'string' },
  delay: { type: 'string' },
  timeout: { type: 'string' },
  retries: { type: 'string' },
  'url-path': { type: 'string' },
  'expected-codes': { type: 'string' },
} as const;

const create: Command = {
  name: 'lb create',
  summary: 'Create a load balancer on a router (its VIPs serve the clients of the router’s networks)',
  usage: `bees lb create ROUTER [--protocol tcp|udp] [--removal drain|cut] [--monitor tcp|http [--delay S] [--timeout S]
              [--retries N] [--url-path /P] [--expected-codes 200-399]] [--tenant T]
  --removal drain|cut   open connections of a removed or disabled member: kept until they end (default), or cut
  --monitor tcp|http    health checks by the agent of each member's host (default delay 5 s, timeout 3 s, 3 retries)`,
  async run(args, io) {
    const { values, positionals } = parse(
      create,
      args,
      { ...tenantOpt, ...monitorOpts, protocol: { type: 'string' }, removal: { type: 'string' } },
      { min: 1, max: 1 },
    );
    const protocol = oneOf('protocol', values.protocol, ['tcp', 'udp'] as const);
    const removal = oneOf('removal', values.removal, ['drain', 'cut'] as const);
    const monitorType = oneOf('monitor', values.monitor, ['tcp', 'http'] as const);
    if (!monitorType && (values.delay || values.timeout || values.retries || values['url-path'] || values['expected-codes']))
      throw new CliError('lb create: health check settings need --monitor tcp|http', 2);
    const api = apiClient(values, io);
    const router = await findRouter(api, values.tenant ?? 'default', positionals[0]!);
    let monitor: HealthMonitor | undefined;
    if (monitorType) {
      const delay = intOption('delay', values.delay);
      const timeout = intOption('timeout', values.timeout);
      const maxRetries = intOption('retries', values.retries);
      monitor = await api.create('HealthMonitor', {
        type: monitorType,
        ...(delay !== undefined ? { delay } : {}),
        ...(timeout !== undefined ? { timeout } : {}),
        ...(maxRetries !== undefined ? { maxRetries } : {}),
        ...(values['url-path'] ? { urlPath: values['url-path'] } : {}),
        ...(values['expected-codes'] ? { expectedCodes: values['expected-codes'] } : {}),
      });
    }
    const lb = await api.create('LoadBalancer', { routerId: router.id });
    try {
      const pool = await api.create('Pool', {
        loadBalancerId: lb.id,
        ...(protocol ? { protocol } : {}),
        ...(removal ? { memberRemoval: removal } : {}),
        ...(monitor ? { healthMonitorId: monitor.id } : {}),
      });
      reply(io, values, { ...lb, pool, ...(monitor ? { monitor } : {}) }, lb.id);
    } catch (err) {
      // Nothing half-made: the load balancer (and the monitor) go again.
      await api.delete('LoadBalancer', lb.id).catch(() => undefined);
      if (monitor) await api.delete('HealthMonitor', monitor.id).catch(() => undefined);
      throw err;
    }
  },
};

const ls: Command = {
  name: 'lb ls',
  summary: 'List load balancers: router, VIPs, members in rotation',
  usage: 'bees lb ls [--tenant T]',
  async run(args, io) {
    const { values } = parse(ls, args, tenantOpt, { min: 0, max: 0 });
    const api = apiClient(values, io);
    const [lbs, pools, members, vips, routers, tenants] = await Promise.all([
      api.list('LoadBalancer'),
      api.list('Pool'),
      api.list('PoolMember'),
      api.list('Vip'),
      api.list('Router'),
      tenantNames(api),
    ]);
    const routerOf = new Map(routers.map((r) => [r.id, r]));
    const shown = lbs.filter((l) => !values.tenant || tenants.get(routerOf.get(l.routerId)?.tenantId ?? '') === values.tenant);
    if (values.json)
      return printJson(
        io,
        shown.map((l) => {
          const ps = pools.filter((p) => p.loadBalancerId === l.id);
          const ids = new Set(ps.map((p) => p.id));
          return { ...l, pools: ps, members: members.filter((m) => ids.has(m.poolId)), vips: vips.filter((v) => ids.has(v.poolId)) };
        }),
      );
    const rows = shown.map((l) => {
      const ids = new Set(pools.filter((p) => p.loadBalancerId === l.id).map((p) => p.id));
      const ms = members.filter((m) => ids.has(m.poolId));
      const up = ms.filter((m) => m.adminStateUp && m.weight > 0 && m.status !== 'down').length;
      const r = routerOf.get(l.routerId);
      return [
        l.id,
        r
          ? `${r.name}${tenants.get(r.tenantId) && tenants.get(r.tenantId) !== 'default' ? ` (${tenants.get(r.tenantId)})` : ''}`
          : l.routerId,
        vips
          .filter((v) => ids.has(v.poolId))
          .map(vipText)
          .join(', ') || '-',
        `${up}/${ms.length}`,
      ];
    });
    io.out(table(['ID', 'ROUTER', 'VIPS', 'MEMBERS UP'], rows));
  },
};

const show: Command = {
  name: 'lb show',
  summary: 'Show a load balancer: pool, health monitor, members, VIPs',
  usage: 'bees lb show LB',
  async run(args, io) {
    const { values, positionals } = parse(show, args, {}, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const l = await findLb(api, positionals[0]!);
    const pool = needPool(l);
    const [members, vips, monitor] = await Promise.all([
      api.list('PoolMember', { poolId: pool.id }),
      api.list('Vip', { poolId: pool.id }),
      pool.healthMonitorId ? api.get('HealthMonitor', pool.healthMonitorId) : Promise.resolve(undefined),
    ]);
    if (values.json) return printJson(io, { ...l.lb, pool, members, vips, ...(monitor ? { monitor } : {}) });
    const router = await api.get('Router', l.lb.routerId).catch(() => undefined);
    io.out(
      details([
        ['id', l.lb.id],
        ['router', router ? `${router.name} (${router.id})` : l.lb.routerId],
        ['protocol', pool.protocol],
        ['removal', pool.memberRemoval ?? 'drain'],
        [
          'monitor',
          monitor
            ? `${monitor.type}${monitor.urlPath ? ` GET ${monitor.urlPath} expecting ${monitor.expectedCodes ?? '200'}` : ''} every ${monitor.delay} s, timeout ${monitor.timeout} s, down after ${monitor.maxRetries}`
            : '-',
        ],
      ]),
    );
    tableSection(
      io,
      ['VIP', 'ADDRESS', 'NODE PORT', 'AFFINITY', 'POLICY (EXT/INT)'],
      vips.map((v) => [
        v.id,
        `${v.protocol} ${hostPort(v.address, v.port)}`,
        v.nodePort ? String(v.nodePort) : '-',
        v.sessionPersistence ? `source ${v.affinityTimeoutS ?? 10_800} s` : '-',
        `${v.externalTrafficPolicy ?? 'cluster'}/${v.internalTrafficPolicy ?? 'cluster'}`,
      ]),
    );
    tableSection(
      io,
      ['MEMBER', 'ADDRESS', 'WEIGHT', 'BACKUP', 'STATUS'],
      members.map((m) => [m.id, hostPort(m.address, m.port), String(m.weight), m.backup ? 'yes' : 'no', memberState(m)]),
    );
  },
};

const rm: Command = {
  name: 'lb rm',
  summary: 'Remove a load balancer with its pool, members, VIPs (and its health monitor, if no other pool uses it)',
  usage: 'bees lb rm LB',
  async run(args, io) {
    const { values, positionals } = parse(rm, args, {}, { min: 1, max: 1 });
    const api = apiClient(values, io);
    const l = await findLb(api, positionals[0]!);
    await api.delete('LoadBalancer', l.lb.id);
    const monitor = l.pool?.healthMonitorId;
    if (monitor && !(await api.list('Pool')).some((p) => p.healthMonitorId === monitor))
      await api.delete('HealthMonitor', monitor).catch(() => undefined);
    reply(io, values, { deleted: l.lb.id }, l.lb.id);
  },
};

const vipAdd: Command = {
  name: 'lb vip add',
  summary: 'Add a VIP (address:port the router’s clients reach; optionally published on every host)',
  usage: `bees lb vip add LB ADDRESS:PORT [--node-port N] [--sticky [--affinity-timeout S]]
              [--external-policy cluster|local] [--internal-policy cluster|local]
  --node-port N         also on every host's own address at port N (from outside the overlay)
  --sticky              a client keeps its member (by source address) until S seconds after its last connection
  --external-policy     local: node-port connections go to members on the host they arrive at, client address kept
  --internal-policy     local: overlay clients reach only members on their own host`,
  async run(args, io) {
    const { values, positionals } = parse(
      vipAdd,
      args,
      {
        'node-port': { type: 'string' },
        sticky: { type: 'boolean' },
        'affinity-timeout': { type: 'string' },
        'external-policy': { type: 'string' },
        'internal-policy': { type: 'string' },
      },
      { min: 2, max: 2 },
    );
    const { address, port } = addressPort('lb vip add', positionals[1]!);
    const nodePort = intOption('node-port', values['node-port']);
    const affinity = intOption('affinity-timeout', values['affinity-timeout']);
    if (affinity !== undefined && !values.sticky) throw new CliError('lb vip add: --affinity-timeout needs --sticky', 2);
    const ext = oneOf('external-policy', values['external-policy'], ['cluster', 'local'] as const);
    const int = oneOf('internal-policy', values['internal-policy'], ['cluster', 'local'] as const);
    const api = apiClient(values, io);
    const pool = needPool(await findLb(api, positionals[0]!));
    const v = await api.create('Vip', {
      poolId: pool.id,
      address,
      port,
      protocol: pool.protocol,
      ...(nodePort !== undefined ? { nodePort } : {}),
      ...(values.sticky ? { sessionPersistence: 'source_ip' as const } : {}),
      ...(affinity !== undefined ? { affinityTimeoutS: affinity } : {}),
      ...(ext ? { externalTrafficPolicy: ext } : {}),
      ...(int ? { internalTrafficPolicy: int } : {}),
    });
    reply(io, values, v, v.id);
  },
};

/** A member of the pool by id or ADDRESS:PORT. */
async function findMember(api: ApiClient, pool: Pool, ref: string): Promise<PoolMember> {
  const members = await api.list('PoolMember', { poolId: pool.id });
  const byId = members.find((m) => m.id === ref);
  if (byId) return byId;
  if (/:\d+$/.test(ref)) {
    const { address, port } = addressPort('member', ref);
    const found = members.find((m) => m.address === address && m.port === port);
    if (found) return found;
  }
  throw new CliError(`member '${ref}' not found in load balancer`);
}

const vipRm: Command = {
  name: 'lb vip rm',
  summary: 'Remove a VIP (by id or ADDRESS:PORT)',
  usage: 'bees lb vip rm LB VIP',
  async run(args, io) {
    const { values, positionals } = parse(vipRm, args, {}, { min: 2, max: 2 });
    const api = apiClient(values, io);
    const pool = needPool(await findLb(api, positionals[0]!));
    const ref = positionals[1]!;
    const vips = await api.list('Vip', { poolId: pool.id });
    const v = vips.find((x) => x.id === ref || hostPort(x.address, x.port) === ref);
    if (!v) throw new CliError(`VIP '${ref}' not found in load balancer`);
    await api.delete('Vip', v.id);
    reply(io, values, { deleted: v.id }, v.id);
  },
};

const memberFlags = {
  weight: { type: 'string' },
  backup: { type: 'boolean' },
  'no-backup': { type: 'boolean' },
  disable: { type: 'boolean' },
  enable: { type: 'boolean' },
} as const;

function memberPatch(values: { weight?: string; backup?: boolean; 'no-backup'?: boolean; disable?: boolean; enable?: boolean }) {
  if (values.disable && values.enable) throw new CliError('--enable and --disable exclude each other', 2);
  if (values.backup && values['no-backup']) throw new CliError('--backup and --no-backup exclude each other', 2);
  const weight = intOption('weight', values.weight);
  return {
    ...(weight !== undefined ? { weight } : {}),
    ...(values.backup ? { backup: true } : values['no-backup'] ? { backup: false } : {}),
    ...(values.disable ? { adminStateUp: false } : values.enable ? { adminStateUp: true } : {}),
  };
}

const memberAdd: Command = {
  name: 'lb member add',
  summary: 'Add a member (a workload address and port) to the load balancer',
  usage: `bees lb member add LB ADDRESS:PORT [--weight W] [--backup] [--disable]
  --weight W    share of new connections (default 1; 0: none)
  --backup      used only while no other member is in rotation`,
  async run(args, io) {
    const { values, positionals } = parse(memberAdd, args, memberFlags, { min: 2, max: 2 });
    const { address, port } = addressPort('lb member add', positionals[1]!);
    const patch = memberPatch(values);
    const api = apiClient(values, io);
    const pool = needPool(await findLb(api, positionals[0]!));
    const m = await api.create('PoolMember', { poolId: pool.id, address, port, ...patch });
    reply(io, values, m, m.id);
  },
};

const memberSet: Command = {
  name: 'lb member set',
  summary: 'Change a member: weight, backup, enabled (a disabled member gets no new connection)',
  usage: 'bees lb member set LB MEMBER|ADDRESS:PORT [--weight W] [--backup|--no-backup] [--enable|--disable]',
  async run(args, io) {
    const { values, positionals } = parse(memberSet, args, memberFlags, { min: 2, max: 2 });
    const patch = memberPatch(values);
    if (Object.keys(patch).length === 0) throw new CliError('lb member set: nothing to change', 2);
    const api = apiClient(values, io);
    const pool = needPool(await findLb(api, positionals[0]!));
    const m = await findMember(api, pool, positionals[1]!);
    const after = await api.update('PoolMember', m.id, patch);
    reply(io, values, after, `${after.id} ${hostPort(after.address, after.port)} weight ${after.weight} ${memberState(after)}`);
  },
};

const memberRm: Command = {
  name: 'lb member rm',
  summary: 'Remove a member (its open connections drain or are cut, as the load balancer says)',
  usage: 'bees lb member rm LB MEMBER|ADDRESS:PORT',
  async run(args, io) {
    const { values, positionals } = parse(memberRm, args, {}, { min: 2, max: 2 });
    const api = apiClient(values, io);
    const pool = needPool(await findLb(api, positionals[0]!));
    const m = await findMember(api, pool, positionals[1]!);
    await api.delete('PoolMember', m.id);
    reply(io, values, { deleted: m.id }, m.id);
  },
};

export const commands: Command[] = [create, ls, show, rm, vipAdd, vipRm, memberAdd, memberSet, memberRm];
