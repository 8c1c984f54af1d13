// Host port publishing (`docker run -p`, CNI portMappings): a host port is DNATed to a workload's address and
// port. Everything lives in one table of its own (HOST_PORTMAP in tables.ts): two nat maps (any local address, or
// one host address) looked up by the prerouting hook (traffic from other hosts) and the output hook (the host).
// Each map element carries its port id as comment, so a port's mappings are replaced or removed exactly, and the
// table goes when its last element does. Replies need no SNAT: the workload's gateway routes them back through
// the host (router uplink), where conntrack undoes the DNAT.
import { CommandError, inNetns, run } from '../exec.js';
import { ipFamily } from '../../net/ip.js';
import { Mutex } from '../../util/keyed-mutex.js';
import { nftApply } from './apply.js';
import { baseChainScript, dropTable, ref } from './script.js';
import { HOST_PORTMAP } from './tables.js';

export interface PublishedPort {
  protocol: 'tcp' | 'udp' | 'sctp';
  hostPort: number;
  /** Only traffic to this host address (IPv4); any local address when absent. */
  hostIP?: string;
  /** The workload's IPv4 address. */
  ip: string;
  port: number;
}

/** A mapping refused before anything changed: malformed (`invalid`) or its host port taken (`conflict`). */
export class PortMapError extends Error {
  constructor(
    readonly kind: 'invalid' | 'conflict',
    message: string,
  ) {
    super(message);
    this.name = 'PortMapError';
  }
}

const T = ref(HOST_PORTMAP);
const OWNER = /^[A-Za-z0-9-]{1,64}$/;

/** The table, its maps and both lookup chains, rebuilt in each publishing transaction (as before: rare). */
const skeleton = (): string => HOST_PORTMAP.baseChains.map((c) => baseChainScript(HOST_PORTMAP, c.name)).join('');

function check(m: PublishedPort): void {
  const port = (p: number) => Number.isInteger(p) && p > 0 && p < 65536;
  if (!['tcp', 'udp', 'sctp'].includes(m.protocol))
    throw new PortMapError('invalid', `port mapping: protocol ${JSON.stringify(m.protocol)} is not tcp, udp or sctp`);
  if (!port(m.hostPort) || !port(m.port))
    throw new PortMapError('invalid', `port mapping ${m.protocol}/${m.hostPort}->${m.port}: ports must be 1-65535`);
  if (ipFamily(m.ip) !== 4)
    throw new PortMapError('invalid', `port mapping ${m.protocol}/${m.hostPort}: workload address ${JSON.stringify(m.ip)} is not IPv4`);
  if (m.hostIP !== undefined && m.hostIP !== '0.0.0.0' && ipFamily(m.hostIP) !== 4) {
    throw new PortMapError('invalid', `port mapping ${m.protocol}/${m.hostPort}: host IP ${JSON.stringify(m.hostIP)} is not IPv4`);
  }
}

type Elem = { map: 'any' | 'addr'; key: string; owner: string | undefined };

/**
 * Namespaces where this process saw no table and has published nothing since: unpublishing there (every detach)
 * costs no `nft` spawn. Only this module writes the table, and one agent serves one namespace.
 */
const noTable = new Set<string>();

/** Every element of both maps, with its owner (the comment). */
async function elements(netns: string | undefined): Promise<Elem[] | undefined> {
  if (noTable.has(netns ?? '')) return undefined;
  let text: string;
  try {
    text = await run(inNetns(netns, ['nft', '-j', 'list', 'table', HOST_PORTMAP.family, HOST_PORTMAP.name]), {
      context: 'read port mappings',
    });
  } catch (e) {
    if (e instanceof CommandError && /No such file or directory/.test(e.stderr)) {
      noTable.add(netns ?? '');
      return undefined;
    }
    throw e;
  }
  // nft's JSON: {nftables: [{map: {name, elem: [[{elem: {val: {concat: [...]}, comment}}, target], …]}}]}
  type NftElem = [{ elem?: { val: { concat: (string | number)[] }; comment?: string }; concat?: (string | number)[] }, unknown];
  const doc = JSON.parse(text) as { nftables: { map?: { name: string; elem?: NftElem[] } }[] };
  const out: Elem[] = [];
  for (const item of doc.nftables) {
    const m = item.map;
    if (!m || (m.name !== 'any' && m.name !== 'addr')) continue;
    for (const [k] of m.elem ?? []) {
      const parts = k.elem?.val.concat ?? k.concat ?? [];
      out.push({ map: m.name, key: parts.join(' . '), owner: k.elem?.comment });
    }
  }
  return out;
}

/**
 * Make `owner`'s published ports exactly `mappings` (an empty list unpublishes). A host port held by another
 * owner is refused, and nothing changes.
 */
export function publishPorts(netns: string | undefined, owner: string, mappings: PublishedPort[]): Promise<void> {
  // One change at a time: a check-then-act of one owner (is the key free? is the table empty?) must not
  // interleave with another's.
  return changes.run(() => publishNow(netns, owner, mappings));
}

const changes = new Mutex();

async function publishNow(netns: string | undefined, owner: string, mappings: PublishedPort[]): Promise<void> {
  if (!OWNER.test(owner)) throw new PortMapError('invalid', `port mapping owner ${JSON.stringify(owner)}: letters, digits and - only`);
  mappings.forEach(check);
  const current = (await elements(netns)) ?? [];
  const mine = current.filter((e) => e.owner === owner);
  if (mappings.length === 0 && mine.length === 0) return;
  const lines = [skeleton().trimEnd(), ...mine.map((e) => `delete element ${T} ${e.map} { ${e.key} }`)];
  for (const m of mappings) {
    const anyAddr = m.hostIP === undefined || m.hostIP === '0.0.0.0';
    const key = anyAddr ? `${m.protocol} . ${m.hostPort}` : `${m.hostIP} . ${m.protocol} . ${m.hostPort}`;
    const taken = current.find((e) => e.owner !== owner && e.map === (anyAddr ? 'any' : 'addr') && e.key === key);
    if (taken)
      throw new PortMapError(
        'conflict',
        `host port ${m.protocol}/${m.hostPort}${anyAddr ? '' : ` on ${m.hostIP}`} is already published by ${taken.owner ?? 'someone else'}`,
      );
    // `create` fails on a key someone added meanwhile, where `add` would keep theirs silently.
    lines.push(`create element ${T} ${anyAddr ? 'any' : 'addr'} { ${key} comment "${owner}" : ${m.ip} . ${m.port} }`);
  }
  noTable.delete(netns ?? '');
  await nftApply(netns, `${lines.join('\n')}\n`, `publish ports of ${owner}`);
  if (mappings.length === 0) await dropIfEmpty(netns);
}

/** Remove every published port of `owner` (nothing published: nothing to do). */
export function unpublishPorts(netns: string | undefined, owner: string): Promise<void> {
  return publishPorts(netns, owner, []);
}

/** The owner's published ports as "proto/hostPort" keys, for checks and tests. */
export async function publishedPorts(netns: string | undefined, owner: string): Promise<string[]> {
  return ((await elements(netns)) ?? []).filter((e) => e.owner === owner).map((e) => e.key);
}

async function dropIfEmpty(netns: string | undefined): Promise<void> {
  const left = await elements(netns);
  if (left && left.length === 0) {
    await dropTable(netns, HOST_PORTMAP).then(
      () => noTable.add(netns ?? ''),
      () => undefined,
    );
  }
}
