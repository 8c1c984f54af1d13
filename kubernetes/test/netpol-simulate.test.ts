// NetworkPolicy compiled by the controller (kubernetes/controller/netpol.ts) and evaluated by the policy simulator
// (core/policy/simulate.ts, the compiler's oracle, which the kernel tests hold the nftables rules to): every cell
// of every probe of the upstream matrix cases (netpol-matrix.ts) must be what upstream's expectations say.
import test from 'ava';
import { stableId } from '../../core/model/ids.js';
import { simulateExchange, Simulator, type Packet } from '../../core/policy/simulate.js';
import { compilePolicies, groupsOfPod, type PolicyNamespace, type PolicyPod } from '../controller/netpol.js';
import type { NetworkPolicy } from '../controller/objects.js';
import { CASES, matrixPods, policyNamespaces, policyPods, podKey, type MatrixPod, type Proto } from './netpol-matrix.js';

const TENANT = 'tenant-1';
const portIdOf = (p: { ns: string; pod: string }): string => stableId('Port', 'matrix', p.ns, p.pod);
const PROTO: Record<Proto, number> = { TCP: 6, UDP: 17, SCTP: 132 };

interface Pod {
  portId: string;
  mac: string;
  ip: string;
}

/** The table of one probe: each (from, to) cell as simulated, against the expectation. */
function run(policies: NetworkPolicy[], pods: PolicyPod[], namespaces: PolicyNamespace[], addr: Map<string, Pod>) {
  const c = compilePolicies(TENANT, policies, pods, namespaces);
  const sim = new Simulator({
    chains: c.chains,
    rules: c.rules,
    ipAddrGroups: [],
    ports: pods.map((p) => ({ id: p.portId!, portGroupIds: c.memberships.get(`${p.namespace}/${p.name}`) ?? [], adminStateUp: true })),
  });
  const bridge = { id: 'bridge', inboundFilterId: c.bridgeInboundFilterId, outboundFilterId: c.bridgeOutboundFilterId };
  const connect = (from: string, to: string, port: number, proto: Proto): boolean => {
    const f = addr.get(from)!;
    const t = addr.get(to)!;
    const packet: Packet = {
      srcMac: f.mac,
      dstMac: t.mac,
      srcIp: f.ip,
      dstIp: t.ip,
      proto: PROTO[proto],
      srcPort: 40000,
      dstPort: port,
      inPortId: f.portId,
      outPortId: t.portId,
    };
    return simulateExchange(sim, bridge, packet).delivered;
  };
  return { compiled: c, connect };
}

const matrixAddr = new Map(matrixPods.map((p) => [podKey(p), { portId: portIdOf(p), mac: p.mac, ip: p.ip }]));

for (const tc of CASES) {
  test(`upstream netpol matrix (simulator): ${tc.title}`, (t) => {
    const { compiled, connect } = run(tc.policies, policyPods(portIdOf), policyNamespaces, matrixAddr);
    t.deepEqual(compiled.errors, []);
    const wrong: string[] = [];
    let cells = 0;
    for (const probe of tc.probes) {
      for (const from of matrixPods) {
        for (const to of matrixPods) {
          if (from === to) continue; // upstream ignores loopback (ignoreLoopback, kubernetes#95879)
          cells++;
          const want = probe.reach.expected(from, to);
          const got = connect(podKey(from), podKey(to), probe.port, probe.proto);
          if (got !== want)
            wrong.push(
              `${podKey(from)} -> ${podKey(to)} ${probe.port}/${probe.proto}: expected ${want ? 'allowed' : 'denied'}, simulated ${got ? 'allowed' : 'denied'}`,
            );
        }
      }
    }
    t.is(cells, tc.probes.length * 72);
    t.deepEqual(wrong, [], wrong.join('\n'));
  });
}

test('matrix covers at least 20 upstream cases', (t) => {
  t.true(CASES.length >= 20);
});

test('default deny egress with an allow to DNS (kube-system k8s-app=kube-dns, 53/UDP and 53/TCP)', (t) => {
  const dns: PolicyPod = {
    namespace: 'kube-system',
    name: 'coredns',
    labels: { 'k8s-app': 'kube-dns' },
    containerPorts: [],
    portId: 'p-dns',
  };
  const other: PolicyPod = { namespace: 'kube-system', name: 'other', labels: {}, containerPorts: [], portId: 'p-other' };
  const pods = [...policyPods(portIdOf), dns, other];
  const namespaces = [...policyNamespaces, { name: 'kube-system', labels: { 'kubernetes.io/metadata.name': 'kube-system' } }];
  const addr = new Map(matrixAddr);
  addr.set('kube-system/coredns', { portId: 'p-dns', mac: '02:aa:00:00:09:01', ip: '10.128.9.1' });
  addr.set('kube-system/other', { portId: 'p-other', mac: '02:aa:00:00:09:02', ip: '10.128.9.2' });
  const policy: NetworkPolicy = {
    metadata: { namespace: 'x', name: 'deny-egress-but-dns' },
    spec: {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
              podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
            },
          ],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    },
  };
  const { connect } = run([policy], pods, namespaces, addr);
  t.true(connect('x/a', 'kube-system/coredns', 53, 'UDP'));
  t.true(connect('x/a', 'kube-system/coredns', 53, 'TCP'));
  t.false(connect('x/a', 'kube-system/coredns', 80, 'TCP'));
  t.false(connect('x/a', 'kube-system/other', 53, 'UDP'));
  t.false(connect('x/a', 'y/a', 80, 'TCP'));
  t.true(connect('y/a', 'kube-system/coredns', 80, 'TCP'));
  t.true(connect('y/a', 'x/a', 80, 'TCP'), 'egress-only isolation leaves ingress open');
});

test('groupsOfPod (the agent at ADD) agrees with the compiled memberships (the controller)', (t) => {
  for (const tc of CASES) {
    const pods = policyPods(portIdOf);
    const c = compilePolicies(TENANT, tc.policies, pods, policyNamespaces);
    const labels = new Map(policyNamespaces.map((n) => [n.name, n.labels]));
    for (const p of pods) {
      t.deepEqual(
        groupsOfPod(TENANT, p, (ns) => labels.get(ns), tc.policies),
        c.memberships.get(`${p.namespace}/${p.name}`),
        tc.title,
      );
    }
  }
});

test('a pod no policy selects is in no isolation group; compiling is deterministic', (t) => {
  const tc = CASES[0]!;
  const a = compilePolicies(TENANT, tc.policies, policyPods(portIdOf), policyNamespaces);
  const b = compilePolicies(TENANT, [...tc.policies].reverse(), policyPods(portIdOf), policyNamespaces);
  t.deepEqual(a, b);
  t.deepEqual(a.memberships.get('y/a'), []);
  t.true(a.memberships.get('x/a')!.length > 0);
});

test('invalid policies are reported, not compiled', (t) => {
  const bad: NetworkPolicy = {
    metadata: { namespace: 'x', name: 'bad' },
    spec: {
      podSelector: {},
      ingress: [{ from: [{ ipBlock: { cidr: '10.0.0.0/8', except: ['192.168.0.0/16'] } }], ports: [{ protocol: 'ICMP' }] }],
    },
  };
  const c = compilePolicies(TENANT, [bad], policyPods(portIdOf), policyNamespaces);
  t.is(c.errors.length, 2);
  t.regex(c.errors.map((e) => e.message).join('\n'), /ICMP.*not TCP, UDP or SCTP[\s\S]*not inside/);
});

export type { MatrixPod };
