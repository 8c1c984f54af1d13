// Bandwidth shaping of a workload port, measured with iperf3 between two workloads of one host: traffic from the
// shaped workload runs at its egress rate, traffic to it at its ingress rate, an unshaped pair much faster; unplug
// leaves no ifb and no qdisc behind; bad rate/burst pairs are refused before anything is made.
import test from 'ava';
import { ifbName } from '../datapath/bandwidth.js';
import { cluster, desiredBridge, ipOf, mac, plugAll, randomVni, spec, type Cluster, type TestPort } from './datapath-helpers.js';

const EGRESS = 20_000_000;
const INGRESS = 10_000_000;

/** Mbit/s received in one iperf3 run from `from` to a one-off server in `to` (reverse: the server sends). */
async function iperf(c: Cluster, from: string, to: string, toIp: string, reverse = false): Promise<number> {
  const port = String(20000 + Math.floor(Math.random() * 20000));
  const s = await c.h.exec(to, ['iperf3', '-s', '-1', '-D', '-p', port]);
  if (s.code !== 0) throw new Error(`iperf3 server: ${s.stderr}`);
  for (let i = 0; i < 50; i++) {
    if ((await c.h.exec(to, ['sh', '-c', `ss -ltn | grep -q ":${port} "`])).code === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const r = await c.h.exec(from, ['iperf3', '-c', toIp, '-p', port, '-t', '4', '-O', '1', '-J', ...(reverse ? ['-R'] : [])]);
  const j = JSON.parse(r.stdout || '{}') as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  const bps = j.end?.sum_received?.bits_per_second;
  if (!bps) throw new Error(`iperf3 to ${toIp}: ${j.error ?? r.stderr}`);
  return bps / 1e6;
}

test('a shaped port: egress and ingress at their rates, nothing left after unplug', async (t) => {
  const c = await cluster(t, 1);
  const vni = randomVni();
  const host = c.h.host('h1');
  const ports: TestPort[] = [2, 3, 4].map((n) => ({ host, vni, mac: mac(), ips: [`10.94.0.${n}/24`] }));
  await c.dp.get('h1')!.ensureBridge(desiredBridge(host, vni, ports));
  const [shaped, other, third] = ports as [TestPort, TestPort, TestPort];
  shaped.netns = await c.h.addWorkload(host, 'bwshaped');
  const dp = c.dp.get('h1')!;
  const bandwidth = { egressRate: EGRESS, egressBurst: 400_000, ingressRate: INGRESS, ingressBurst: 400_000 };
  shaped.hostIfname = (await dp.plug({ ...spec(shaped), bandwidth })).hostIfname;
  await plugAll(c, [other, third]);
  t.true(await c.h.pingEventually(shaped.netns, ipOf(other)));

  const up = await iperf(c, shaped.netns, other.netns!, ipOf(other));
  const down = await iperf(c, shaped.netns, other.netns!, ipOf(other), true);
  const free = await iperf(c, third.netns!, other.netns!, ipOf(other));
  t.log(
    `shaped egress ${up.toFixed(1)} Mbit/s (rate ${EGRESS / 1e6}), ingress ${down.toFixed(1)} (rate ${INGRESS / 1e6}), unshaped ${free.toFixed(0)}`,
  );
  t.true(up <= (EGRESS / 1e6) * 1.15 && up >= (EGRESS / 1e6) * 0.6, `egress ${up} Mbit/s within the rate`);
  t.true(down <= (INGRESS / 1e6) * 1.15 && down >= (INGRESS / 1e6) * 0.6, `ingress ${down} Mbit/s within the rate`);
  t.true(free > (EGRESS / 1e6) * 3, `the unshaped pair runs faster (${free} Mbit/s): the limits are the shaping's`);

  const ifb = ifbName(shaped.hostIfname);
  t.is((await c.h.exec(host, ['ip', 'link', 'show', 'dev', ifb])).code, 0, 'the ifb exists while plugged');
  await dp.unplug(shaped.hostIfname);
  t.not((await c.h.exec(host, ['ip', 'link', 'show', 'dev', ifb])).code, 0, 'the ifb is gone after unplug');
  const links = await c.h.exec(host, ['ip', '-o', 'link', 'show']);
  t.false(links.stdout.includes(shaped.hostIfname.slice(2)), 'neither the veth nor the ifb remains');
  const qdiscs = await c.h.exec(host, ['tc', 'qdisc', 'show']);
  t.false(/tbf|ingress/.test(qdiscs.stdout), `no tbf or ingress qdisc remains: ${qdiscs.stdout}`);

  // Unshaped plugs get no ifb and no qdisc of ours.
  t.false((await c.h.exec(host, ['ip', '-o', 'link', 'show', 'type', 'ifb'])).stdout.includes('bw'));
  for (const p of [other, third]) await dp.unplug(p.hostIfname!);
  await dp.removeBridge(vni);
  await dp.sweep({});
  t.deepEqual(await c.h.allLeaks(), {});
});

test('rate without burst, burst without rate, negatives: refused before anything is made', async (t) => {
  const c = await cluster(t, 1);
  const vni = randomVni();
  const host = c.h.host('h1');
  const p: TestPort = { host, vni, mac: mac(), ips: ['10.94.1.2/24'] };
  await c.dp.get('h1')!.ensureBridge(desiredBridge(host, vni, [p]));
  p.netns = await c.h.addWorkload(host, 'bwbad');
  for (const bandwidth of [
    { ingressRate: 1e6 },
    { egressBurst: 1e5 },
    { egressRate: -1, egressBurst: 1e5 },
    { ingressRate: 1e6, ingressBurst: 8 * 2 ** 32 },
  ]) {
    await t.throwsAsync(c.dp.get('h1')!.plug({ ...spec(p), bandwidth }), { message: /bandwidth/ }, JSON.stringify(bandwidth));
  }
  t.false((await c.h.exec(host, ['ip', '-o', 'link', 'show'])).stdout.includes('bv'), 'no veth was made');
  await c.dp.get('h1')!.removeBridge(vni);
});
