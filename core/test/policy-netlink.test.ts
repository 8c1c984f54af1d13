// Compiled rules sent as netlink expressions (core/datapath/nft/rule-netlink.ts) mean what their nft text means:
// a corpus covering every condition and action compile.ts emits for bridge stages is installed both ways, through
// libnftables and as a raw nfnetlink batch, and nft's listings of the two chains must be identical (matches,
// counters, verdicts, logs, comments). And a port's new chain installed by the plug over the new path filters
// packets in the kernel.
import test from 'ava';
import type { PolicyChange } from '../datapath/index.js';
import { nftApply, nftQuery } from '../datapath/nft/index.js';
import { nftTransactionCounter } from '../datapath/nft/apply.js';
import {
  NFPROTO,
  NLM_F_CREATE,
  chainExists,
  chainRuleComments,
  closeShared,
  nftBatch,
  openShared,
  nftBatchCounter,
  type BatchMessage,
} from '../datapath/nft/nfnetlink.js';
import { applyChains, policyBaseChains, replaceSetScript } from '../datapath/nft/policy.js';
import { chainMessages, newChain, ruleNetlink } from '../datapath/nft/rule-netlink.js';
import { ensureBaseChains, header } from '../datapath/nft/script.js';
import { HOST_BRIDGE } from '../datapath/nft/tables.js';
import { DEFAULT_DROP_LOG, compileChain, type CompileContext, type CompiledChain } from '../policy/compile.js';
import { portSecurityRules } from '../datapath/nft/port-security.js';
import {
  ETH_ARP,
  ETH_IPV4,
  ETH_IPV6,
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_TCP,
  PROTO_UDP,
  type PolicyCondition,
  type PolicyRule,
} from '../policy/simulate.js';
import { cluster, ipOf, listedRules, spec, threePorts, type TestPort } from './datapath-helpers.js';

const MACS: Record<string, string> = { pa: '02:00:00:00:0a:01', pb: '02:00:00:00:0b:02' };
const CTX: CompileContext = { macOf: (id) => MACS[id], chainExists: () => true };

/** One condition per line of compile.ts's mapping, plain and inverted, alone and combined. */
const CONDITIONS: PolicyCondition[] = [
  {},
  { matchForwardFlow: true },
  { matchReturnFlow: true },
  { ethertype: ETH_IPV4 },
  { ethertype: ETH_IPV6, invEthertype: true },
  { ethertype: ETH_ARP },
  { nwProto: PROTO_TCP },
  { nwProto: PROTO_UDP, invNwProto: true },
  { nwProto: PROTO_TCP, tpDst: { start: 80, end: 80 } },
  { nwProto: PROTO_TCP, tpDst: { start: 8000, end: 8080 } },
  { nwProto: PROTO_UDP, tpSrc: { start: 53, end: 53 }, invTpSrc: true },
  { nwProto: PROTO_UDP, tpSrc: { start: 1000, end: 2000 }, invTpSrc: true, tpDst: { start: 5353, end: 5353 } },
  { nwSrc: '10.1.2.3' },
  { nwSrc: '10.0.0.0/8' },
  { nwSrc: '10.16.0.0/12' },
  { nwDst: '192.168.1.0/24', invNwDst: true },
  { nwDst: '10.1.2.3/32', nwSrc: '10.64.0.0/10', invNwSrc: true },
  { nwSrc: 'fd00::/64' },
  { nwDst: 'fd00:1::/33', invNwDst: true },
  { nwDst: 'fd00::1' },
  { ethertype: ETH_IPV4, nwSrc: '10.1.0.0/20', nwProto: PROTO_TCP, tpDst: { start: 22, end: 22 } },
  { ethertype: ETH_IPV6, nwDst: 'fd00::/48' },
  { inPortIds: ['pa'] },
  { outPortIds: ['pb'], invOutPorts: true },
  { inPortIds: ['pa', 'pb'] },
  { dlSrc: '02:00:00:00:00:01' },
  { dlDst: '02:00:00:00:00:02', invDlDst: true },
  { dlSrc: '02:00:00:12:34:56', dlSrcMask: 'ff:ff:ff:00:00:00' },
  { dlDst: '02:00:00:12:34:56', dlDstMask: 'ff:ff:00:00:00:00', invDlDst: true },
  { portGroupSrc: 'g1' },
  { portGroupDst: 'g1', invPortGroupDst: true },
  { ipAddrGroupSrc: 'g2' },
  { ipAddrGroupDst: 'g2', invIpAddrGroupDst: true },
  { nwProto: PROTO_ICMP, tpSrc: { start: 8, end: 8 } },
  { nwProto: PROTO_ICMPV6, tpSrc: { start: 128, end: 128 }, tpDst: { start: 0, end: 0 } },
  { matchReturnFlow: true, inPortIds: ['pa'], invInPorts: true, ethertype: ETH_IPV4, invEthertype: true },
  // Inverted pairs nft would merge: the second of each is written as a one-value range (compile.ts, Apart).
  { dlSrc: '02:00:00:00:00:01', invDlSrc: true, nwDst: 'fd00::/8', invNwDst: true },
  { outPortIds: ['pb'], invOutPorts: true, dlSrc: '02:00:00:00:00:01', invDlSrc: true, ethertype: ETH_IPV6, invEthertype: true },
  { nwProto: PROTO_TCP, tpSrc: { start: 1, end: 1 }, invTpSrc: true, tpDst: { start: 80, end: 80 }, invTpDst: true },
];
const ACTIONS: PolicyRule['action'][] = ['accept', 'drop', 'reject', 'return', 'continue', 'jump'];

function corpus(chainId: string): PolicyRule[] {
  return CONDITIONS.map((condition, i) => {
    const action = ACTIONS[i % ACTIONS.length]!;
    return { id: `r${i}`, chainId, position: i, action, condition, ...(action === 'jump' ? { jumpChainId: 'target' } : {}) };
  });
}

test.serial('compiled rules sent as netlink expressions list exactly as nft compiles their text', async (t) => {
  t.timeout(120_000);
  const c = await cluster(t, 1);
  const ns = c.h.hosts[0]!.netns;
  const family = NFPROTO.bridge;
  // The sets and the jump target the rules refer to, in both chains.
  await nftApply(
    ns,
    header(HOST_BRIDGE) +
      replaceSetScript({ name: 'pg-g1', type: 'ether_addr' }, []) +
      replaceSetScript({ name: 'iag-g2-v4', type: 'ipv4_addr', interval: true }, []) +
      replaceSetScript({ name: 'iag-g2-v6', type: 'ipv6_addr', interval: true }, []) +
      'add chain bridge bees c-target\n',
    'setup',
  );
  const variants: [string, CompileContext][] = [
    ['plain', CTX],
    ['logged', { ...CTX, dropLog: DEFAULT_DROP_LOG, acceptLog: DEFAULT_DROP_LOG }],
  ];
  let encoded = 0;
  const refused = new Set<string>();
  // Port security's rules too (port-security.ts), for a port with IPv4 and IPv6 addresses and for one without.
  const security = (id: string, ips: string[]) => ({
    chainId: id,
    name: `c-${id}`,
    rules: portSecurityRules({ hostIfname: 'bvsec', mac: '02:00:00:00:0a:01', ips }),
    sets: [],
    jumps: [],
  });
  const chains: [string, (id: string) => CompiledChain][] = [
    ...variants.map(([label, ctx]): [string, (id: string) => CompiledChain] => [label, (id) => compileChain(id, corpus(id), ctx)]),
    ['security', (id) => security(id, ['10.0.0.2', '10.0.0.3', 'fd00::2'])],
    ['security-v4', (id) => security(id, ['10.0.0.2'])],
    ['security-none', (id) => security(id, [])],
  ];
  for (const [label, make] of chains) {
    const text = make(`tx-${label}`);
    await applyChains(ns, [text]);
    const same = make(`nl-${label}`);
    const messages: BatchMessage[] = [{ type: 3, flags: NLM_F_CREATE, family, attrs: [strz(1, 'bees'), strz(3, same.name)] }];
    // The text chain keeps every rule: the netlink chain is compared against those the encoder takes.
    const kept: number[] = [];
    same.rules.forEach((r, i) => {
      const nl = ruleNetlink(r);
      if (!nl) return void refused.add(r.replace(/comment "[lr]=\w+"/, '').trim());
      kept.push(i);
      messages.push(...(nl.sets ?? []), {
        type: 6,
        flags: NLM_F_CREATE | 0x800,
        family,
        attrs: [strz(1, 'bees'), strz(2, same.name), nl.expressions, ...(nl.userdata ? [nl.userdata] : [])],
      });
    });
    await nftBatch(ns, messages, `install ${same.name}`);
    const want = await listedRules(c.h, ns, text.name);
    const got = await listedRules(c.h, ns, same.name);
    t.is(got.length, kept.length);
    t.deepEqual(
      got,
      kept.map((i) => want[i]),
      label,
    );
    encoded += kept.length;
    // The comments read back as attribution reads them.
    t.deepEqual(
      chainRuleComments(ns, 'bridge', 'bees', same.name),
      kept.map((i) => /comment "([^"]+)"/.exec(same.rules[i]!)?.[1] ?? ''),
    );
  }
  // What the encoder leaves to libnftables: anonymous sets and ICMP fields, nothing else.
  t.true(encoded > 60, `${encoded} rules encoded`);
  t.log([...refused]);
  for (const r of refused) t.regex(r, /\{|icmp/, `refused: ${r}`);
  // Whole chains: refused when they need sets or hold a refused rule, taken otherwise.
  t.is(chainMessages([compileChain('x', corpus('x'), CTX)]), undefined);
  const plain = CONDITIONS.flatMap((condition, i) =>
    [24, 29, 30, 31, 32, 33, 34].includes(i) ? [] : [{ id: `p${i}`, chainId: 'y', position: i, action: 'drop' as const, condition }],
  );
  t.truthy(chainMessages([compileChain('y', plain, CTX)]));
  // A message failing in the middle of a batch (only the last asks for an acknowledgement) rejects it whole.
  const jumpToNothing = chainMessages([{ chainId: 'bad', name: 'c-bad', rules: ['jump c-nothing'], sets: [], jumps: [] }])!;
  await t.throwsAsync(nftBatch(ns, [...jumpToNothing, newChain('c-after')], 'broken'), { message: /broken: .*(ENOENT|No such file)/ });
  t.false(chainExists(ns, 'bridge', 'bees', 'c-bad'));
  t.false(chainExists(ns, 'bridge', 'bees', 'c-after'));
  // On a socket shared by several requests (a chain write's), a refused batch's late replies (the acknowledgement
  // of its last message comes after the error) must not be taken for the next batch's: the next refusal is seen,
  // and a good batch after it is applied.
  const via = openShared(ns, 'shared');
  try {
    await t.throwsAsync(nftBatch(ns, [...jumpToNothing, newChain('c-after')], 'first', via), { message: /first: / });
    await t.throwsAsync(nftBatch(ns, [...jumpToNothing, newChain('c-after')], 'second', via), { message: /second: / });
    t.false(chainExists(ns, 'bridge', 'bees', 'c-after', via));
    await nftBatch(ns, [newChain('c-after')], 'third', via);
    t.true(chainExists(ns, 'bridge', 'bees', 'c-after', via));
  } finally {
    closeShared(via);
  }
});

/** A NUL-terminated string attribute (the test spells the messages the way nfnetlink.ts does). */
function strz(type: number, s: string): Buffer {
  return attrOf(type, Buffer.from(`${s}\0`));
}
function attrOf(type: number, payload: Buffer): Buffer {
  const b = Buffer.alloc((4 + payload.length + 3) & ~3);
  b.writeUInt16LE(4 + payload.length, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}

test.serial('a port bringing a new chain: rules sent as netlink, no libnftables for the policy, packets filtered', async (t) => {
  t.timeout(120_000);
  const { c, host, dp, A, B, C } = await threePorts(t, '10.79.0');
  const ns = host.netns;
  // Frames to B: ICMP from A dropped (counted on its rule), from C accepted; 48 rules no probe meets before them.
  const rules: PolicyRule[] = [
    ...Array.from({ length: 48 }, (_, i): PolicyRule => ({
      id: `miss${i}`,
      chainId: 'to-b-nl',
      position: i,
      action: 'drop',
      condition: { nwProto: PROTO_TCP, tpDst: { start: 20000 + i, end: 20000 + i } },
    })),
    { id: 'no-a', chainId: 'to-b-nl', position: 100, action: 'drop', condition: { nwSrc: `${ipOf(A)}/32`, nwProto: PROTO_ICMP } },
    { id: 'ok-c', chainId: 'to-b-nl', position: 101, action: 'accept', condition: { nwSrc: `${ipOf(C)}/32` } },
  ];
  const chain = compileChain('to-b-nl', rules, CTX);
  t.truthy(chainMessages([chain]));
  const hostIfname = 'bvnetlinkb';
  const policy: PolicyChange = {
    zones: [],
    sets: [],
    chains: [chain],
    bindings: [{ ifname: hostIfname, stage: 'port-outbound', chainId: 'to-b-nl' }],
    removeChains: [],
    removeSets: [],
  };
  // The stage's base chain is there already (as on a host with ports bound), so the plug's own work is counted.
  await ensureBaseChains(ns, policyBaseChains(policy));
  const batches = nftBatchCounter.count;
  const texts = nftTransactionCounter.count;
  await dp.plug({ ...spec(B), hostIfname, policy });
  B.hostIfname = hostIfname;
  // The port security, the chain and its binding in one batch: libnftables did not run.
  t.is(nftBatchCounter.count - batches, 1);
  t.is(nftTransactionCounter.count - texts, 0);
  const ping = (from: TestPort, to: TestPort) => c.h.exec(from.netns!, ['ping', '-c', '1', '-W', '1', ipOf(to)]);
  t.not((await ping(A, B)).code, 0, 'A is dropped on its way to B');
  t.true(await c.h.pingEventually(C.netns!, ipOf(B)), 'C reaches B');
  const listing = await nftQuery(ns, 'list chain bridge bees c-to-b-nl', 'list');
  t.regex(listing, /meta l4proto icmp ip saddr 10\.79\.0\.2 counter packets [1-9]\d* bytes \d+ drop comment "r=no-a"/);
  t.regex(listing, /ip saddr 10\.79\.0\.4 counter packets [1-9]\d* bytes \d+ accept comment "r=ok-c"/);
  t.is((listing.match(/comment "r=miss\d+"/g) ?? []).length, 48);
  t.regex(await nftQuery(ns, `list chain bridge bees tp-${hostIfname}`, 'list'), /goto c-to-b-nl/);
});
