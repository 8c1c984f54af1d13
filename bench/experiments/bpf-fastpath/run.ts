// Experiment, not run by CI (README.md beside): what a tc-BPF fast path that bypasses the Linux bridge for ports
// without filters would give the overlay. Starts the overlay bench's two-host cluster (real agents, real ZooKeeper),
// loads fastpath.bpf.c on both hosts (workload veth ingress: tx, VXLAN device ingress: rx), fills its maps by hand
// from the attach results, checks what still works with it on, then measures single-stream iperf3 overlay vs
// underlay with the fast path on and off in alternating rounds, and removes everything it added.
//   node --import tsx bench/experiments/bpf-fastpath/run.ts [rounds=6] [seconds=4] [underlay MTU=1500]
//   (FASTPATH_CFLAGS=-DRX_VIA_VETH: rx leaves through the host end of the veth instead of bpf_redirect_peer)
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startCluster, type Cluster, type ClusterHost, type Workload } from '../../../testbed/cluster.js';
import { iperfRun, rxCounters, type IperfRun } from '../../overlay.js';
import { median, pairedRatio, roundsSpread } from '../../report.js';

const here = dirname(fileURLToPath(import.meta.url));
const [rounds = 6, seconds = 4, mtu = 1500] = process.argv.slice(2).map(Number);
const COUNTERS = ['tx_redirect', 'tx_pass', 'tx_spoof', 'rx_redirect', 'rx_pass'] as const;

/** Little-endian u32 / raw bytes as the hex words bpftool takes. */
const u32le = (n: number): string[] => [0, 8, 16, 24].map((s) => ((n >>> s) & 0xff).toString(16).padStart(2, '0'));
const macBytes = (mac: string): string[] => mac.toLowerCase().split(':');
const ip4Bytes = (ip: string): string[] => ip.split('.').map((x) => Number(x).toString(16).padStart(2, '0'));
function ip6Bytes(ip: string): string[] {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t] : h;
  return groups.flatMap((g) => {
    const v = g.padStart(4, '0');
    return [v.slice(0, 2), v.slice(2)];
  });
}
const l2key = (vx: number, mac: string): string[] => [...u32le(vx), ...macBytes(mac), '00', '00'];

interface HostSide {
  h: ClusterHost;
  w: Workload;
  veth: string;
  vethIndex: number;
  vx: string;
  vxIndex: number;
  dir: string;
}

class Experiment {
  private readonly bpffs = mkdtempSync(join(tmpdir(), 'bees-bpfexp-'));
  private mounted = false;
  private readonly sides: HostSide[] = [];
  private enabled = false;
  constructor(
    private readonly c: Cluster,
    private readonly obj: string,
  ) {}

  private async sh(netns: string, argv: string[]): Promise<string> {
    const r = await this.c.harness.exec(netns, argv);
    if (r.code !== 0) throw new Error(`${argv.join(' ')} in ${netns}: ${r.stderr.trim() || `exit ${r.code}`}`);
    return r.stdout;
  }

  private async link(netns: string, args: string[]): Promise<{ ifname: string; ifindex: number }[]> {
    return JSON.parse(await this.sh(netns, ['ip', '-j', 'link', 'show', ...args])) as { ifname: string; ifindex: number }[];
  }

  /** A bpffs of our own (the machine's /sys/fs/bpf is not mounted, and nothing else sees this one). */
  mount(): void {
    execFileSync('mount', ['-t', 'bpf', 'bpf', this.bpffs]);
    this.mounted = true;
  }

  /** Load the programs for one host (maps of its own, pinned under the host's name) and fill its maps. */
  async prepare(h: ClusterHost, w: Workload, remote: Workload): Promise<void> {
    const netns = h.host.netns;
    const [vx] = await this.link(netns, ['type', 'vxlan']);
    const [veth] = await this.link(netns, ['dev', w.result.hostInterface.name]);
    if (!vx || !veth) throw new Error(`no VXLAN device or veth on ${h.host.name}`);
    for (const dev of [vx.ifname, veth.ifname]) {
      const q = await this.sh(netns, ['tc', 'qdisc', 'show', 'dev', dev]);
      if (q.includes('clsact') || q.includes('ingress')) throw new Error(`${dev} on ${h.host.name} already has ${q.trim()}`);
    }
    const dir = join(this.bpffs, h.host.name);
    mkdirSync(dir);
    execFileSync('bpftool', ['prog', 'loadall', this.obj, join(dir, 'progs'), 'pinmaps', join(dir, 'maps'), 'type', 'classifier']);
    const side: HostSide = { h, w, veth: veth.ifname, vethIndex: veth.ifindex, vx: vx.ifname, vxIndex: vx.ifindex, dir };
    this.sides.push(side);
    const update = (map: string, key: string[], value: string[]) =>
      execFileSync('bpftool', ['map', 'update', 'pinned', join(dir, 'maps', map), 'key', 'hex', ...key, 'value', 'hex', ...value]);
    // struct port: mac[6], has_ip6 (u16), ip4, ip6[16], vx_ifindex
    const ip6 = w.ip6 ? ip6Bytes(w.ip6) : Array<string>(16).fill('00');
    const port = [
      ...macBytes(w.result.interface.mac),
      w.ip6 ? '01' : '00',
      '00',
      ...(w.ip4 ? ip4Bytes(w.ip4) : ['00', '00', '00', '00']),
      ...ip6,
      ...u32le(vx.ifindex),
    ];
    update('fp_ports', u32le(veth.ifindex), port);
    update('fp_locals', l2key(vx.ifindex, w.result.interface.mac), u32le(veth.ifindex));
    update('fp_remotes', l2key(vx.ifindex, remote.result.interface.mac), u32le(1));
  }

  async enable(): Promise<void> {
    for (const s of this.sides) {
      const netns = s.h.host.netns;
      for (const [dev, prog] of [
        [s.veth, 'tx'],
        [s.vx, 'rx'],
      ] as const) {
        await this.sh(netns, ['tc', 'qdisc', 'add', 'dev', dev, 'clsact']);
        await this.sh(netns, ['tc', 'filter', 'add', 'dev', dev, 'ingress', 'bpf', 'da', 'pinned', join(s.dir, 'progs', prog)]);
      }
    }
    this.enabled = true;
  }

  /** Back to today's datapath: the qdiscs go, and their filters with them. */
  async disable(): Promise<void> {
    for (const s of this.sides)
      for (const dev of [s.veth, s.vx]) await this.c.harness.exec(s.h.host.netns, ['tc', 'qdisc', 'del', 'dev', dev, 'clsact']);
    this.enabled = false;
  }

  /** The counters of every host, summed over CPUs. */
  stats(): Record<string, number>[] {
    return this.sides.map((s) => {
      const out = JSON.parse(
        execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(s.dir, 'maps', 'fp_stats')], { encoding: 'utf8' }),
      ) as { formatted: { key: number; values: { value: number }[] } }[]; // bpftool's BTF-decoded form
      const r: Record<string, number> = { host: s.h.host.index };
      for (const { formatted: e } of out) r[COUNTERS[e.key] ?? `c${e.key}`] = e.values.reduce((a, v) => a + v.value, 0);
      return r;
    });
  }

  get on(): boolean {
    return this.enabled;
  }

  /** Filters, qdiscs, pinned programs and maps, the bpffs mount: nothing stays. */
  async cleanup(): Promise<void> {
    await this.disable().catch(() => undefined);
    if (this.mounted) {
      for (const s of this.sides) rmSync(s.dir, { recursive: true, force: true });
      execFileSync('umount', [this.bpffs]);
    }
    rmSync(this.bpffs, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const obj = join(mkdtempSync(join(tmpdir(), 'bees-bpfexp-obj-')), 'fastpath.bpf.o');
  execFileSync('clang', [
    '-O2',
    '-g',
    '-Wall',
    '-target',
    'bpf',
    '-I/usr/include/x86_64-linux-gnu',
    ...(process.env.FASTPATH_CFLAGS ?? '').split(' ').filter(Boolean),
    '-c',
    join(here, 'fastpath.bpf.c'),
    '-o',
    obj,
  ]);
  const c = await startCluster({ hosts: 2, underlayMtu: mtu });
  const x = new Experiment(c, obj);
  try {
    const [h1, h2] = c.hosts as [ClusterHost, ClusterHost];
    const subnets = [{ cidr: '10.88.0.0/24' }, { cidr: 'fd00:88::/64' }];
    const w1 = await c.attach(h1, 'tp1', { network: 'tp', create: { subnets } });
    const w2 = await c.attach(h2, 'tp2', { network: 'tp' });
    if (!(await c.pingEventually(w1.netns, w2.ip4!))) throw new Error('workloads do not reach each other');
    if (w2.ip6 && !(await c.pingEventually(w1.netns, w2.ip6))) throw new Error('workloads do not reach each other over IPv6');
    const gw = w1.result.ips.find((i) => i.family === 4)?.gateway;
    x.mount();
    await x.prepare(h1, w1, w2);
    await x.prepare(h2, w2, w1);

    // What still works, with the fast path off (today's datapath) and on.
    const ping = async (from: Workload, to: string, extra: string[] = []) =>
      (await c.harness.exec(from.netns, ['ping', '-n', '-q', '-c', '3', '-i', '0.2', '-W', '1', ...extra, to])).code === 0;
    const checks = async (): Promise<Record<string, boolean>> => {
      const r: Record<string, boolean> = {};
      r['ping w1→w2 IPv4'] = await ping(w1, w2.ip4!);
      if (w2.ip6) r['ping w1→w2 IPv6'] = await ping(w1, w2.ip6);
      if (gw) r['ping w1→gateway'] = await ping(w1, gw);
      r['ping w1→host h1 (routed)'] = await ping(w1, h1.host.underlayIp);
      // Neighbour entries relearnt: ARP and ND go through the bridge.
      await c.harness.exec(w1.netns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
      await c.harness.exec(w2.netns, ['ip', 'neigh', 'flush', 'dev', 'eth0']);
      r['ping w1→w2 IPv4 after neighbour flush (ARP)'] = await ping(w1, w2.ip4!);
      if (w2.ip6) r['ping w1→w2 IPv6 after neighbour flush (ND)'] = await ping(w1, w2.ip6);
      const spoofed = '10.88.0.250';
      await c.harness.exec(w1.netns, ['ip', 'addr', 'add', `${spoofed}/32`, 'dev', 'eth0']);
      r['spoofed source IPv4 gets no reply (port security holds)'] = !(await ping(w1, w2.ip4!, ['-I', spoofed]));
      await c.harness.exec(w1.netns, ['ip', 'addr', 'del', `${spoofed}/32`, 'dev', 'eth0']);
      return r;
    };
    console.log('checks, fast path off:', await checks());
    await x.enable();
    const before = x.stats();
    console.log('checks, fast path on:', await checks());
    console.log('counters before the checks:', before, 'after:', x.stats());
    await x.disable();

    await c.iperfServer(w2.netns);
    await c.iperfServer(h2.host.netns);
    type Mode = 'fast' | 'bridge';
    const runs: Record<Mode, { overlay: IperfRun[]; underlay: IperfRun[]; bpp: number[] }> = {
      fast: { overlay: [], underlay: [], bpp: [] },
      bridge: { overlay: [], underlay: [], bpp: [] },
    };
    for (let r = 0; r < rounds; r++) {
      // The mode going first alternates, and within a mode the side going first alternates too.
      const modes: Mode[] = r % 2 === 0 ? ['fast', 'bridge'] : ['bridge', 'fast'];
      for (const [i, mode] of modes.entries()) {
        if (mode === 'fast' && !x.on) await x.enable();
        if (mode === 'bridge' && x.on) await x.disable();
        const overlay = async () => {
          const b = await rxCounters(c, w2.netns, 'eth0');
          const run = await iperfRun(c, w1.netns, w2.ip4!, seconds);
          const a = await rxCounters(c, w2.netns, 'eth0');
          runs[mode].bpp.push((a.bytes - b.bytes) / Math.max(1, a.packets - b.packets));
          runs[mode].overlay.push(run);
        };
        const underlay = async () => runs[mode].underlay.push(await iperfRun(c, h1.host.netns, h2.host.underlayIp, seconds));
        if ((r + i) % 2 === 0) {
          await overlay();
          await underlay();
        } else {
          await underlay();
          await overlay();
        }
        const o = runs[mode].overlay.at(-1)!;
        const u = runs[mode].underlay.at(-1)!;
        console.log(
          `round ${r + 1} ${mode}: overlay ${o.gbps.toFixed(2)} Gbit/s ${o.nsPerByte.toFixed(3)} ns/B, underlay ${u.gbps.toFixed(2)} Gbit/s ` +
            `${u.nsPerByte.toFixed(3)} ns/B, ratio ${(o.gbps / u.gbps).toFixed(2)}`,
        );
      }
    }
    const counters = x.stats();
    await x.disable();
    const load = execFileSync('cat', ['/proc/loadavg'], { encoding: 'utf8' }).trim();
    const gbps = (r: IperfRun) => r.gbps;
    const cost = (r: IperfRun) => r.nsPerByte;
    const paired = (a: IperfRun[], b: IperfRun[], pick: (r: IperfRun) => number) => pairedRatio(a.map(pick), b.map(pick));
    const summary = (mode: Mode) => {
      const m = runs[mode];
      return {
        overlayGbps: roundsSpread(m.overlay.map(gbps), 2),
        underlayGbps: roundsSpread(m.underlay.map(gbps), 2),
        gbpsRatio: paired(m.overlay, m.underlay, gbps),
        overlayNsPerByte: roundsSpread(m.overlay.map(cost), 3),
        underlayNsPerByte: roundsSpread(m.underlay.map(cost), 3),
        cpuRatio: paired(m.overlay, m.underlay, cost),
        bytesPerPacket: Math.round(median(m.bpp)),
      };
    };
    const fastVsBridge = paired(runs.fast.overlay, runs.bridge.overlay, gbps);
    const cpuFastVsBridge = paired(runs.fast.overlay, runs.bridge.overlay, cost);
    console.log(
      JSON.stringify(
        {
          mtu,
          rounds,
          seconds,
          loadAtEnd: load,
          fast: summary('fast'),
          bridge: summary('bridge'),
          overlayFastOverBridge: fastVsBridge,
          overlayCpuFastOverBridge: cpuFastVsBridge,
          counters,
        },
        null,
        2,
      ),
    );
  } finally {
    await x.cleanup().catch((e: unknown) => console.error('cleanup:', e));
    await c.close();
    rmSync(dirname(obj), { recursive: true, force: true });
  }
}

await main();
