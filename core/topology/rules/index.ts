// The table of per-kind rules the topology service dispatches to: one entry per kind, so a kind without its rule
// does not compile.
import type { Kind } from '../../model/types.js';
import { bridgeRule } from './bridge.js';
import { chainRule, ruleRule } from './chain.js';
import { ipAddrGroupRule, portGroupRule } from './groups.js';
import { hostRule, tunnelZoneRule } from './host.js';
import { ipamBlockRule } from './ipam.js';
import { healthMonitorRule, loadBalancerRule, poolMemberRule, poolRule, vipRule } from './lb.js';
import { portRule } from './port.js';
import { routeRule } from './route.js';
import { routerRule } from './router.js';
import type { KindRule } from './rule.js';
import { tenantRule } from './tenant.js';

export type KindRules = { [K in Kind]: KindRule<K> };

export const kindRules: KindRules = {
  Tenant: tenantRule,
  Bridge: bridgeRule,
  Router: routerRule,
  Port: portRule,
  Host: hostRule,
  TunnelZone: tunnelZoneRule,
  Route: routeRule,
  Chain: chainRule,
  Rule: ruleRule,
  PortGroup: portGroupRule,
  IpAddrGroup: ipAddrGroupRule,
  LoadBalancer: loadBalancerRule,
  Pool: poolRule,
  PoolMember: poolMemberRule,
  Vip: vipRule,
  HealthMonitor: healthMonitorRule,
  IpamBlock: ipamBlockRule,
};

export function ruleOf<K extends Kind>(kind: K): KindRule<K> {
  return kindRules[kind];
}
