// Tenants: created by name (idempotently, through Topology.ensureTenant), their id derived from the name.
import { tenantId } from '../../model/ids.js';
import type { KindRule } from './rule.js';
import { given } from './rule.js';

export const tenantRule: KindRule<'Tenant'> = {
  // The service creates tenants through ensureTenant; this is the same default for completeness.
  fill: (d) => {
    const name = given(d, 'name');
    return { ...d, id: d.id ?? tenantId(name), name, generation: d.generation ?? 0 };
  },
};
