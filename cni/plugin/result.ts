// CNI results: one internal shape (the 1.x one), converted from a prevResult of any version and printed in the
// shape of the version the runtime asked for.
import type { AttachResult } from '../../core/workload/types.js';
import { CniError, Code } from './errors.js';
import { resultShape } from './versions.js';

export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
  [k: string]: unknown;
}
export interface IpConfig {
  address: string;
  gateway?: string;
  interface?: number;
  [k: string]: unknown;
}
export interface Route {
  dst: string;
  gw?: string;
  [k: string]: unknown;
}
export interface Dns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}
export interface Result {
  interfaces: Interface[];
  ips: IpConfig[];
  routes: Route[];
  dns?: Dns;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const familyOf = (cidr: string): 4 | 6 => (cidr.includes(':') ? 6 : 4);

/** Reads a prevResult in whatever version shape it came (0.1/0.2 ip4/ip6, 0.3+ interfaces/ips). */
export function fromAnyVersion(prev: unknown): Result {
  if (!isObject(prev)) throw new CniError(Code.decode, `prevResult must be an object, got ${JSON.stringify(prev)}`);
  const out: Result = { interfaces: [], ips: [], routes: [] };
  if (Array.isArray(prev.interfaces)) out.interfaces = prev.interfaces.filter(isObject) as Interface[];
  if (Array.isArray(prev.ips)) {
    out.ips = (prev.ips.filter(isObject) as IpConfig[]).map((ip) => {
      const { version: _v, ...rest } = ip; // 1.x has no "version"; we add it back when printing 0.3/0.4
      return rest;
    });
  }
  if (Array.isArray(prev.routes)) out.routes = prev.routes.filter(isObject) as Route[];
  for (const key of ['ip4', 'ip6'] as const) {
    const legacy = prev[key];
    if (!isObject(legacy) || typeof legacy.ip !== 'string') continue;
    const ip: IpConfig = { address: legacy.ip };
    if (typeof legacy.gateway === 'string') ip.gateway = legacy.gateway;
    out.ips.push(ip);
    if (Array.isArray(legacy.routes)) out.routes.push(...(legacy.routes.filter(isObject) as Route[]));
  }
  if (isObject(prev.dns)) out.dns = prev.dns;
  return out;
}

/** Our attachment as a result: the container-side interface first, the host side (no sandbox) second. */
export function fromAttach(a: AttachResult, ifname: string, netns: string): Result {
  const ifc: Interface = {
    name: a.interface.name || ifname,
    mac: a.interface.mac,
    mtu: a.interface.mtu ?? a.mtu,
    sandbox: a.interface.sandbox || netns,
  };
  const host: Interface = { name: a.hostInterface.name, mac: a.hostInterface.mac };
  const r: Result = {
    interfaces: [host, ifc],
    ips: a.ips.map((ip) => ({ address: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), interface: 1 })),
    routes: a.routes.map((rt) => ({ dst: rt.dst, ...(rt.gw ? { gw: rt.gw } : {}) })),
  };
  if (a.dns) r.dns = a.dns;
  return r;
}

/** Appends `ours` to `prev`, shifting our interface indexes past the ones already there (chaining). */
export function amend(prev: Result | undefined, ours: Result): Result {
  if (!prev) return ours;
  const offset = prev.interfaces.length;
  const dns = mergeDns(prev.dns, ours.dns);
  const r: Result = {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [...prev.ips, ...ours.ips.map((ip) => (ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset }))],
    routes: [...prev.routes, ...ours.routes.filter((rt) => !prev.routes.some((p) => p.dst === rt.dst && p.gw === rt.gw))],
  };
  if (dns) r.dns = dns;
  return r;
}

function mergeDns(a: Dns | undefined, b: Dns | undefined): Dns | undefined {
  if (!a) return b;
  if (!b) return a;
  const uniq = (x?: string[], y?: string[]) => (x || y ? [...new Set([...(x ?? []), ...(y ?? [])])] : undefined);
  const out: Dns = {};
  const ns = uniq(a.nameservers, b.nameservers);
  if (ns) out.nameservers = ns;
  const domain = a.domain ?? b.domain;
  if (domain) out.domain = domain;
  const search = uniq(a.search, b.search);
  if (search) out.search = search;
  const options = uniq(a.options, b.options);
  if (options) out.options = options;
  return out;
}

/** The result as `cniVersion` prints it. */
export function toVersion(r: Result, cniVersion: string): Record<string, unknown> {
  const shape = resultShape(cniVersion);
  const dns = r.dns && Object.keys(r.dns).length > 0 ? r.dns : undefined;
  if (shape === 'legacy') {
    // 0.1/0.2 carry one address per family and no interfaces; routes go with the family of their destination.
    const out: Record<string, unknown> = { cniVersion };
    for (const fam of [4, 6] as const) {
      const ip = r.ips.find((i) => familyOf(i.address) === fam);
      if (!ip) continue;
      const routes = r.routes.filter((rt) => familyOf(rt.dst) === fam).map((rt) => ({ dst: rt.dst, ...(rt.gw ? { gw: rt.gw } : {}) }));
      out[`ip${fam}`] = { ip: ip.address, ...(ip.gateway ? { gateway: ip.gateway } : {}), ...(routes.length ? { routes } : {}) };
    }
    if (dns) out.dns = dns;
    return out;
  }
  const ips = r.ips.map((ip) => (shape === 'versioned' ? { version: String(familyOf(ip.address)), ...ip } : ip));
  const out: Record<string, unknown> = { cniVersion, interfaces: r.interfaces, ips };
  if (r.routes.length) out.routes = r.routes;
  if (dns) out.dns = dns;
  return out;
}
