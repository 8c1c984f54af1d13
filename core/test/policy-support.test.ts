// Condition fields the bridge compiler cannot enforce faithfully are refused, never silently ignored: by the
// compiler (naming the rule and the field), by the simulator (no guessed verdict), and by the REST API at write time
// (400 naming the field) when the chain filters a bridge or a bridge port. MAC masks, which nft can say, compile
// and agree with the simulator. Drop rules log to NFLOG when asked (policy-kernel.test.ts shows it in the kernel).
import test, { type ExecutionContext } from 'ava';
import { ApiClient, ApiError } from '../api/client.js';
import { CompileError, compileChain, DEFAULT_DROP_LOG, type CompileContext } from '../policy/compile.js';
import { PolicyError, Simulator, type PolicyCondition, type PolicyRule } from '../policy/simulate.js';
import { serveApi } from './api-fixture.js';

const ctx: CompileContext = { macOf: () => undefined, chainExists: () => true };
const rule = (condition: PolicyCondition, action: PolicyRule['action'] = 'drop'): PolicyRule => ({
  id: 'r1',
  chainId: 'c',
  position: 1,
  action,
  condition,
});

const REFUSED: [PolicyCondition, string][] = [
  [{ conjunctionInv: true, nwProto: 6 }, 'condition.conjunctionInv'],
  [{ vlan: 0 }, 'condition.vlan'],
  [{ nwTos: 0x10 }, 'condition.nwTos'],
  [{ traversedDevice: 'x' }, 'condition.traversedDevice'],
  [{ icmpDataSrcIp: '10.0.0.0/8' }, 'condition.icmpDataSrcIp'],
  [{ icmpDataDstIp: '10.0.0.0/8' }, 'condition.icmpDataDstIp'],
  [{ matchNwDstRewritten: true }, 'condition.matchNwDstRewritten'],
];

test('the compiler and the simulator refuse what cannot be enforced, naming the rule and the field', (t) => {
  for (const [c, field] of REFUSED) {
    // Even where the rule would compile away (a jump to a missing chain): what was written is never ignored.
    for (const r of [rule(c), { ...rule(c, 'jump'), jumpChainId: 'gone' }]) {
      const e = t.throws(() => compileChain('c', [r], { ...ctx, chainExists: () => false }), { instanceOf: CompileError });
      t.regex(e.message, new RegExp(`rule r1: ${field} `), field);
    }
    const sim = new Simulator({ chains: [{ id: 'c', name: 'c' }], rules: [rule(c)], ipAddrGroups: [], ports: [] });
    t.throws(() => sim.process('c', { srcIp: '10.0.0.1', dstIp: '10.0.0.2', proto: 6 }), {
      instanceOf: PolicyError,
      message: new RegExp(field),
    });
  }
  t.throws(() => compileChain('c', [rule({}, 'dnat')], ctx), { instanceOf: CompileError, message: /rule r1: action/ });
  // What is compiled stays compiled: noVlan (tagged frames never reach the filters), false flags.
  t.is(compileChain('c', [rule({ noVlan: true, conjunctionInv: false, matchNwDstRewritten: false })], ctx).rules.length, 1);
});

test('MAC conditions with masks compile to nft masks and agree with the simulator', (t) => {
  const c: PolicyCondition = { dlSrc: '02:AA:BB:01:02:03', dlSrcMask: 'ff:ff:ff:00:00:00', dlDst: '02:00:00:00:00:09', invDlDst: true };
  t.deepEqual(compileChain('c', [rule(c)], ctx).rules, [
    'ether saddr & ff:ff:ff:00:00:00 == 02:aa:bb:00:00:00 ether daddr != 02:00:00:00:00:09 counter drop comment "r=r1"',
  ]);
  const sim = new Simulator({ chains: [{ id: 'c', name: 'c' }], rules: [rule(c)], ipAddrGroups: [], ports: [] });
  const verdict = (srcMac: string, dstMac: string) => sim.process('c', { srcMac, dstMac, srcIp: '10.0.0.1', dstIp: '10.0.0.2' });
  t.is(verdict('02:aa:bb:77:77:77', '02:00:00:00:00:01'), 'drop', 'prefix matches, destination is not the excluded one');
  t.is(verdict('02:aa:bc:77:77:77', '02:00:00:00:00:01'), 'accept', 'prefix differs');
  t.is(verdict('02:aa:bb:77:77:77', '02:00:00:00:00:09'), 'accept', 'the inverted destination');
});

test('drop and reject rules log to NFLOG with their rule id, rate-limited, when asked; accepts do not', (t) => {
  const rules: PolicyRule[] = [
    { ...rule({ nwSrc: '10.0.0.0/24', invNwSrc: true }), id: 'd' },
    { ...rule({}, 'reject'), id: 'j', position: 2 },
    { ...rule({}, 'accept'), id: 'a', position: 3 },
  ];
  const out = compileChain('c', rules, { ...ctx, dropLog: DEFAULT_DROP_LOG });
  const log = (id: string) => `limit rate 10/second log prefix "bees drop r=${id}" group 3054 comment "l=${id}"`;
  t.deepEqual(out.rules, [
    `ether type != ip ${log('d')}`,
    'ether type != ip counter drop comment "r=d"',
    `ip saddr != 10.0.0.0/24 ${log('d')}`,
    'ip saddr != 10.0.0.0/24 counter drop comment "r=d"',
    log('j'),
    'counter drop comment "r=j"',
    'counter accept comment "r=a"',
  ]);
  t.deepEqual(
    compileChain('c', rules, ctx).rules.filter((r) => r.includes('log')),
    [],
    'no logging unless asked',
  );
});

async function serve(t: ExecutionContext) {
  return new ApiClient((await serveApi(t, 'bees-policy-support-')).endpoint);
}

async function fails(t: ExecutionContext, p: Promise<unknown>, field: string, mentions: RegExp): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: ApiError });
  t.is(err.status, 400, err.message);
  t.is(err.field, field, err.message);
  t.regex(err.message, mentions);
}

test('the API refuses, 400 naming the field, a rule the bridge filters could not enforce', async (t) => {
  const api = await serve(t);
  const b = await api.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.5.0.0/24' }] });
  const port = await api.create('Port', { bridgeId: b.id, ips: ['10.5.0.2'] });
  const filter = await api.create('Chain', { name: 'in' });
  const other = await api.create('Chain', { name: 'other' });
  await api.update('Port', port.id, { inboundFilterId: filter.id });

  // A rule written into a chain a port filters with.
  await fails(
    t,
    api.create('Rule', { chainId: filter.id, action: 'drop', condition: { nwTos: 16 } }),
    'condition.nwTos',
    /nwTos.*filters port/,
  );
  // A chain that filters nothing (a router's, later): stored.
  const tos = await api.create('Rule', { chainId: other.id, action: 'drop', condition: { nwTos: 16 } });
  // Jumping to it from the filtering chain, or filtering with it, brings it into the compiler: refused.
  await fails(t, api.create('Rule', { chainId: filter.id, action: 'jump', jumpChainId: other.id }), 'jumpChainId', new RegExp(tos.id));
  await fails(t, api.update('Port', port.id, { outboundFilterId: other.id }), 'outboundFilterId', /nwTos/);
  await fails(t, api.update('Bridge', b.id, { inboundFilterId: other.id }), 'inboundFilterId', /nwTos/);
  // An existing rule of a filtering chain changed to use such a field.
  const ok = await api.create('Rule', { chainId: filter.id, action: 'drop', condition: { nwProto: 6 } });
  await fails(t, api.update('Rule', ok.id, { condition: { nwProto: 6, conjunctionInv: true } }), 'condition.conjunctionInv', /conjunction/);
  t.deepEqual((await api.get('Rule', ok.id)).condition, { nwProto: 6 }, 'nothing half-applied');
  t.is((await api.get('Port', port.id)).outboundFilterId, undefined);
});
