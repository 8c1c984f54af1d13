// Issue 10 item 5 through real agents on two harness hosts (real ZooKeeper): per-rule counters of a port read from
// its host's kernel by that host's agent (REST and `bees port counters`), the drop log naming the rule that
// dropped a denied ping (REST and `bees port drops --json`), and a clear 409 from an agent asked about a port of
// another host.
import test from 'ava';
import type { PortCounters, ProbeReport } from '../../core/api/attribution.js';
import type { TraceResult } from '../../core/policy/trace.js';
import { ApiError } from '../../core/api/client.js';
import type { FlowRecord } from '../../core/datapath/flow-log.js';
import { ETH_ARP, PROTO_ICMP } from '../../core/policy/simulate.js';
import { runBees } from '../../testbed/bees-entry.js';
import { eventually, startCluster } from '../../testbed/cluster.js';

test('counters and the drop log of a port, from the agent of its host; another host says where to ask', async (t) => {
  t.timeout(240_000);
  const c = await startCluster({ hosts: 2 });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const api = c.host(0).api;
  const subnet = { subnets: [{ cidr: '10.43.0.0/24' }] };
  const a = await c.attach(c.host(0), 'at-a', { tenant: 'at', network: 'attr', create: subnet });
  const b = await c.attach(c.host(1), 'at-b', { tenant: 'at', network: 'attr' });
  const tenantId = a.result.tenantId;

  // B takes ARP and replies; pings to it are dropped by a rule we can name.
  const toB = await api.create('Chain', { tenantId, name: 'to-b' });
  await api.create('Rule', { chainId: toB.id, position: 1, action: 'accept', condition: { ethertype: ETH_ARP } });
  const ret = await api.create('Rule', { chainId: toB.id, position: 2, action: 'accept', condition: { matchReturnFlow: true } });
  const noPing = await api.create('Rule', { chainId: toB.id, position: 3, action: 'drop', condition: { nwProto: PROTO_ICMP } });
  await api.update('Port', b.result.portId, { outboundFilterId: toB.id });
  await eventually(async () => !(await c.ping(a.netns, b.ip4!, { timeoutSec: 1 })), 60_000, "B's filter in force");
  t.true(await c.ping(b.netns, a.ip4!, { timeoutSec: 1 }), 'B reaches A; the reply is a return flow');

  // Host 1's agent reads B's counters from its kernel.
  const hostB = c.host(1);
  const counters = await hostB.api.request<PortCounters>('GET', `/v1/ports/${b.result.portId}/counters`);
  const of = (id: string) => counters.rules.find((r) => r.ruleId === id);
  t.like(of(noPing.id), { stage: 'port-outbound', chainId: toB.id, chainName: 'to-b', sharedBy: 1 });
  t.true(of(noPing.id)!.packets >= 1, JSON.stringify(counters));
  t.true(of(ret.id)!.packets >= 1, 'the echo reply passed by the return-flow rule');
  const drops = await eventually(
    async () => {
      const r = await hostB.api.request<{ records: FlowRecord[] }>('GET', `/v1/ports/${b.result.portId}/drops`);
      return r.records.length ? r.records : undefined;
    },
    5000,
    'the drop is logged',
  );
  t.like(drops[0], { verdict: 'drop', ruleId: noPing.id, srcIp: a.ip4, dstIp: b.ip4, proto: PROTO_ICMP, icmpType: 8 });

  // Host 0's agent cannot read host 1's kernel: 409 naming the host.
  const err = await t.throwsAsync(api.request('GET', `/v1/ports/${b.result.portId}/counters`), { instanceOf: ApiError });
  t.is(err.status, 409);
  t.regex(err.message, new RegExp(`bound on host .*${hostB.hostId}`));

  // The CLI, against host 1's agent.
  const endpoint = `unix:${hostB.runDir}/api.sock`;
  const table = await runBees(['port', 'counters', b.result.portId, '--api', endpoint]);
  t.is(table.code, 0, table.stderr);
  t.regex(table.stdout, new RegExp(`port-outbound\\s+to-b\\s+${noPing.id}\\s+[1-9]`));
  const lines = await runBees(['port', 'drops', b.result.portId, '--json', '--api', endpoint]);
  t.is(lines.code, 0, lines.stderr);
  const first = JSON.parse(lines.stdout.split('\n')[0]!) as FlowRecord;
  t.is(first.ruleId, noPing.id);

  // Probes: a real packet, each host's kernel beside the simulation. Denied: A's ping dies on B's host by noPing.
  type Probed = TraceResult & { probe: ProbeReport };
  const denied = await api.request<Probed>('POST', '/v1/trace', { src: a.result.portId, dst: b.result.portId, proto: 'icmp', probe: true });
  t.log(JSON.stringify(denied.probe, null, 1));
  t.like(denied.request, { verdict: 'drop', ruleId: noPing.id });
  t.like(denied.probe.kernel, { request: 'drop', requestRuleId: noPing.id });
  t.true(denied.probe.agrees);
  const seen = new Map(denied.probe.hosts.map((h) => [h.hostId, h]));
  t.is(seen.get(c.host(0).hostId)?.request.verdict, 'accept', "the source host's stages let it out");
  t.like(seen.get(hostB.hostId)?.request, { verdict: 'drop', ruleId: noPing.id }, "B's host dropped it");
  // Allowed: B's ping to A and its reply, both hosts.
  const allowed = await hostB.api.request<Probed>('POST', '/v1/trace', {
    src: b.result.portId,
    dst: a.result.portId,
    proto: 'icmp',
    probe: true,
  });
  t.true(allowed.delivered);
  t.like(allowed.probe.kernel, { request: 'accept', reply: 'accept' });
  t.true(allowed.probe.agrees, JSON.stringify(allowed.probe));
  t.is(allowed.probe.hosts.length, 2);
  for (const h of allowed.probe.hosts) t.is(h.request.verdict, 'accept', `host ${h.hostId} saw the request`);
  // Only the source host's agent can send: elsewhere a 409 naming the host.
  const wrong = await t.throwsAsync(api.request('POST', '/v1/trace', { src: b.result.portId, dst: a.result.portId, probe: true }), {
    instanceOf: ApiError,
  });
  t.is(wrong.status, 409);
  t.regex(wrong.message, new RegExp(hostB.hostId));
  // The CLI: side by side, exit 3 (not delivered) and the agreement said.
  const cli = await runBees([
    'trace',
    a.result.portId,
    b.result.portId,
    '--proto',
    'icmp',
    '--probe',
    '--api',
    `unix:${c.host(0).runDir}/api.sock`,
  ]);
  t.is(cli.code, 3, cli.stderr);
  t.regex(cli.stdout, new RegExp(`request DROP by rule ${noPing.id}`));
  t.regex(cli.stdout, /simulation and kernel agree/);
  // Nothing of the probes stays in the kernels.
  for (const h of c.hosts) t.notRegex((await c.harness.exec(h.host, ['nft', 'list', 'tables'])).stdout, /bees-probe/);
});
