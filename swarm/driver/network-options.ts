// How a Docker network becomes a MidoNet Bees bridge: `docker network create -d midonet -o tenant=… -o router=…
// -o vni=… -o mtu=… [--internal] [--ipv6] [--subnet/--gateway/--aux-address]` -> BridgeSpec.
import { stableId } from '../../core/model/ids.js';
import type { Options, Subnet } from '../../core/model/types.js';
import type { BridgeSpec } from './backend.js';
import { DriverError } from './backend.js';
import { contains, isIp, parseCidr, stripPrefix } from './cidr.js';
import type { CreateNetworkRequest, IpamData } from './protocol.js';
import { Label } from './protocol.js';

/** Labels the driver writes on bridges; `bees net ls` shows them. */
export const BridgeLabel = {
  orchestrator: 'orchestrator',
  networkId: 'docker.network.id',
  networkName: 'docker.network.name',
  /** The tenant's name (the workload API selects networks by tenant name). */
  tenant: 'docker.tenant',
} as const;

/** The `-o key=value` options the driver understands. */
export const NETWORK_OPTIONS = ['tenant', 'router', 'vni', 'mtu', 'com.docker.network.driver.mtu'] as const;

export interface NetworkDefaults {
  tenant: string;
  /** Router new bridges are linked to; `-o router=none` links none. */
  router: string;
}

/** The bridge of a Docker network: the same Docker network id always names the same bridge. */
export function bridgeIdOf(networkId: string): string {
  return stableId('Bridge', 'docker', networkId);
}

export function bridgeNameOf(networkId: string): string {
  return `docker-${networkId.slice(0, 12)}`;
}

/** The user's `-o` options: libnetwork nests them under com.docker.network.generic. */
export function userOptions(options: Record<string, unknown> | undefined | null): Options {
  const generic = options?.[Label.generic];
  const out: Options = {};
  if (generic === undefined || generic === null) return out;
  if (typeof generic !== 'object' || Array.isArray(generic)) {
    throw new DriverError(`${Label.generic} must be a map of options`);
  }
  for (const [k, v] of Object.entries(generic)) {
    if (typeof v !== 'string') throw new DriverError(`option ${k}: value must be a string`);
    out[k] = v;
  }
  return out;
}

function flag(options: Record<string, unknown> | undefined | null, key: string): boolean {
  const v = options?.[key];
  return v === true || v === 'true';
}

function intOption(opts: Options, key: string, min: number, max: number): number | undefined {
  const raw = opts[key];
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new DriverError(`option ${key}=${raw}: must be an integer from ${min} to ${max}`);
  }
  return Number(raw);
}

function subnetOf(data: IpamData, family: 4 | 6, range: string | undefined): Subnet {
  const c = parseCidr(data.Pool);
  if (!c || c.family !== family) throw new DriverError(`pool ${data.Pool}: not an IPv${family} CIDR`);
  const subnet: Subnet = { cidr: data.Pool, reserved: [] };
  if (data.Gateway) {
    const gw = stripPrefix(data.Gateway);
    if (!isIp(gw) || !contains(data.Pool, gw)) throw new DriverError(`gateway ${data.Gateway} is not inside ${data.Pool}`);
    subnet.gateway = gw;
  } else {
    // libnetwork always asks for a gateway unless the IPAM is "null"; no gateway means none on the wire either.
    subnet.gateway = '';
  }
  for (const [name, aux] of Object.entries(data.AuxAddresses ?? {})) {
    const ip = stripPrefix(aux);
    if (!isIp(ip) || !contains(data.Pool, ip)) throw new DriverError(`aux address ${name}=${aux} is not inside ${data.Pool}`);
    subnet.reserved!.push(ip);
  }
  if (range) subnet.range = range;
  return subnet;
}

/**
 * Translate a CreateNetwork call. `rangeOf` gives the --ip-range the IPAM driver was asked for (libnetwork does
 * not pass it to the network driver).
 */
export function bridgeSpecOf(
  req: CreateNetworkRequest,
  defaults: NetworkDefaults,
  rangeOf: (pool: string) => string | undefined = () => undefined,
): BridgeSpec {
  const opts = userOptions(req.Options);
  for (const key of Object.keys(opts)) {
    if (!(NETWORK_OPTIONS as readonly string[]).includes(key)) {
      throw new DriverError(`unknown option ${key} (known: ${NETWORK_OPTIONS.join(', ')})`);
    }
  }
  const tenant = opts.tenant ?? defaults.tenant;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(tenant)) throw new DriverError(`tenant ${JSON.stringify(tenant)}: invalid name`);
  const routerOpt = opts.router ?? defaults.router;
  if (routerOpt !== 'none' && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(routerOpt)) {
    throw new DriverError(`router ${JSON.stringify(routerOpt)}: invalid name`);
  }
  const tunnelKey = intOption(opts, 'vni', 1, 0xffffff);
  const mtu = intOption(opts, 'mtu', 576, 65535) ?? intOption(opts, 'com.docker.network.driver.mtu', 576, 65535);
  const v4 = (req.IPv4Data ?? []).map((d) => subnetOf(d, 4, rangeOf(d.Pool)));
  const ipv6 = flag(req.Options, Label.enableIPv6);
  const v6 = (req.IPv6Data ?? []).map((d) => subnetOf(d, 6, rangeOf(d.Pool)));
  if (v6.length > 0 && !ipv6) throw new DriverError('IPv6 pools given but IPv6 is not enabled (--ipv6)');
  if (ipv6 && v6.length === 0) throw new DriverError('--ipv6 needs an IPv6 pool');
  const subnets = [...v4, ...v6];
  if (subnets.length === 0) throw new DriverError('the network has no address pool');
  const spec: BridgeSpec = {
    id: bridgeIdOf(req.NetworkID),
    tenant,
    name: bridgeNameOf(req.NetworkID),
    subnets,
    internal: flag(req.Options, Label.internal),
    labels: { [BridgeLabel.orchestrator]: 'docker', [BridgeLabel.networkId]: req.NetworkID },
    options: opts,
  };
  if (routerOpt !== 'none') spec.router = routerOpt;
  if (tunnelKey !== undefined) spec.tunnelKey = tunnelKey;
  if (mtu !== undefined) spec.mtu = mtu;
  return spec;
}
