// Filter chains and their rules: a chain's name is unique within its tenant; a rule's action and its arguments
// agree (a jump names another chain, a NAT rule has targets), and its addresses are in canonical form.
import { randomId } from '../../model/ids.js';
import type { Rule } from '../../model/types.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
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
    return { ...d, id: d.id ?? randomId(), chainId, action: given(d, 'action'), condition: d.condition ?? {}, position };
  },
  validate: validateRule,
};

function validateRule(r: Rule): void {
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
      throw new TopologyError('invalid', `natTargets[${i}]: addressFrom must not be above addressTo (same family)`, `natTargets[${i}].addressTo`);
    }
    if (t.portFrom > t.portTo) throw new TopologyError('invalid', `natTargets[${i}]: portFrom is above portTo`, `natTargets[${i}].portTo`);
    t.addressFrom = formatIp(from);
    t.addressTo = formatIp(to);
  }
  const c = r.condition;
  for (const f of ['nwSrc', 'nwDst'] as const) {
    const cidr = c[f];
    if (cidr !== undefined) c[f] = formatCidr(parseCidr(cidr, `condition.${f}`));
  }
  for (const f of ['tpSrc', 'tpDst'] as const) {
    const range = c[f];
    if (range && range.start > range.end) throw new TopologyError('invalid', `condition.${f}: start is above end`, `condition.${f}`);
  }
}
