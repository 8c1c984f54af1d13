// Virtual routers: a name unique within the tenant; their id derived from tenant and name.
import { stableId } from '../../model/ids.js';
import { given, unique, type KindRule } from './rule.js';

export const routerRule: KindRule<'Router'> = {
  async fill(d, tx) {
    const tenant = await tx.need('Tenant', String(d.tenantId), 'tenantId');
    const name = given(d, 'name');
    return {
      ...d,
      id: d.id ?? stableId('Router', tenant.id, name),
      tenantId: tenant.id,
      name,
      adminStateUp: d.adminStateUp ?? true,
      snat: d.snat ?? true,
      options: d.options ?? {},
    };
  },
  validate: (r, tx) => unique('Router', r, tx, { tenantId: r.tenantId }),
};
