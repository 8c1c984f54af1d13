// Issue 13 item 2 through a real agent on a harness host: after real traffic, the agent's /metrics moves by what
// was sent. Per-port counters of the workloads' host veths (labelled by port id), drops by rule from the nft
// counters, datapath and store latency histograms, and the reconcile lag settling at 0. Prometheus's way in: the
// agent's TCP metrics listener (--metrics-listen), scraped over the underlay with its bearer token.
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ETH_ARP, PROTO_ICMP } from '../../core/policy/simulate.js';
import { eventually, startCluster } from '../../testbed/cluster.js';
import { sample, scrape } from '../../testbed/metrics.js';

/** The metrics port inside the host's namespace: each harness host has a network stack of its own. */
const METRICS_PORT = 9878;

test('port counters, drops by rule, latencies and reconcile lag of a real agent after real traffic', async (t) => {
  t.timeout(240_000);
  const dir = await mkdtemp(join(tmpdir(), 'bees-metrics-token-'));
  const token = `scrape-${Math.random().toString(36).slice(2)}`;
  await writeFile(join(dir, 'token'), `${token}\n`, { mode: 0o600 });
  const c = await startCluster({
    hosts: 1,
    agentArgs: ['--metrics-listen', `0.0.0.0:${METRICS_PORT}`, '--metrics-token-file', join(dir, 'token')],
  });
  t.teardown(async () => {
    await c.close();
    await rm(dir, { recursive: true, force: true });
  });
  c.logAgentsOnFailure(t);
  const host = c.host(0);
  const socket = `${host.runDir}/api.sock`;
  const subnet = { subnets: [{ cidr: '10.44.0.0/24' }] };
  const a = await c.attach(host, 'mt-a', { tenant: 'mt', network: 'metrics', create: subnet });
  const b = await c.attach(host, 'mt-b', { tenant: 'mt', network: 'metrics' });
  const A = { port: a.result.portId };
  const B = { port: b.result.portId };
  t.true(await c.ping(a.netns, b.ip4!, { timeoutSec: 2 }), 'A reaches B (ARP settled)');

  // The agent's topology cache follows the store: B's port may reach it just after B's attach answered.
  const before = await eventually(
    async () => {
      const x = await scrape(socket);
      return sample(x, 'bees_port_rx_packets_total', B) !== undefined ? x : undefined;
    },
    10_000,
    "B's port in the metrics",
  );
  const rx0 = sample(before, 'bees_port_rx_packets_total', A);
  const tx0 = sample(before, 'bees_port_tx_packets_total', A);
  const rxBytes0 = sample(before, 'bees_port_rx_bytes_total', A);
  const bRx0 = sample(before, 'bees_port_rx_packets_total', B);
  t.not(rx0, undefined, 'a series per local port, labelled by its id');
  t.not(bRx0, undefined);

  const N = 20;
  t.true(await c.ping(a.netns, b.ip4!, { count: N, timeoutSec: 10 }));
  const after = await scrape(socket);
  const rx = sample(after, 'bees_port_rx_packets_total', A)! - rx0!;
  const tx = sample(after, 'bees_port_tx_packets_total', A)! - tx0!;
  const rxBytes = sample(after, 'bees_port_rx_bytes_total', A)! - rxBytes0!;
  t.log({ rx, tx, rxBytes });
  // N echo requests out of A (its host veth receives them) and N replies in; ARP, IPv6 neighbour discovery and
  // the other workload's broadcasts come along, but far fewer than another N.
  t.true(rx >= N && rx < 2 * N, `rx packets moved by ${rx}`);
  t.true(tx >= N && tx < 2 * N, `tx packets moved by ${tx}`);
  t.true(rxBytes >= N * 98, `rx bytes moved by ${rxBytes} (an ICMP echo of ping's default size is 98 bytes on the wire)`);
  t.true(sample(after, 'bees_port_tx_packets_total', B)! - sample(before, 'bees_port_tx_packets_total', B)! >= N, "B's veth carried them");

  // A rule dropping pings to B: its nft counter is exported, labelled by the rule's id.
  const api = host.api;
  const tenantId = a.result.tenantId;
  const toB = await api.create('Chain', { tenantId, name: 'to-b' });
  await api.create('Rule', { chainId: toB.id, position: 1, action: 'accept', condition: { ethertype: ETH_ARP } });
  const noPing = await api.create('Rule', { chainId: toB.id, position: 2, action: 'drop', condition: { nwProto: PROTO_ICMP } });
  await api.update('Port', b.result.portId, { outboundFilterId: toB.id });
  await eventually(async () => !(await c.ping(a.netns, b.ip4!, { timeoutSec: 1 })), 60_000, "B's filter in force");
  const dropped0 = sample(await scrape(socket), 'bees_rule_drop_packets_total', { rule: noPing.id }) ?? 0;
  t.false(await c.ping(a.netns, b.ip4!, { count: 3, timeoutSec: 3 }));
  const m = await scrape(socket);
  const dropped = sample(m, 'bees_rule_drop_packets_total', { rule: noPing.id, chain: toB.id });
  t.log({ dropped0, dropped });
  t.true(dropped !== undefined && dropped - dropped0 >= 3, `the drop rule counted the 3 pings: ${dropped0} -> ${dropped}`);
  t.true((sample(m, 'bees_rule_drop_bytes_total', { rule: noPing.id }) ?? 0) >= 3 * 84);
  t.is(m.split('\n').filter((l) => l.startsWith('bees_rule_drop_packets_total{')).length, 1, 'accept rules are not exported as drops');

  // Latencies of the operations this test made happen.
  t.true((sample(m, 'bees_datapath_operation_duration_seconds_count', { operation: 'plug', outcome: 'ok' }) ?? 0) >= 2);
  t.true((sample(m, 'bees_datapath_operation_duration_seconds_count', { operation: 'nft_apply', outcome: 'ok' }) ?? 0) >= 1);
  t.true((sample(m, 'bees_store_operation_duration_seconds_count', { operation: 'commit', outcome: 'ok' }) ?? 0) >= 1);
  t.is(sample(m, 'bees_store_up'), 1);

  // The agent has applied what the store holds: the lag settles at 0 with a real sequence.
  const settled = await eventually(
    async () => {
      const x = await scrape(socket);
      return sample(x, 'bees_reconcile_lag') === 0 ? x : undefined;
    },
    10_000,
    'reconcile lag 0',
  );
  t.true((sample(settled, 'bees_applied_sequence') ?? 0) > 0);
  t.is(sample(settled, 'bees_applied_sequence'), sample(settled, 'bees_store_sequence'));

  // Prometheus's view: the same registry over TCP on the host's underlay address, from outside the host.
  const url = `http://${host.host.underlayIp}:${METRICS_PORT}`;
  const scraped = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  t.is(scraped.status, 200);
  t.regex(scraped.headers.get('content-type') ?? '', /^text\/plain/);
  const body = await scraped.text();
  t.true(sample(body, 'bees_port_rx_packets_total', A)! >= sample(after, 'bees_port_rx_packets_total', A)!, "A's port counter, grown");
  t.is(sample(body, 'bees_store_up'), 1);
  const refused = await fetch(`${url}/metrics`);
  t.is(refused.status, 401, 'no token, no metrics');
  t.is((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  const other = await fetch(`${url}/v1/status`, { headers: { authorization: `Bearer ${token}` } });
  t.is(other.status, 404, 'the metrics listener serves /metrics only, not the API');
});
