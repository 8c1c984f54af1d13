// The multi-host e2e harness: N "hosts" as network namespaces on an underlay Linux bridge (in a namespace of its
// own, away from Docker's br_netfilter FORWARD policy), an "outside" namespace standing for the internet behind
// the underlay's gateway, and a veth from the root namespace into the underlay so that processes of the test
// (ZooKeeper, the API) are reachable from hosts. Every name carries a random tag, so suites can run at once;
// destroy() removes everything carrying the tag, whatever state a failed test left.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { diff, namespacesWithPrefix, snapshotNetns } from './leaks.js';
import { systemTool } from '../core/datapath/exec.js';
import { execArgv, mustExec, nsArgv, type ExecResult } from './shell.js';

export interface HarnessHost {
  /** "h1", "h2"… */
  name: string;
  index: number;
  /** Name in /run/netns and its path: the host's "root" network namespace. */
  nsName: string;
  netns: string;
  underlayIp: string;
  underlayIfname: string;
  /** Prefix for router namespaces created on this host's behalf (namespace names are machine-wide). */
  routerNsPrefix: string;
  /** A private directory for the host's agent (state, sockets, logs). */
  stateDir: string;
}

export interface HarnessOptions {
  hosts?: number;
  underlayMtu?: number;
}

/** Builds the argv of an agent for a host; the harness runs it inside the host's namespace. */
export type AgentCommand = (host: HarnessHost, harness: Harness) => string[];

export const OUTSIDE_IP = '203.0.113.1';

export class Harness {
  readonly hosts: HarnessHost[] = [];
  /** Address of the root namespace on the underlay (reach the test's own servers from hosts through it). */
  readonly rootIp: string;
  readonly underlayGateway: string;
  readonly underlaySubnet: string;
  readonly outsideIp = OUTSIDE_IP;
  readonly underlayNs: string;
  readonly outsideNs: string;
  private readonly procs = new Set<ChildProcess>();
  private readonly baselines = new Map<string, Set<string>>();
  private readonly rootLink: string;
  /** Where every host's state directory and every process log is (kept by destroy({ keepLogs: true })). */
  readonly baseDir: string;
  private destroyed = false;

  private constructor(
    readonly tag: string,
    private readonly octet: number,
    readonly underlayMtu: number,
  ) {
    this.underlaySubnet = `10.${octet}.0.0/24`;
    this.underlayGateway = `10.${octet}.0.1`;
    this.rootIp = `10.${octet}.0.254`;
    this.underlayNs = `${tag}-ul`;
    this.outsideNs = `${tag}-out`;
    this.rootLink = `${tag}r`;
    this.baseDir = mkdtempSync(join(tmpdir(), `${tag}-`));
  }

  static async create(opts: HarnessOptions = {}): Promise<Harness> {
    const n = opts.hosts ?? 3;
    if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`invalid host count ${n}`);
    const tag = `e2e${randomBytes(3).toString('hex')}`;
    const octet = await freeOctet();
    const h = new Harness(tag, octet, opts.underlayMtu ?? 1500);
    try {
      await h.build(n);
    } catch (e) {
      await h.destroy();
      throw e;
    }
    return h;
  }

  private async build(n: number): Promise<void> {
    const p = `10.${this.underlaySubnet.split('.')[1]}.0`;
    const mtu = this.underlayMtu;
    for (let i = 1; i <= n; i++) {
      const nsName = `${this.tag}-h${i}`;
      this.hosts.push({
        name: `h${i}`,
        index: i,
        nsName,
        netns: `/run/netns/${nsName}`,
        underlayIp: `${p}.${10 + i}`,
        underlayIfname: 'eth0',
        routerNsPrefix: `${this.tag}-h${i}-r-`,
        stateDir: mkdtempSync(join(this.baseDir, `h${i}-`)),
      });
    }
    const names = [this.underlayNs, this.outsideNs, ...this.hosts.map((x) => x.nsName)];
    await mustExec(['ip', '-batch', '-'], names.map((x) => `netns add ${x}`).join('\n') + '\n');
    const root = [
      `link add ${this.rootLink} mtu ${mtu} type veth peer name root0 mtu ${mtu} netns ${this.underlayNs}`,
      `link add eth0 mtu ${mtu} netns ${this.outsideNs} type veth peer name out0 mtu ${mtu} netns ${this.underlayNs}`,
      ...this.hosts.map(
        (x) => `link add eth0 mtu ${mtu} netns ${x.nsName} type veth peer name ${x.name} mtu ${mtu} netns ${this.underlayNs}`,
      ),
      `addr add ${this.rootIp}/24 dev ${this.rootLink}`,
      `link set dev ${this.rootLink} up`,
    ];
    await mustExec(['ip', '-batch', '-'], root.join('\n') + '\n');
    const ul = [
      'link set dev lo up',
      'link add ul0 type bridge mcast_snooping 0',
      `link set dev ul0 mtu ${mtu}`,
      `addr add ${this.underlayGateway}/24 dev ul0`,
      'link set dev ul0 up',
      'link set dev root0 master ul0',
      'link set dev root0 up',
      ...this.hosts.flatMap((x) => [`link set dev ${x.name} master ul0`, `link set dev ${x.name} up`]),
      'addr add 203.0.113.254/24 dev out0',
      'link set dev out0 up',
    ];
    await mustExec(
      nsArgv(`/run/netns/${this.underlayNs}`, [
        'sh',
        '-c',
        `${systemTool('sysctl')} -qw net.ipv4.ip_forward=1 && ${systemTool('ip')} -batch -`,
      ]),
      ul.join('\n') + '\n',
    );
    const out = [
      'link set dev lo up',
      `addr add ${OUTSIDE_IP}/24 dev eth0`,
      'link set dev eth0 up',
      `route add ${this.underlaySubnet} via 203.0.113.254`,
    ];
    await Promise.all([
      mustExec(['ip', '-n', this.outsideNs, '-batch', '-'], out.join('\n') + '\n'),
      ...this.hosts.map((x) =>
        mustExec(
          ['ip', '-n', x.nsName, '-batch', '-'],
          [
            'link set dev lo up',
            `addr add ${x.underlayIp}/24 dev eth0`,
            'link set dev eth0 up',
            `route add default via ${this.underlayGateway}`,
          ].join('\n') + '\n',
        ),
      ),
    ]);
    // Wait for IPv6 link-local addresses to settle, so the baseline does not count them as leaks later.
    await new Promise((r) => setTimeout(r, 50));
    for (const x of this.hosts) this.baselines.set(x.name, await snapshotNetns(x.netns));
  }

  host(name: string | number): HarnessHost {
    const h = typeof name === 'number' ? this.hosts[name - 1] : this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in harness ${this.tag}`);
    return h;
  }

  private path(target: HarnessHost | string): string {
    return typeof target === 'string' ? target : target.netns;
  }

  /** Run a command inside a host (or any namespace path) and wait for it. */
  exec(target: HarnessHost | string, argv: string[], input?: string): Promise<ExecResult> {
    return execArgv(nsArgv(this.path(target), argv), input);
  }

  /** Start a long-running process inside a host; its output goes to `<stateDir>/<logName>.log`. Killed by destroy(). */
  spawn(target: HarnessHost | string, argv: string[], opts: { logName?: string; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    const dir = typeof target === 'string' ? this.baseDir : target.stateDir;
    // The child writes its log itself (no pipes through this process): output after the test process's streams
    // are gone cannot crash it, and the log survives a crash of the test.
    const fd = openSync(join(dir, `${opts.logName ?? 'process'}.log`), 'a');
    let child: ChildProcess;
    try {
      child = spawn(nsArgv(this.path(target), argv)[0]!, nsArgv(this.path(target), argv).slice(1), {
        stdio: ['ignore', fd, fd],
        detached: true,
        env: opts.env ?? process.env,
      });
    } finally {
      closeSync(fd);
    }
    this.procs.add(child);
    child.on('exit', () => this.procs.delete(child));
    return child;
  }

  /** Start one agent per host with the command the factory builds. */
  startAgents(command: AgentCommand): ChildProcess[] {
    return this.hosts.map((h) => this.spawn(h, command(h, this), { logName: 'agent' }));
  }

  /** Create a workload namespace (conceptually on `host`) and return its path. */
  async addWorkload(host: HarnessHost, name: string): Promise<string> {
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name)) throw new Error(`invalid workload name "${name}"`);
    const ns = `${this.tag}-${host.name}-w-${name}`;
    await mustExec(['ip', 'netns', 'add', ns]);
    await mustExec(['ip', '-n', ns, 'link', 'set', 'dev', 'lo', 'up']);
    return `/run/netns/${ns}`;
  }

  async removeWorkload(netnsPath: string): Promise<void> {
    const name = netnsPath.replace(/^\/run\/netns\//, '');
    if (!name.startsWith(this.tag)) throw new Error(`${netnsPath} is not a workload of harness ${this.tag}`);
    await execArgv(['ip', 'netns', 'del', name]);
  }

  /** True when `count` echo requests from the namespace get replies. */
  async ping(from: HarnessHost | string, ip: string, opts: { count?: number; timeoutSec?: number; size?: number } = {}): Promise<boolean> {
    const argv = ['ping', '-n', '-q', '-c', String(opts.count ?? 1), '-i', '0.2', '-W', String(opts.timeoutSec ?? 2)];
    if (opts.size !== undefined) argv.push('-s', String(opts.size));
    const r = await this.exec(from, [...argv, ip]);
    return r.code === 0;
  }

  /**
   * ping, retried for up to `withinMs` (the first packets may race address/route setup, agents may still be
   * programming). The default is a hang guard, generous because CI machines are slower than this one and loaded.
   */
  async pingEventually(from: HarnessHost | string, ip: string, withinMs = 30_000): Promise<boolean> {
    const end = Date.now() + withinMs;
    do {
      if (await this.ping(from, ip, { timeoutSec: 1 })) return true;
    } while (Date.now() < end);
    return false;
  }

  /**
   * Count frames crossing the underlay bridge that match an nft expression (bridge family), e.g.
   * `udp dport 6677 ip saddr 10.1.0.11`. Returns a reader of the packet count.
   */
  async underlayCounter(match: string): Promise<() => Promise<number>> {
    const id = `c${randomBytes(3).toString('hex')}`;
    const script =
      [
        'add table bridge e2e',
        'add chain bridge e2e watch { type filter hook forward priority 0; policy accept; }',
        `add counter bridge e2e ${id}`,
        `add rule bridge e2e watch ${match} counter name ${id}`,
      ].join('\n') + '\n';
    await mustExec(nsArgv(`/run/netns/${this.underlayNs}`, ['nft', '-f', '-']), script);
    return async () => {
      const out = await mustExec(nsArgv(`/run/netns/${this.underlayNs}`, ['nft', '-j', 'list', 'counter', 'bridge', 'e2e', id]));
      const j = JSON.parse(out) as { nftables: { counter?: { packets: number } }[] };
      return j.nftables.find((x) => x.counter)?.counter?.packets ?? 0;
    };
  }

  /** What a host has now that it did not have when the harness built it: links, addresses, routes, neighbours, FDB, nft tables, router namespaces. */
  async leaks(host: HarnessHost): Promise<string[]> {
    const base = this.baselines.get(host.name);
    if (!base) throw new Error(`no baseline for ${host.name}`);
    const now = await snapshotNetns(host.netns);
    return [...diff(base, now), ...namespacesWithPrefix(host.routerNsPrefix).map((n) => `namespace ${n}`)];
  }

  /** Leaks of every host, keyed by host name; empty object when clean. */
  async allLeaks(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const h of this.hosts) {
      const l = await this.leaks(h);
      if (l.length) out[h.name] = l;
    }
    return out;
  }

  /**
   * Kill every process, delete every namespace and link carrying the tag. Safe to call twice. With `keepLogs` the
   * state directories stay (in baseDir) with the processes' logs, for a failure message that points to them.
   */
  async destroy(opts: { keepLogs?: boolean } = {}): Promise<void> {
    this.destroyed = true;
    const procs = [...this.procs];
    for (const p of procs) killGroup(p, 'SIGTERM');
    await Promise.race([
      Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r))))),
      new Promise((r) => setTimeout(r, 3000)),
    ]);
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) killGroup(p, 'SIGKILL');
    const namespaces = namespacesWithPrefix(this.tag);
    if (namespaces.length) await execArgv(['ip', '-force', '-batch', '-'], namespaces.map((n) => `netns del ${n}`).join('\n') + '\n');
    await execArgv(['ip', 'link', 'del', this.rootLink]);
    releaseOctet(this.octet);
    if (!opts.keepLogs) rmSync(this.baseDir, { recursive: true, force: true });
  }

  /** After destroy(): whatever carrying the tag is still on the machine (namespaces, root links). */
  async remains(): Promise<string[]> {
    const links = await execArgv(['ip', '-j', 'link', 'show']);
    const names = (JSON.parse(links.stdout || '[]') as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith(this.tag));
    return [...namespacesWithPrefix(this.tag).map((n) => `namespace ${n}`), ...names.map((n) => `link ${n}`)];
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }
}

function killGroup(p: ChildProcess, sig: NodeJS.Signals): void {
  try {
    if (p.pid) process.kill(-p.pid, sig);
  } catch {
    try {
      p.kill(sig);
    } catch {
      /* already gone */
    }
  }
}

/**
 * Underlay octets in use, one file per octet holding the pid of the process whose harness has it. Harnesses of
 * several processes (the suite's two lanes, a benchmark beside a test) are made at the same moment: the route check
 * alone let two of them pick one subnet between one's check and its route, and the loser's hosts then reached the
 * other's ZooKeeper, or none. Creating the file (O_EXCL) is the reservation; a file whose process is gone is stale.
 */
const OCTET_DIR = '/run/bees-testbed/underlay-octets';

function reserveOctet(o: number): boolean {
  const file = join(OCTET_DIR, String(o));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = Number(readFileSync(file, 'utf8').trim());
    if (owner === process.pid || pidAlive(owner)) return false;
    rmSync(file, { force: true }); // stale: its process died without destroying its harness
  }
  return false;
}

function releaseOctet(o: number): void {
  rmSync(join(OCTET_DIR, String(o)), { force: true });
}

function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A second octet for 10.X.0.0/24 that no route of the root namespace covers and no other harness reserved. */
async function freeOctet(): Promise<number> {
  mkdirSync(OCTET_DIR, { recursive: true });
  const r = await execArgv(['ip', '-j', 'route', 'show']);
  const used = new Set((JSON.parse(r.stdout || '[]') as { dst: string }[]).map((x) => x.dst));
  for (let i = 0; i < 100; i++) {
    const o = 100 + Math.floor(Math.random() * 150);
    if ([...used].some((d) => d.startsWith(`10.${o}.`) || d === '10.0.0.0/8')) continue;
    if (reserveOctet(o)) return o;
  }
  throw new Error('no free 10.X.0.0/24 underlay subnet in the root namespace');
}
