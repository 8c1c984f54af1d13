// Reachability probes between workloads, for the tests that hold the kernel's filtering against the policy
// simulator: a server in each workload (TCP listeners, UDP echoes), a client that says whether one probe got
// through, and the packet the simulator is asked about for the same probe, so kernel and prediction see one thing.
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, type Packet } from '../core/policy/simulate.js';

/** TCP listeners on 80 and 8080, UDP echoes on 5353 and 7777; runs until killed. */
export const PROBE_SERVER = `
import socket, threading
def tcp(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', p)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
def udp(p):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', p))
    while True:
        d, a = s.recvfrom(100); s.sendto(d, a)
for f, p in ((tcp, 80), (tcp, 8080), (udp, 5353), (udp, 7777)):
    threading.Thread(target=f, args=(p,), daemon=True).start()
threading.Event().wait()
`;

/** Exits 0 when a TCP connect succeeds or a UDP datagram is echoed within the timeout. Args: proto ip port. */
const PROBE_CLIENT = `
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM)
s.settimeout(1.5)
try:
    if proto == 'tcp':
        s.connect((ip, port))
    else:
        s.sendto(b'x', (ip, port)); s.recvfrom(100)
except OSError:
    sys.exit(1)
`;

export interface Probe {
  proto: 'tcp' | 'udp' | 'icmp';
  port?: number;
}

/** Every port the server answers on, and ICMP echo. */
export const PROBES: Probe[] = [
  { proto: 'tcp', port: 80 },
  { proto: 'tcp', port: 8080 },
  { proto: 'udp', port: 5353 },
  { proto: 'udp', port: 7777 },
  { proto: 'icmp' },
];

export const probeLabel = (p: Probe): string => `${p.proto}${p.port ? `/${p.port}` : ''}`;

/** The argv (run inside the source's namespace) of a TCP or UDP probe to `ip`. */
export function probeClientArgv(proto: 'tcp' | 'udp', ip: string, port: number): string[] {
  return ['python3', '-c', PROBE_CLIENT, proto, ip, String(port)];
}

/** One end of a probe as the simulator sees it. */
export interface ProbeEnd {
  mac: string;
  ip: string;
  portId: string;
}

/** The packet the simulator is asked about for probe `p` from `src` to `dst`. */
export function probePacket(src: ProbeEnd, dst: ProbeEnd, p: Probe): Packet {
  return {
    srcMac: src.mac,
    dstMac: dst.mac,
    srcIp: src.ip,
    dstIp: dst.ip,
    inPortId: src.portId,
    outPortId: dst.portId,
    ...(p.proto === 'icmp'
      ? { proto: PROTO_ICMP, icmpType: 8, icmpCode: 0 }
      : { proto: p.proto === 'tcp' ? PROTO_TCP : PROTO_UDP, srcPort: 40000, dstPort: p.port! }),
  };
}

/** One cell of a truth table: a probe, what the simulator predicted and what the kernel did. */
export interface ProbeCell {
  cell: string;
  predicted: boolean;
  observed: boolean;
}

/** The table for the test log, every disagreement marked. */
export function probeReport(cells: readonly ProbeCell[]): string {
  return cells
    .map(
      (x) =>
        `${x.cell}: ${x.predicted ? 'pass' : 'blocked'}${x.predicted === x.observed ? '' : ` BUT kernel ${x.observed ? 'passed' : 'blocked'}`}`,
    )
    .join('\n');
}
