// Health monitors of the L4 load balancer: TCP connect checks run on the host that owns the member's port, from a
// namespace there that reaches the member on its own bridge (the router instance's, whose leg holds the gateway
// address: chains-lb.md §3.8). HAProxy's rule: `maxRetries` consecutive failures → down, one success → up. The
// result is a status per member; withHealth() folds it into the VIPs a host applies (compile.ts leaves 'down'
// members out of rotation).
import type { HealthMonitor } from '../model/types.js';
import { inNetns, run } from '../datapath/exec.js';
import type { LbVip } from './compile.js';

export interface HealthTarget {
  memberId: string;
  address: string;
  port: number;
  /** Namespace to probe from (path), on the member's host. */
  netns: string;
}

export type Probe = (t: HealthTarget, timeoutS: number) => Promise<boolean>;

/** TCP connect with `nc -z` inside the target's namespace: true when the member accepted the connection. */
export const tcpConnectProbe: Probe = async (t, timeoutS) => {
  try {
    await run(inNetns(t.netns, ['nc', '-z', '-w', String(Math.max(1, Math.ceil(timeoutS))), t.address, String(t.port)]), {
      context: 'health check',
    });
    return true;
  } catch {
    return false;
  }
};

/** Whether an HTTP status code is among `expected` ("200", "200-399", "200,204"); default "200". */
export function codeExpected(code: number, expected = '200'): boolean {
  return expected.split(',').some((part) => {
    const [lo, hi] = part.split('-').map(Number);
    return code >= lo! && code <= (hi ?? lo!);
  });
}

/**
 * HTTP GET of `urlPath` with curl inside the target's namespace: true when the answer's status is expected. A
 * connection refused, a timeout or an unexpected code is a failure.
 */
export function httpProbe(urlPath = '/', expectedCodes = '200'): Probe {
  return async (t, timeoutS) => {
    try {
      const out = await run(
        inNetns(t.netns, [
          'curl',
          '-s',
          '-o',
          '/dev/null',
          '-w',
          '%{http_code}',
          '--max-time',
          String(Math.max(1, timeoutS)),
          // An IPv6 member's address is bracketed in a URL.
          `http://${t.address.includes(':') ? `[${t.address}]` : t.address}:${t.port}${urlPath}`,
        ]),
        { context: 'health check' },
      );
      return codeExpected(Number(out.trim()), expectedCodes);
    } catch {
      return false;
    }
  };
}

/** The probe of a monitor: TCP connect, or HTTP GET of its urlPath expecting its expectedCodes. */
export const probeOf = (m: Pick<HealthMonitor, 'type' | 'urlPath' | 'expectedCodes'>): Probe =>
  m.type === 'http' ? httpProbe(m.urlPath, m.expectedCodes) : tcpConnectProbe;

type Status = 'up' | 'down';

/**
 * Checks every target each `delay` seconds (timeout `timeout` s) and reports status changes through onChange.
 * A member starts as neither: its first verdict (one success, or maxRetries failures) is reported.
 */
export class HealthChecker {
  private targets: HealthTarget[] = [];
  private readonly failures = new Map<string, number>();
  private readonly status = new Map<string, Status>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly monitor: Pick<HealthMonitor, 'delay' | 'timeout' | 'maxRetries'>,
    private readonly onChange: (memberId: string, status: Status) => void | Promise<void>,
    private readonly probe: Probe = tcpConnectProbe,
  ) {
    if (!(monitor.delay > 0) || !(monitor.timeout > 0) || !(monitor.maxRetries >= 1)) {
      throw new Error('health monitor: delay and timeout must be > 0 and maxRetries >= 1');
    }
  }

  /** Replace the set of members checked here; forget those gone. */
  set(targets: readonly HealthTarget[]): void {
    this.targets = [...targets];
    const ids = new Set(targets.map((t) => t.memberId));
    for (const id of [...this.status.keys()])
      if (!ids.has(id)) {
        this.status.delete(id);
        this.failures.delete(id);
      }
  }

  statusOf(memberId: string): Status | undefined {
    return this.status.get(memberId);
  }

  start(): void {
    // Rounds start every `delay` s whatever a round took (a slow probe or apply must not stretch the interval that
    // "out within two intervals" counts in); a round that overruns is followed at once.
    const tick = async () => {
      const started = Date.now();
      await this.round();
      const wait = Math.max(0, this.monitor.delay * 1000 - (Date.now() - started));
      if (!this.stopped) this.timer = setTimeout(() => void tick(), wait);
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** One check of every target (all at once). */
  async round(): Promise<void> {
    await Promise.all(
      this.targets.map(async (t) => {
        const ok = await this.probe(t, this.monitor.timeout);
        if (this.stopped) return;
        const before = this.status.get(t.memberId);
        let now: Status | undefined = before;
        if (ok) {
          this.failures.set(t.memberId, 0);
          now = 'up';
        } else {
          const n = (this.failures.get(t.memberId) ?? 0) + 1;
          this.failures.set(t.memberId, n);
          if (n >= this.monitor.maxRetries) now = 'down';
        }
        if (now && now !== before) {
          this.status.set(t.memberId, now);
          await this.onChange(t.memberId, now);
        }
      }),
    );
  }
}

/** The VIPs with each member's status replaced by what the monitors say (members without a verdict unchanged). */
export function withHealth(vips: readonly LbVip[], status: (memberId: string) => Status | undefined): LbVip[] {
  return vips.map((v) => ({ ...v, members: v.members.map((m) => ({ ...m, status: status(m.id) ?? m.status })) }));
}
