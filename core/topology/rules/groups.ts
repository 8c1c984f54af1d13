// Port groups and IP address groups: named sets a rule can match, unique by name within their tenant.
import { randomId } from '../../model/ids.js';
import { formatCidr, formatIp, parseCidr, parseIp } from '../../net/ip.js';
import { given, unique, type KindRule } from './rule.js';

export const portGroupRule: KindRule<'PortGroup'> = {
  fill: (d) => ({ ...d, id: d.id ?? randomId(), tenantId: given(d, 'tenantId'), name: given(d, 'name'), stateful: d.stateful ?? false }),
  validate: (g, tx) => unique('PortGroup', g, tx, { tenantId: g.tenantId }),
};

export const ipAddrGroupRule: KindRule<'IpAddrGroup'> = {
  fill: (d) => ({ ...d, id: d.id ?? randomId(), tenantId: given(d, 'tenantId'), name: given(d, 'name'), addresses: d.addresses ?? [] }),
  validate(g, tx) {
    g.addresses = g.addresses.map((a, i) =>
      a.includes('/') ? formatCidr(parseCidr(a, `addresses[${i}]`)) : formatIp(parseIp(a, `addresses[${i}]`)),
    );
    return unique('IpAddrGroup', g, tx, { tenantId: g.tenantId });
  },
};
