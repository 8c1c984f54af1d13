// `bees trace` (core/cli/trace.ts) through the real CLI against a real `bees api` process (POST /v1/trace).
import test from 'ava';
import { ApiClient } from '../api/client.js';
import { bees, startBeesApi } from './bees-process.js';

test('bees trace: the path, chain and rules for people and scripts, exit 3 when dropped, 4xx for bad ends', async (t) => {
  const { sock, env } = await startBeesApi(t, 'bees-trace-');
  const api = new ApiClient(`unix:${sock}`);
  const net = await api.create('Bridge', { name: 'blue', subnets: [{ cidr: '10.90.0.0/24' }] });
  const a = await api.create('Port', { bridgeId: net.id, ips: ['10.90.0.10'] });
  const b = await api.create('Port', { bridgeId: net.id, ips: ['10.90.0.20'] });
  const chain = await api.create('Chain', { name: 'web-only' });
  const web = await api.create('Rule', {
    chainId: chain.id,
    position: 1,
    action: 'accept',
    condition: { nwProto: 6, tpDst: { start: 80, end: 80 } },
  });
  const deny = await api.create('Rule', { chainId: chain.id, position: 2, action: 'drop', condition: {} });
  await api.update('Port', b.id, { outboundFilterId: chain.id });

  const ok = await bees(['trace', '10.90.0.10', '10.90.0.20', '--port', '80'], env);
  t.is(ok.code, 0, ok.err);
  t.regex(ok.out, new RegExp(`port-outbound +port ${b.id} +chain web-only`));
  t.regex(ok.out, new RegExp(`rule ${web.id}: matched → accept`));
  t.regex(ok.out, /verdict: delivered/);

  const dropped = await bees(['trace', a.id, '10.90.0.20', '--proto', 'udp', '--port', '53', '--json'], env);
  t.is(dropped.code, 3, dropped.err);
  const j = JSON.parse(dropped.out) as { delivered: boolean; request: { verdict: string; ruleId: string; stage: string } };
  t.false(j.delivered);
  t.like(j.request, { verdict: 'drop', ruleId: deny.id, stage: 'port-outbound' });

  const bad = await bees(['trace', '10.90.0.99', b.id], env);
  t.not(bad.code, 0);
  t.regex(bad.err, /no port, workload address or workload id "10.90.0.99"/);
  const usage = await bees(['trace', 'x', 'y', '--proto', 'sctp'], env);
  t.is(usage.code, 2);
});
