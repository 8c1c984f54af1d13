// Shared by the datapath tests: a harness with one LinuxDatapath per host, and the topology arithmetic the agent
// would do (which host needs which remote ports), kept deliberately simple.
import { randomBytes } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import { LinuxDatapath } from '../datapath/index.js';
import type { DesiredBridge, GatewayAddress, PlugSpec } from '../datapath/index.js';
import { Harness, type HarnessHost } from '../../testbed/index.js';

export interface Cluster {
  h: Harness;
  dp: Map<string, LinuxDatapath>;
}

export async function cluster(t: ExecutionContext, hosts = 3): Promise<Cluster> {
  const h = await Harness.create({ hosts });
  t.teardown(() => h.destroy());
  const dp = new Map(
    h.hosts.map((x) => [
      x.name,
      new LinuxDatapath({
        underlayIp: x.underlayIp,
        hostNetns: x.netns,
        routerNsPrefix: x.routerNsPrefix,
      }),
    ]),
  );
  return { h, dp };
}

export const randomVni = (): number => 0x100000 + randomBytes(2).readUInt16BE();

let macSeq = 0;
export function mac(): string {
  const b = randomBytes(4);
  return `02:${(macSeq++ & 0xff).toString(16).padStart(2, '0')}:${[...b].map((x) => x.toString(16).padStart(2, '0')).join(':')}`;
}

/** A workload port as the agent would know it. */
export interface TestPort {
  host: HarnessHost;
  vni: number;
  mac: string;
  /** CIDR form. */
  ips: string[];
  gateways?: string[];
  portSecurity?: boolean;
  /** Unset again (undefined) when a test replugs the port as a new workload. */
  netns?: string | undefined;
  hostIfname?: string | undefined;
}

/** Desired state of bridge `vni` on `host`, given every port of the cluster. */
export function desiredBridge(host: HarnessHost, vni: number, ports: TestPort[], gateways: GatewayAddress[] = []): DesiredBridge {
  const on = ports.filter((p) => p.vni === vni);
  const remote = on.filter((p) => p.host.name !== host.name);
  return {
    vni,
    remotes: remote.map((p) => ({ mac: p.mac, ips: p.ips.map((c) => c.split('/')[0]!), hostIp: p.host.underlayIp })),
    floodHosts: [...new Set(remote.map((p) => p.host.underlayIp))],
    gateways,
  };
}

/** Create the workload namespaces and plug every port; bridges must exist. */
export async function plugAll(c: Cluster, ports: TestPort[]): Promise<void> {
  for (const p of ports) {
    p.netns ??= await c.h.addWorkload(p.host, `w${randomBytes(3).toString('hex')}`);
    const r = await c.dp.get(p.host.name)!.plug(spec(p));
    p.hostIfname = r.hostIfname;
  }
}

/**
 * One harness host with one bridge and three ports A, B, C on `${subnet}.2–4/24` (port security on); A and C
 * plugged, B only given a workload namespace, for a test to plug it its own way.
 */
export async function threePorts(t: ExecutionContext, subnet: string) {
  const c = await cluster(t, 1);
  const host = c.h.hosts[0]!;
  const dp = c.dp.get(host.name)!;
  const vni = randomVni();
  const ports: TestPort[] = [0, 1, 2].map((i) => ({ host, vni, mac: mac(), ips: [`${subnet}.${i + 2}/24`], portSecurity: true }));
  const [A, B, C] = ports as [TestPort, TestPort, TestPort];
  await dp.ensureBridge(desiredBridge(host, vni, ports));
  await plugAll(c, [A, C]);
  B.netns = await c.h.addWorkload(host, `w${randomBytes(2).toString('hex')}`);
  return { c, host, dp, vni, A, B, C };
}

export function spec(p: TestPort): PlugSpec {
  return {
    vni: p.vni,
    netns: p.netns!,
    ifname: 'eth0',
    mac: p.mac,
    ips: p.ips,
    ...(p.gateways !== undefined ? { gateways: p.gateways } : {}),
    ...(p.portSecurity !== undefined ? { portSecurity: p.portSecurity } : {}),
  };
}

export const ipOf = (p: TestPort, family: 4 | 6 = 4): string =>
  p.ips.map((c) => c.split('/')[0]!).find((ip) => (family === 4) === !ip.includes(':'))!;

/** The rules of a chain of `table bridge bees` as nft's JSON listing gives them, without handles and chain name. */
export async function listedRules(h: Harness, ns: string, chain: string): Promise<unknown[]> {
  const r = await h.exec(ns, ['nft', '-j', 'list', 'chain', 'bridge', 'bees', chain]);
  if (r.code !== 0) throw new Error(`nft -j list chain ${chain}: ${r.stderr}`);
  const json = JSON.parse(r.stdout) as { nftables: { rule?: Record<string, unknown> }[] };
  return json.nftables.flatMap((x) => (x.rule ? [{ expr: x.rule.expr, comment: x.rule.comment }] : []));
}
