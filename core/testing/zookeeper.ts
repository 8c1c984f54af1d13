// Real ZooKeeper servers for tests and benchmarks: a standalone server or a 3-server ensemble on loopback, each in
// a temporary directory of its own, started from the Debian `zookeeper` package's jar.
//
// A JVM outlives the Node process that started it unless something kills it, so every server has a watchdog
// (`sh` reading our pipe) that kills it with SIGKILL when this process dies, however it dies.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, promises as fsp } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// slf4j-simple (Debian's libslf4j-java) gives the server a log on stderr, kept in zookeeper.log: without a
// binding ZooKeeper logs nothing, and a test that fails on a server's behaviour has no trace to read.
const SLF4J_SIMPLE = '/usr/share/java/slf4j-simple.jar';
const CLASSPATH = ['/etc/zookeeper/conf', '/usr/share/java/zookeeper.jar', ...(existsSync(SLF4J_SIMPLE) ? [SLF4J_SIMPLE] : [])].join(':');
const MAIN = 'org.apache.zookeeper.server.quorum.QuorumPeerMain';

export interface ZooKeeperOptions {
  /** Address the client port binds to; '0.0.0.0' so other network namespaces can reach it. Default 127.0.0.1. */
  clientPortAddress?: string;
  /** Client port; a free one is picked by default. */
  port?: number;
  /** ZooKeeper's tick in ms; session timeouts are bounded to [2, 20] ticks. Default 500 (sessions from 1 s). */
  tickTime?: number;
  /** JVM heap limit in MiB. Default 256. */
  heapMb?: number;
  /**
   * fsync the transaction log before acknowledging (ZooKeeper's forceSync). Default true. Tests that kill the
   * server process (not the machine) may turn it off: the page cache survives, and a busy shared disk no longer
   * stalls the server for seconds.
   */
  forceSync?: boolean;
  /** How long to wait for the server to answer. Default 60 s. */
  startTimeoutMs?: number;
}

/** A TCP port nobody listens on right now. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Sends a four-letter-word command and returns the whole answer ('' when nothing answers). */
export async function fourLetterWord(host: string, port: number, word: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const sock = net.connect({ host, port });
    const done = () => {
      sock.destroy();
      resolve(out);
    };
    sock.setTimeout(timeoutMs, done);
    sock.on('connect', () => sock.write(word));
    sock.on('data', (d) => (out += d.toString()));
    sock.on('end', done);
    sock.on('error', done);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Peer {
  id: number;
  quorumPort: number;
  electionPort: number;
}

/** One ZooKeeper server process (standalone, or a member of an ensemble). */
export class ZooKeeperServer {
  private proc: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private exited: Promise<void> | undefined;

  private constructor(
    readonly dir: string,
    readonly port: number,
    /** Where clients connect: 127.0.0.1 when the server binds 0.0.0.0. */
    readonly host: string,
    private readonly options: ZooKeeperOptions,
    private readonly ensemble?: { myid: number; peers: Peer[] },
  ) {}

  /** host:port for a client. */
  get connectString(): string {
    return `${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts a standalone server in a new temporary directory and waits until it serves. */
  static async start(options: ZooKeeperOptions = {}): Promise<ZooKeeperServer> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-zk-'));
    const bind = options.clientPortAddress ?? '127.0.0.1';
    const port = options.port ?? (await freePort(bind));
    const server = new ZooKeeperServer(dir, port, bind === '0.0.0.0' ? '127.0.0.1' : bind, options);
    try {
      await server.writeConfig();
      await server.launch();
    } catch (err) {
      await server.cleanup();
      throw err;
    }
    return server;
  }

  /** @internal used by ZooKeeperEnsemble */
  static async member(dir: string, port: number, options: ZooKeeperOptions, myid: number, peers: Peer[]): Promise<ZooKeeperServer> {
    const bind = options.clientPortAddress ?? '127.0.0.1';
    const server = new ZooKeeperServer(dir, port, bind === '0.0.0.0' ? '127.0.0.1' : bind, options, { myid, peers });
    await server.writeConfig();
    return server;
  }

  private async writeConfig(): Promise<void> {
    const data = path.join(this.dir, 'data');
    await fsp.mkdir(data, { recursive: true });
    const lines = [
      `tickTime=${this.options.tickTime ?? 500}`,
      'initLimit=20',
      'syncLimit=10',
      `dataDir=${data}`,
      `clientPort=${this.port}`,
      `clientPortAddress=${this.options.clientPortAddress ?? '127.0.0.1'}`,
      'maxClientCnxns=0',
      `forceSync=${this.options.forceSync === false ? 'no' : 'yes'}`,
      'admin.enableServer=false',
      '4lw.commands.whitelist=*',
      // Keep the disk small in long benchmarks.
      'autopurge.snapRetainCount=3',
      'autopurge.purgeInterval=1',
    ];
    if (this.ensemble) {
      for (const p of this.ensemble.peers) lines.push(`server.${p.id}=127.0.0.1:${p.quorumPort}:${p.electionPort}`);
      await fsp.writeFile(path.join(data, 'myid'), `${this.ensemble.myid}\n`);
    }
    await fsp.writeFile(path.join(this.dir, 'zoo.cfg'), lines.join('\n') + '\n');
  }

  /** Starts the JVM (same directory, same port) and, unless told otherwise, waits until it serves clients. */
  async launch(wait = true): Promise<void> {
    if (this.running) throw new Error(`ZooKeeper in ${this.dir} is already running (pid ${this.proc!.pid})`);
    const log = createWriteStream(path.join(this.dir, 'zookeeper.log'), { flags: 'a' });
    const proc = spawn(
      'java',
      [
        `-Xmx${this.options.heapMb ?? 256}m`,
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1', // faster start, enough speed for tests
        '-Dzookeeper.admin.enableServer=false',
        `-Dzookeeper.log.dir=${this.dir}`,
        '-cp',
        CLASSPATH,
        MAIN,
        path.join(this.dir, 'zoo.cfg'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout.pipe(log);
    proc.stderr.pipe(log);
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    proc.once('error', () => {}); // surfaced by waitServing timing out with the log path
    this.watchdog = spawn('sh', ['-c', `read _ ; kill -9 ${proc.pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'] });
    this.watchdog.unref();
    // The pipe's handle, not the child, keeps the loop alive: unref it too (Socket.unref; stdio is 'pipe' above).
    (this.watchdog.stdin as net.Socket | null)?.unref();
    proc.once('exit', () => this.watchdog?.kill('SIGTERM'));
    if (wait) await this.waitServing();
  }

  /** Resolves once the server answers `ruok` with `imok` and says it serves (standalone, leader or follower). */
  async waitServing(timeoutMs = this.options.startTimeoutMs ?? 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`ZooKeeper in ${this.dir} exited; see ${path.join(this.dir, 'zookeeper.log')}`);
      if ((await fourLetterWord(this.host, this.port, 'ruok')) === 'imok') {
        const srvr = await fourLetterWord(this.host, this.port, 'srvr');
        if (/Mode: (standalone|leader|follower)/.test(srvr)) return;
      }
      if (Date.now() > deadline) {
        throw new Error(`ZooKeeper on ${this.connectString} did not start in ${timeoutMs} ms; see ${path.join(this.dir, 'zookeeper.log')}`);
      }
      await sleep(100);
    }
  }

  /** Graceful stop (SIGTERM), waiting for the process to exit. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** Abrupt stop (SIGKILL), as a crash or power loss of the server would look to clients. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  private async signal(sig: NodeJS.Signals): Promise<void> {
    if (!this.running) return;
    this.proc!.kill(sig);
    const timer = setTimeout(() => this.proc?.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stop then start again on the same data directory and port. */
  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  /** Stops the server (if running) and removes its directory. */
  async cleanup(): Promise<void> {
    await this.kill();
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}

/** Three (or more) servers on loopback forming one ensemble; it keeps serving while a majority runs. */
export class ZooKeeperEnsemble {
  private constructor(
    readonly dir: string,
    readonly members: ZooKeeperServer[],
  ) {}

  /** host:port,host:port,… of every member. */
  get connectString(): string {
    return this.members.map((m) => m.connectString).join(',');
  }

  /** `clientPortAddress: '0.0.0.0'` lets other network namespaces reach the members (clients here still use loopback). */
  static async start(size = 3, options: Omit<ZooKeeperOptions, 'port'> = {}): Promise<ZooKeeperEnsemble> {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bees-zk-ensemble-'));
    const members: ZooKeeperServer[] = [];
    const ensemble = new ZooKeeperEnsemble(dir, members);
    try {
      const peers: Peer[] = [];
      const clientPorts: number[] = [];
      const taken = new Set<number>();
      const pick = async () => {
        for (;;) {
          const p = await freePort();
          if (!taken.has(p)) {
            taken.add(p);
            return p;
          }
        }
      };
      for (let id = 1; id <= size; id++) {
        peers.push({ id, quorumPort: await pick(), electionPort: await pick() });
        clientPorts.push(await pick());
      }
      for (let id = 1; id <= size; id++) {
        const mdir = path.join(dir, `server${id}`);
        await fsp.mkdir(mdir);
        members.push(await ZooKeeperServer.member(mdir, clientPorts[id - 1]!, { heapMb: 128, ...options }, id, peers));
      }
      // All start together: none can serve before a quorum has elected a leader.
      for (const m of members) await m.launch(false);
      await Promise.all(members.map((m) => m.waitServing()));
    } catch (err) {
      await ensemble.cleanup();
      throw err;
    }
    return ensemble;
  }

  /** Stops member `index` (0-based), abruptly unless `graceful`. */
  async stopMember(index: number, graceful = false): Promise<void> {
    const m = this.member(index);
    await (graceful ? m.stop() : m.kill());
  }

  /** Starts a stopped member again; it rejoins the ensemble. */
  async startMember(index: number): Promise<void> {
    await this.member(index).launch();
  }

  private member(index: number): ZooKeeperServer {
    const m = this.members[index];
    if (!m) throw new Error(`no ensemble member ${index} (size ${this.members.length})`);
    return m;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.members.map((m) => m.kill()));
    await fsp.rm(this.dir, { recursive: true, force: true });
  }
}
