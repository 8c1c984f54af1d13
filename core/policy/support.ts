// Which parts of a MidoNet rule the bridge and port filters can enforce faithfully. One list, read by the compiler
// (compile.ts refuses such a rule with CompileError), the simulator (simulate.ts refuses to guess a verdict for it)
// and the topology service (core/topology/rules/chain.ts refuses to store such a rule in a chain that a port or a
// bridge filters with, a 400 naming the field). A field MidoNet has that we would silently ignore would make the
// kernel, the simulator and `bees trace` disagree with what the user wrote; refusing it keeps them honest.
import type { Condition, RuleAction } from '../model/types.js';

export interface Unsupported {
  /** The offending field, as the API names it (`condition.nwTos`, `action`). */
  field: string;
  why: string;
}

/** Condition fields the bridge stages cannot compile faithfully, and why (a field absent here is compiled). */
const CONDITION_FIELDS: readonly [keyof Condition, string][] = [
  ['conjunctionInv', 'nftables cannot negate a conjunction of matches in one rule'],
  ['vlan', 'bees bridges carry untagged frames only (tagged frames skip the filters)'],
  ['nwTos', 'the TOS byte is not compiled (DSCP and ECN differ between IPv4 and IPv6 headers)'],
  ['traversedDevice', 'the kernel does not record the devices a packet traversed'],
  ['icmpDataSrcIp', 'the packet inside an ICMP error is not matched'],
  ['icmpDataDstIp', 'the packet inside an ICMP error is not matched'],
  ['matchNwDstRewritten', 'bridge and port filters see no earlier DNAT'],
];

/** Actions a bridge or port filter cannot take (NAT needs a router; reverse NAT never applies there). */
const BRIDGE_ACTIONS: readonly RuleAction[] = ['accept', 'drop', 'reject', 'jump', 'return', 'continue', 'rev_snat', 'rev_dnat'];

/** The first thing of `rule` a bridge or port filter cannot enforce faithfully, or undefined when it can. */
export function unsupportedOnBridge(rule: { action: RuleAction; condition: Condition }): Unsupported | undefined {
  const c = rule.condition;
  for (const [field, why] of CONDITION_FIELDS) {
    const v = c[field];
    if (v !== undefined && v !== false) return { field: `condition.${field}`, why };
  }
  if (!BRIDGE_ACTIONS.includes(rule.action))
    return { field: 'action', why: `${rule.action} needs a router (no NAT on bridge or port filters)` };
  return undefined;
}
