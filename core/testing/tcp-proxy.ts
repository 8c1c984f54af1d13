// A TCP relay a test can break in the ways real networks and servers break, while the server behind it keeps
// running: cut (connections reset, new ones refused, as a failed link or a firewall reject) and stall
// (connections stay open but nothing flows, as a hung server or a path that black-holes packets).
import net from 'node:net';

type Mode = 'relay' | 'hold';

export class TcpProxy {
  private server: net.Server | undefined;
  private mode: Mode = 'relay';
  /** Every open client socket, with its upstream once relayed. */
  private readonly conns = new Map<net.Socket, net.Socket | undefined>();

  private constructor(
    private readonly target: { host: string; port: number },
    readonly port: number,
    private readonly host: string,
  ) {}

  /** Listens on an ephemeral port of `host` (loopback by default) and relays every connection to target. */
  static async start(target: { host: string; port: number }, host = '127.0.0.1'): Promise<TcpProxy> {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, host, resolve));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const proxy = new TcpProxy(target, port, host);
    await proxy.restore();
    return proxy;
  }

  get address(): string {
    return `${this.host}:${this.port}`;
  }

  private accept(client: net.Socket): void {
    this.conns.set(client, undefined);
    const drop = () => {
      const upstream = this.conns.get(client);
      client.destroy();
      upstream?.destroy();
      this.conns.delete(client);
    };
    client.on('error', drop).on('close', drop);
    if (this.mode === 'hold') return; // accepted, never answered
    const upstream = net.connect(this.target);
    this.conns.set(client, upstream);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  }

  /** New connections are relayed again (on the same port) after cut() or stall(); stalled ones stay stalled. */
  async restore(): Promise<void> {
    this.mode = 'relay';
    if (this.server) return;
    const server = net.createServer((c) => this.accept(c));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, this.host, () => resolve());
    });
    this.server = server;
  }

  /** Open connections go silent both ways; new ones are accepted and never answered. */
  stall(): void {
    this.mode = 'hold';
    for (const [client, upstream] of this.conns) {
      if (!upstream) continue;
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.pause();
      upstream.pause();
    }
  }

  /** Resets every connection and refuses new ones until restore(). */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const [client, upstream] of this.conns) {
      client.destroy();
      upstream?.destroy();
    }
    this.conns.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.cut();
  }
}
