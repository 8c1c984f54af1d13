// `bees trace SRC DST --probe` (issue 10 item 5): a real packet from SRC's namespace, and what each host's kernel
// did with it, beside the simulator's verdict.
//
// How (chosen for: no daemon, nothing left behind, every host's own kernel as the witness):
// - the agent of SRC's host finds SRC's network namespace (the one holding the workload's interface with the
//   port's MAC), and sends from a socket made there: a TCP SYN (non-blocking connect), a UDP datagram, or an ICMP
//   echo request, from a random source port (ICMP: a random echo id);
// - every host on the path marks exactly that packet and its reply for nftables tracing: a table of its own
//   (`bridge bees-probe-<id>`, prerouting before everything) setting `meta nftrace set 1` on the two MAC + address
//   + port tuples, and reads `nft monitor trace` meanwhile; the table is deleted afterwards;
// - the destination host is asked through the store: the source agent puts an ephemeral `probes/<id>` record
//   naming the hosts; their agents (watching `probes/`) arm, say so in `probe-armed/<id>/<host>`, and, when the
//   record goes, publish what they saw in `probe-seen/<id>/<host>` (ephemeral too: a dead agent leaves nothing).
// A host's verdict: the first traced packet of each direction, dropped by the rule whose comment names it, or
// accepted when no chain dropped it. A packet not seen at all is reported as such.
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import koffi from 'koffi';
import type { Store } from '../store/store.js';
import { withNetlink } from '../datapath/netlink/netns.js';
import { getLink } from '../datapath/netlink/link.js';
import { inNamespace } from '../datapath/netlink/netns.js';
import { nftApply } from '../datapath/nft/apply.js';
import { systemTool } from '../datapath/exec.js';
import { OWNER_COMMENT } from '../datapath/nft/tables.js';

export interface ProbeSpec {
  id: string;
  proto: 'tcp' | 'udp' | 'icmp';
  srcMac: string;
  dstMac: string;
  srcIp: string;
  dstIp: string;
  /** TCP/UDP ports; ICMP: the echo id in srcPort. */
  srcPort: number;
  dstPort: number;
  /** Hosts asked to observe besides the sender. */
  hosts: string[];
}

/** One traced step: a rule (or a chain's policy) of one table, with its verdict. */
export interface KernelStep {
  table: string;
  chain: string;
  rule?: string;
  ruleId?: string;
  verdict: string;
}

export interface KernelLeg {
  verdict: 'accept' | 'drop' | 'unseen';
  ruleId?: string;
  steps: KernelStep[];
}

export interface HostObservation {
  hostId: string;
  request: KernelLeg;
  reply: KernelLeg;
  error?: string;
}

const PROBE_PREFIX = 'probes/';
const ARMED_PREFIX = 'probe-armed/';
const SEEN_PREFIX = 'probe-seen/';

/** One table per probe, named here rather than in nft/tables.ts: it lives for a second and its name is per probe. */
const probeTable = (id: string): string => `bees-probe-${id}`;

/** The nft script marking the probe and its reply for tracing, in a table of its own. */
export function markScript(s: ProbeSpec): string {
  const t = `bridge ${probeTable(s.id)}`;
  const l4 = (dir: 'request' | 'reply'): string => {
    if (s.proto === 'icmp') return `icmp type ${dir === 'request' ? 'echo-request' : 'echo-reply'} icmp id ${s.srcPort}`;
    const [sp, dp] = dir === 'request' ? [s.srcPort, s.dstPort] : [s.dstPort, s.srcPort];
    return `${s.proto} sport ${sp} ${s.proto} dport ${dp}`;
  };
  return [
    `add table ${t} { comment "${OWNER_COMMENT}"; }`,
    `add chain ${t} pre { type filter hook prerouting priority -400; policy accept; }`,
    `add rule ${t} pre ether saddr ${s.srcMac} ether daddr ${s.dstMac} ip saddr ${s.srcIp} ip daddr ${s.dstIp} ${l4('request')} meta nftrace set 1`,
    `add rule ${t} pre ether saddr ${s.dstMac} ether daddr ${s.srcMac} ip saddr ${s.dstIp} ip daddr ${s.srcIp} ${l4('reply')} meta nftrace set 1`,
    '',
  ].join('\n');
}

const unmarkScript = (id: string): string => `add table bridge ${probeTable(id)}\ndelete table bridge ${probeTable(id)}\n`;

/** `nft monitor trace` lines → steps per trace id, in order. Exported for tests. */
export function parseTrace(text: string): Map<string, { steps: KernelStep[]; packet: string }> {
  const out = new Map<string, { steps: KernelStep[]; packet: string }>();
  for (const line of text.split('\n')) {
    const m = /^trace id (\S+) (\S+) (\S+) (\S+) (.*)$/.exec(line.trim());
    if (!m) continue;
    const [, id, family, table, chain, rest] = m as unknown as [string, string, string, string, string, string];
    const e = out.get(id) ?? { steps: [], packet: '' };
    out.set(id, e);
    const where = { table: `${family} ${table}`, chain };
    if (rest.startsWith('packet:')) {
      if (!e.packet) e.packet = rest.slice(7).trim();
      continue;
    }
    const rule = /^rule (.*) \(verdict ([^)]+)\)$/.exec(rest);
    if (rule) {
      const r = /comment "r=([^"]+)"/.exec(rule[1]!);
      e.steps.push({ ...where, rule: rule[1]!, ...(r ? { ruleId: r[1]! } : {}), verdict: rule[2]! });
      continue;
    }
    const v = /^(?:verdict|policy) (\S+)/.exec(rest);
    if (v) e.steps.push({ ...where, verdict: v[1]! });
  }
  return out;
}

/** The first traced packet whose header says `ip saddr <src>`: what the kernel did with it. */
export function legOf(traces: Map<string, { steps: KernelStep[]; packet: string }>, srcIp: string, dstIp: string): KernelLeg {
  for (const t of traces.values()) {
    if (!t.packet.includes(`ip saddr ${srcIp} ip daddr ${dstIp}`)) continue;
    const drop = t.steps.find((s) => s.verdict === 'drop');
    return drop
      ? { verdict: 'drop', ...(drop.ruleId ? { ruleId: drop.ruleId } : {}), steps: t.steps }
      : { verdict: 'accept', steps: t.steps };
  }
  return { verdict: 'unseen', steps: [] };
}

/** Arm this host for a probe: the marking table and a trace reader; `stop()` removes both and says what it saw. */
async function arm(spec: ProbeSpec): Promise<{ stop(): Promise<{ request: KernelLeg; reply: KernelLeg }> }> {
  const child: ChildProcess = spawn(systemTool('nft'), ['monitor', 'trace'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString()));
  child.on('error', () => undefined);
  // The monitor subscribes when it starts: give it a moment before anything is marked.
  await new Promise((r) => setTimeout(r, 250));
  await nftApply(undefined, markScript(spec), `could not mark probe ${spec.id} for tracing`);
  return {
    async stop() {
      await nftApply(undefined, unmarkScript(spec.id), `could not remove the probe table ${probeTable(spec.id)}`).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 100));
      child.kill('SIGTERM');
      const traces = parseTrace(text);
      return { request: legOf(traces, spec.srcIp, spec.dstIp), reply: legOf(traces, spec.dstIp, spec.srcIp) };
    },
  };
}

// --- sending from the workload's namespace ------------------------------------------------------------------------

interface SockLib {
  socket(domain: number, type: number, protocol: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrLen: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  close(fd: number): number;
}
let sockLib: SockLib | undefined;
function lib(): SockLib {
  if (sockLib) return sockLib;
  const l = koffi.load('libc.so.6');
  sockLib = {
    socket: l.func('int socket(int, int, int)'),
    bind: l.func('int bind(int, const void *, uint32_t)'),
    connect: l.func('int connect(int, const void *, uint32_t)'),
    sendto: l.func('intptr_t sendto(int, const void *, size_t, int, const void *, uint32_t)'),
    setsockopt: l.func('int setsockopt(int, int, int, const void *, uint32_t)'),
    close: l.func('int close(int)'),
  };
  return sockLib;
}

function sockaddrIn(ip: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(2, 0); // AF_INET
  b.writeUInt16BE(port, 2);
  ip.split('.').forEach((x, i) => (b[4 + i] = Number(x)));
  return b;
}

function icmpEcho(id: number): Buffer {
  const b = Buffer.concat([Buffer.from([8, 0, 0, 0, id >> 8, id & 0xff, 0, 1]), Buffer.from('bees-probe')]);
  let sum = 0;
  for (let i = 0; i < b.length; i += 2) sum += (b[i]! << 8) + (b[i + 1] ?? 0);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  b.writeUInt16BE(~sum & 0xffff, 2);
  return b;
}

/** Send the probe from a socket made in `netns`; the socket is closed after `holdMs` (a SYN gets its chance). */
export async function sendProbe(netns: string, s: ProbeSpec, holdMs = 1200): Promise<void> {
  const c = lib();
  const SOCK_NONBLOCK = 0o4000;
  const [type, proto] = s.proto === 'tcp' ? [1, 0] : s.proto === 'udp' ? [2, 0] : [3, 1]; // STREAM, DGRAM, RAW/ICMP
  const fd = inNamespace(netns, () => c.socket(2, type | SOCK_NONBLOCK, proto));
  if (fd < 0) throw new Error(`could not open a ${s.proto} socket in ${netns}`);
  try {
    if (s.proto !== 'icmp') {
      const one = Buffer.alloc(4);
      one.writeInt32LE(1);
      c.setsockopt(fd, 1, 2, one, 4); // SO_REUSEADDR
      if (c.bind(fd, sockaddrIn('0.0.0.0', s.srcPort), 16) < 0) throw new Error(`could not bind source port ${s.srcPort} in ${netns}`);
    }
    const to = sockaddrIn(s.dstIp, s.proto === 'icmp' ? 0 : s.dstPort);
    if (s.proto === 'tcp')
      c.connect(fd, to, 16); // EINPROGRESS: the SYN is on its way
    else {
      const payload = s.proto === 'icmp' ? icmpEcho(s.srcPort) : Buffer.from('bees-probe');
      if (c.sendto(fd, payload, payload.length, 0, to, 16) < 0) throw new Error(`could not send the probe from ${netns}`);
    }
    await new Promise((r) => setTimeout(r, holdMs));
  } finally {
    c.close(fd);
  }
}

/** The network namespace holding interface `ifname` with `mac` (a workload's): searched where runtimes keep them. */
export async function findWorkloadNetns(ifname: string, mac: string): Promise<string | undefined> {
  const candidates: string[] = [];
  for (const dir of ['/run/netns', '/var/run/docker/netns', '/run/docker/netns']) {
    try {
      for (const f of readdirSync(dir)) candidates.push(`${dir}/${f}`);
    } catch {
      /* no such directory */
    }
  }
  try {
    for (const pid of readdirSync('/proc')) if (/^\d+$/.test(pid)) candidates.push(`/proc/${pid}/ns/net`);
  } catch {
    /* no /proc */
  }
  const seen = new Set<string>();
  const want = mac.toLowerCase();
  for (const path of candidates) {
    let key: string;
    try {
      const st = statSync(path);
      key = `${st.dev}:${st.ino}`;
    } catch {
      continue;
    }
    if (seen.has(key)) continue;
    seen.add(key);
    const link = await withNetlink(path, (s) => getLink(s, ifname)).catch(() => undefined);
    if (link?.mac.toLowerCase() === want) return path;
  }
  return undefined;
}

// --- the agent's side: run a probe, and observe others' ---------------------------------------------------------

export class Prober {
  private stopWatch: (() => void) | undefined;
  private readonly armed = new Map<string, Promise<{ stop(): Promise<{ request: KernelLeg; reply: KernelLeg }> }>>();

  constructor(
    readonly hostId: string,
    private readonly store: Store,
    private readonly log: (msg: string) => void,
    /**
     * The datapath's fast path skips the bridge and its nftables, where the probe's packets are traced: their MACs
     * are held off it while this host is armed.
     */
    private readonly fastPath?: { hold(macs: string[]): void; release(macs: string[]): Promise<void> },
  ) {}

  /** Arm this host for `spec`, with its MACs held off the fast path until stopped. */
  private async arm(spec: ProbeSpec): Promise<{ stop(): Promise<{ request: KernelLeg; reply: KernelLeg }> }> {
    const macs = [spec.srcMac, spec.dstMac];
    this.fastPath?.hold(macs);
    const release = () => this.fastPath?.release(macs).catch((e: Error) => this.log(`probe ${spec.id}: ${e.message}`));
    try {
      const armed = await arm(spec);
      return {
        async stop() {
          try {
            return await armed.stop();
          } finally {
            await release();
          }
        },
      };
    } catch (e) {
      await release();
      throw e;
    }
  }

  /** Observe probes naming this host. */
  async start(): Promise<void> {
    this.stopWatch = await this.store.watchEphemeral(PROBE_PREFIX, (records) => {
      const live = new Set<string>();
      for (const [key, value] of Object.entries(records)) {
        const spec = value as ProbeSpec;
        const id = key.slice(PROBE_PREFIX.length);
        live.add(id);
        if (!spec.hosts?.includes(this.hostId) || this.armed.has(id)) continue;
        const armed = this.arm(spec);
        this.armed.set(id, armed);
        void armed.then(
          () => this.store.putEphemeral(`${ARMED_PREFIX}${id}/${this.hostId}`, true),
          (e: Error) => this.log(`probe ${id}: ${e.message}`),
        );
      }
      for (const [id, armed] of this.armed) {
        if (live.has(id)) continue;
        this.armed.delete(id);
        void (async () => {
          const seen = await (await armed).stop();
          const key = `${SEEN_PREFIX}${id}/${this.hostId}`;
          await this.store.putEphemeral(key, { hostId: this.hostId, ...seen });
          await this.store.removeEphemeral(`${ARMED_PREFIX}${id}/${this.hostId}`).catch(() => undefined);
          // Read by the sender within seconds; not kept beyond that.
          setTimeout(() => void this.store.removeEphemeral(key).catch(() => undefined), 30_000).unref();
        })().catch((e: Error) => this.log(`probe ${id}: ${e.message}`));
      }
    });
  }

  stop(): void {
    this.stopWatch?.();
  }

  /** Send a probe from `netns` and gather what this host and `spec.hosts` saw. */
  async probe(netns: string, s: Omit<ProbeSpec, 'id'>): Promise<HostObservation[]> {
    const spec: ProbeSpec = { ...s, id: randomBytes(4).toString('hex') };
    const others = spec.hosts.filter((h) => h !== this.hostId);
    spec.hosts = others;
    const mine = await this.arm(spec);
    let result: { request: KernelLeg; reply: KernelLeg } | undefined;
    const out: HostObservation[] = [];
    try {
      await this.store.putEphemeral(`${PROBE_PREFIX}${spec.id}`, spec);
      if (others.length) await this.waitFor(ARMED_PREFIX, spec.id, others, 5000);
      await sendProbe(netns, spec);
    } finally {
      result = await mine.stop();
      await this.store.removeEphemeral(`${PROBE_PREFIX}${spec.id}`).catch(() => undefined);
    }
    out.push({ hostId: this.hostId, ...result });
    const seen = others.length ? await this.waitFor(SEEN_PREFIX, spec.id, others, 5000) : {};
    for (const h of others) {
      const o = seen[h] as HostObservation | undefined;
      const none: KernelLeg = { verdict: 'unseen', steps: [] };
      out.push(o ?? { hostId: h, request: none, reply: none, error: 'the agent of this host did not answer within 5 s' });
    }
    return out;
  }

  /** Records `<prefix><id>/<host>` of every host, by host, or what there is after `ms`. */
  private async waitFor(prefix: string, id: string, hosts: string[], ms: number): Promise<Record<string, unknown>> {
    const end = Date.now() + ms;
    for (;;) {
      const records = await this.store.listEphemeral(`${prefix}${id}/`);
      const byHost = Object.fromEntries(Object.entries(records).map(([k, v]) => [k.slice(`${prefix}${id}/`.length), v]));
      if (hosts.every((h) => h in byHost) || Date.now() > end) return byHost;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
