// Issue 13 item 3 through a real agent started with --flow-log on a harness host: `bees flows` shows a denied
// connection with the rule that denied it and an allowed one with its accept rule, as JSON lines; an allowed
// connection is logged once (its first packet, conntrack state new), not per packet.
import test from 'ava';
import type { FlowOut, FlowsResponse } from '../../core/api/flows.js';
import { ETH_ARP, PROTO_ICMP } from '../../core/policy/simulate.js';
import { runBees } from '../../testbed/bees-entry.js';
import { eventually, startCluster } from '../../testbed/cluster.js';

test('bees flows names the rule that denied a connection and the rule that allowed one', async (t) => {
  t.timeout(240_000);
  const c = await startCluster({ hosts: 1, agentArgs: ['--flow-log'] });
  t.teardown(() => c.close());
  c.logAgentsOnFailure(t);
  const host = c.host(0);
  const api = host.api;
  const a = await c.attach(host, 'fl-a', { tenant: 'fl', network: 'flows', create: { subnets: [{ cidr: '10.45.0.0/24' }] } });
  const b = await c.attach(host, 'fl-b', { tenant: 'fl', network: 'flows' });

  // To B: ARP and pings are allowed, everything else denied.
  const toB = await api.create('Chain', { tenantId: a.result.tenantId, name: 'to-b' });
  await api.create('Rule', { chainId: toB.id, position: 1, action: 'accept', condition: { ethertype: ETH_ARP } });
  const allowPing = await api.create('Rule', { chainId: toB.id, position: 2, action: 'accept', condition: { nwProto: PROTO_ICMP } });
  const denyRest = await api.create('Rule', { chainId: toB.id, position: 3, action: 'drop', condition: {} });
  await api.update('Port', b.result.portId, { outboundFilterId: toB.id });
  const endpoint = `unix:${host.runDir}/api.sock`;
  const tcp = () => c.harness.exec(a.netns, ['timeout', '2', 'bash', '-c', `echo > /dev/tcp/${b.ip4}/80`]);
  // In force once a TCP connection to B is denied (and logged).
  await eventually(
    async () => {
      await tcp();
      const r = await api.request<FlowsResponse>('GET', '/v1/flows');
      return r.records.some((x) => x.ruleId === denyRest.id);
    },
    15_000,
    "B's filter in force",
  );

  const mark = Math.max(0, ...(await api.request<FlowsResponse>('GET', '/v1/flows')).records.map((x) => x.seq));
  t.true(await c.ping(a.netns, b.ip4!, { count: 5, timeoutSec: 8 }), 'pings to B are allowed');
  await tcp();

  const out = await eventually(
    async () => {
      const r = await runBees(['flows', '--json', '--api', endpoint]);
      if (r.code !== 0) throw new Error(r.stderr);
      const lines = r.stdout
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as FlowOut);
      const fresh = lines.filter((x) => x.seq > mark);
      // The deny rule also drops the workloads' own IPv6 multicast listener reports: wait for the TCP one.
      return fresh.some((x) => x.verdict === 'accept') && fresh.some((x) => x.verdict === 'drop' && x.proto === 6) ? fresh : undefined;
    },
    5000,
    'an allowed and a denied record',
  );
  t.log(out.map((x) => JSON.stringify(x)).join('\n'));
  const allowed = out.filter((x) => x.verdict === 'accept');
  t.like(allowed[0], {
    ruleId: allowPing.id,
    srcIp: a.ip4,
    dstIp: b.ip4,
    proto: PROTO_ICMP,
    outPortId: b.result.portId,
    inPortId: a.result.portId,
  });
  t.is(allowed.length, 1, 'five echoes of one ping are one connection: logged once, by its first packet');
  const denied = out.filter((x) => x.verdict === 'drop' && x.proto === 6);
  t.true(denied.length >= 1);
  t.like(denied[0], { ruleId: denyRest.id, srcIp: a.ip4, dstIp: b.ip4, proto: 6, dstPort: 80, outPortId: b.result.portId });

  // Filtered to B's port, and as text lines.
  const esc = (ip: string) => ip.replace(/\./g, '\\.');
  const text = await runBees(['flows', '--port', b.result.portId, '--api', endpoint]);
  t.is(text.code, 0, text.stderr);
  t.regex(text.stdout, new RegExp(`allowed rule ${allowPing.id} ${a.result.portId} -> ${b.result.portId} icmp`));
  t.regex(
    text.stdout,
    new RegExp(`denied  rule ${denyRest.id} ${a.result.portId} -> ${b.result.portId} tcp ${esc(a.ip4!)}:\\d+ > ${esc(b.ip4!)}:80`),
  );
});
