// Filter chains and their rules: a chain's name is unique within its tenant; a rule's action and its arguments
// agree (a jump names another chain, a NAT rule has targets), and its addresses are in canonical form.
import { randomId } from '../../model/ids.js';
import { NAT_ACTIONS, type Condition, type Rule } from '../../model/types.js';
import { formatCidr, formatIp, normalizeMac, parseCidr, parseIp } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import { checkJumps } from '../jumps.js';
import { unsupportedOnBridge } from '../../policy/support.js';
import { CLUSTER_LOCK_ID, type Tx } from '../tx.js';
import { given, unique, type KindRule } from './rule.js';

export const chainRule: KindRule<'Chain'> = {
  fill: (d) => ({ ...d, id: d.id ?? randomId(), name: given(d, 'name') }),
  validate: (c, tx) => unique('Chain', c, tx, { tenantId: c.tenantId }),
};

export const ruleRule: KindRule<'Rule'> = {
  async fill(d, tx) {
    const chainId = given(d, 'chainId');
    // Appended to its chain unless placed.
    const taken = (await tx.list('Rule')).filter((r) => r.value.chainId === chainId).map((r) => r.value.position);
    const position = d.position ?? Math.max(0, ...taken) + 1;
    const action = given(d, 'action');
    const flowAction = d.flowAction ?? (NAT_ACTIONS.includes(action) ? 'accept' : undefined);
    return {
      ...d,
      id: d.id ?? randomId(),
      chainId,
      action,
      condition: d.condition ?? {},
      position,
      ...(flowAction !== undefined ? { flowAction } : {}),
    };
  },
  validate: validateRule,
};

/** Each inversion flag and the field it negates: a flag without its field is a mistake, never silently nothing. */
const INVERSIONS: readonly [keyof Condition, keyof Condition][] = [
  ['invInPorts', 'inPortIds'],
  ['invOutPorts', 'outPortIds'],
  ['invPortGroupSrc', 'portGroupSrc'],
  ['invPortGroupDst', 'portGroupDst'],
  ['invEthertype', 'ethertype'],
  ['invDlSrc', 'dlSrc'],
  ['invDlDst', 'dlDst'],
  ['invNwTos', 'nwTos'],
  ['invNwProto', 'nwProto'],
  ['invNwSrc', 'nwSrc'],
  ['invNwDst', 'nwDst'],
  ['invTpSrc', 'tpSrc'],
  ['invTpDst', 'tpDst'],
  ['invIpAddrGroupSrc', 'ipAddrGroupSrc'],
  ['invIpAddrGroupDst', 'ipAddrGroupDst'],
  ['invTraversedDevice', 'traversedDevice'],
  ['invIcmpDataSrcIp', 'icmpDataSrcIp'],
  ['invIcmpDataDstIp', 'icmpDataDstIp'],
];

function validateCondition(c: Condition): void {
  const bad = (field: string, why: string) => new TopologyError('invalid', `condition.${field}: ${why}`, `condition.${field}`);
  for (const [flag, field] of INVERSIONS) {
    if (c[flag] && c[field] === undefined) throw bad(flag, `inverts ${field}, which the condition does not have`);
  }
  if (c.matchForwardFlow && c.matchReturnFlow) throw bad('matchReturnFlow', 'a packet is never both a forward and a return flow');
  if (c.noVlan && c.vlan !== undefined) throw bad('vlan', 'contradicts noVlan');
  for (const [mac, mask] of [
    ['dlSrc', 'dlSrcMask'],
    ['dlDst', 'dlDstMask'],
  ] as const) {
    const m = c[mac];
    if (m !== undefined) c[mac] = normalizeMac(m, `condition.${mac}`);
    const k = c[mask];
    if (k === undefined) continue;
    if (m === undefined) throw bad(mask, `a mask needs ${mac}`);
    c[mask] = normalizeMac(k, `condition.${mask}`);
  }
  for (const f of ['nwSrc', 'nwDst', 'icmpDataSrcIp', 'icmpDataDstIp'] as const) {
    const cidr = c[f];
    if (cidr !== undefined) c[f] = formatCidr(parseCidr(cidr, `condition.${f}`));
  }
  for (const f of ['tpSrc', 'tpDst'] as const) {
    const range = c[f];
    if (range && range.start > range.end) throw new TopologyError('invalid', `condition.${f}: start is above end`, `condition.${f}`);
  }
  // MidoNet's REST API: a later fragment carries no L4 header, so ports cannot be matched on it.
  if ((c.tpSrc || c.tpDst) && (c.fragmentPolicy === 'any' || c.fragmentPolicy === 'nonheader')) {
    throw bad(
      'fragmentPolicy',
      `${c.fragmentPolicy} cannot go with tpSrc or tpDst (later fragments have no ports): use header or unfragmented`,
    );
  }
}

async function validateRule(r: Rule, tx: Tx): Promise<void> {
  if (r.action === 'jump') {
    if (r.jumpChainId === undefined) throw new TopologyError('invalid', 'a jump rule needs jumpChainId', 'jumpChainId');
    if (r.jumpChainId === r.chainId) throw new TopologyError('invalid', 'a rule cannot jump to its own chain', 'jumpChainId');
  } else if (r.jumpChainId !== undefined) {
    throw new TopologyError('invalid', `a ${r.action} rule has no jumpChainId`, 'jumpChainId');
  }
  if (r.action === 'snat' || r.action === 'dnat') {
    if (!r.natTargets?.length) throw new TopologyError('invalid', `a ${r.action} rule needs natTargets`, 'natTargets');
  } else if (r.natTargets !== undefined) {
    throw new TopologyError('invalid', `a ${r.action} rule has no natTargets`, 'natTargets');
  }
  for (const [i, t] of (r.natTargets ?? []).entries()) {
    const from = parseIp(t.addressFrom, `natTargets[${i}].addressFrom`);
    const to = parseIp(t.addressTo, `natTargets[${i}].addressTo`);
    if (from.family !== to.family || from.value > to.value) {
      throw new TopologyError(
        'invalid',
        `natTargets[${i}]: addressFrom must not be above addressTo (same family)`,
        `natTargets[${i}].addressTo`,
      );
    }
    if (t.portFrom > t.portTo) throw new TopologyError('invalid', `natTargets[${i}]: portFrom is above portTo`, `natTargets[${i}].portTo`);
    t.addressFrom = formatIp(from);
    t.addressTo = formatIp(to);
  }
  if (NAT_ACTIONS.includes(r.action)) {
    if (r.flowAction === undefined) throw new TopologyError('invalid', `a ${r.action} rule needs flowAction`, 'flowAction');
  } else if (r.flowAction !== undefined) {
    throw new TopologyError('invalid', `a ${r.action} rule has no flowAction (NAT rules only)`, 'flowAction');
  }
  validateCondition(r.condition);
  const unsupported = unsupportedOnBridge(r);
  if (unsupported) {
    // Only where the bridge compiler would meet it: router chains are compiled by other rules.
    const rules = (await tx.list('Rule')).map((x) => x.value).filter((x) => x.id !== r.id);
    const filtering = filtersOf(await bridgeFilterRoots(tx), [...rules, r]);
    const by = filtering.get(r.chainId);
    if (by) throw refusal(r, unsupported, by);
  }
  if (r.action === 'jump' && r.jumpChainId) {
    // A filtering chain jumping to one holding such a rule would bring it into the compiler as well.
    const rules = (await tx.list('Rule')).map((x) => x.value).filter((x) => x.id !== r.id);
    if (filtersOf(await bridgeFilterRoots(tx), rules).has(r.chainId)) await checkBridgeFilter(tx, r.jumpChainId, 'jumpChainId');
  }
  if (r.action === 'jump') {
    // Two concurrent jumps can close a loop neither sees alone: every jump write takes the cluster lock.
    await tx.ensureClusterLock();
    await tx.bump(CLUSTER_LOCK_ID);
    const rules = (await tx.list('Rule')).map((x) => x.value);
    const chains = (await tx.list('Chain')).map((x) => x.value);
    checkJumps(rules, r, chains);
  }
}

/** Chains bridges and bridge ports filter with, each with who filters with it ("port <id> inboundFilterId"). */
async function bridgeFilterRoots(tx: Tx): Promise<Map<string, string>> {
  const roots = new Map<string, string>();
  for (const { value: p } of await tx.list('Port')) {
    if (p.type !== 'bridge') continue;
    if (p.inboundFilterId) roots.set(p.inboundFilterId, `port ${p.id} inboundFilterId`);
    if (p.outboundFilterId) roots.set(p.outboundFilterId, `port ${p.id} outboundFilterId`);
  }
  for (const { value: b } of await tx.list('Bridge')) {
    if (b.inboundFilterId) roots.set(b.inboundFilterId, `bridge ${b.id} inboundFilterId`);
    if (b.outboundFilterId) roots.set(b.outboundFilterId, `bridge ${b.id} outboundFilterId`);
  }
  return roots;
}

/** The roots closed over jumps: every chain the bridge compiler compiles, with the root that reaches it. */
function filtersOf(roots: Map<string, string>, rules: readonly Rule[]): Map<string, string> {
  const out = new Map<string, string>();
  const queue = [...roots];
  while (queue.length) {
    const [id, by] = queue.pop()!;
    if (out.has(id)) continue;
    out.set(id, by);
    for (const x of rules) if (x.chainId === id && x.action === 'jump' && x.jumpChainId) queue.push([x.jumpChainId, by]);
  }
  return out;
}

function refusal(r: Rule, u: { field: string; why: string }, by: string): TopologyError {
  return new TopologyError(
    'invalid',
    `rule ${r.id}: ${u.field} cannot be enforced on bridge or port filters (${u.why}); chain ${r.chainId} filters ${by}`,
    u.field,
  );
}

/**
 * A bridge or a bridge port about to filter with `chainId` (its `field`): refused when that chain, or one it jumps
 * to, holds a rule the bridge compiler cannot enforce (core/policy/support.ts). Called on a filter change only.
 */
export async function checkBridgeFilter(tx: Tx, chainId: string, field: string): Promise<void> {
  const rules = (await tx.list('Rule')).map((x) => x.value);
  for (const [id] of filtersOf(new Map([[chainId, field]]), rules)) {
    for (const r of rules) {
      if (r.chainId !== id) continue;
      const u = unsupportedOnBridge(r);
      if (u) {
        throw new TopologyError(
          'invalid',
          `${field}: chain ${chainId} holds rule ${r.id} (chain ${id}) whose ${u.field} cannot be enforced on bridge or port filters (${u.why})`,
          field,
        );
      }
    }
  }
}
