// Hosts (registered by their agents) and the tunnel zones they join.
import { DEFAULT_TUNNEL_PORT } from '../../model/defaults.js';
import { stableId } from '../../model/ids.js';
import type { Host } from '../../model/types.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { TopologyError } from '../errors.js';
import { given, unique, type KindRule } from './rule.js';

export const hostRule: KindRule<'Host'> = {
  fill(d) {
    const name = given(d, 'name');
    return {
      ...d,
      id: d.id ?? stableId('Host', name),
      name,
      addresses: d.addresses ?? [],
      tunnelZones: d.tunnelZones ?? [],
      tunnelPort: d.tunnelPort ?? DEFAULT_TUNNEL_PORT,
    };
  },
  validate: validateHost,
};

export const tunnelZoneRule: KindRule<'TunnelZone'> = {
  fill(d) {
    const name = given(d, 'name');
    return { ...d, id: d.id ?? stableId('TunnelZone', name), name, type: d.type ?? 'vxlan' };
  },
  validate: (z, tx) => unique('TunnelZone', z, tx, {}),
};

function validateHost(h: Host): void {
  h.addresses = h.addresses.map((a, i) => formatIp(parseIp(a, `addresses[${i}]`)));
  const zones = new Set<string>();
  for (const [i, z] of h.tunnelZones.entries()) {
    if (zones.has(z.zoneId)) throw new TopologyError('invalid', `tunnel zone ${z.zoneId} is listed twice`, `tunnelZones[${i}].zoneId`);
    zones.add(z.zoneId);
    z.ip = formatIp(parseIp(z.ip, `tunnelZones[${i}].ip`));
  }
}
