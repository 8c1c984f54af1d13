// What happens to the connections of a load-balanced member that leaves rotation (Pool.memberRemoval, issue 10
// item 4): which members left, told even by an agent that restarted meanwhile, and the conntrack entries cut
// for 'cut' — only in the conntrack zones of the VIP's own client bridges, so another tenant's connections to an
// identical VIP and member address stay (lb.ts calls both).
//
// Re-derived, not remembered (chains-lb.md §2.8): the members a VIP had in rotation are the member chains its VIP
// chain dispatches to in `ip bees-lb` (core/lb/compile.ts names them), so what a previous run applied is read back
// from the kernel, and a member removed while the agent was down is still cut when it comes back.
import type { LbVip } from '../../lb/compile.js';
import { CommandError, inNetns, run } from '../exec.js';
import { nftQuery } from './apply.js';
import { ref } from './script.js';
import { HOST_CT } from './tables.js';

/** The body of every chain in a `list table` output, by chain name. */
function chainBodies(listing: string): Map<string, string> {
  const out = new Map<string, string>();
  let name: string | undefined;
  let body: string[] = [];
  for (const line of listing.split('\n')) {
    const open = /^\s+chain (\S+) \{/.exec(line);
    if (open) {
      name = open[1]!;
      body = [];
    } else if (name && /^\s+\}\s*$/.test(line)) {
      out.set(name, body.join('\n'));
      name = undefined;
    } else if (name) body.push(line);
  }
  return out;
}

/**
 * The VIPs of a listing of `ip bees-lb` with the members they had in rotation (address and port; weights and
 * states are not in the kernel: every listed member was selectable), and the client bridges dispatching to them.
 */
export function vipsInKernel(listing: string): LbVip[] {
  const chains = chainBodies(listing);
  const vips = new Map<string, { address: string; port: number; protocol: 'tcp' | 'udp'; bridges: Set<string> }>();
  for (const [name, body] of chains) {
    if (!name.startsWith('b-')) continue;
    for (const m of body.matchAll(/([0-9a-fA-F.:]+) \. (tcp|udp) \. (\d+) : goto v-([A-Za-z0-9_-]+)/g)) {
      const id = m[4]!;
      const v = vips.get(id) ?? { address: m[1]!, port: Number(m[3]), protocol: m[2] as 'tcp' | 'udp', bridges: new Set<string>() };
      v.bridges.add(name.slice(2));
      vips.set(id, v);
    }
  }
  const out: LbVip[] = [];
  for (const [id, v] of [...vips].sort(([a], [b]) => a.localeCompare(b))) {
    const prefix = `m-${id}-`;
    const members = new Map<string, LbVip['members'][number]>();
    for (const m of (chains.get(`v-${id}`) ?? '').matchAll(/goto (m-[A-Za-z0-9_-]+)/g)) {
      const chain = m[1]!;
      if (!chain.startsWith(prefix) || members.has(chain)) continue;
      const to = /dnat (?:ip6? )?to \[?([0-9a-fA-F.:]+?)\]?:(\d+)/.exec(chains.get(chain) ?? '');
      if (!to) continue;
      members.set(chain, {
        id: chain.slice(prefix.length),
        address: to[1]!,
        port: Number(to[2]),
        weight: 1,
        adminStateUp: true,
        status: 'up',
      });
    }
    out.push({
      id,
      address: v.address,
      port: v.port,
      protocol: v.protocol,
      members: [...members.values()],
      bridges: [...v.bridges].sort(),
    });
  }
  return out;
}

/** The conntrack zone of each bridge as `inet bees-ct` sets it (a bridge it does not name is in zone 0). */
export async function bridgeZones(netns: string | undefined): Promise<Map<string, number>> {
  const listing = await nftQuery(netns, `list map ${ref(HOST_CT)} zones`, 'nft').catch(() => '');
  const out = new Map<string, number>();
  for (const m of listing.matchAll(/"([^"]+)" : (\d+)/g)) out.set(m[1]!, Number(m[2]));
  return out;
}

/**
 * Delete the conntrack entries of connections to `vip` answered by `member` in the zones of `bridges` (the VIP's
 * client bridges); none is not an error.
 */
export async function cutMember(
  netns: string | undefined,
  l: { protocol: 'tcp' | 'udp'; vip: string; member: string },
  bridges: readonly string[],
  zones: ReadonlyMap<string, number>,
): Promise<void> {
  for (const zone of new Set(bridges.map((b) => zones.get(b) ?? 0))) {
    const family = l.vip.includes(':') ? ['-f', 'ipv6'] : [];
    const argv = ['conntrack', '-D', ...family, '-p', l.protocol, '--orig-dst', l.vip, '--reply-src', l.member, '--zone', String(zone)];
    try {
      await run(inNetns(netns, argv), { context: 'load balancer: conntrack' });
    } catch (e) {
      // conntrack exits 1 when no entry matched ("0 flow entries have been deleted").
      if (!(e instanceof CommandError && /0 flow entries/.test(e.stderr))) throw e;
    }
  }
}
