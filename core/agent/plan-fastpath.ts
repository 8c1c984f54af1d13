// Which local ports the datapath's fast path may carry (core/datapath/fastpath/): those of a bridge set up here
// with no filter at any stage (their own, their bridge's, admin-down's drop chain), in the policy planned now and
// in the one applied last, so a port never rides the fast path while a filter of it is still to be installed or
// still installed. Shaped ports are the datapath's to leave out (it sees their qdiscs).
import type { FastPort } from '../datapath/types.js';
import { indexPorts, zoneOf, type HostPlan, type HostPolicy, type TopologyView } from './plan.js';

export function planFastPath(view: TopologyView, hostId: string, plan: HostPlan, policies: (HostPolicy | undefined)[]): FastPort[] {
  const index = view.portIndex?.() ?? indexPorts(view.list('Port'));
  const out: FastPort[] = [];
  for (const p of index.onHost(hostId)) {
    if (p.type !== 'bridge' || !p.bridgeId || !p.interfaceName || !p.mac || p.adminStateUp === false) continue;
    const bridge = plan.bridges.get(p.bridgeId);
    if (!bridge) continue;
    if (policies.some((pol) => pol?.bindings.has(p.interfaceName!))) continue;
    out.push({ ifname: p.interfaceName, vni: bridge.vni, mac: p.mac, ips: p.ips, zone: zoneOf(bridge.vni) });
  }
  return out;
}
