// The policy model's validation (chains, rules, conditions), against the real file store.
import test, { type ExecutionContext } from 'ava';
import { MAX_JUMP_DEPTH } from '../model/types.js';
import { freshTopology, rejects } from './topology-fixture.js';

const fresh = (t: ExecutionContext) => freshTopology(t, 'bees-polmodel-');

test('a condition keeps every MidoNet field, canonical', async (t) => {
  const topo = await fresh(t);
  const c = await topo.create('Chain', { name: 'c' });
  const r = await topo.create('Rule', {
    chainId: c.id,
    action: 'drop',
    condition: {
      conjunctionInv: true,
      noVlan: true,
      ethertype: 0x0800,
      invEthertype: true,
      dlSrc: '02-AA-BB-CC-DD-EE',
      dlSrcMask: 'FF:FF:FF:00:00:00',
      invDlSrc: true,
      dlDst: '02:00:00:00:00:01',
      nwTos: 0x10,
      invNwTos: true,
      nwProto: 6,
      invNwProto: true,
      nwSrc: '10.0.0.9/24',
      invNwSrc: true,
      tpDst: { start: 80, end: 81 },
      invTpDst: true,
      fragmentPolicy: 'header',
      traversedDevice: 'some-bridge',
      invTraversedDevice: true,
      icmpDataSrcIp: '10.1.2.3/16',
      matchNwDstRewritten: true,
    },
  });
  t.is(r.condition.dlSrc, '02:aa:bb:cc:dd:ee');
  t.is(r.condition.dlSrcMask, 'ff:ff:ff:00:00:00');
  t.is(r.condition.nwSrc, '10.0.0.0/24');
  t.is(r.condition.icmpDataSrcIp, '10.1.0.0/16');
  t.true(r.condition.conjunctionInv);
  t.is(r.condition.fragmentPolicy, 'header');
  t.deepEqual(await topo.get('Rule', r.id), r);
  // An update can clear and set the new fields too.
  const u = await topo.update('Rule', r.id, { condition: { vlan: 10, fragmentPolicy: 'unfragmented' } });
  t.deepEqual(u.condition, { vlan: 10, fragmentPolicy: 'unfragmented' });
});

test('a condition that means nothing or contradicts itself is a 400 naming the field', async (t) => {
  const topo = await fresh(t);
  const c = await topo.create('Chain', { name: 'c' });
  const bad = (condition: object) => topo.create('Rule', { chainId: c.id, action: 'drop', condition });
  await rejects(t, bad({ invNwSrc: true }), 'invalid', 'condition.invNwSrc');
  await rejects(t, bad({ invTpDst: true, nwProto: 6 }), 'invalid', 'condition.invTpDst');
  await rejects(t, bad({ dlSrcMask: 'ff:ff:ff:00:00:00' }), 'invalid', 'condition.dlSrcMask');
  await rejects(t, bad({ dlDst: 'not-a-mac' }), 'invalid', 'condition.dlDst');
  await rejects(t, bad({ noVlan: true, vlan: 3 }), 'invalid', 'condition.vlan');
  await rejects(t, bad({ matchForwardFlow: true, matchReturnFlow: true }), 'invalid', 'condition.matchReturnFlow');
  await rejects(t, bad({ nwProto: 6, tpDst: { start: 80, end: 80 }, fragmentPolicy: 'nonheader' }), 'invalid', 'condition.fragmentPolicy');
  await rejects(t, bad({ icmpDataDstIp: '10.0.0.0/99' }), 'invalid', 'condition.icmpDataDstIp');
  await rejects(t, bad({ fragmentPolicy: 'some' }), 'invalid');
  await rejects(t, bad({ nwTos: 256 }), 'invalid');
  t.is((await topo.list('Rule')).length, 0);
});

test('NAT rules carry a flow action, other rules none', async (t) => {
  const topo = await fresh(t);
  const c = await topo.create('Chain', { name: 'nat' });
  const targets = [{ addressFrom: '192.0.2.1', addressTo: '192.0.2.1', portFrom: 0, portTo: 0 }];
  const d = await topo.create('Rule', { chainId: c.id, action: 'dnat', natTargets: targets });
  t.is(d.flowAction, 'accept');
  const s = await topo.create('Rule', { chainId: c.id, action: 'snat', natTargets: targets, flowAction: 'continue' });
  t.is(s.flowAction, 'continue');
  const rev = await topo.create('Rule', { chainId: c.id, action: 'rev_snat', flowAction: 'return' });
  t.is(rev.flowAction, 'return');
  await rejects(t, topo.create('Rule', { chainId: c.id, action: 'accept', flowAction: 'accept' }), 'invalid', 'flowAction');
  await rejects(t, topo.update('Rule', d.id, { flowAction: null }), 'invalid', 'flowAction');
});

test('jumps: a missing target, a loop, or nesting deeper than the kernel allows is refused, naming the chains', async (t) => {
  const topo = await fresh(t);
  const a = await topo.create('Chain', { name: 'alpha' });
  const b = await topo.create('Chain', { name: 'beta' });
  const c = await topo.create('Chain', { name: 'gamma' });
  await rejects(t, topo.create('Rule', { chainId: a.id, action: 'jump', jumpChainId: 'nowhere' }), 'invalid', 'jumpChainId');
  await topo.create('Rule', { chainId: a.id, action: 'jump', jumpChainId: b.id });
  await topo.create('Rule', { chainId: b.id, action: 'jump', jumpChainId: c.id });
  const loop = await rejects(t, topo.create('Rule', { chainId: c.id, action: 'jump', jumpChainId: a.id }), 'invalid', 'jumpChainId');
  t.regex(loop.message, /"gamma" -> "alpha" -> "beta" -> "gamma"/);
  // A loop made by changing an existing rule's target is caught too.
  const ca = await topo.create('Rule', { chainId: c.id, action: 'accept' });
  await rejects(t, topo.update('Rule', ca.id, { action: 'jump', jumpChainId: a.id }), 'invalid', 'jumpChainId');
  // A diamond is not a loop.
  await topo.create('Rule', { chainId: a.id, action: 'jump', jumpChainId: c.id });

  // A straight line of MAX_JUMP_DEPTH jumps is the deepest allowed.
  const line = [];
  for (let i = 0; i <= MAX_JUMP_DEPTH + 1; i++) line.push(await topo.create('Chain', { name: `d${i}` }));
  for (let i = 1; i < MAX_JUMP_DEPTH; i++)
    await topo.create('Rule', { chainId: line[i]!.id, action: 'jump', jumpChainId: line[i + 1]!.id });
  // d0 -> d1 makes MAX_JUMP_DEPTH nested jumps below d0: fine.
  await topo.create('Rule', { chainId: line[0]!.id, action: 'jump', jumpChainId: line[1]!.id });
  // One more at the bottom, or above the top, is too deep.
  const deep = await rejects(
    t,
    topo.create('Rule', { chainId: line[MAX_JUMP_DEPTH]!.id, action: 'jump', jumpChainId: line[MAX_JUMP_DEPTH + 1]!.id }),
    'invalid',
    'jumpChainId',
  );
  t.regex(deep.message, new RegExp(`"d${MAX_JUMP_DEPTH}".*${MAX_JUMP_DEPTH + 1} deep`));
  const top = await topo.create('Chain', { name: 'top' });
  await rejects(t, topo.create('Rule', { chainId: top.id, action: 'jump', jumpChainId: line[0]!.id }), 'invalid', 'jumpChainId');
});

test('chain delete: its rules go with it; a chain jumped to or used as a filter is kept with a 409', async (t) => {
  const topo = await fresh(t);
  const a = await topo.create('Chain', { name: 'a' });
  const b = await topo.create('Chain', { name: 'b' });
  await topo.create('Rule', { chainId: a.id, action: 'jump', jumpChainId: b.id });
  await topo.create('Rule', { chainId: b.id, action: 'drop' });
  const err = await rejects(t, topo.delete('Chain', b.id), 'conflict');
  t.regex(err.message, /Rule/);
  await topo.delete('Chain', a.id);
  t.is((await topo.list('Rule', { chainId: a.id })).length, 0);
  await topo.delete('Chain', b.id);
  t.is((await topo.list('Rule')).length, 0);
});
