// The plugin's network configuration: every key a user may write, decoded and checked once, in one place.
// Keys we do not know are left alone (the spec asks plugins to pass unknown keys through).
import { isCidr, isIp, isMac, normalizeMac } from '../../core/net/ip.js';
import type { Bandwidth, PortMapping } from '../../core/workload/types.js';
import { CniError, Code } from './errors.js';
import { DEFAULT_AGENT_TIMEOUT_MS } from './protocol.js';
import { requireVersion, type CniVersion } from './versions.js';

export const DEFAULT_AGENT_SOCKET = '/run/bees/workload.sock';

/** What a user writes in the plugin object (all optional but `type`), plus the keys the runtime adds. */
export interface MidonetNetConf {
  cniVersion?: string;
  name?: string;
  type?: string;
  /** Tenant that owns the virtual network; default "default". */
  tenant?: string;
  /** Virtual network (bridge) name or id; default the CNI network `name`. */
  network?: string;
  /** Create the network on first use (default: true when subnets are given). */
  createNetwork?: boolean;
  /** Shorthand for one subnet: "10.1.0.0/24". */
  subnet?: string;
  gateway?: string;
  subnets?: { cidr: string; gateway?: string }[];
  mtu?: number;
  /** The agent's workload API socket. */
  agentSocket?: string;
  /** Give up on the agent after this long (ms); default 30000. */
  agentTimeoutMs?: number;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  runtimeConfig?: Record<string, unknown>;
  args?: Record<string, unknown>;
  prevResult?: unknown;
  [key: string]: unknown;
}

/** Mesos' NetworkInfo as the isolator injects it under args["org.apache.mesos"]["network_info"]. */
export interface MesosNetworkInfo {
  name?: string;
  labels?: { labels?: { key: string; value?: string }[] };
  port_mappings?: { host_port: number; container_port: number; protocol?: string }[];
  ip_addresses?: { protocol?: string; ip_address?: string }[];
}

export interface DecodedConfig {
  cniVersion: CniVersion;
  name: string;
  tenant: string;
  network: string;
  create?: { subnets: { cidr: string; gateway?: string }[]; mtu?: number };
  agentSocket: string;
  agentTimeoutMs: number;
  /** Static addresses asked for by runtimeConfig.ips, args.cni.ips or Mesos labels (CNI_ARGS IP= is added later). */
  ips: string[];
  mac?: string;
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  labels: Record<string, string>;
  /** Set when Mesos invoked us: the attachment belongs to the 'mesos' orchestrator. */
  mesos: boolean;
  prevResult?: unknown;
  raw: MidonetNetConf;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;

function invalid(key: string, value: unknown, why: string): CniError {
  return new CniError(Code.invalidConfig, `invalid config: ${key}=${JSON.stringify(value)}: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A static address: a plain IP or a CIDR. */
/** The CRI capability that carries a pod's annotations (containerd, CRI-O), and the annotations read from it. */
export const POD_ANNOTATIONS = 'io.kubernetes.cri.pod-annotations';
export const IP_ANNOTATION = 'bees.midonet.org/ip';
export const MAC_ANNOTATION = 'bees.midonet.org/mac';

function checkIp(key: string, v: unknown): string {
  if (isIp(v) || isCidr(v)) return v;
  throw invalid(key, v, 'not an IP address or CIDR');
}

export function checkMac(key: string, v: unknown): string {
  if (isMac(v)) return normalizeMac(v);
  throw invalid(key, v, 'not a MAC address (aa:bb:cc:dd:ee:ff)');
}

function checkPort(key: string, v: unknown): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return v;
  throw invalid(key, v, 'not a port number (1-65535)');
}

function checkProtocol(key: string, v: unknown): PortMapping['protocol'] {
  const p = (v ?? 'tcp') as string;
  if (typeof p === 'string' && ['tcp', 'udp', 'sctp'].includes(p.toLowerCase())) return p.toLowerCase() as PortMapping['protocol'];
  throw invalid(key, v, 'protocol must be tcp, udp or sctp');
}

function decodePortMappings(v: unknown): PortMapping[] {
  if (!Array.isArray(v)) throw invalid('runtimeConfig.portMappings', v, 'must be a list');
  return v.map((m: unknown, i) => {
    const k = `runtimeConfig.portMappings[${i}]`;
    if (!isObject(m)) throw invalid(k, m, 'must be an object {hostPort, containerPort, protocol}');
    const pm: PortMapping = {
      hostPort: checkPort(`${k}.hostPort`, m.hostPort),
      containerPort: checkPort(`${k}.containerPort`, m.containerPort),
      protocol: checkProtocol(`${k}.protocol`, m.protocol),
    };
    if (m.hostIP !== undefined && m.hostIP !== '') pm.hostIP = checkIp(`${k}.hostIP`, m.hostIP);
    return pm;
  });
}

function decodeBandwidth(v: unknown): Bandwidth {
  if (!isObject(v)) throw invalid('runtimeConfig.bandwidth', v, 'must be an object');
  const bw: Bandwidth = {};
  for (const k of ['ingressRate', 'ingressBurst', 'egressRate', 'egressBurst'] as const) {
    const x = v[k];
    if (x === undefined) continue;
    if (typeof x !== 'number' || !Number.isFinite(x) || x < 0)
      throw invalid(`runtimeConfig.bandwidth.${k}`, x, 'must be a non-negative number');
    bw[k] = x;
  }
  return bw;
}

function stringList(key: string, v: unknown): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw invalid(key, v, 'must be a list of strings');
  return v as string[];
}

/** Parses stdin. Bad JSON is code 6 (decode), a wrong value code 7 (invalid config) naming the key. */
export function parseJson(stdin: string): MidonetNetConf {
  if (stdin.trim() === '') throw new CniError(Code.decode, 'no network configuration on stdin');
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (e) {
    throw new CniError(Code.decode, `network configuration on stdin is not JSON: ${(e as Error).message}`);
  }
  if (!isObject(parsed)) throw new CniError(Code.decode, 'network configuration on stdin must be a JSON object');
  return parsed;
}

export function decodeConfig(conf: MidonetNetConf): DecodedConfig {
  const cniVersion = requireVersion(conf.cniVersion);
  if (typeof conf.name !== 'string' || !NAME.test(conf.name))
    throw invalid('name', conf.name, `the network name is required and must match ${NAME.source}`);
  if (conf.ipam !== undefined) {
    throw new CniError(
      Code.unsupportedField,
      `unsupported field: ipam=${JSON.stringify(conf.ipam)}: midonet assigns addresses itself; describe the subnet with "subnet" or "subnets" instead`,
    );
  }
  const str = (key: string, v: unknown, dflt: string): string => {
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || v === '') throw invalid(key, v, 'must be a non-empty string');
    return v;
  };
  const labels: Record<string, string> = {};
  let tenant = str('tenant', conf.tenant, 'default');
  let network = str('network', conf.network, conf.name);
  const agentSocket = str('agentSocket', conf.agentSocket, DEFAULT_AGENT_SOCKET);
  let agentTimeoutMs = DEFAULT_AGENT_TIMEOUT_MS;
  if (conf.agentTimeoutMs !== undefined) {
    if (typeof conf.agentTimeoutMs !== 'number' || !(conf.agentTimeoutMs > 0))
      throw invalid('agentTimeoutMs', conf.agentTimeoutMs, 'must be a positive number of milliseconds');
    agentTimeoutMs = conf.agentTimeoutMs;
  }

  let mtu: number | undefined;
  if (conf.mtu !== undefined) {
    if (typeof conf.mtu !== 'number' || !Number.isInteger(conf.mtu) || conf.mtu < 576 || conf.mtu > 65535)
      throw invalid('mtu', conf.mtu, 'must be an integer between 576 and 65535');
    mtu = conf.mtu;
  }
  const subnets: { cidr: string; gateway?: string }[] = [];
  if (conf.subnet !== undefined) {
    if (!isCidr(conf.subnet)) throw invalid('subnet', conf.subnet, 'not a CIDR such as 10.1.0.0/24');
    const s: { cidr: string; gateway?: string } = { cidr: conf.subnet };
    if (conf.gateway !== undefined) s.gateway = checkIp('gateway', conf.gateway);
    subnets.push(s);
  }
  if (conf.subnets !== undefined) {
    if (!Array.isArray(conf.subnets)) throw invalid('subnets', conf.subnets, 'must be a list of {cidr, gateway}');
    conf.subnets.forEach((s: unknown, i) => {
      if (!isObject(s) || !isCidr(s.cidr)) throw invalid(`subnets[${i}].cidr`, isObject(s) ? s.cidr : s, 'not a CIDR such as 10.1.0.0/24');
      const out: { cidr: string; gateway?: string } = { cidr: s.cidr };
      if (s.gateway !== undefined) out.gateway = checkIp(`subnets[${i}].gateway`, s.gateway);
      subnets.push(out);
    });
  }
  if (conf.createNetwork !== undefined && typeof conf.createNetwork !== 'boolean')
    throw invalid('createNetwork', conf.createNetwork, 'must be true or false');
  if (conf.createNetwork === true && subnets.length === 0)
    throw invalid('createNetwork', true, 'creating a network needs "subnet" or "subnets"');
  const create =
    (conf.createNetwork ?? subnets.length > 0) && subnets.length > 0 ? { subnets, ...(mtu !== undefined ? { mtu } : {}) } : undefined;

  let dns: DecodedConfig['dns'];
  if (conf.dns !== undefined) {
    if (!isObject(conf.dns)) throw invalid('dns', conf.dns, 'must be an object {nameservers, domain, search, options}');
    dns = {};
    const ns = stringList('dns.nameservers', conf.dns.nameservers);
    if (ns) dns.nameservers = ns.map((n, i) => checkIp(`dns.nameservers[${i}]`, n));
    if (conf.dns.domain !== undefined) dns.domain = str('dns.domain', conf.dns.domain, '');
    const search = stringList('dns.search', conf.dns.search);
    if (search) dns.search = search;
    const options = stringList('dns.options', conf.dns.options);
    if (options) dns.options = options;
  }

  const ips: string[] = [];
  let mac: string | undefined;
  let portMappings: PortMapping[] | undefined;
  let bandwidth: Bandwidth | undefined;
  const rc = conf.runtimeConfig;
  if (rc !== undefined) {
    if (!isObject(rc)) throw invalid('runtimeConfig', rc, 'must be an object');
    (stringList('runtimeConfig.ips', rc.ips) ?? []).forEach((ip, i) => ips.push(checkIp(`runtimeConfig.ips[${i}]`, ip)));
    if (rc.mac !== undefined && rc.mac !== '') mac = checkMac('runtimeConfig.mac', rc.mac);
    // Kubernetes pods ask through annotations, which containerd passes under this capability.
    const ann = rc[POD_ANNOTATIONS];
    if (isObject(ann)) {
      const key = `runtimeConfig["${POD_ANNOTATIONS}"]`;
      const ip = ann[IP_ANNOTATION];
      if (typeof ip === 'string' && ip.trim() !== '')
        ip.split(',').forEach((a) => ips.push(checkIp(`${key}["${IP_ANNOTATION}"]`, a.trim())));
      const m = ann[MAC_ANNOTATION];
      if (typeof m === 'string' && m !== '' && mac === undefined) mac = checkMac(`${key}["${MAC_ANNOTATION}"]`, m);
    }
    if (rc.portMappings !== undefined && rc.portMappings !== null) portMappings = decodePortMappings(rc.portMappings);
    if (rc.bandwidth !== undefined && rc.bandwidth !== null) bandwidth = decodeBandwidth(rc.bandwidth);
    if (rc.dns !== undefined && rc.dns !== null) {
      // The runtime's wishes (CONVENTIONS "dns": servers/searches/options) win over the config's.
      if (!isObject(rc.dns)) throw invalid('runtimeConfig.dns', rc.dns, 'must be an object {servers, searches, options}');
      dns = { ...(dns ?? {}) };
      const servers = stringList('runtimeConfig.dns.servers', rc.dns.servers);
      if (servers?.length) dns.nameservers = servers.map((n, i) => checkIp(`runtimeConfig.dns.servers[${i}]`, n));
      const searches = stringList('runtimeConfig.dns.searches', rc.dns.searches);
      if (searches?.length) dns.search = searches;
      const options = stringList('runtimeConfig.dns.options', rc.dns.options);
      if (options?.length) dns.options = options;
    }
  }

  let mesos = false;
  const args = conf.args;
  if (args !== undefined) {
    if (!isObject(args)) throw invalid('args', args, 'must be an object');
    const cni = args.cni;
    if (cni !== undefined) {
      if (!isObject(cni)) throw invalid('args.cni', cni, 'must be an object');
      (stringList('args.cni.ips', cni.ips) ?? []).forEach((ip, i) => ips.push(checkIp(`args.cni.ips[${i}]`, ip)));
      if (cni.labels !== undefined) {
        if (!Array.isArray(cni.labels)) throw invalid('args.cni.labels', cni.labels, 'must be a list of {key, value}');
        for (const l of cni.labels as unknown[])
          if (isObject(l) && typeof l.key === 'string') {
            const value = l.value ?? '';
            labels[l.key] = typeof value === 'string' ? value : JSON.stringify(value);
          }
      }
    }
    const m = args['org.apache.mesos'];
    if (m !== undefined) {
      const ni = isObject(m) ? m.network_info : undefined;
      if (!isObject(ni)) throw invalid('args["org.apache.mesos"].network_info', ni, 'must be an object (Mesos NetworkInfo)');
      mesos = true;
      const info = ni as MesosNetworkInfo;
      // Mesos labels choose the tenant, network and a static address: {key: "tenant"|"network"|"ip", value}.
      for (const l of info.labels?.labels ?? []) {
        if (typeof l?.key !== 'string') continue;
        const value = String(l.value ?? '');
        if (l.key === 'tenant') tenant = str('network_info label "tenant"', value, tenant);
        else if (l.key === 'network') network = str('network_info label "network"', value, network);
        else if (l.key === 'ip') ips.push(checkIp('network_info label "ip"', value));
        else labels[`mesos.${l.key}`] = value;
      }
      if (info.port_mappings !== undefined) {
        if (!Array.isArray(info.port_mappings)) throw invalid('network_info.port_mappings', info.port_mappings, 'must be a list');
        portMappings = [
          ...(portMappings ?? []),
          ...info.port_mappings.map((p, i) => {
            const k = `network_info.port_mappings[${i}]`;
            return {
              hostPort: checkPort(`${k}.host_port`, p?.host_port),
              containerPort: checkPort(`${k}.container_port`, p?.container_port),
              protocol: checkProtocol(`${k}.protocol`, p?.protocol),
            };
          }),
        ];
      }
    }
  }

  const out: DecodedConfig = { cniVersion, name: conf.name, tenant, network, agentSocket, agentTimeoutMs, ips, labels, mesos, raw: conf };
  if (create) out.create = create;
  if (mac) out.mac = mac;
  if (portMappings) out.portMappings = portMappings;
  if (bandwidth) out.bandwidth = bandwidth;
  if (dns) out.dns = dns;
  if (conf.prevResult !== undefined && conf.prevResult !== null) out.prevResult = conf.prevResult;
  return out;
}
