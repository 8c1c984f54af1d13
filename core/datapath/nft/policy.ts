// MidoNet chains in the kernel (../../../shared/reference/chains-lb.md §2.3–2.8): compiled chains `c-<chainId>` in
// `table bridge bees`, reached from the four policy stages (port inbound = from-port, bridge inbound, bridge
// outbound, port outbound = to-port) by a per-interface chain holding one `goto`; conntrack per bridge in its own
// zone and the return-flow mark bit from `table inet bees-ct`; groups as named sets.
//
// Incremental by construction: a chain change is `add chain; flush chain; add rule…` of that chain only, in one
// transaction; attaching or detaching an interface touches only its stage chain and map element; group membership
// is set elements. The agent drives it through applyPolicyChange (the reconciler's diff, core/agent/plan.ts); every
// function is callable on its own too (core/test/policy-kernel.test.ts).
import type { IpAddrGroup } from '../../model/types.js';
import type { CompiledChain, MarkBits, SetDecl } from '../../policy/compile.js';
import { DEFAULT_MARKS, NEW_FLOW_MARK, addrGroupElements, addrGroupSet, chainName, portGroupSet } from '../../policy/compile.js';
import type { StageName } from '../../policy/simulate.js';
import { nftApply, nftQuery } from './apply.js';
import { ensureBaseChain, header, ref, removeStageChainScript, stageChainScript } from './script.js';
import { bridgeName } from '../names.js';
import type { PolicyChange } from '../types.js';
import { BRIDGE_IN, BRIDGE_OUT, FROM_PORT, HOST_BRIDGE, HOST_CT, OWNER_COMMENT, TO_PORT, type Stage, type Table } from './tables.js';
import { changeSetElements, type ElementChange } from './policy-elements.js';
import { chainExists, closeShared, openShared } from './nfnetlink.js';
import { chainEditCounter, editChains, forgetChain, recordRewrite, rewriteChains } from './chain-edit.js';

export { BRIDGE_IN, BRIDGE_OUT, HOST_CT };

/** Which nft stage carries each of MidoNet's filters of a bridged packet. */
export const POLICY_STAGE: Readonly<Record<StageName, Stage>> = {
  'port-inbound': FROM_PORT,
  'bridge-inbound': BRIDGE_IN,
  'bridge-outbound': BRIDGE_OUT,
  'port-outbound': TO_PORT,
};

const hex = (n: number): string => `0x${n.toString(16)}`;
/** Marks the installed version of the conntrack table, so an unchanged one is not re-flushed (RCU wait). */
const ctVersion = (m: MarkBits): string => `bees:ct:2:${hex(m.returnFlow)}:${hex(m.newFlow ?? NEW_FLOW_MARK)}`;

export function conntrackScript(marks: MarkBits = DEFAULT_MARKS): string {
  const t = ref(HOST_CT);
  const ret = hex(marks.returnFlow);
  const fresh = hex(marks.newFlow ?? NEW_FLOW_MARK);
  const keep = hex(~(marks.returnFlow | (marks.newFlow ?? NEW_FLOW_MARK)) >>> 0);
  const chain = (name: string, rules: string[]): string[] => {
    const c = HOST_CT.baseChains.find((b) => b.name === name)!;
    return [
      `add chain ${t} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority}; policy accept; }`,
      `flush chain ${t} ${c.name}`,
      ...rules.map((r) => `add rule ${t} ${c.name} ${r}`),
    ];
  };
  return [
    `add table ${t} { comment "${OWNER_COMMENT}"; }`,
    `add map ${t} zones { typeof iifname : ct zone; }`,
    // Before conntrack (-200): a bridge's frames meet only that bridge's connections (tenants may reuse addresses).
    ...chain('raw', ['ct zone set iifname map @zones']),
    // After br_netfilter's IP FORWARD pass, before the bridge stages at +10: MidoNet's "return flow" is a reply,
    // or a packet related to a delivered connection (ICMP errors), chains-lb.md §2.3.
    ...chain('tag-forward', [
      `ct direction reply ct state established meta mark set meta mark or ${ret}`,
      `ct state related meta mark set meta mark or ${ret}`,
      // The first packet of a connection: what the flow log of accepted connections logs (compile.ts acceptLog).
      `ct state new meta mark set meta mark or ${fresh}`,
    ]),
    // Only our bit is cleared, so nothing of ours leaks into fwmark routing of the tunnel or underlay.
    ...chain('tag-clear', [`meta mark set meta mark and ${keep} comment "${ctVersion(marks)}"`]),
    '',
  ].join('\n');
}

/** Install `table inet bees-ct` unless this version of it is in place. */
export async function ensureConntrack(netns: string | undefined, marks: MarkBits = DEFAULT_MARKS): Promise<void> {
  const listing = await nftQuery(netns, `list table ${ref(HOST_CT)}`, 'nft').catch(() => '');
  if (listing.includes(ctVersion(marks))) return;
  await nftApply(netns, conntrackScript(marks), `could not install table ${ref(HOST_CT)}`);
}

/** Give bridge `bridgeIfname` (`bb-…`) its own conntrack zone (1–65535, allocated by the caller). */
export function bridgeZoneScript(bridgeIfname: string, zone: number): string {
  if (!Number.isInteger(zone) || zone < 1 || zone > 0xffff) throw new Error(`conntrack zone ${zone} is not in 1–65535`);
  const t = ref(HOST_CT);
  // add, delete, add: replaces a previous zone whatever it was, and is no error when there was none.
  return [
    `add element ${t} zones { "${bridgeIfname}" : ${zone} }`,
    `delete element ${t} zones { "${bridgeIfname}" }`,
    `add element ${t} zones { "${bridgeIfname}" : ${zone} }`,
    '',
  ].join('\n');
}

export const removeBridgeZoneScript = (bridgeIfname: string, was = 1): string => {
  const t = ref(HOST_CT);
  // Re-adding the element must give its present value: another one is "File exists".
  return `add element ${t} zones { "${bridgeIfname}" : ${was} }\ndelete element ${t} zones { "${bridgeIfname}" }\n`;
};

const setDecl = (s: SetDecl): string => `add set ${ref(HOST_BRIDGE)} ${s.name} { type ${s.type};${s.interval ? ' flags interval;' : ''} }`;

/**
 * Install or replace compiled chains, one transaction: their sets (created empty when missing), the chains they
 * jump to (created empty when missing, so the order among `chains` does not matter), then each chain flushed and
 * rewritten. Nothing else in the table is touched.
 */
export function chainsScript(chains: readonly CompiledChain[]): string {
  const t = ref(HOST_BRIDGE);
  const lines: string[] = [];
  const sets = new Map<string, SetDecl>();
  for (const c of chains) for (const s of c.sets) sets.set(s.name, s);
  for (const s of sets.values()) lines.push(setDecl(s));
  const exist = new Set<string>();
  for (const c of chains) for (const n of [c.name, ...c.jumps.map(chainName)]) exist.add(n);
  for (const n of exist) lines.push(`add chain ${t} ${n}`);
  for (const c of chains) {
    lines.push(`flush chain ${t} ${c.name}`);
    for (const r of c.rules) lines.push(`add rule ${t} ${c.name} ${r}`);
  }
  return header(HOST_BRIDGE) + lines.join('\n') + '\n';
}

/**
 * Install or replace compiled chains: rule-level edits when each is a small change of what we last wrote there
 * (chain-edit.ts), else chainsScript's rewrite in one transaction.
 */
export async function applyChains(netns: string | undefined, chains: readonly CompiledChain[]): Promise<void> {
  if (chains.length === 0) return;
  // One socket for the generation check, dumps, chain gets and the batch (nfnetlink.ts SharedSocket: a close per
  // request cost a 1,000-rule load ~10 ms after a commit).
  const via = openShared(netns, `could not install chains ${chains.map((c) => c.chainId).join(', ')}`);
  try {
    if (await editChains(netns, chains, via)) return;
    chainEditCounter.rewritten += chains.length;
    if (await rewriteChains(netns, chains, via)) return;
  } finally {
    closeShared(via);
  }
  await nftApply(netns, chainsScript(chains), `could not install chains ${chains.map((c) => c.chainId).join(', ')}`);
  recordRewrite(netns, chains);
}

/** Remove a compiled chain (it must no longer be referenced by a stage or a jump). */
export function removeChainScript(chainId: string): string {
  const t = ref(HOST_BRIDGE);
  const n = chainName(chainId);
  return `add chain ${t} ${n}\nflush chain ${t} ${n}\ndelete chain ${t} ${n}\n`;
}

/**
 * The set declared with `elements` in it: `add set … { elements = { … } }` adds them as `add element` would, but
 * libnftables (1.0.6) runs an element command only after dumping every interval set of the ruleset into its cache,
 * which costs ~30 ms per 1,000 addresses installed (a 10,000-address group made every such command ~300 ms).
 */
export function setWithElementsScript(s: SetDecl, elements: readonly string[]): string {
  const items = elements.length ? ` elements = { ${elements.join(', ')} };` : '';
  return `add set ${ref(HOST_BRIDGE)} ${s.name} { type ${s.type};${s.interval ? ' flags interval;' : ''}${items} }`;
}

/** Replace a set's elements (one transaction); for a single member change prefer changeSetElements. */
export function replaceSetScript(s: SetDecl, elements: readonly string[]): string {
  const t = ref(HOST_BRIDGE);
  const lines = [setDecl(s), `flush set ${t} ${s.name}`];
  if (elements.length) lines.push(setWithElementsScript(s, elements));
  return header(HOST_BRIDGE) + lines.join('\n') + '\n';
}

/** Both sets of an address group (IPv4, IPv6) replaced by its current addresses, one script. */
export function addrGroupScript(g: Pick<IpAddrGroup, 'id' | 'addresses'>): string {
  const { v4, v6 } = addrGroupElements(g);
  return (
    replaceSetScript({ name: addrGroupSet(g.id, 4), type: 'ipv4_addr', interval: true }, v4) +
    replaceSetScript({ name: addrGroupSet(g.id, 6), type: 'ipv6_addr', interval: true }, v6)
  );
}

/** A port group's set: the MACs of its member ports (port security makes a MAC name its port). */
export function portGroupScript(groupId: string, memberMacs: readonly string[]): string {
  return replaceSetScript(
    { name: portGroupSet(groupId), type: 'ether_addr' },
    memberMacs.map((m) => m.toLowerCase()),
  );
}

/**
 * Add or delete single elements of a set (a group member joining or leaving) by an nft script. Adding is cheap
 * whatever the set holds (setWithElementsScript); deleting through nft dumps every interval set first, so the
 * agent deletes through changeSetElements (policy-elements.ts) instead.
 */
export function setElementsScript(s: SetDecl, op: 'add' | 'delete', elements: readonly string[]): string {
  if (elements.length === 0) return '';
  if (op === 'add') return header(HOST_BRIDGE) + setWithElementsScript(s, elements) + '\n';
  return header(HOST_BRIDGE) + `${setDecl(s)}\n${op} element ${ref(HOST_BRIDGE)} ${s.name} { ${elements.join(', ')} }\n`;
}

/**
 * Point one stage of interface `ifname` at chain `chainId`: its stage chain holds `goto c-<chainId>` (created
 * empty when missing), reached by its map element. Rebinding flushes only that stage chain. `installed`: the chain
 * is known to exist, so it is not added again — `add chain` of an existing chain holding rules makes the commit
 * wait ~12–15 ms in the kernel (measured here), which an attach to a shared chain paid for nothing.
 */
export function bindScript(stage: StageName, ifname: string, chainId: string, installed = false): string {
  const s = POLICY_STAGE[stage];
  const add = installed ? '' : `add chain ${ref(HOST_BRIDGE)} ${chainName(chainId)}\n`;
  return add + stageChainScript(s, ifname, [`goto ${chainName(chainId)}`]);
}

/**
 * The chains a change binds to without carrying them that the kernel has (one get per chain over nfnetlink), for
 * policyChangeScript: a missing one is still created empty in the change's transaction.
 */
export function installedBindTargets(netns: string | undefined, c: PolicyChange): Set<string> {
  const carried = new Set(c.chains.map((x) => x.chainId));
  const ids = new Set(c.bindings.flatMap((b) => (b.chainId !== null && !carried.has(b.chainId) ? [b.chainId] : [])));
  return new Set([...ids].filter((id) => chainExists(netns, HOST_BRIDGE.family, HOST_BRIDGE.name, chainName(id))));
}

export const unbindScript = (stage: StageName, ifname: string): string => removeStageChainScript(POLICY_STAGE[stage], ifname);

/** Bind (chainId) or unbind (undefined) a stage of an interface, its base chain installed first when missing. */
export async function bindStage(netns: string | undefined, stage: StageName, ifname: string, chainId: string | undefined): Promise<void> {
  const s = POLICY_STAGE[stage];
  await ensureBaseChain(netns, s.table, s.base);
  await nftApply(
    netns,
    chainId === undefined ? unbindScript(stage, ifname) : bindScript(stage, ifname, chainId),
    `could not ${chainId === undefined ? 'unbind' : 'bind'} the ${stage} filter of ${ifname}`,
  );
}

/** The stage base chains a change binds to (to install first when missing). */
export const policyBaseChains = (c: PolicyChange): { table: Table; name: string }[] =>
  [...new Set(c.bindings.filter((b) => b.chainId !== null).map((b) => b.stage))].map((st) => ({
    table: POLICY_STAGE[st].table,
    name: POLICY_STAGE[st].base,
  }));

/**
 * The nft script of a policy change (see applyPolicyChange), but for the elements it deletes from sets that stay:
 * those go through nfnetlink after it (removedElements), since deleting through nft costs a dump of every
 * interval set.
 */
export function policyChangeScript(c: PolicyChange, installed: ReadonlySet<string> = new Set()): string {
  const t = ref(HOST_BRIDGE);
  const parts: string[] = [header(HOST_BRIDGE)];
  for (const z of c.zones) {
    parts.push(z.zone === null ? removeBridgeZoneScript(bridgeName(z.vni), z.was) : bridgeZoneScript(bridgeName(z.vni), z.zone));
  }
  for (const s of c.sets) {
    if (s.elements) parts.push(replaceSetScript(s.decl, s.elements));
    else parts.push(setElementsScript(s.decl, 'add', s.add ?? []));
  }
  if (c.chains.length) parts.push(chainsScript(c.chains));
  // A chain the change carries is added above: adding it again after its rules costs the same wait as an installed one.
  const present = new Set([...installed, ...c.chains.map((x) => x.chainId)]);
  for (const b of c.bindings) {
    parts.push(b.chainId === null ? unbindScript(b.stage, b.ifname) : bindScript(b.stage, b.ifname, b.chainId, present.has(b.chainId)));
  }
  for (const id of c.removeChains) parts.push(removeChainScript(id));
  for (const name of c.removeSets)
    parts.push(`add set ${t} ${name} { type ether_addr; }\ndelete set ${t} ${name}\n`.replace(/type ether_addr/, setTypeOf(name)));
  return parts.join('');
}

/** The element deletions of a change, for changeSetElements. */
export const removedElements = (c: PolicyChange): ElementChange[] =>
  c.sets.flatMap((s) => (!s.elements && s.remove?.length ? [{ decl: s.decl, remove: s.remove }] : []));

/**
 * Carry out a policy change (the agent's reconciler computes it, core/agent/plan.ts policyDelta): one nft
 * transaction for zones, sets (whole or elements added), chains, bindings, then removals; elements leaving a set
 * then go in one nfnetlink batch (a member leaving a group). The conntrack table and the stage base chains are
 * installed first when a change needs them and they are missing.
 */
export async function applyPolicyChange(netns: string | undefined, c: PolicyChange): Promise<void> {
  // A change of chains alone (a rule edited): rule-level edits when they apply, one transaction.
  const chainsOnly = c.zones.length + c.sets.length + c.bindings.length + c.removeChains.length + c.removeSets.length === 0;
  if (chainsOnly && c.chains.length) {
    const via = openShared(netns, 'could not apply the policy');
    try {
      if (await editChains(netns, c.chains, via)) return;
      if (await rewriteChains(netns, c.chains, via)) {
        chainEditCounter.rewritten += c.chains.length;
        return;
      }
    } finally {
      closeShared(via);
    }
  }
  if (c.zones.some((z) => z.zone !== null)) await ensureConntrack(netns);
  for (const b of policyBaseChains(c)) await ensureBaseChain(netns, b.table, b.name);
  await nftApply(netns, policyChangeScript(c, installedBindTargets(netns, c)), 'could not apply the policy');
  if (c.chains.length) chainEditCounter.rewritten += c.chains.length;
  recordRewrite(netns, c.chains);
  for (const id of c.removeChains) forgetChain(netns, chainName(id));
  await changeSetElements(netns, removedElements(c), 'could not remove set elements');
}

/** The type of a group set from its name (compile.ts names them). */
function setTypeOf(name: string): string {
  if (name.startsWith('pg-')) return 'type ether_addr';
  return name.endsWith('-v6') ? 'type ipv6_addr; flags interval' : 'type ipv4_addr; flags interval';
}

/** A compiled rule's counter, summed over its nft rules (one MidoNet rule may expand to several). */
export interface RuleCounter {
  chainId: string;
  ruleId: string;
  packets: number;
  bytes: number;
}

/**
 * The per-rule counters in a listing of `table bridge bees`: every rule of a compiled chain carries `counter` and
 * `comment "r=<rule id>"` (compile.ts), so a drop is attributable to the MidoNet rule that made it.
 */
export function parseRuleCounters(listing: string): RuleCounter[] {
  const out = new Map<string, RuleCounter>();
  let chainId: string | undefined;
  for (const line of listing.split('\n')) {
    const chain = /^\s*chain (\S+) \{/.exec(line);
    if (chain) {
      chainId = chain[1]!.startsWith('c-') ? chain[1]!.slice(2) : undefined;
      continue;
    }
    if (!chainId) continue;
    const m = /counter packets (\d+) bytes (\d+).*comment "r=([^"]+)"/.exec(line);
    if (!m) continue;
    const key = `${chainId}/${m[3]}`;
    const c = out.get(key) ?? { chainId, ruleId: m[3]!, packets: 0, bytes: 0 };
    c.packets += Number(m[1]);
    c.bytes += Number(m[2]);
    out.set(key, c);
  }
  return [...out.values()];
}

/** The counters of every compiled rule in force in `netns` ([] without our table). */
export async function ruleCounters(netns: string | undefined): Promise<RuleCounter[]> {
  const listing = await nftQuery(netns, `list table ${ref(HOST_BRIDGE)}`, 'nft').catch(() => '');
  return parseRuleCounters(listing);
}
