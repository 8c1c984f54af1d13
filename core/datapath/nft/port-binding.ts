// A port bound to compiled chains that are already installed, straight over nfnetlink (one batch, one kernel
// transaction): per stage its chain `<stage>-<port>` holding one `goto c-<chain>`, and the element of the stage's
// verdict map that jumps to it — what bindScript writes as nft text. An attach to a shared chain (the agent installs a
// chain once per host) then costs libnftables nothing beyond the port security it parses anyway: the text binding
// cost ~1 ms of CPU in libnftables (its parse, evaluation and cache), which a loaded machine multiplies, for a few
// hundred bytes of netlink.
//
// A port bringing chains of its own (the first port of a chain on the host) goes the same way when every rule of
// them has a netlink form (rule-netlink.ts): the chains, their rules and the binding in one batch, so no
// libnftables parse of the rules sits on the attach path either.
import { attr, strAttr } from '../netlink/attributes.js';
import { chainName } from '../../policy/compile.js';
import type { PolicyChange } from '../types.js';
import { NFPROTO, NLM_F_CREATE, type BatchMessage } from './nfnetlink.js';
import {
  NFT_MSG,
  VERDICT,
  chainMessages,
  flushChain,
  nest,
  newChain,
  newRule,
  ruleNetlink,
  ruleOf,
  verdict,
  verdictData,
  type RuleNetlink,
} from './rule-netlink.js';
import { POLICY_STAGE } from './policy.js';
import { HOST_BRIDGE, PORT_SECURITY, type Stage } from './tables.js';

const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
const NFTA_DATA_VALUE = 1;
/** `ifname` keys are IFNAMSIZ bytes, NUL-padded. */
const IFNAMSIZ = 16;

function ifnameKey(ifname: string): Buffer {
  const b = Buffer.alloc(IFNAMSIZ);
  if (Buffer.byteLength(ifname) >= IFNAMSIZ) throw new Error(`interface name "${ifname}" is too long`);
  b.write(ifname);
  return b;
}

/**
 * A change of chains and bindings only as one nfnetlink batch: the chains it carries (rule-netlink.ts), then the
 * bindings. Undefined when libnftables must carry it: zones, sets or removals in it, a chain needing sets or
 * holding a rule without a netlink form, a binding to a chain neither carried nor in `installed`, or a jump to a
 * chain neither carried nor known to exist (`exists`: the text form would create it empty).
 */
export function policyMessages(
  c: PolicyChange,
  installed: ReadonlySet<string>,
  exists: (chainId: string) => boolean,
): BatchMessage[] | undefined {
  if (c.zones.length + c.sets.length + c.removeChains.length + c.removeSets.length > 0 || c.bindings.length === 0) return undefined;
  const carried = new Set(c.chains.map((x) => x.chainId));
  if (!c.bindings.every((b) => b.chainId !== null && (carried.has(b.chainId) || installed.has(b.chainId)))) return undefined;
  if (!c.chains.every((x) => x.jumps.every((j) => carried.has(j) || installed.has(j) || exists(j)))) return undefined;
  const chains = chainMessages(c.chains);
  return chains && [...chains, ...bindingMessages(c.bindings)];
}

/**
 * One device's chain of one stage of `table bridge bees`, as stageChainScript writes it: the chain created and
 * flushed (a leftover of an earlier attempt under this name must not keep other rules), its rules, and the stage
 * map's element jumping to it. The stage's base chain and map must exist (ensureBaseChains).
 */
export function stageMessages(stage: Stage, ifname: string, rules: readonly RuleNetlink[]): BatchMessage[] {
  if (stage.table !== HOST_BRIDGE) throw new Error(`stage ${stage.map} is not in table ${HOST_BRIDGE.name}`);
  const chain = stage.chain(ifname);
  const element = nest(NFTA_LIST_ELEM, [
    nest(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, ifnameKey(ifname))]),
    nest(NFTA_SET_ELEM_DATA, [verdictData(VERDICT.jump, chain)]),
  ]);
  return [
    newChain(chain),
    flushChain(chain),
    ...rules.flatMap((r) => [...(r.sets ?? []), newRule(chain, r)]),
    {
      type: NFT_MSG.NEWSETELEM,
      flags: NLM_F_CREATE,
      family: NFPROTO[HOST_BRIDGE.family],
      attrs: [
        strAttr(NFTA_SET_ELEM_LIST_TABLE, HOST_BRIDGE.name),
        strAttr(NFTA_SET_ELEM_LIST_SET, stage.map),
        nest(NFTA_SET_ELEM_LIST_ELEMENTS, [element]),
      ],
    },
  ];
}

/**
 * A port's anti-spoofing chain (port-security.ts's rules) as messages, or undefined when a rule has no netlink
 * form (then it goes as nft text).
 */
export function portSecurityMessages(ifname: string, rules: readonly string[]): BatchMessage[] | undefined {
  const encoded = rules.map(ruleNetlink);
  return encoded.every((r) => r !== undefined) ? stageMessages(PORT_SECURITY, ifname, encoded) : undefined;
}

/** The messages binding interfaces to chains: per binding its stage chain holding one `goto`, and its map element. */
export function bindingMessages(bindings: PolicyChange['bindings']): BatchMessage[] {
  return bindings.flatMap((b) => {
    if (b.chainId === null) throw new Error(`unbinding ${b.ifname} is not a binding`);
    return stageMessages(POLICY_STAGE[b.stage], b.ifname, [ruleOf([verdict(VERDICT.goto, chainName(b.chainId))])]);
  });
}
