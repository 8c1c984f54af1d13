// Living with the host's firewall. br_netfilter is built into the kernels we run on and sends every bridged IPv4/IPv6
// frame through the iptables FORWARD hook (a bridge's nf_call_iptables 0 cannot turn that off, and the sysctl is
// host-global and not ours). So on a host where Docker, ufw or firewalld set the FORWARD policy to DROP, frames
// between two workloads of one bees bridge, and routed traffic through a router uplink, are dropped. An `accept`
// in an nftables table of our own does not help: every base chain on the hook runs, and any drop wins.
//
// bees therefore owns one chain in the `filter` table of the host's own iptables (and ip6tables), `BEES-FORWARD`,
// reached by one jump inserted at the top of FORWARD; each rule carries the comment "bees". It accepts:
// - bridged frames of bees bridges (br_netfilter shows them with in = out = the bridge, `bb-*`): bees' own
//   `table bridge bees` does port security on them; tunnelled frames arrive on a port of that bridge too;
// - what a router uplink (`bu*`) sends out (north-south, masqueraded on the way out);
// - towards an uplink only replies and DNATed connections (published ports), as Docker does for docker0.
// The chain is made only where a firewall is there to get around (FORWARD policy not ACCEPT, or rules in it), so a
// host without one keeps no iptables state of ours; the `iptables` binary is whichever backend the host selected
// (Debian: iptables-nft), the one Docker and ufw use. Nothing else in the table is read for more than this decision
// or changed: only our chain and our jump.
import { existsSync, realpathSync } from 'node:fs';
import { inNetns, run, systemTool } from './exec.js';
import { chainFingerprint } from './nft/nfnetlink.js';
import { BRIDGE_PREFIX, UPLINK_PREFIX } from './names.js';

export const FORWARD_CHAIN = 'BEES-FORWARD';
export const FIREWALL_COMMENT = 'bees';

const COMMENT = `-m comment --comment ${FIREWALL_COMMENT}`;

/** Our chain's rules as `iptables -S` prints them (so a listing compares equal when nothing changed). */
export function forwardRules(): string[] {
  const bridges = `${BRIDGE_PREFIX}+`;
  const uplinks = `${UPLINK_PREFIX}+`;
  return [
    `-A ${FORWARD_CHAIN} -i ${bridges} -o ${bridges} ${COMMENT} -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -i ${uplinks} ${COMMENT} -j ACCEPT`,
    `-A ${FORWARD_CHAIN} -o ${uplinks} -m conntrack --ctstate RELATED,ESTABLISHED,DNAT ${COMMENT} -j ACCEPT`,
  ];
}

interface Family {
  tool: 'iptables' | 'ip6tables';
  restore: 'iptables-restore' | 'ip6tables-restore';
}
const FAMILIES: Family[] = [
  { tool: 'iptables', restore: 'iptables-restore' },
  { tool: 'ip6tables', restore: 'ip6tables-restore' },
];

/** What of the filter table concerns us, from `iptables -S`. */
interface FilterView {
  forwardPolicy: string;
  /** FORWARD rules that are not our jump. */
  foreignForwardRules: number;
  jumps: string[];
  /** Our chain's rules; undefined when the chain does not exist. */
  chain: string[] | undefined;
}

function parse(listing: string): FilterView {
  const view: FilterView = { forwardPolicy: 'ACCEPT', foreignForwardRules: 0, jumps: [], chain: undefined };
  for (const line of listing
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const policy = /^-P FORWARD (\S+)/.exec(line);
    if (policy) view.forwardPolicy = policy[1]!;
    else if (line === `-N ${FORWARD_CHAIN}`) view.chain ??= [];
    else if (line.startsWith('-A FORWARD ')) {
      if (line.endsWith(`-j ${FORWARD_CHAIN}`)) view.jumps.push(line);
      else view.foreignForwardRules++;
    } else if (line.startsWith(`-A ${FORWARD_CHAIN} `)) (view.chain ??= []).push(line);
  }
  return view;
}

/** The tools of the families this host has; none when iptables is not installed (then nobody set a policy with it). */
function families(): Family[] {
  if (!systemTool('iptables').startsWith('/')) return [];
  // A kernel booted without IPv6 has no ip6tables tables to get around.
  return FAMILIES.filter((f) => f.tool === 'iptables' || (existsSync('/proc/sys/net/ipv6') && systemTool(f.tool).startsWith('/')));
}

async function view(netns: string | undefined, f: Family): Promise<FilterView> {
  // -S never creates the table (iptables-nft lists the built-in chains of a missing table as empty, policy ACCEPT).
  return parse(
    await run(inNetns(netns, [f.tool, '-w', '-t', 'filter', '-S']), { context: `could not read the host's ${f.tool} filter table` }),
  );
}

async function restore(netns: string | undefined, f: Family, lines: string[], context: string): Promise<void> {
  // --noflush: only the lines given change; a chain declared here is emptied first (so rules are replaced whole).
  await run(inNetns(netns, [f.restore, '-w', '--noflush']), { input: ['*filter', ...lines, 'COMMIT', ''].join('\n'), context });
}

async function ensureFamily(netns: string | undefined, f: Family): Promise<void> {
  const v = await view(netns, f);
  const needed = v.chain !== undefined || v.forwardPolicy !== 'ACCEPT' || v.foreignForwardRules > 0;
  if (!needed) return;
  const want = forwardRules();
  const lines: string[] = [];
  if (v.chain === undefined || v.chain.join('\n') !== want.join('\n')) lines.push(`:${FORWARD_CHAIN} - [0:0]`, ...want);
  // The top of FORWARD, before any foreign rule that drops. Where it is later (Docker re-inserts its DOCKER-USER
  // and isolation jumps above it on restart) is left alone: those return what they do not drop on purpose.
  if (v.jumps.length === 0) lines.push(`-I FORWARD 1 ${COMMENT} -j ${FORWARD_CHAIN}`);
  if (lines.length) await restore(netns, f, lines, `could not install ${FORWARD_CHAIN} in the host's ${f.tool} filter table`);
}

async function removeFamily(netns: string | undefined, f: Family): Promise<void> {
  const v = await view(netns, f);
  if (v.chain === undefined && v.jumps.length === 0) return;
  const lines = v.jumps.map((j) => j.replace(/^-A /, '-D '));
  if (v.chain !== undefined) lines.push(`-F ${FORWARD_CHAIN}`, `-X ${FORWARD_CHAIN}`);
  await restore(netns, f, lines, `could not remove ${FORWARD_CHAIN} from the host's ${f.tool} filter table`);
}

/** Namespaces (key '' = ours) where the chain was checked since load: plugs and bridges then cost no spawn. */
const checked = new Set<string>();
/** Per namespace, the nf_tables state of the chains concerned right after the last check (see stateNow). */
const checkedState = new Map<string, string>();
let queue: Promise<unknown> = Promise.resolve();

function serial<T>(fn: () => Promise<T>): Promise<T> {
  const next = queue.then(fn);
  queue = next.catch(() => undefined);
  return next;
}

const NFT_FAMILY = { iptables: 'ip', ip6tables: 'ip6' } as const;

/**
 * The state of FORWARD and our chain in every family's `filter` table as nf_tables holds it (chain handles, policies,
 * rule handles), read in-process; undefined when it cannot tell: iptables is the legacy backend (its tables are not
 * in nf_tables) or the read failed. Any change to those chains by any tool (a firewall reload, Docker's restart,
 * `iptables -P`) changes it, so the periodic recheck spawns `iptables -S` only when something did change.
 */
function stateNow(netns: string | undefined): string | undefined {
  const fams = families();
  try {
    if (fams.some((f) => !realpathSync(systemTool(f.tool)).includes('nft'))) return undefined;
    return fams
      .flatMap((f) => ['FORWARD', FORWARD_CHAIN].map((c) => chainFingerprint(netns, NFT_FAMILY[f.tool], 'filter', c) ?? '-'))
      .join(' ');
  } catch {
    return undefined;
  }
}

/**
 * Make bees' traffic pass the host's FORWARD filtering: install or repair our chain and its jump where the host
 * filters FORWARD. Checked once per namespace and process unless `recheck` (the periodic resync), which finds
 * the chain again when a firewall reload, `iptables-restore` or a Docker started later removed or needed it; a
 * recheck finding the chains as the last check left them (stateNow) starts no process.
 */
export function ensureHostFirewall(netns: string | undefined, opts: { recheck?: boolean } = {}): Promise<void> {
  const key = netns ?? '';
  if (checked.has(key) && !opts.recheck) return Promise.resolve();
  return serial(async () => {
    const seen = checked.has(key) ? checkedState.get(key) : undefined;
    if (seen !== undefined && seen === stateNow(netns)) return;
    checkedState.delete(key);
    for (const f of families()) await ensureFamily(netns, f);
    checked.add(key);
    const after = stateNow(netns);
    if (after !== undefined) checkedState.set(key, after);
  });
}

/**
 * Before the first bridge or router of the process. A failure (a host table iptables cannot read) does not stop
 * the bridge: the sweep's recheck retries it and reports the error.
 */
export function prepareHostFirewall(netns: string | undefined): Promise<void> {
  return ensureHostFirewall(netns).catch(() => undefined);
}

/** Remove our chain and our jump (nothing of ours needs them any more); the rest of the table is left as it is. */
export function removeHostFirewall(netns: string | undefined): Promise<void> {
  return serial(async () => {
    checked.delete(netns ?? '');
    checkedState.delete(netns ?? '');
    for (const f of families()) await removeFamily(netns, f);
  });
}
