// Load balancing (MidoNet's L4LB): a router's load balancer, its pools, their members and VIPs, health monitors.
import { randomId } from '../../model/ids.js';
import { formatIp, parseIp } from '../../net/ip.js';
import { given, type KindRule } from './rule.js';

export const loadBalancerRule: KindRule<'LoadBalancer'> = {
  fill: (d) => ({ ...d, id: d.id ?? randomId(), routerId: given(d, 'routerId'), adminStateUp: d.adminStateUp ?? true }),
};

export const poolRule: KindRule<'Pool'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    loadBalancerId: given(d, 'loadBalancerId'),
    protocol: d.protocol ?? 'tcp',
    lbMethod: d.lbMethod ?? 'round_robin',
    adminStateUp: d.adminStateUp ?? true,
  }),
};

export const poolMemberRule: KindRule<'PoolMember'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    poolId: given(d, 'poolId'),
    address: given(d, 'address'),
    port: given(d, 'port'),
    weight: d.weight ?? 1,
    adminStateUp: d.adminStateUp ?? true,
    status: d.status ?? 'unknown',
  }),
  validate(m) {
    m.address = formatIp(parseIp(m.address, 'address'));
  },
};

export const vipRule: KindRule<'Vip'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    poolId: given(d, 'poolId'),
    address: given(d, 'address'),
    port: given(d, 'port'),
    protocol: d.protocol ?? 'tcp',
  }),
  validate(v) {
    v.address = formatIp(parseIp(v.address, 'address'));
  },
};

export const healthMonitorRule: KindRule<'HealthMonitor'> = {
  fill: (d) => ({
    ...d,
    id: d.id ?? randomId(),
    type: d.type ?? 'tcp',
    delay: d.delay ?? 5,
    timeout: d.timeout ?? 3,
    maxRetries: d.maxRetries ?? 3,
    adminStateUp: d.adminStateUp ?? true,
  }),
};
