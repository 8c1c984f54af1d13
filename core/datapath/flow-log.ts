// The host's flow log: packets the compiled rules log to NFLOG (compile.ts: drop and reject rules, rate-limited,
// prefixed `bees <verdict> r=<rule id>`), read in-process (netlink/nflog.ts) and kept in a bounded ring per bridge
// port, so `bees port drops PORT` answers "what was dropped to or from this workload, and by which rule" without
// any daemon or file. Records carry the verdict so issue 13's flow logs (allowed flows, a second prefix) reuse it.
//
// Bounded: `perInterface` records per interface, `maxInterfaces` interfaces (the least recently logged one goes
// first). A record names its interfaces by name, resolved once per ifindex (cached; a cache miss asks the kernel).
import { NflogSocket, type LoggedPacket } from './netlink/nflog.js';
import { withNetlink } from './netlink/netns.js';
import { getLink } from './netlink/link.js';
import { DEFAULT_DROP_LOG } from '../policy/compile.js';

export interface FlowRecord extends Omit<LoggedPacket, 'prefix' | 'inIndex' | 'outIndex' | 'inDevIndex' | 'outDevIndex'> {
  verdict: string;
  ruleId: string;
  /** The bridge ports (host-side veths) it came in by and was going out by, when known. */
  inIfname?: string;
  outIfname?: string;
  /** Increasing per log: `since` for following. */
  seq: number;
}

export interface FlowLogOptions {
  group?: number;
  /** Network namespace to read (the agent's own when undefined). */
  netns?: string;
  perInterface?: number;
  maxInterfaces?: number;
  pollMs?: number;
  log?: (msg: string) => void;
}

const PREFIX = /^bees (\S+) r=(\S+)/;

export class FlowLog {
  private socket: NflogSocket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly rings = new Map<string, FlowRecord[]>();
  private readonly names = new Map<number, string>();
  private namesAt = 0;
  private seq = 0;
  private polling = false;
  private readonly listeners = new Set<(r: FlowRecord) => void>();
  readonly group: number;

  constructor(private readonly opts: FlowLogOptions = {}) {
    this.group = opts.group ?? DEFAULT_DROP_LOG.group;
  }

  /** Bind the group and start reading; throws when NFLOG is not available (the caller says so and goes on). */
  start(): void {
    if (this.socket) return;
    this.socket = NflogSocket.open(this.group, this.opts.netns);
    this.timer = setInterval(() => void this.poll(), this.opts.pollMs ?? 200);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.socket?.close();
    this.socket = undefined;
  }

  /** Messages the kernel could not queue to us (the packets were still dropped). */
  get lost(): number {
    return this.socket?.lost ?? 0;
  }

  /** Read what arrived now (the timer does this; tests call it to not wait). */
  async poll(): Promise<void> {
    if (this.polling || !this.socket) return;
    this.polling = true;
    try {
      const packets = this.socket.drain();
      if (packets.length) await this.resolveNames(packets);
      for (const p of packets) this.add(p);
    } catch (e) {
      this.opts.log?.(`flow log: ${(e as Error).message}`);
    } finally {
      this.polling = false;
    }
  }

  private async resolveNames(packets: LoggedPacket[]): Promise<void> {
    // Indices are reused after an interface goes: names older than a minute are asked again.
    if (Date.now() - this.namesAt > 60_000) {
      this.names.clear();
      this.namesAt = Date.now();
    }
    const missing = new Set<number>();
    for (const p of packets) for (const i of [p.inIndex, p.outIndex]) if (i !== undefined && !this.names.has(i)) missing.add(i);
    if (!missing.size) return;
    const netns = this.opts.netns;
    await withNetlink(netns, async (s) => {
      for (const i of missing) this.names.set(i, (await getLink(s, i))?.name ?? `if${i}`);
    });
  }

  private add(p: LoggedPacket): void {
    const m = PREFIX.exec(p.prefix);
    if (!m) return; // someone else's log rule on our group: not ours to keep
    const { prefix: _prefix, inIndex, outIndex, inDevIndex: _i, outDevIndex: _o, ...rest } = p;
    const r: FlowRecord = { ...rest, verdict: m[1]!, ruleId: m[2]!, seq: ++this.seq };
    if (inIndex !== undefined) r.inIfname = this.names.get(inIndex)!;
    if (outIndex !== undefined) r.outIfname = this.names.get(outIndex)!;
    for (const name of new Set([r.inIfname, r.outIfname])) if (name) this.push(name, r);
    for (const l of this.listeners) l(r);
  }

  private push(ifname: string, r: FlowRecord): void {
    let ring = this.rings.get(ifname);
    if (ring)
      this.rings.delete(ifname); // re-inserted: the map's order is least recently logged first
    else ring = [];
    ring.push(r);
    if (ring.length > (this.opts.perInterface ?? 256)) ring.shift();
    this.rings.set(ifname, ring);
    const max = this.opts.maxInterfaces ?? 4096;
    while (this.rings.size > max) this.rings.delete(this.rings.keys().next().value!);
  }

  /** Records of interface `ifname`, oldest first, after sequence number `since`. */
  records(ifname: string, since = 0): FlowRecord[] {
    return (this.rings.get(ifname) ?? []).filter((r) => r.seq > since);
  }

  /** Be told of every record as it is read; returns the unsubscribe. */
  subscribe(fn: (r: FlowRecord) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
