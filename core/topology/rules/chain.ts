// Filter chains and their rules: a chain's name is unique within its tenant; a rule's action and its arguments
// agree (a jump names another chain, a NAT rule has targets), and its addresses are in canonical form.
import { randomId } from '../../model/ids.js';
import { NAT_ACTIONS, type Condition, type Rule } from '../../model/types.js';
import { formatCidr, formatIp, normalizeMac, parseCidr, parseIp } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import { checkJumps } from '../jumps.js';
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
  if (r.action === 'jump') {
    // Two concurrent jumps can close a loop neither sees alone: every jump write takes the cluster lock.
    await tx.ensureClusterLock();
    await tx.bump(CLUSTER_LOCK_ID);
    const rules = (await tx.list('Rule')).map((x) => x.value);
    const chains = (await tx.list('Chain')).map((x) => x.value);
    checkJumps(rules, r, chains);
  }
}
