// The upstream NetworkPolicy e2e model (kubernetes/kubernetes test/e2e/network/netpol, kubernetes.md §3.2) as data:
// namespaces x, y, z; pods a, b, c in each, labelled `pod: <name>`; container ports serve-80-tcp, serve-80-udp,
// serve-81-tcp, serve-81-udp (and SCTP); and the upstream cases, each a set of policies plus its expected truth
// table written the way the upstream tests write it (`Reachability.ExpectPeer`), never derived from our compiler.
import type { NetworkPolicy } from '../controller/objects.js';
import type { PolicyNamespace, PolicyPod } from '../controller/netpol.js';

export const NAMESPACES = ['x', 'y', 'z'] as const;
export const PODS = ['a', 'b', 'c'] as const;
export const PORTS = [80, 81] as const;
export type Proto = 'TCP' | 'UDP' | 'SCTP';

export interface MatrixPod {
  ns: string;
  pod: string;
  ip: string;
  mac: string;
}

export const matrixPods: MatrixPod[] = NAMESPACES.flatMap((ns, i) =>
  PODS.map((pod, j) => ({ ns, pod, ip: `10.128.${i}.${10 + j}`, mac: `02:aa:00:00:0${i}:0${j}` })),
);
export const podKey = (p: { ns: string; pod: string }): string => `${p.ns}/${p.pod}`;
export const ipOf = (ns: string, pod: string): string => matrixPods.find((p) => p.ns === ns && p.pod === pod)!.ip;

export function policyPods(portIdOf: (p: MatrixPod) => string | undefined): PolicyPod[] {
  return matrixPods.map((p) => ({
    namespace: p.ns,
    name: p.pod,
    labels: { pod: p.pod },
    containerPorts: PORTS.flatMap((port) =>
      (['TCP', 'UDP', 'SCTP'] as const).map((proto) => ({
        name: `serve-${port}-${proto.toLowerCase()}`,
        containerPort: port,
        protocol: proto,
      })),
    ),
    portId: portIdOf(p),
  }));
}

export const policyNamespaces: PolicyNamespace[] = NAMESPACES.map((ns) => ({
  name: ns,
  labels: { ns, 'kubernetes.io/metadata.name': ns },
}));

/** A peer pattern as upstream's `PodString`/`Peer`: a namespace, a pod, or both; empty: anything. */
interface Peer {
  ns?: string;
  pod?: string;
}
const hits = (peer: Peer, p: MatrixPod): boolean =>
  (peer.ns === undefined || peer.ns === p.ns) && (peer.pod === undefined || peer.pod === p.pod);

/** Upstream's Reachability: an 81-cell table, all one value, then ExpectPeer overrides in order. */
export class Reachability {
  private readonly cells = new Map<string, boolean>();
  constructor(all: boolean) {
    for (const f of matrixPods) for (const t of matrixPods) this.cells.set(`${podKey(f)}>${podKey(t)}`, all);
  }
  expectPeer(from: Peer, to: Peer, connected: boolean): this {
    for (const f of matrixPods)
      for (const t of matrixPods) if (hits(from, f) && hits(to, t)) this.cells.set(`${podKey(f)}>${podKey(t)}`, connected);
    return this;
  }
  expected(from: MatrixPod, to: MatrixPod): boolean {
    return this.cells.get(`${podKey(from)}>${podKey(to)}`)!;
  }
}

export interface Probe {
  port: number;
  proto: Proto;
  reach: Reachability;
}

export interface MatrixCase {
  /** The upstream It(...) title (test/e2e/network/netpol/network_policy.go). */
  title: string;
  policies: NetworkPolicy[];
  probes: Probe[];
}

// Egress-only cases set policyTypes [Egress] as upstream's SetSpecEgressRules does (defaulted, it would be
// [Ingress, Egress] and isolate ingress too).
const np = (ns: string, name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({ metadata: { namespace: ns, name }, spec });
const podSel = (pod: string) => ({ matchLabels: { pod } });
const nsSel = (ns: string) => ({ matchLabels: { ns } });
const all = (port: number, proto: Proto, reach: Reachability): Probe => ({ port, proto, reach });
const everywhere = (reach: () => Reachability): Probe[] =>
  PORTS.flatMap((port) => (['TCP', 'UDP'] as const).map((proto) => all(port, proto, reach())));

export const CASES: MatrixCase[] = [
  {
    title: "should support a 'default-deny-ingress' policy",
    policies: [np('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] })],
    probes: everywhere(() => new Reachability(true).expectPeer({}, { ns: 'x' }, false)),
  },
  {
    title: "should support a 'default-deny-all' policy",
    policies: [np('x', 'deny-all', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] })],
    probes: everywhere(() => new Reachability(true).expectPeer({}, { ns: 'x' }, false).expectPeer({ ns: 'x' }, {}, false)),
  },
  {
    title: 'should enforce policy to allow traffic from pods within server namespace based on PodSelector',
    policies: [np('x', 'x-a-allows-x-b', { podSelector: podSel('a'), ingress: [{ from: [{ podSelector: podSel('b') }] }] })],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy to allow ingress traffic for a target',
    policies: [
      np('x', 'deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }),
      np('x', 'allow-ingress-target', { podSelector: podSel('a'), ingress: [{ ports: [{ port: 80 }] }] }),
    ],
    probes: [
      all(80, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x' }, false).expectPeer({}, { ns: 'x', pod: 'a' }, true)),
      all(81, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x' }, false)),
    ],
  },
  {
    title: 'should enforce policy to allow ingress traffic from pods in all namespaces',
    policies: [np('x', 'allow-all-ns', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: {} }] }] })],
    probes: everywhere(() => new Reachability(true)),
  },
  {
    title: 'should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector',
    policies: [np('x', 'allow-ns-y', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: nsSel('y') }] }] })],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on PodSelector with MatchExpressions',
    policies: [
      np('x', 'expr', {
        podSelector: podSel('a'),
        ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b'] }] } }] }],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on NamespaceSelector with MatchExpressions',
    policies: [
      np('x', 'expr', {
        podSelector: podSel('a'),
        ingress: [{ from: [{ namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'In', values: ['y'] }] } }] }],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on PodSelector or NamespaceSelector',
    policies: [
      np('x', 'or', {
        podSelector: podSel('a'),
        ingress: [
          {
            from: [
              { namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] } },
              { podSelector: podSel('b') },
            ],
          },
        ],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true)
        .expectPeer({ ns: 'x' }, { ns: 'x', pod: 'a' }, false)
        .expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on PodSelector and NamespaceSelector',
    policies: [
      np('x', 'and', {
        podSelector: podSel('a'),
        ingress: [
          {
            from: [
              {
                namespaceSelector: { matchExpressions: [{ key: 'ns', operator: 'NotIn', values: ['x'] }] },
                podSelector: { matchExpressions: [{ key: 'pod', operator: 'In', values: ['b', 'c'] }] },
              },
            ],
          },
        ],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true)
        .expectPeer({}, { ns: 'x', pod: 'a' }, false)
        .expectPeer({ ns: 'y', pod: 'b' }, { ns: 'x', pod: 'a' }, true)
        .expectPeer({ ns: 'y', pod: 'c' }, { ns: 'x', pod: 'a' }, true)
        .expectPeer({ ns: 'z', pod: 'b' }, { ns: 'x', pod: 'a' }, true)
        .expectPeer({ ns: 'z', pod: 'c' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on any PodSelectors',
    policies: [
      np('x', 'any', { podSelector: podSel('a'), ingress: [{ from: [{ podSelector: podSel('b') }, { podSelector: podSel('c') }] }] }),
    ],
    probes: everywhere(() =>
      new Reachability(true)
        .expectPeer({}, { ns: 'x', pod: 'a' }, false)
        .expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true)
        .expectPeer({ ns: 'x', pod: 'c' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector',
    policies: [
      np('x', 'y-a', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: nsSel('y'), podSelector: podSel('a') }] }] }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y', pod: 'a' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce policy based on Ports',
    policies: [
      np('x', 'ports', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: nsSel('y') }], ports: [{ port: 81 }] }] }),
    ],
    probes: [
      all(
        81,
        'TCP',
        new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true),
      ),
      all(80, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)),
      all(81, 'UDP', new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)),
    ],
  },
  {
    title: 'should enforce multiple, stacked policies with overlapping podSelectors',
    policies: [
      np('x', 'allow-81', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: nsSel('y') }], ports: [{ port: 81 }] }] }),
      np('x', 'allow-80', { podSelector: podSel('a'), ingress: [{ from: [{ namespaceSelector: nsSel('y') }], ports: [{ port: 80 }] }] }),
    ],
    probes: [80, 81].map((port) =>
      all(
        port,
        'TCP',
        new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true),
      ),
    ),
  },
  {
    title: 'should support allow-all policy',
    policies: [np('x', 'allow-all', { podSelector: {}, ingress: [{}] })],
    probes: everywhere(() => new Reachability(true)),
  },
  {
    title: 'should allow ingress access on one named port',
    policies: [np('x', 'named', { podSelector: {}, ingress: [{ ports: [{ port: 'serve-81-tcp' }] }] })],
    probes: [
      all(81, 'TCP', new Reachability(true)),
      all(80, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x' }, false)),
      all(81, 'UDP', new Reachability(true).expectPeer({}, { ns: 'x' }, false)),
    ],
  },
  {
    title: 'should allow ingress access from namespace on one named port',
    policies: [
      np('x', 'named-ns', { podSelector: {}, ingress: [{ from: [{ namespaceSelector: nsSel('y') }], ports: [{ port: 'serve-80-tcp' }] }] }),
    ],
    probes: [
      all(80, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x' }, false).expectPeer({ ns: 'y' }, { ns: 'x' }, true)),
      all(81, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x' }, false)),
    ],
  },
  {
    title: 'should allow egress access on one named port',
    policies: [np('x', 'named-egress', { podSelector: {}, policyTypes: ['Egress'], egress: [{ ports: [{ port: 'serve-80-tcp' }] }] })],
    probes: [
      all(80, 'TCP', new Reachability(true)),
      all(81, 'TCP', new Reachability(true).expectPeer({ ns: 'x' }, {}, false)),
      all(80, 'UDP', new Reachability(true).expectPeer({ ns: 'x' }, {}, false)),
    ],
  },
  {
    title: 'should deny ingress from pods on other namespaces',
    policies: [np('x', 'same-ns', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({ ns: 'y' }, { ns: 'x' }, false).expectPeer({ ns: 'z' }, { ns: 'x' }, false),
    ),
  },
  {
    title: 'should deny egress from pods based on PodSelector',
    policies: [np('x', 'deny-egress-a', { podSelector: podSel('a'), policyTypes: ['Egress'] })],
    probes: everywhere(() => new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, {}, false)),
  },
  {
    title: 'should deny egress from all pods in a namespace',
    policies: [np('x', 'deny-egress', { podSelector: {}, policyTypes: ['Egress'] })],
    probes: everywhere(() => new Reachability(true).expectPeer({ ns: 'x' }, {}, false)),
  },
  {
    title: 'should work with Ingress, Egress specified together',
    policies: [
      np('x', 'both', {
        podSelector: podSel('a'),
        policyTypes: ['Ingress', 'Egress'],
        ingress: [{ from: [{ podSelector: podSel('b') }] }],
        egress: [{ ports: [{ port: 80 }] }],
      }),
    ],
    probes: [
      all(
        80,
        'TCP',
        new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true),
      ),
      all(
        81,
        'TCP',
        new Reachability(true)
          .expectPeer({}, { ns: 'x', pod: 'a' }, false)
          .expectPeer({ ns: 'x', pod: 'b' }, { ns: 'x', pod: 'a' }, true)
          .expectPeer({ ns: 'x', pod: 'a' }, {}, false),
      ),
    ],
  },
  {
    title: 'should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)',
    policies: [
      np('x', 'deny-egress-a', { podSelector: podSel('a'), policyTypes: ['Egress'] }),
      np('y', 'allow-all', { podSelector: {}, ingress: [{}] }),
    ],
    probes: everywhere(() => new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, {}, false)),
  },
  {
    title: 'should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector',
    policies: [
      np('x', 'egress-y-a', {
        podSelector: podSel('a'),
        policyTypes: ['Egress'],
        egress: [{ to: [{ namespaceSelector: nsSel('y'), podSelector: podSel('a') }] }],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, {}, false).expectPeer({ ns: 'x', pod: 'a' }, { ns: 'y', pod: 'a' }, true),
    ),
  },
  {
    title: 'should enforce ingress policy allowing any port traffic to a server on a specific protocol',
    policies: [np('x', 'tcp-only', { podSelector: podSel('a'), ingress: [{ ports: [{ protocol: 'TCP' }] }] })],
    probes: [
      all(80, 'TCP', new Reachability(true)),
      all(81, 'TCP', new Reachability(true)),
      all(80, 'UDP', new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)),
    ],
  },
  {
    title: 'should enforce multiple ingress policies with ingress allow-all policy taking precedence',
    policies: [
      np('x', 'only-81', { podSelector: podSel('a'), ingress: [{ ports: [{ port: 81 }] }] }),
      np('x', 'allow-all', { podSelector: podSel('a'), ingress: [{}] }),
    ],
    probes: everywhere(() => new Reachability(true)),
  },
  {
    title: 'should enforce multiple egress policies with egress allow-all policy taking precedence',
    policies: [
      np('x', 'only-80', { podSelector: podSel('a'), policyTypes: ['Egress'], egress: [{ ports: [{ port: 80 }] }] }),
      np('x', 'allow-all', { podSelector: podSel('a'), policyTypes: ['Egress'], egress: [{}] }),
    ],
    probes: everywhere(() => new Reachability(true)),
  },
  {
    title: 'should allow egress access to server in CIDR block',
    policies: [
      np('x', 'cidr', {
        podSelector: podSel('a'),
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: `${ipOf('y', 'b')}/32` } }] }],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, {}, false).expectPeer({ ns: 'x', pod: 'a' }, { ns: 'y', pod: 'b' }, true),
    ),
  },
  {
    title: 'should enforce except clause while egress access to server in CIDR block',
    policies: [
      np('x', 'except', {
        podSelector: podSel('a'),
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`${ipOf('x', 'b')}/32`] } }] }],
      }),
    ],
    probes: everywhere(() => new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, { ns: 'x', pod: 'b' }, false)),
  },
  {
    title: 'should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed',
    policies: [
      np('x', 'a-except', {
        podSelector: podSel('a'),
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`${ipOf('x', 'b')}/32`] } }] }],
      }),
      np('x', 'b-allow', {
        podSelector: podSel('a'),
        policyTypes: ['Egress'],
        egress: [{ to: [{ ipBlock: { cidr: `${ipOf('x', 'b')}/32` } }] }],
      }),
    ],
    probes: everywhere(() => new Reachability(true)),
  },
  {
    title: 'should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector',
    policies: [
      np('x', 'allow-egress-a', { podSelector: podSel('a'), policyTypes: ['Egress'], egress: [{}] }),
      np('x', 'deny-ingress-a', { podSelector: podSel('a'), policyTypes: ['Ingress'] }),
    ],
    probes: everywhere(() => new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)),
  },
  {
    title: "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP",
    policies: [np('x', 'sctp', { podSelector: podSel('a'), ingress: [{ ports: [{ protocol: 'SCTP', port: 80 }] }] })],
    probes: [all(80, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)), all(80, 'SCTP', new Reachability(true))],
  },
  {
    title: 'should not allow access by TCP when a policy specifies only UDP',
    policies: [np('x', 'udp', { podSelector: podSel('a'), ingress: [{ ports: [{ protocol: 'UDP', port: 81 }] }] })],
    probes: [all(81, 'TCP', new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false)), all(81, 'UDP', new Reachability(true))],
  },
  {
    title: 'should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label',
    policies: [
      np('x', 'default-label', {
        podSelector: podSel('a'),
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'y' } } }] }],
      }),
    ],
    probes: everywhere(() =>
      new Reachability(true).expectPeer({}, { ns: 'x', pod: 'a' }, false).expectPeer({ ns: 'y' }, { ns: 'x', pod: 'a' }, true),
    ),
  },
  {
    title: 'egress port range (endPort): 80-81 allowed, the rest of x/a egress denied',
    policies: [np('x', 'range', { podSelector: podSel('a'), policyTypes: ['Egress'], egress: [{ ports: [{ port: 80, endPort: 81 }] }] })],
    probes: [
      all(80, 'TCP', new Reachability(true)),
      all(81, 'TCP', new Reachability(true)),
      all(81, 'UDP', new Reachability(true).expectPeer({ ns: 'x', pod: 'a' }, {}, false)),
    ],
  },
];
