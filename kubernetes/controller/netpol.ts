// NetworkPolicy → MidoNet port groups, chains and rules (kubernetes.md §2.7), pure: policies, pods and namespaces in,
// the objects the controller writes out. The same code decides a pod's group memberships in the controller and in
// the node agent at CNI ADD (pod-groups.ts), so a new pod is isolated from its first packet.
//
// The shape (one flat pod network, one bridge):
// - the bridge's outbound filter (traffic about to reach a pod, i.e. the pod's ingress) and its inbound filter
//   (traffic a pod sends, its egress) are two controller chains: accept return flows (replies are always allowed,
//   so enforcement is stateful), accept IPv6 neighbour discovery, then for each policy isolating that direction a
//   jump to the policy's chain when the pod is in the policy's target group, then drop anything else (but ARP) of a
//   pod in the direction's isolation group. A pod in no isolating policy's target is not in the isolation group:
//   all allowed. Ingress from the pod's own node (the host end of its router's uplink) is accepted before any
//   policy.
// - a policy's chain holds one accept rule per (rule, peer, port): the peer as the port group of the pods it selects
//   (`podSelector`, `namespaceSelector`, both = AND, in one group), or as addresses (`ipBlock`; its `except` is a
//   sub-chain that returns first, so an address in the except can still be allowed by another peer); ports as
//   protocol and destination range (`endPort`), named ports resolved per destination pod into groups of the
//   destinations with that number.
//   Falling off it returns to the bridge chain, so policies are a union and their order does not matter.
// - groups: a policy's target (its namespace's pods matching podSelector), one per selector peer, and one isolation
//   group per direction. Group membership is the whole of a pod's policy state: it is what the agent decides at
//   ADD and what the controller re-decides when labels change.
import { stableId } from '../../core/model/ids.js';
import type { Chain, Condition, PortGroup, Rule } from '../../core/model/types.js';
import { formatCidr, parseCidr, contains } from '../../core/net/ip.js';
import type { Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from './objects.js';
import { selectorMatches, type Labels } from './selector.js';

export const ETH_IPV4 = 0x0800;
export const ETH_IPV6 = 0x86dd;
export const ETH_ARP = 0x0806;
const PROTOCOLS: Record<string, number> = { TCP: 6, UDP: 17, SCTP: 132 };

export type Direction = 'ingress' | 'egress';

/** A pod as policy sees it: identity, labels, named ports, and its virtual port once it has one. */
export interface PolicyPod {
  namespace: string;
  name: string;
  labels: Labels;
  containerPorts: { name?: string | undefined; containerPort: number; protocol?: string | undefined }[];
  /** The port the node agent made for it (absent: not networked yet, or hostNetwork). */
  portId?: string | undefined;
}

export interface PolicyNamespace {
  name: string;
  labels: Labels;
}

export interface PolicyError {
  namespace: string;
  name: string;
  message: string;
}

/** The objects of every policy, plus each pod's groups (keyed `namespace/name`). */
export interface CompiledPolicy {
  portGroups: PortGroup[];
  chains: Chain[];
  rules: Rule[];
  /** The chains to set as the pod bridge's filters: outbound = ingress to pods, inbound = egress from them. */
  bridgeOutboundFilterId: string;
  bridgeInboundFilterId: string;
  memberships: Map<string, string[]>;
  errors: PolicyError[];
}

// ------------------------------------------------------------------------------------------- identities

/** Every id is a name path under the tenant, so a re-run (or a restarted controller) writes the same objects. */
const id = (kind: string, tenantId: string, ...names: (string | number)[]): string => stableId(kind, 'k8s', tenantId, ...names.map(String));
export const isolationGroupId = (tenantId: string, dir: Direction): string => id('PortGroup', tenantId, 'isolated', dir);
export const targetGroupId = (tenantId: string, ns: string, name: string): string => id('PortGroup', tenantId, 'np', ns, name, 'target');
export const peerGroupId = (tenantId: string, ns: string, name: string, dir: Direction, i: number, j: number): string =>
  id('PortGroup', tenantId, 'np', ns, name, dir, i, j);
/** Pods whose named port `port` (of rule i, peer j, port entry k) is number `n`: the destinations of that rule. */
export const namedPortGroupId = (
  tenantId: string,
  ns: string,
  name: string,
  dir: Direction,
  i: number,
  j: number,
  k: number,
  n: number,
): string => id('PortGroup', tenantId, 'np', ns, name, dir, i, j, 'port', k, n);
export const bridgeChainId = (tenantId: string, dir: Direction): string => id('Chain', tenantId, 'bridge', dir);
export const policyChainId = (tenantId: string, ns: string, name: string, dir: Direction): string =>
  id('Chain', tenantId, 'np', ns, name, dir);
const exceptChainId = (tenantId: string, ns: string, name: string, dir: Direction, i: number, j: number): string =>
  id('Chain', tenantId, 'np', ns, name, dir, i, j, 'except');

/**
 * Names are unique per tenant, at most 128 characters of [A-Za-z0-9_.@+-]: parts joined by '+', which no Kubernetes
 * name contains; long ones keep a readable head and a hash.
 */
function objName(...parts: (string | number)[]): string {
  const s = ['k8s', ...parts].join('+');
  return s.length <= 120 ? s : `${s.slice(0, 100)}@${stableId('name', s).slice(0, 8)}`;
}
const text = (s: string): string => (s.length <= 250 ? s : `${s.slice(0, 247)}...`);

/** Marks the objects this module owns (the writer removes only these when they are no longer wanted). */
export const OWNED_PREFIX = 'k8s+';

// ------------------------------------------------------------------------------------------- semantics

/** policyTypes as the API server defaults it: Ingress, plus Egress when there are egress rules. */
export function directionsOf(p: NetworkPolicy): { ingress: boolean; egress: boolean } {
  const types = p.spec.policyTypes ?? ['Ingress', ...(p.spec.egress?.length ? ['Egress'] : [])];
  return { ingress: types.includes('Ingress'), egress: types.includes('Egress') };
}

const policyNs = (p: NetworkPolicy): string => p.metadata.namespace ?? 'default';

function peerSelects(peer: NetworkPolicyPeer, policyNamespace: string, pod: PolicyPod, nsLabels: Labels | undefined): boolean {
  if (peer.ipBlock || (!peer.podSelector && !peer.namespaceSelector)) return false;
  if (peer.namespaceSelector) {
    if (!nsLabels || !selectorMatches(peer.namespaceSelector, nsLabels)) return false;
  } else if (pod.namespace !== policyNamespace) return false;
  return peer.podSelector ? selectorMatches(peer.podSelector, pod.labels) : true;
}

const isSelectorPeerless = (peer: NetworkPolicyPeer): boolean => !peer.ipBlock && !peer.podSelector && !peer.namespaceSelector;

const isNamed = (port: NetworkPolicyPort | undefined): port is NetworkPolicyPort & { port: string } =>
  typeof port?.port === 'string' && !/^[0-9]+$/.test(port.port);

/** The number a named port entry means on this pod (its container port of that name and protocol), if any. */
function namedPortNumber(port: NetworkPolicyPort | undefined, pod: PolicyPod): number | undefined {
  if (!isNamed(port)) return undefined;
  const proto = (port.protocol ?? 'TCP').toUpperCase();
  return pod.containerPorts.find((c) => c.name === port.port && (c.protocol ?? 'TCP').toUpperCase() === proto)?.containerPort;
}

const peersOf = (p: NetworkPolicy, dir: Direction): (NetworkPolicyPeer[] | undefined)[] =>
  dir === 'ingress' ? (p.spec.ingress ?? []).map((r) => r.from) : (p.spec.egress ?? []).map((r) => r.to);
const portsOf = (p: NetworkPolicy, dir: Direction): (NetworkPolicyPort[] | undefined)[] =>
  (dir === 'ingress' ? (p.spec.ingress ?? []) : (p.spec.egress ?? [])).map((r) => r.ports);

/**
 * The controller's port groups `pod` belongs to under `policies`: what the agent puts a new port in at CNI ADD
 * and what the controller keeps it in. `namespaceLabels` names every namespace's labels (peers may select others).
 */
export function groupsOfPod(
  tenantId: string,
  pod: PolicyPod,
  namespaceLabels: (ns: string) => Labels | undefined,
  policies: readonly NetworkPolicy[],
): string[] {
  const out = new Set<string>();
  const own = namespaceLabels(pod.namespace);
  for (const p of policies) {
    const ns = policyNs(p);
    const dirs = directionsOf(p);
    if (ns === pod.namespace && selectorMatches(p.spec.podSelector ?? {}, pod.labels)) {
      out.add(targetGroupId(tenantId, ns, p.metadata.name));
      if (dirs.ingress) out.add(isolationGroupId(tenantId, 'ingress'));
      if (dirs.egress) out.add(isolationGroupId(tenantId, 'egress'));
    }
    const target = ns === pod.namespace && selectorMatches(p.spec.podSelector ?? {}, pod.labels);
    for (const dir of ['ingress', 'egress'] as const) {
      if (!dirs[dir]) continue;
      const ports = portsOf(p, dir);
      peersOf(p, dir).forEach((peersGiven, i) => {
        const peers: (NetworkPolicyPeer | undefined)[] = peersGiven?.length ? peersGiven : [undefined];
        peers.forEach((peer, j) => {
          const selected = peer !== undefined && peerSelects(peer, ns, pod, own);
          if (selected) out.add(peerGroupId(tenantId, ns, p.metadata.name, dir, i, j));
          // Named ports resolve on the destination: the policy's own pods (ingress), the peer's pods (egress).
          const destination =
            dir === 'ingress' ? target : peer === undefined || peer.ipBlock !== undefined || isSelectorPeerless(peer) || selected;
          if (!destination) return;
          (ports[i] ?? []).forEach((port, k) => {
            const n = namedPortNumber(port, pod);
            if (n !== undefined) out.add(namedPortGroupId(tenantId, ns, p.metadata.name, dir, i, dir === 'ingress' ? 0 : j, k, n));
          });
        });
      });
    }
  }
  return [...out].sort();
}

/** A pod as policy sees it, from the Pod object (and its port, when the caller knows it). */
export function policyPod(pod: Pod, portId?: string): PolicyPod {
  return {
    namespace: pod.metadata.namespace ?? 'default',
    name: pod.metadata.name,
    labels: pod.metadata.labels ?? {},
    containerPorts: (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []),
    portId,
  };
}

export function policyNamespace(ns: Namespace): PolicyNamespace {
  return { name: ns.metadata.name, labels: ns.metadata.labels ?? {} };
}

// ------------------------------------------------------------------------------------------- compiling

interface Ctx {
  tenantId: string;
  pods: readonly PolicyPod[];
  rules: Rule[];
  chains: Chain[];
  groups: PortGroup[];
  errors: PolicyError[];
}

function addRule(ctx: Ctx, chainId: string, action: Rule['action'], condition: Condition, description: string, jumpChainId?: string): void {
  const position = ctx.rules.filter((r) => r.chainId === chainId).length + 1;
  const rule: Rule = {
    id: stableId('Rule', chainId, String(position)),
    chainId,
    position,
    action,
    condition,
    description: text(description),
  };
  if (jumpChainId) rule.jumpChainId = jumpChainId;
  ctx.rules.push(rule);
}

/** The port part of a rule's conditions: one per alternative (a named port may resolve to several numbers). */
function portConditions(
  ctx: Ctx,
  port: NetworkPolicyPort | undefined,
  destinations: readonly PolicyPod[],
  where: string,
  namedGroup: (n: number) => string,
  groupName: (n: number) => string,
): Condition[] | string {
  if (!port) return [{}];
  const protoName = (port.protocol ?? 'TCP').toUpperCase();
  const nwProto = PROTOCOLS[protoName];
  if (nwProto === undefined) return `${where}: protocol ${JSON.stringify(port.protocol)} is not TCP, UDP or SCTP`;
  if (port.port === undefined) return [{ nwProto }];
  if (!isNamed(port)) {
    const start = Number(port.port);
    const end = port.endPort ?? start;
    if (start < 1 || start > 65535 || end < start || end > 65535) return `${where}: port range ${start}-${end} is not valid`;
    return [{ nwProto, tpDst: { start, end } }];
  }
  if (port.endPort !== undefined) return `${where}: endPort needs a numeric port`;
  // A named port means, per destination pod, the number of its container port of that name and protocol: one
  // group of destinations per number (port groups, not port ids: a rule naming a port would block its deletion).
  const numbers = new Set<number>();
  for (const d of destinations) {
    const n = namedPortNumber(port, d);
    if (n !== undefined) numbers.add(n);
  }
  return [...numbers]
    .sort((x, y) => x - y)
    .map((n) => {
      const g = namedGroup(n);
      if (!ctx.groups.some((x) => x.id === g)) ctx.groups.push({ id: g, tenantId: ctx.tenantId, name: groupName(n), stateful: false });
      return { nwProto, tpDst: { start: n, end: n }, portGroupDst: g };
    });
}

function compileDirection(ctx: Ctx, p: NetworkPolicy, dir: Direction, nsLabels: (ns: string) => Labels | undefined): string {
  const { tenantId } = ctx;
  const ns = policyNs(p);
  const name = p.metadata.name;
  const chainId = policyChainId(tenantId, ns, name, dir);
  ctx.chains.push({ id: chainId, tenantId, name: objName('np', ns, name, dir) });
  const srcOrDst = dir === 'ingress' ? 'Src' : 'Dst';
  const targets = ctx.pods.filter((pod) => pod.namespace === ns && selectorMatches(p.spec.podSelector ?? {}, pod.labels));
  const ports = portsOf(p, dir);
  peersOf(p, dir).forEach((peersGiven, i) => {
    const peers: (NetworkPolicyPeer | undefined)[] = peersGiven?.length ? peersGiven : [undefined];
    const portList: (NetworkPolicyPort | undefined)[] = ports[i]?.length ? ports[i] : [undefined];
    peers.forEach((peer, j) => {
      const where = `${dir}[${i}]`;
      const selectorPeer = peer !== undefined && !peer.ipBlock && !isSelectorPeerless(peer);
      // Named ports resolve on the destination: the policy's own pods for ingress, the peer's pods for egress.
      const destinations =
        dir === 'ingress'
          ? targets
          : selectorPeer
            ? ctx.pods.filter((pod) => peerSelects(peer, ns, pod, nsLabels(pod.namespace)))
            : ctx.pods;
      const jj = dir === 'ingress' ? 0 : j;
      const portConds: Condition[] = [];
      for (const [k, port] of portList.entries()) {
        const got = portConditions(
          ctx,
          port,
          destinations,
          `${where}.ports[${k}]`,
          (n) => namedPortGroupId(tenantId, ns, name, dir, i, jj, k, n),
          (n) => objName('np', ns, name, dir, i, jj, 'port', k, n),
        );
        if (typeof got === 'string') {
          ctx.errors.push({ namespace: ns, name, message: got });
          continue;
        }
        portConds.push(...got);
      }
      const label = `${ns}/${name} ${where}${peer ? ` peer[${j}]` : ''}`;
      if (!peer || isSelectorPeerless(peer)) {
        for (const pc of portConds) addRule(ctx, chainId, 'accept', pc, label);
        return;
      }
      if (!peer.ipBlock) {
        const g = peerGroupId(tenantId, ns, name, dir, i, j);
        ctx.groups.push({ id: g, tenantId, name: objName('np', ns, name, dir, i, j), stateful: false });
        for (const pc of portConds) {
          // Egress to a named port: its group already holds only this peer's pods with that port.
          const c = dir === 'egress' && pc.portGroupDst ? pc : { ...pc, [`portGroup${srcOrDst}`]: g };
          addRule(ctx, chainId, 'accept', c, label);
        }
        return;
      }
      let cidr: string;
      let family: 4 | 6;
      const excepts: string[] = [];
      try {
        const net = parseCidr(peer.ipBlock.cidr, 'ipBlock.cidr');
        cidr = formatCidr(net);
        family = net.family;
        for (const e of peer.ipBlock.except ?? []) {
          const ex = parseCidr(e, 'ipBlock.except');
          if (ex.family !== family || !contains(cidr, formatCidr(ex))) throw new Error(`except ${e} is not inside ${peer.ipBlock.cidr}`);
          excepts.push(formatCidr(ex));
        }
      } catch (e) {
        ctx.errors.push({ namespace: ns, name, message: `${where} peer[${j}].ipBlock: ${(e as Error).message}` });
        return;
      }
      const ethertype = family === 4 ? ETH_IPV4 : ETH_IPV6;
      const addr = { ethertype, [`nw${srcOrDst}`]: cidr } as Condition;
      if (!excepts.length) {
        for (const pc of portConds) addRule(ctx, chainId, 'accept', { ...pc, ...addr }, label);
        return;
      }
      // The excepted addresses return (not drop): another peer or policy may still allow them.
      const sub = exceptChainId(tenantId, ns, name, dir, i, j);
      ctx.chains.push({ id: sub, tenantId, name: objName('np', ns, name, dir, i, j, 'except') });
      for (const e of excepts) addRule(ctx, sub, 'return', { ethertype, [`nw${srcOrDst}`]: e }, `${label} except ${e}`);
      for (const pc of portConds) addRule(ctx, sub, 'accept', { ...pc, ...addr }, label);
      addRule(ctx, chainId, 'jump', {}, `${label} ipBlock with except`, sub);
    });
  });
  return chainId;
}

/** Everything the controller writes for these policies (sorted input gives the same output, whatever the order). */
export function compilePolicies(
  tenantId: string,
  policies: readonly NetworkPolicy[],
  pods: readonly PolicyPod[],
  namespaces: readonly PolicyNamespace[],
  opts: { nodeSources?: readonly string[] } = {},
): CompiledPolicy {
  const nsMap = new Map(namespaces.map((n) => [n.name, n.labels]));
  const nsLabels = (ns: string): Labels | undefined => nsMap.get(ns);
  const sorted = [...policies].sort((a, b) => `${policyNs(a)}/${a.metadata.name}`.localeCompare(`${policyNs(b)}/${b.metadata.name}`));
  const ctx: Ctx = { tenantId, pods, rules: [], chains: [], groups: [], errors: [] };
  const bridge = { ingress: bridgeChainId(tenantId, 'ingress'), egress: bridgeChainId(tenantId, 'egress') };
  for (const dir of ['ingress', 'egress'] as const) {
    ctx.chains.push({ id: bridge[dir], tenantId, name: objName('bridge', dir) });
    ctx.groups.push({ id: isolationGroupId(tenantId, dir), tenantId, name: objName('isolated', dir), stateful: false });
    addRule(ctx, bridge[dir], 'accept', { matchReturnFlow: true }, 'return flow');
    // IPv6 neighbour discovery (ICMPv6 133-136) is to IPv6 what ARP is to IPv4: never isolated.
    addRule(ctx, bridge[dir], 'accept', { ethertype: ETH_IPV6, nwProto: 58, tpSrc: { start: 133, end: 136 } }, 'neighbour discovery');
  }
  // Traffic from the pod's own node (kubelet's probes) is always allowed in (as upstream requires). A node reaches
  // its pods through the router's uplink, from the host's end of it (`nodeSources`: one address per router, the
  // same on every host). A pod's reply to it is routed by its own host's router to its own host, so only the pod's
  // own node can hold a connection this way (a lone datagram from another node's host namespace would pass too).
  // Only the host end: what another router or a hairpin through the host sends arrives from a router end.
  for (const a of opts.nodeSources ?? [])
    addRule(ctx, bridge.ingress, 'accept', { ethertype: ETH_IPV4, nwSrc: `${a}/32` }, 'from the node (kubelet probes)');
  for (const p of sorted) {
    const ns = policyNs(p);
    const target = targetGroupId(tenantId, ns, p.metadata.name);
    ctx.groups.push({ id: target, tenantId, name: objName('np', ns, p.metadata.name, 'target'), stateful: false });
    const dirs = directionsOf(p);
    for (const dir of ['ingress', 'egress'] as const) {
      if (!dirs[dir]) continue;
      const chainId = compileDirection(ctx, p, dir, nsLabels);
      addRule(
        ctx,
        bridge[dir],
        'jump',
        { [dir === 'ingress' ? 'portGroupDst' : 'portGroupSrc']: target },
        `${ns}/${p.metadata.name} ${dir}`,
        chainId,
      );
    }
  }
  for (const dir of ['ingress', 'egress'] as const) {
    addRule(
      ctx,
      bridge[dir],
      'drop',
      { [dir === 'ingress' ? 'portGroupDst' : 'portGroupSrc']: isolationGroupId(tenantId, dir), ethertype: ETH_ARP, invEthertype: true },
      `isolated for ${dir} by NetworkPolicy: allowed by none`,
    );
  }
  const memberships = new Map<string, string[]>();
  for (const pod of pods) memberships.set(`${pod.namespace}/${pod.name}`, groupsOfPod(tenantId, pod, nsLabels, sorted));
  return {
    portGroups: ctx.groups,
    chains: ctx.chains,
    rules: ctx.rules,
    bridgeOutboundFilterId: bridge.ingress,
    bridgeInboundFilterId: bridge.egress,
    memberships,
    errors: ctx.errors,
  };
}
