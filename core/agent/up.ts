// What `bees up` does once its agent is ready: make sure the default network exists, and show on this machine
// that workloads attached to it reach each other, their gateway and the host, then clean the demo up.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Bridge } from '../model/types.js';
import { TopologyError } from '../topology/errors.js';
import { DEFAULT_TENANT } from '../topology/service.js';
import { table, type Io } from '../cli/command.js';
import type { Agent } from './agent.js';

const run = promisify(execFile);

export async function ensureDefaultNetwork(agent: Agent, want: { name: string; subnet: string; subnet6?: string }): Promise<Bridge> {
  const existing = await agent.topology.findBridge(DEFAULT_TENANT, want.name);
  if (existing) return existing;
  const subnets = [{ cidr: want.subnet }, ...(want.subnet6 ? [{ cidr: want.subnet6 }] : [])];
  try {
    return await agent.topology.create('Bridge', { tenant: DEFAULT_TENANT, name: want.name, subnets });
  } catch (e) {
    if (e instanceof TopologyError && e.code === 'conflict') {
      const b = await agent.topology.findBridge(DEFAULT_TENANT, want.name);
      if (b) return b;
    }
    throw e;
  }
}

async function ping(netns: string | undefined, ip: string): Promise<string> {
  const argv = [
    ...(netns ? ['ip', 'netns', 'exec', netns] : []),
    'ping',
    ip.includes(':') ? '-6' : '-4',
    '-c',
    '3',
    '-i',
    '0.2',
    '-W',
    '1',
    ip,
  ];
  try {
    const { stdout } = await run(argv[0]!, argv.slice(1));
    const rtt = /= [\d.]+\/([\d.]+)\//.exec(stdout)?.[1];
    return `ok (${rtt ?? '?'} ms)`;
  } catch {
    return 'FAILED';
  }
}

/**
 * Two workloads on `network`, pinging each other, the gateway and from the host; then removed. `signal` (Ctrl-C)
 * cuts the demo short between steps; its workloads are removed all the same.
 */
export async function localDemo(agent: Agent, network: string, io: Io, signal?: AbortSignal): Promise<boolean> {
  const names = [`bees-demo-a-${process.pid}`, `bees-demo-b-${process.pid}`];
  io.out('bees: demo: attaching two workloads to the default network…\n');
  const rows: string[][] = [];
  let ok = true;
  try {
    const results = [];
    for (const n of names) {
      signal?.throwIfAborted();
      await run('ip', ['netns', 'add', n]);
      results.push(await agent.workloads.attach({ orchestrator: 'cli', workloadId: n, ifname: 'eth0', netns: `/run/netns/${n}`, network }));
    }
    const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
    const checks: [string, string | undefined, string][] = [];
    for (const ip of b.ips) checks.push([`${names[0]} -> ${names[1]}`, names[0], ip.address.split('/')[0]!]);
    for (const ip of a.ips) if (ip.gateway) checks.push([`${names[0]} -> gateway`, names[0], ip.gateway]);
    const v4 = a.ips.find((i) => i.family === 4);
    if (v4) checks.push(['host -> workload', undefined, v4.address.split('/')[0]!]);
    for (const [what, ns, ip] of checks) {
      signal?.throwIfAborted();
      const res = await ping(ns, ip);
      ok &&= res.startsWith('ok');
      rows.push([what, ip, res]);
      io.out(`bees: demo: ${what} ${ip}: ${res}\n`);
    }
    io.out(table(['CHECK', 'ADDRESS', 'RESULT'], rows));
  } catch (e) {
    if (!signal?.aborted) throw e;
    io.out('bees: demo: interrupted\n');
    ok = false;
  } finally {
    for (const n of names) {
      await agent.workloads.detach({ orchestrator: 'cli', workloadId: n, ifname: 'eth0' }).catch(() => undefined);
      await run('ip', ['netns', 'del', n]).catch(() => undefined);
    }
    io.out('bees: demo: workloads removed\n');
  }
  return ok;
}
