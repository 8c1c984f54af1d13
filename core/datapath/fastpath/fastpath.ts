// The overlay's fast path (fastpath.bpf.c): the loaded programs and the maps that say which ports and remote MACs
// they may carry, kept in step with the topology by the datapath. The bridge path stays complete underneath:
// every map entry only lets a frame skip work whose outcome is known, so an entry missing (a port being set up, a
// full map, an agent restarting) costs speed, never a frame. What makes an entry wrong is the reverse: an entry
// for a port that has a filter, or for an ifindex reused by another device. So entries go before what makes them
// wrong (a binding is committed, a veth deleted) and come after what makes them right.
import { normalizeMac } from '../addresses.js';
import { ipBytes, macBytes } from '../netlink/attributes.js';
import { libc } from '../netlink/libc.js';
import { getLink, inNamespace, listLinks, listQdiscs, setBridgeFdb, withNetlink } from '../netlink/index.js';
import { fastPathObject } from './build.js';
import { isPlugName } from '../names.js';
import { BPF_TC_F_REPLACE, errnoOf, libbpf, loadAsync, tcIngressHook, tcOpts, whyUnavailable, type Libbpf } from './libbpf.js';
import { isIP } from 'node:net';

const strerror = (errno: number): string => libc().strerror(errno);

/** A local port the fast path may carry: no filter bound to it or its bridge, unshaped (the caller decides). */
export interface FastPort {
  /** Host-side interface. */
  ifname: string;
  vni: number;
  mac: string;
  /** Plain addresses; the first IPv4 and the first global IPv6 one ride the fast path, others take the bridge. */
  ips: string[];
  /** The bridge's conntrack zone (inet bees-ct): where rx looks for a NATed flow. */
  zone: number;
}

export interface FastPathCounts {
  txPackets: number;
  txBytes: number;
  rxPackets: number;
  rxBytes: number;
}

export const OUTCOMES = ['tx_fast', 'tx_bridge', 'tx_spoof', 'rx_fast', 'rx_bridge', 'rx_nat'] as const;
export type Outcome = (typeof OUTCOMES)[number];

/** The tc filter of ours on a device's clsact ingress: one handle and priority, so a restart's attach replaces it. */
const FILTER = { handle: 0xbee5, priority: 1 };
const EEXIST = 17;
const COUNTS_SIZE = 32;

interface BridgeEntry {
  vxIfindex: number;
  /** rx attached to it by this agent (a restarted agent attaches again, replacing its predecessor's program). */
  attached: boolean;
  remotes: Set<string>;
}

interface PortEntry {
  ifindex: number;
  vxIfindex: number;
  mac: string;
  /** The FastPort it was written from, as JSON: a change rewrites it. */
  json: string;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};

/** struct l2key { __u32 vx_ifindex; __u8 mac[6]; __u16 pad; } */
function l2key(vxIfindex: number, mac: string): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32LE(vxIfindex);
  macBytes(mac).copy(b, 4);
  return b;
}

/** struct port (fastpath.bpf.c): MAC, which families, the addresses in network order, the bridge's VXLAN ifindex. */
function portValue(p: FastPort, vxIfindex: number): Buffer {
  const b = Buffer.alloc(32);
  macBytes(p.mac).copy(b, 0);
  const v4 = p.ips.find((ip) => isIP(ip) === 4);
  const v6 = p.ips.find((ip) => isIP(ip) === 6 && !/^fe[89ab]/i.test(ip));
  if (v4) {
    b[6] = 1;
    ipBytes(v4).copy(b, 8);
  }
  if (v6) {
    b[7] = 1;
    ipBytes(v6).copy(b, 12);
  }
  b.writeUInt32LE(vxIfindex, 28);
  return b;
}

/** What a port entry was written from: a change of any of it rewrites the entry. */
const portJson = (p: FastPort): string => JSON.stringify([p.vni, normalizeMac(p.mac), p.ips, p.zone]);

/** struct local { __u32 ifindex; __u16 zone; __u16 pad; } */
function localValue(ifindex: number, zone: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(ifindex);
  b.writeUInt16LE(zone, 4);
  return b;
}

export class FastPath {
  private readonly bridges = new Map<number, BridgeEntry>();
  private readonly ports = new Map<string, PortEntry>();
  /** Devices whose clsact ingress carries our tx program (a veth keeps it for its life). */
  private readonly txAttached = new Set<number>();
  /**
   * MACs held off the fast path, with how many holds each (`bees trace --probe` traces a packet through the bridge's
   * nftables on each host: its ports' frames must cross the bridge while it runs). Held remote MACs stay in the
   * record and leave the kernel map; held local ports are dropped and come back at the next setPorts.
   */
  private readonly held = new Map<string, number>();

  private constructor(
    private readonly netns: string | undefined,
    private readonly l: Libbpf,
    private readonly obj: unknown,
    private readonly progs: { tx: number; rx: number },
    private readonly maps: { ports: number; remotes: number; locals: number; counts: number; outcomes: number },
    private readonly cpus: number,
  ) {}

  /** Build (or find in the cache) the object, and load it: the verifier checks both programs here. */
  static async load(netns: string | undefined, opts: { cacheDir?: string } = {}): Promise<FastPath> {
    const l = libbpf();
    if (!l) throw new Error(`libbpf cannot be loaded (${whyUnavailable() ?? 'unknown'}): apt-get install libbpf1`);
    const path = await fastPathObject(opts);
    const obj = l.openFile(path, null);
    if (!obj) throw new Error(`could not open ${path}: ${strerror(errnoOf(0))}`);
    const rc = await loadAsync(l, obj);
    if (rc !== 0) {
      l.close(obj);
      throw new Error(
        `the kernel refused ${path}: ${strerror(errnoOf(rc))} (the verifier's log: bpftool prog loadall ${path} /sys/fs/bpf/x)`,
      );
    }
    const prog = (name: string): number => {
      const p = l.findProgram(obj, name);
      const fd = p ? l.programFd(p) : -1;
      if (fd < 0) throw new Error(`${path} has no program ${name}`);
      return fd;
    };
    const map = (name: string): number => {
      const fd = l.mapFd(obj, name);
      if (fd < 0) throw new Error(`${path} has no map ${name}`);
      return fd;
    };
    try {
      return new FastPath(
        netns,
        l,
        obj,
        { tx: prog('tx'), rx: prog('rx') },
        {
          ports: map('fp_ports'),
          remotes: map('fp_remotes'),
          locals: map('fp_locals'),
          counts: map('fp_counts'),
          outcomes: map('fp_outcomes'),
        },
        Math.max(1, l.possibleCpus()),
      );
    } catch (e) {
      l.close(obj);
      throw e;
    }
  }

  /** Releases the object: programs stay while a filter holds them, maps while a program does. */
  close(): void {
    this.l.close(this.obj);
  }

  private check(rc: number, what: string): void {
    if (rc !== 0) throw new Error(`fast path: ${what}: ${strerror(errnoOf(rc))}`);
  }

  private attach(ifindex: number, progFd: number, what: string): void {
    inNamespace(this.netns, () => {
      const hook = tcIngressHook(ifindex);
      const rc = this.l.hookCreate(hook);
      if (rc !== 0 && errnoOf(rc) !== EEXIST) this.check(rc, `clsact on ${what}`);
      this.check(this.l.attach(hook, tcOpts({ progFd, flags: BPF_TC_F_REPLACE, ...FILTER })), `attach to ${what}`);
    });
  }

  /**
   * Takes over from an earlier agent: its programs stay on our veths with its maps, frozen as they were when it
   * stopped, and a port that got a filter since would keep bypassing it. So our filter is removed from every plug
   * veth of the namespace; setPorts puts this agent's program back on the eligible ones. Meanwhile their frames take
   * the bridge, which is complete. (The VXLAN devices' rx is replaced at each bridge's first ensure.)
   */
  async adoptDevices(): Promise<number> {
    const veths = await withNetlink(this.netns, async (s) => (await listLinks(s)).filter((l) => l.kind === 'veth' && isPlugName(l.name)));
    let detached = 0;
    inNamespace(this.netns, () => {
      for (const l of veths) if (this.l.detach(tcIngressHook(l.index), tcOpts(FILTER)) === 0) detached++;
    });
    return detached;
  }

  /**
   * A bridge the datapath has set up: rx on its VXLAN device, and its remote MACs exactly `remotes`. A VXLAN device
   * re-made (another ifindex) takes the bridge's entries and ports with it; the next setPorts writes them anew.
   */
  ensureBridge(vni: number, vxIfindex: number, vxName: string, remotes: Iterable<string>): void {
    const was = this.bridges.get(vni);
    if (was && was.vxIfindex !== vxIfindex) this.removeBridge(vni);
    const entry = this.bridges.get(vni) ?? { vxIfindex, attached: false, remotes: new Set<string>() };
    if (!entry.attached) this.attach(vxIfindex, this.progs.rx, vxName);
    entry.attached = true;
    this.bridges.set(vni, entry);
    const want = new Set([...remotes].map(normalizeMac));
    this.updateRemotes(
      vni,
      [...want].filter((m) => !entry.remotes.has(m)),
      [...entry.remotes].filter((m) => !want.has(m)),
    );
  }

  /** Remote MACs that came to and went from a bridge set up before (as its tunnel FDB entries did). */
  updateRemotes(vni: number, add: string[], remove: string[]): void {
    const b = this.bridges.get(vni);
    if (!b) return;
    const one = u32(1);
    for (const m of remove.map(normalizeMac)) {
      this.l.remove(this.maps.remotes, l2key(b.vxIfindex, m));
      b.remotes.delete(m);
    }
    for (const m of add.map(normalizeMac)) {
      if (this.held.has(m)) b.remotes.add(m);
      // A full map leaves the MAC to the bridge: correct, only slower.
      else if (this.l.update(this.maps.remotes, l2key(b.vxIfindex, m), one, 0n) === 0) b.remotes.add(m);
    }
  }

  /** Hold MACs off the fast path (local ports and remote entries) until `release`; holds nest. */
  hold(macs: string[]): void {
    for (const m of macs.map(normalizeMac)) {
      const n = this.held.get(m) ?? 0;
      this.held.set(m, n + 1);
      if (n > 0) continue;
      for (const b of this.bridges.values()) if (b.remotes.has(m)) this.l.remove(this.maps.remotes, l2key(b.vxIfindex, m));
      for (const [ifname, p] of this.ports) if (p.mac === m) this.dropPort(ifname);
    }
  }

  /** Ends a hold: remote entries return now, local ports at the caller's next setPorts. */
  release(macs: string[]): void {
    const one = u32(1);
    for (const m of macs.map(normalizeMac)) {
      const n = this.held.get(m) ?? 0;
      if (n > 1) {
        this.held.set(m, n - 1);
        continue;
      }
      this.held.delete(m);
      for (const b of this.bridges.values())
        if (b.remotes.has(m) && this.l.update(this.maps.remotes, l2key(b.vxIfindex, m), one, 0n) !== 0) b.remotes.delete(m);
    }
  }

  /** A bridge going away: its remote MACs and its ports leave the maps first. */
  removeBridge(vni: number): void {
    const b = this.bridges.get(vni);
    if (!b) return;
    for (const [ifname, p] of this.ports) if (p.vxIfindex === b.vxIfindex) this.dropPort(ifname);
    for (const m of b.remotes) this.l.remove(this.maps.remotes, l2key(b.vxIfindex, m));
    this.bridges.delete(vni);
  }

  /** A port leaves the fast path (before its veth is deleted or a filter is bound to it). */
  dropPort(ifname: string): void {
    const p = this.ports.get(ifname);
    if (!p) return;
    this.l.remove(this.maps.ports, u32(p.ifindex));
    this.l.remove(this.maps.locals, l2key(p.vxIfindex, p.mac));
    this.l.remove(this.maps.counts, u32(p.ifindex));
    this.ports.delete(ifname);
  }

  /** The host-side veth went (unplug): a new device may get its ifindex, and must not inherit our filter's record. */
  forgetDevice(ifname: string): void {
    const p = this.ports.get(ifname);
    this.dropPort(ifname);
    if (p) this.txAttached.delete(p.ifindex);
  }

  /**
   * The local ports to carry: exactly `want` (those whose bridge is set up and whose veth exists unshaped). Returns
   * the interfaces left on the bridge path and why, for the log.
   */
  async setPorts(want: FastPort[]): Promise<string[]> {
    const wanted = new Map(want.map((p) => [p.ifname, p]));
    for (const ifname of [...this.ports.keys()]) if (!wanted.has(ifname)) this.dropPort(ifname);
    const todo: FastPort[] = [];
    for (const p of want) {
      if (this.held.has(normalizeMac(p.mac))) {
        if (this.ports.has(p.ifname)) this.dropPort(p.ifname);
        continue;
      }
      const json = portJson(p);
      const had = this.ports.get(p.ifname);
      if (had?.json === json && this.bridges.get(p.vni)?.vxIfindex === had.vxIfindex) continue;
      if (had) this.dropPort(p.ifname);
      if (this.bridges.has(p.vni)) todo.push(p);
    }
    if (todo.length === 0) return [];
    const skipped: string[] = [];
    const { links, shaped } = await withNetlink(this.netns, async (s) => {
      const links = todo.length > 8 ? new Map((await listLinks(s)).map((l) => [l.name, l.index])) : undefined;
      const index = new Map<string, number>();
      for (const p of todo) {
        const i = links ? links.get(p.ifname) : (await getLink(s, p.ifname))?.index;
        if (i !== undefined) index.set(p.ifname, i);
      }
      // A shaped port (tbf at its root, ingress for its egress policing) keeps the bridge path: a redirect skips both.
      const shaped = new Set((await listQdiscs(s)).filter((q) => q.kind !== 'noqueue' && q.kind !== 'clsact').map((q) => q.ifindex));
      // The bridge's own static entry for the port's MAC: its frames to remote ports no longer teach the bridge
      // where it is, and an aged-out entry would flood traffic from the router to it over every tunnel.
      for (const p of todo) {
        const i = index.get(p.ifname);
        if (i !== undefined && !shaped.has(i)) await setBridgeFdb(s, i, p.mac).catch(() => index.delete(p.ifname));
      }
      return { links: index, shaped };
    });
    for (const p of todo) {
      const ifindex = links.get(p.ifname);
      const bridge = this.bridges.get(p.vni);
      if (ifindex === undefined || !bridge) {
        skipped.push(`${p.ifname}: no such interface`);
        continue;
      }
      if (shaped.has(ifindex)) {
        skipped.push(`${p.ifname}: shaped`);
        continue;
      }
      const key = u32(ifindex);
      const mac = normalizeMac(p.mac);
      try {
        if (!this.txAttached.has(ifindex)) {
          this.attach(ifindex, this.progs.tx, p.ifname);
          this.txAttached.add(ifindex);
        }
        // Counters, then where rx delivers, then what tx may send: tx is what puts the port's frames on the path.
        this.check(this.l.update(this.maps.counts, key, Buffer.alloc(COUNTS_SIZE * this.cpus), 0n), `counters of ${p.ifname}`);
        this.check(
          this.l.update(this.maps.locals, l2key(bridge.vxIfindex, mac), localValue(ifindex, p.zone), 0n),
          `rx entry of ${p.ifname}`,
        );
        this.check(this.l.update(this.maps.ports, key, portValue(p, bridge.vxIfindex), 0n), `tx entry of ${p.ifname}`);
        this.ports.set(p.ifname, {
          ifindex,
          vxIfindex: bridge.vxIfindex,
          mac,
          json: portJson(p),
        });
      } catch (e) {
        this.l.remove(this.maps.ports, key);
        this.l.remove(this.maps.locals, l2key(bridge.vxIfindex, mac));
        this.l.remove(this.maps.counts, key);
        skipped.push(`${p.ifname}: ${(e as Error).message}`);
      }
    }
    return skipped;
  }

  /** Interfaces on the fast path now. */
  carried(): string[] {
    return [...this.ports.keys()].sort();
  }

  /** Remote MACs known per bridge (VNI → count). */
  remoteCounts(): Map<number, number> {
    return new Map([...this.bridges].map(([vni, b]) => [vni, b.remotes.size]));
  }

  /** What each carried port's frames did on the fast path, summed over CPUs. */
  portCounts(): Map<string, FastPathCounts> {
    const out = new Map<string, FastPathCounts>();
    const v = Buffer.alloc(COUNTS_SIZE * this.cpus);
    for (const [ifname, p] of this.ports) {
      if (this.l.lookup(this.maps.counts, u32(p.ifindex), v) !== 0) continue;
      const c = { txPackets: 0, txBytes: 0, rxPackets: 0, rxBytes: 0 };
      for (let i = 0; i < this.cpus; i++) {
        const o = i * COUNTS_SIZE;
        c.txPackets += Number(v.readBigUInt64LE(o));
        c.txBytes += Number(v.readBigUInt64LE(o + 8));
        c.rxPackets += Number(v.readBigUInt64LE(o + 16));
        c.rxBytes += Number(v.readBigUInt64LE(o + 24));
      }
      out.set(ifname, c);
    }
    return out;
  }

  /** Frames by outcome since the object was loaded, summed over CPUs. */
  outcomes(): Record<Outcome, number> {
    const out = Object.fromEntries(OUTCOMES.map((o) => [o, 0])) as Record<Outcome, number>;
    const v = Buffer.alloc(8 * this.cpus);
    OUTCOMES.forEach((o, i) => {
      if (this.l.lookup(this.maps.outcomes, u32(i), v) !== 0) return;
      for (let c = 0; c < this.cpus; c++) out[o] += Number(v.readBigUInt64LE(c * 8));
    });
    return out;
  }
}
