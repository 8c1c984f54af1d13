// A deeper leak snapshot than the harness's per-host one: besides a host's links, addresses, routes, programmed
// neighbours, FDB and nft tables, it holds every nft rule, set and map element of the host (per-port anti-spoofing
// lives in rules, not tables) and the same for each of the host's router namespaces (routes, permanent neighbours
// and NAT for workloads live there). Comparing a snapshot from before a workload came with one from after it
// left proves nothing made for it remains.
import { readdirSync } from 'node:fs';
import { execArgv, nsArgv, snapshotNetns } from '../harness/index.js';
import type { Harness, HarnessHost } from '../harness/index.js';
import { eventually } from '../../testbed/cluster.js';

/** nft ruleset of a namespace, one line per rule/element, without counters (they move with traffic). */
async function rulesetLines(netns: string): Promise<string[]> {
  const r = await execArgv(nsArgv(netns, ['nft', 'list', 'ruleset']));
  if (r.code !== 0) return [];
  const out: string[] = [];
  let scope = '';
  for (const raw of r.stdout.split('\n')) {
    const line = raw.trim().replace(/counter packets \d+ bytes \d+/g, 'counter');
    if (!line || line === '}') continue;
    if (/^(table|chain|set|map) /.test(line))
      scope = line.replace(/ \{$/, '') + (line.startsWith('table') ? '' : ` in ${scope.split(' in ').pop()}`);
    out.push(`nft ${scope}: ${line}`);
  }
  return out;
}

function routerNamespaces(host: HarnessHost): string[] {
  try {
    return readdirSync('/run/netns')
      .filter((n) => n.startsWith(host.routerNsPrefix))
      .sort();
  } catch {
    return [];
  }
}

/** Everything kernel-side a host holds, including its router namespaces' insides, as sorted strings. */
export async function deepSnapshot(host: HarnessHost): Promise<string[]> {
  const lines = [...(await snapshotNetns(host.netns)), ...(await rulesetLines(host.netns))];
  for (const ns of routerNamespaces(host)) {
    const path = `/run/netns/${ns}`;
    lines.push(`namespace ${ns}`);
    for (const x of [...(await snapshotNetns(path)), ...(await rulesetLines(path))]) lines.push(`${ns}: ${x}`);
  }
  // IPv6 link-local addresses and their routes are the kernel's, and differ for every new interface.
  return [...new Set(lines)].filter((l) => !/fe80::/.test(l)).sort();
}

/** Deep snapshots of every host, keyed by host name. */
export async function clusterSnapshot(harness: Harness): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const h of harness.hosts) out[h.name] = await deepSnapshot(h);
  return out;
}

/** Lines in `after` not in `before` and the reverse, per host; empty when equal. */
export function snapshotDiff(
  before: Record<string, string[]>,
  after: Record<string, string[]>,
): Record<string, { added: string[]; removed: string[] }> {
  const out: Record<string, { added: string[]; removed: string[] }> = {};
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const b = new Set(before[name] ?? []);
    const a = new Set(after[name] ?? []);
    const added = [...a].filter((x) => !b.has(x));
    const removed = [...b].filter((x) => !a.has(x));
    if (added.length || removed.length) out[name] = { added, removed };
  }
  return out;
}

export type SnapshotDiff = ReturnType<typeof snapshotDiff>;

/**
 * The hosts' difference from `before` once they have settled: {} as soon as they are back to it (agents clean up
 * asynchronously), else what still differs after `withinMs`, for the assertion to show. The default minute is a
 * hang guard, not a speed bound: a loaded CI machine is slow to clean up, and a leak stays a leak after a minute.
 */
export async function settledDiff(
  harness: Harness,
  before: Record<string, string[]>,
  what: string,
  withinMs = 60_000,
  stepMs?: number,
): Promise<SnapshotDiff> {
  return eventually(
    async () => {
      const d = snapshotDiff(before, await clusterSnapshot(harness));
      return Object.keys(d).length === 0 ? d : undefined;
    },
    withinMs,
    what,
    stepMs,
  ).catch(async () => snapshotDiff(before, await clusterSnapshot(harness)));
}

/**
 * A snapshot of every host once the agents have settled: two snapshots `quietMs` apart that are equal. For a
 * reference state taken after workloads were attached, where the agents may still be finishing a pass; a fixed
 * pause is too short on a loaded machine and needlessly long on a quiet one. `withinMs` is a hang guard.
 */
export async function stableSnapshot(harness: Harness, quietMs = 1000, withinMs = 60_000): Promise<Record<string, string[]>> {
  const deadline = Date.now() + withinMs;
  let last = await clusterSnapshot(harness);
  for (;;) {
    await new Promise((r) => setTimeout(r, quietMs));
    const now = await clusterSnapshot(harness);
    if (Object.keys(snapshotDiff(last, now)).length === 0) return now;
    if (Date.now() > deadline)
      throw new Error(`the hosts did not settle within ${withinMs} ms: ${JSON.stringify(snapshotDiff(last, now))}`);
    last = now;
  }
}
