// A port bound to compiled chains that are already installed, straight over nfnetlink (one batch, one kernel
// transaction): per stage its chain `<stage>-<port>` holding one `goto c-<chain>`, and the element of the stage's
// verdict map that jumps to it — what bindScript writes as nft text. An attach to a shared chain (the agent installs a
// chain once per host) then costs libnftables nothing beyond the port security it parses anyway: the text binding
// cost ~1 ms of CPU in libnftables (its parse, evaluation and cache), which a loaded machine multiplies, for a few
// hundred bytes of netlink.
import { attr, strAttr } from '../netlink/attributes.js';
import { chainName } from '../../policy/compile.js';
import type { PolicyChange } from '../types.js';
import { NFPROTO, NLA_F_NESTED, NLM_F_CREATE, nftBatch, type BatchMessage } from './nfnetlink.js';
import { POLICY_STAGE } from './policy.js';
import { HOST_BRIDGE } from './tables.js';

const NFT_MSG_NEWCHAIN = 3;
const NFT_MSG_NEWRULE = 6;
const NFT_MSG_DELRULE = 8;
const NFT_MSG_NEWSETELEM = 12;
const NLM_F_APPEND = 0x800;
const NFTA_CHAIN_TABLE = 1;
const NFTA_CHAIN_NAME = 3;
const NFTA_RULE_TABLE = 1;
const NFTA_RULE_CHAIN = 2;
const NFTA_RULE_EXPRESSIONS = 4;
const NFTA_LIST_ELEM = 1;
const NFTA_EXPR_NAME = 1;
const NFTA_EXPR_DATA = 2;
const NFTA_IMMEDIATE_DREG = 1;
const NFTA_IMMEDIATE_DATA = 2;
const NFTA_DATA_VALUE = 1;
const NFTA_DATA_VERDICT = 2;
const NFTA_VERDICT_CODE = 1;
const NFTA_VERDICT_CHAIN = 2;
const NFT_REG_VERDICT = 0;
const NFT_JUMP = -3;
const NFT_GOTO = -4;
const NFTA_SET_ELEM_LIST_TABLE = 1;
const NFTA_SET_ELEM_LIST_SET = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS = 3;
const NFTA_SET_ELEM_KEY = 1;
const NFTA_SET_ELEM_DATA = 2;
/** `ifname` keys are IFNAMSIZ bytes, NUL-padded. */
const IFNAMSIZ = 16;

const nest = (type: number, children: Buffer[]): Buffer => attr(type | NLA_F_NESTED, Buffer.concat(children));
const be32 = (type: number, v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return attr(type, b);
};
const verdict = (code: number, chain: string): Buffer =>
  nest(NFTA_DATA_VERDICT, [be32(NFTA_VERDICT_CODE, code), strAttr(NFTA_VERDICT_CHAIN, chain)]);

function ifnameKey(ifname: string): Buffer {
  const b = Buffer.alloc(IFNAMSIZ);
  if (Buffer.byteLength(ifname) >= IFNAMSIZ) throw new Error(`interface name "${ifname}" is too long`);
  b.write(ifname);
  return b;
}

/** Whether `c` is only bindings to chains in `installed`, which bindingMessages can carry alone. */
export function bindingsOnly(c: PolicyChange, installed: ReadonlySet<string>): boolean {
  return (
    c.zones.length + c.sets.length + c.chains.length + c.removeChains.length + c.removeSets.length === 0 &&
    c.bindings.length > 0 &&
    c.bindings.every((b) => b.chainId !== null && installed.has(b.chainId))
  );
}

/**
 * The messages binding interfaces to installed chains: stage chain created (a port's stage chains go with it,
 * forgetDevices, so at attach it is new) and flushed, its `goto`, its map element. The stage's base chain and map
 * must exist (ensureBaseChains).
 */
export function bindingMessages(bindings: PolicyChange['bindings']): BatchMessage[] {
  const family = NFPROTO[HOST_BRIDGE.family];
  const table = strAttr(NFTA_CHAIN_TABLE, HOST_BRIDGE.name);
  const msgs: BatchMessage[] = [];
  for (const b of bindings) {
    if (b.chainId === null) throw new Error(`unbinding ${b.ifname} is not a binding`);
    const stage = POLICY_STAGE[b.stage];
    const chain = stage.chain(b.ifname);
    msgs.push({ type: NFT_MSG_NEWCHAIN, flags: NLM_F_CREATE, family, attrs: [table, strAttr(NFTA_CHAIN_NAME, chain)] });
    // Flushed, as the text does: a leftover of an earlier attempt under this name must not keep another `goto`.
    msgs.push({
      type: NFT_MSG_DELRULE,
      flags: 0,
      family,
      attrs: [strAttr(NFTA_RULE_TABLE, HOST_BRIDGE.name), strAttr(NFTA_RULE_CHAIN, chain)],
    });
    const immediate = nest(NFTA_LIST_ELEM, [
      strAttr(NFTA_EXPR_NAME, 'immediate'),
      nest(NFTA_EXPR_DATA, [
        be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT),
        nest(NFTA_IMMEDIATE_DATA, [verdict(NFT_GOTO, chainName(b.chainId))]),
      ]),
    ]);
    msgs.push({
      type: NFT_MSG_NEWRULE,
      flags: NLM_F_CREATE | NLM_F_APPEND,
      family,
      attrs: [strAttr(NFTA_RULE_TABLE, HOST_BRIDGE.name), strAttr(NFTA_RULE_CHAIN, chain), nest(NFTA_RULE_EXPRESSIONS, [immediate])],
    });
    const element = nest(NFTA_LIST_ELEM, [
      nest(NFTA_SET_ELEM_KEY, [attr(NFTA_DATA_VALUE, ifnameKey(b.ifname))]),
      nest(NFTA_SET_ELEM_DATA, [verdict(NFT_JUMP, chain)]),
    ]);
    msgs.push({
      type: NFT_MSG_NEWSETELEM,
      flags: NLM_F_CREATE,
      family,
      attrs: [
        strAttr(NFTA_SET_ELEM_LIST_TABLE, HOST_BRIDGE.name),
        strAttr(NFTA_SET_ELEM_LIST_SET, stage.map),
        nest(NFTA_SET_ELEM_LIST_ELEMENTS, [element]),
      ],
    });
  }
  return msgs;
}

/** Bind interfaces to installed chains, one nfnetlink batch (all or nothing). */
export function applyBindings(netns: string | undefined, bindings: PolicyChange['bindings'], context: string): Promise<void> {
  return nftBatch(netns, bindingMessages(bindings), context);
}
