// The leak checker: everything kernel-side in a namespace that tests could leave behind, as comparable strings.
// A snapshot taken right after the harness built a host is its baseline; leaks are what a later snapshot adds.
import { readdirSync } from 'node:fs';
import { execArgv, nsArgv } from './shell.js';

interface Link {
  ifname: string;
  linkinfo?: { info_kind?: string };
}
interface Addr {
  ifname: string;
  addr_info?: { local: string; prefixlen: number }[];
}
interface Route {
  dst: string;
  dev?: string;
  gateway?: string;
  type?: string;
}
interface Neigh {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}
interface Fdb {
  mac: string;
  ifname?: string;
  dev?: string;
  dst?: string;
  master?: string;
  state?: string;
  flags?: string[];
}
type NftItem = { table?: { family: string; name: string } };

/** The JSON a command prints (an empty list when it fails or prints nothing). */
async function json<T>(netns: string, argv: string[]): Promise<T> {
  const r = await execArgv(nsArgv(netns, argv));
  return JSON.parse(r.code !== 0 || !r.stdout.trim() ? '[]' : r.stdout) as T;
}

/** What `nft -j list tables` prints: the items under one `nftables` key. */
async function nftItems(netns: string): Promise<NftItem[]> {
  const v = await json<{ nftables?: NftItem[] } | []>(netns, ['nft', '-j', 'list', 'tables']);
  return Array.isArray(v) ? v : (v.nftables ?? []);
}

/** Every link, address, route, permanent neighbour, FDB entry and nft table of a namespace. */
export async function snapshotNetns(netns: string): Promise<Set<string>> {
  const [links, addrs, r4, r6, neigh, fdb, nft] = await Promise.all([
    json<Link[]>(netns, ['ip', '-d', '-j', 'link', 'show']),
    json<Addr[]>(netns, ['ip', '-j', 'addr', 'show']),
    json<Route[]>(netns, ['ip', '-j', 'route', 'show', 'table', 'all']),
    json<Route[]>(netns, ['ip', '-6', '-j', 'route', 'show', 'table', 'all']),
    json<Neigh[]>(netns, ['ip', '-j', 'neigh', 'show', 'nud', 'all']),
    json<Fdb[]>(netns, ['bridge', '-j', 'fdb', 'show']),
    nftItems(netns),
  ]);
  const s = new Set<string>();
  for (const l of links) s.add(`link ${l.ifname} (${l.linkinfo?.info_kind ?? 'device'})`);
  for (const a of addrs) for (const i of a.addr_info ?? []) s.add(`address ${i.local}/${i.prefixlen} on ${a.ifname}`);
  // local/broadcast/multicast/anycast routes mirror addresses (reported themselves) and come and go with DAD.
  for (const r of [...r4, ...r6].filter((x) => !['local', 'broadcast', 'multicast', 'anycast'].includes(x.type ?? '')))
    s.add(`route ${r.type ?? ''} ${r.dst} dev ${r.dev ?? '-'}${r.gateway ? ` via ${r.gateway}` : ''}`);
  // Dynamic neighbours come and go with traffic; only the ones somebody programmed are leaks.
  for (const n of neigh) {
    // Multicast entries (33:33…, 01:00:5e…) are the kernel's own mapping of group addresses.
    const multicast = /^(33:33|01:00:5e)/.test(n.lladdr ?? '');
    if (!multicast && n.state?.some((x) => x === 'PERMANENT' || x === 'NOARP')) s.add(`neighbour ${n.dst} ${n.lladdr ?? ''} dev ${n.dev}`);
  }
  for (const f of fdb) {
    if (f.state === 'permanent' || f.state === 'static' || f.dst) {
      s.add(`fdb ${f.mac} dev ${f.ifname ?? f.dev ?? '-'}${f.dst ? ` dst ${f.dst}` : ''}${f.master ? ` master ${f.master}` : ''}`);
    }
  }
  for (const t of nft) if (t.table) s.add(`nft table ${t.table.family} ${t.table.name}`);
  return s;
}

/** Named network namespaces whose name starts with `prefix`. */
export function namespacesWithPrefix(prefix: string): string[] {
  try {
    return readdirSync('/run/netns')
      .filter((n) => n.startsWith(prefix))
      .sort();
  } catch {
    return [];
  }
}

export function diff(baseline: Set<string>, now: Set<string>): string[] {
  return [...now].filter((x) => !baseline.has(x)).sort();
}
