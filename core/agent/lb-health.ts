// The load balancer's health monitors on this host (chains-lb.md §3.8): every member whose port is bound here is
// checked here (from the router's namespace on this host, which holds the gateway address on the member's bridge),
// and this agent alone writes that member's PoolMember.status. A status is written when the verdict changes and
// differs from the store's (HealthChecker reports changes only: maxRetries failures → down, one success → up), so
// a flapping probe never turns into a stream of writes faster than one per verdict. Every host's reconciler then
// sees the status through its cache and takes the member out of rotation, or back in.
import { HealthChecker, probeOf, type Probe } from '../lb/health.js';
import type { HealthMonitor } from '../model/types.js';
import type { Topology } from '../topology/service.js';
import type { HealthTarget } from './plan-lb.js';

interface Running {
  key: string;
  checker: HealthChecker;
  /** The members this checker probes (for verdicts()). */
  members: string[];
}

export class LbHealth {
  private readonly running = new Map<string, Running>();
  /** Last status written (or found in the store) per member, so a write is not repeated. */
  private readonly written = new Map<string, 'up' | 'down'>();
  private stopped = false;
  /** Status writes done (tests, diagnostics). */
  writes = 0;

  constructor(
    private readonly topology: Topology,
    private readonly netnsOf: (routerId: string) => string,
    private readonly log: (msg: string) => void,
    /** The probe of a monitor (tests give their own; the agent's are TCP connect and HTTP GET). */
    private readonly probeFor: (m: HealthMonitor) => Probe = probeOf,
  ) {}

  /** Follow the targets of the current plan: one checker per monitor, restarted when its settings change. */
  update(targets: readonly HealthTarget[]): void {
    if (this.stopped) return;
    const byMonitor = new Map<string, HealthTarget[]>();
    for (const t of targets) {
      const list = byMonitor.get(t.monitor.id) ?? [];
      list.push(t);
      byMonitor.set(t.monitor.id, list);
    }
    for (const [id, r] of this.running) {
      if (!byMonitor.has(id)) {
        r.checker.stop();
        this.running.delete(id);
      }
    }
    for (const [id, list] of byMonitor) {
      const m = list[0]!.monitor;
      const key = JSON.stringify([m.type, m.delay, m.timeout, m.maxRetries, m.urlPath, m.expectedCodes]);
      let r = this.running.get(id);
      if (r && r.key !== key) {
        r.checker.stop();
        r = undefined;
      }
      if (!r) {
        r = { key, checker: new HealthChecker(m, (member, status) => this.write(member, status), this.probeFor(m)), members: [] };
        this.running.set(id, r);
        r.checker.set(this.targetsOf(list));
        r.checker.start();
      } else r.checker.set(this.targetsOf(list));
      r.members = list.map((t) => t.memberId);
    }
    const checked = new Set(targets.map((t) => t.memberId));
    for (const id of [...this.written.keys()]) if (!checked.has(id)) this.written.delete(id);
  }

  /** The current verdict of every member checked here that has one (metrics: bees_lb_member_healthy). */
  verdicts(): { memberId: string; status: 'up' | 'down' }[] {
    const out: { memberId: string; status: 'up' | 'down' }[] = [];
    for (const r of this.running.values())
      for (const memberId of r.members) {
        const status = r.checker.statusOf(memberId);
        if (status) out.push({ memberId, status });
      }
    return out;
  }

  private targetsOf(list: readonly HealthTarget[]) {
    return list.map((t) => ({ memberId: t.memberId, address: t.address, port: t.port, netns: this.netnsOf(t.routerId) }));
  }

  private async write(memberId: string, status: 'up' | 'down'): Promise<void> {
    if (this.written.get(memberId) === status) return;
    try {
      const cur = await this.topology.get('PoolMember', memberId);
      if (cur.status !== status) {
        await this.topology.update('PoolMember', memberId, { status });
        this.writes++;
        this.log(`health: member ${memberId} (${cur.address}:${cur.port}) is ${status}`);
      }
      this.written.set(memberId, status);
    } catch (e) {
      // The store is away or the member was deleted: the next change of verdict (or this one, retried) writes.
      this.log(`health: could not write the status of member ${memberId}: ${(e as Error).message}`);
      if (!this.stopped) setTimeout(() => void this.retry(memberId, status), 1000).unref();
    }
  }

  private async retry(memberId: string, status: 'up' | 'down'): Promise<void> {
    for (const r of this.running.values()) if (r.checker.statusOf(memberId) === status) return this.write(memberId, status);
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.running.values()) r.checker.stop();
    this.running.clear();
  }
}
