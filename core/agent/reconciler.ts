// Level-triggered reconciliation: plan what this host's kernel must hold from the cached topology (plan.ts: virtual
// bridges with their remote ports, router instances with their legs and neighbours) and converge the datapath to
// it. Runs after every relevant change (coalesced) and periodically; converging healthy state changes nothing, so
// a restarted agent picks up where the old one left without disturbing traffic.
import { performance } from 'node:perf_hooks';
import type { Bridge, Port } from '../model/types.js';
import type { Datapath, DesiredBridge, DesiredRouter, PlugResult, PlugSpec } from '../datapath/types.js';
import { SharedExclusiveLock } from './locks.js';
import { KeyedMutex } from '../util/keyed-mutex.js';
import {
  bridgeDelta,
  emptyChange,
  keysOf,
  filtersDelta,
  neighbourDelta,
  planHost,
  planPolicy,
  policyDelta,
  type HostPlan,
  type HostPolicy,
  type Pin,
  type TopologyView,
} from './plan.js';
import { TopologyError } from '../topology/errors.js';
import { traceLine, type Trace } from './trace.js';
import { planLb, type HostLb } from './plan-lb.js';
import { planFastPath } from './plan-fastpath.js';
import type { DropLog } from '../policy/compile.js';

export { bareIp, tunnelIpOf, type HostPlan } from './plan.js';

/**
 * Kinds whose changes reach only this host's policy and load balancer: they take the fast lane (runFast), which
 * plans and converges those two alone, beside whatever main pass is under way, instead of a whole pass planning and
 * comparing every bridge and router (and waiting behind a resync's kernel re-reads, seconds on a loaded host).
 * Chains, rules and address groups also compile into routers' filters: with a router with filters planned here
 * their changes take the main lane as well.
 */
const POLICY_KINDS = new Set(['Chain', 'Rule', 'PortGroup', 'IpAddrGroup']);
const LB_KINDS = new Set(['LoadBalancer', 'Pool', 'PoolMember', 'Vip', 'HealthMonitor']);

export class Reconciler {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Errors of the last pass, for `status`. */
  lastError: string | undefined;
  passes = 0;
  private readonly lock = new SharedExclusiveLock();
  private readonly keyed = new KeyedMutex();
  /** Ports being plugged whose creation the cache has not seen yet: their bridge and veth are desired anyway. */
  private readonly pins = new Map<string, Pin>();
  /** Bumped whenever a plug adds or drops a pin: a plan made before is stale for policy (see ensurePolicy). */
  private pinGen = 0;
  /** The pin generation each plan was made at. */
  private readonly planGen = new WeakMap<HostPlan, number>();
  /**
   * What was last converged, per bridge and router, as JSON: a pass skips objects whose desired state has not
   * changed since, so a pass after one port's change costs one kernel update, not one per object. A forced pass
   * (the periodic resync) ignores it and re-reads the kernel, repairing anything changed behind our back.
   */
  private readonly applied = new Map<string, string>();
  /**
   * Bridges and routers converged at least once and not swept since: an attach need not wait for a pass that is
   * updating one of them (a router's neighbours), only for one that does not exist yet.
   */
  private readonly made = new Set<string>();
  /** Bridges and routers present after the last sweep; undefined until the first one. */
  private swept: Set<string> | undefined;
  private sweepDue = true;
  /** The policy (chains, sets, bindings, zones) last applied; undefined: unknown, the next apply writes it whole. */
  private policy: HostPolicy | undefined;
  /**
   * Bridges and routers of the plan, by key, with when the plan last held them: one whose last local port just
   * left lingers (see LINGER_MS) while its network still exists, so the next workload does not rebuild it.
   */
  private readonly wanted = new Map<string, { at: number; bridgeId?: string; vni?: number; routerId?: string }>();
  private lingerTimer: NodeJS.Timeout | undefined;
  /**
   * A failed pass is retried on its own, sooner than the periodic resync: 0.5 s doubling to 30 s, back to 0.5 s
   * after a clean pass. Without it a transient kernel error (a busy namespace, a killed `nft`) left a router or
   * bridge in place until the next resync or the next topology change.
   */
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  /** The load balancer spec last applied (JSON); undefined: unknown, the next apply re-reads the kernel. */
  private lbApplied: string | undefined;
  /** Told the load balancer plan of every pass (the agent's health monitors follow its targets). */
  onLbPlan: ((lb: HostLb) => void) | undefined;
  /** Log new connections accepted by rules (the agent's `--flow-log`); set before the first pass. */
  acceptLog: DropLog | undefined;
  /** The fast lane (see POLICY_KINDS): its pass under way, whether another is due, its debounce timer. */
  private fastRunning: Promise<boolean> | undefined;
  private fastAgain = false;
  private fastTimer: NodeJS.Timeout | undefined;
  /** A change only the main lane applies was noted since the last main pass began (the fast lane cannot claim it). */
  private mainDirty = true;
  /** Some router planned here has filters (its chains follow Chain/Rule/IpAddrGroup changes too). */
  private routerFilters = false;
  /** The next fast-lane pass also applies bridge and router deltas (a port changed). */
  private fastTopology = false;
  /** Fast-lane passes run (tests and diagnostics). */
  fastPasses = 0;

  constructor(
    private readonly hostId: string,
    private readonly cache: TopologyView,
    private readonly datapath: Datapath,
    readonly underlayMtu: number,
    private readonly log: (msg: string, level?: 'info' | 'warn' | 'error') => void = () => undefined,
  ) {}

  /** The desired state of this host from the cache (see plan.ts); forgets the pins the cache has caught up with. */
  plan(): HostPlan {
    for (const portId of [...this.pins.keys()]) {
      if (this.cache.get('Port', portId)?.hostId === this.hostId) this.pins.delete(portId);
    }
    const plan = planHost(this.cache, { hostId: this.hostId, underlayMtu: this.underlayMtu, pins: this.pins.values() });
    this.planGen.set(plan, this.pinGen);
    return plan;
  }

  /**
   * A change of `kind` reached the cache (undefined: a relist, anything may have changed): policy and load balancer
   * objects go through the fast lane, everything else (and any change a router's filters may read) through a main
   * pass.
   */
  changed(kind: string | undefined): void {
    if (this.stopped) return;
    const fast = kind !== undefined && (LB_KINDS.has(kind) || (POLICY_KINDS.has(kind) && !this.routerFilters));
    if (fast) return this.triggerFast();
    this.trigger();
    // A port elsewhere came, went or moved: its bridges' remote entries and routers' neighbours change by a delta,
    // applied at once by the fast lane even while a main pass (a resync re-reading the kernel) is under way; the
    // main pass then finds them converged.
    if (kind === 'Port') {
      this.fastTopology = true;
      this.triggerFast();
    }
  }

  /** Ask for a fast-lane pass soon (see runFast); requests during one coalesce into one more. */
  private triggerFast(delayMs = 20): void {
    if (this.stopped || this.fastTimer) return;
    this.fastTimer = setTimeout(() => {
      this.fastTimer = undefined;
      void this.runFast();
    }, delayMs);
  }

  /**
   * One fast-lane pass: this host's policy and load balancer planned from the cache now and converged, beside a main
   * pass if one is under way (their own locks keep the two apart per object, as for plugs). Resolves true when it
   * covered every change noted before it began (no main-lane change was pending), so the caller may count the
   * cache's sequence as applied.
   */
  async runFast(): Promise<boolean> {
    if (this.fastRunning) {
      this.fastAgain = true;
      return this.fastRunning.then(() => false);
    }
    this.fastRunning = (async () => {
      let covered = false;
      do {
        this.fastAgain = false;
        covered = !this.mainDirty && !this.running;
        const errors: string[] = [];
        const topology = this.fastTopology;
        this.fastTopology = false;
        await this.lock.runShared(async () => {
          const plan = this.plan();
          if (topology) {
            for (const b of plan.bridges.values())
              await this.ensureBridge(b, true).catch((e: Error) => errors.push(`bridge vni ${b.vni}: ${e.message}`));
            for (const r of plan.routers.values())
              await this.ensureRouter(r, true).catch((e: Error) => errors.push(`router ${r.id}: ${e.message}`));
          }
          await this.ensurePolicy(plan).catch((e: Error) => errors.push(`policy: ${e.message}`));
          await this.ensureLb(plan).catch((e: Error) => errors.push(`load balancer: ${e.message}`));
        });
        this.fastPasses++;
        if (errors.length) {
          // The main lane owns retries and lastError: a failed fast pass hands its work to a main pass.
          this.log(`reconcile: ${errors.join('; ')}`, 'error');
          this.trigger(0);
          covered = false;
        }
      } while (this.fastAgain && !this.stopped);
      // Not covered: a main pass must follow whose start (and so the sequence it claims) is after these changes.
      if (!covered) this.trigger();
      return covered;
    })().finally(() => {
      this.fastRunning = undefined;
    });
    return this.fastRunning;
  }

  /** Ask for a pass soon; passes never overlap and requests during a pass coalesce into one more pass. */
  trigger(delayMs = 20, force = false): void {
    if (this.stopped) return;
    this.mainDirty = true;
    if (force) {
      this.applied.clear();
      this.policy = undefined;
      this.lbApplied = undefined;
      this.sweepDue = true;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.runOnce();
    }, delayMs);
  }

  /** One converge pass; resolves when this host matches the topology as cached now. */
  async runOnce(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.converge();
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /**
   * Creating and updating run beside attaches (per-object locks keep two writers of one object apart); removal
   * runs alone, and only when the plan lost a bridge or router since the last sweep, or when a full resync asks.
   * A pass after a port change therefore never holds up attaches on this host.
   */
  private async converge(): Promise<void> {
    this.mainDirty = false;
    const plan = this.plan();
    this.routerFilters = [...plan.routers.values()].some((r) => r.filters !== undefined);
    const errors: string[] = [];
    await this.lock.runShared(async () => {
      for (const b of plan.bridges.values()) {
        await this.ensureBridge(b).catch((e: Error) => errors.push(`bridge vni ${b.vni}: ${e.message}`));
      }
      for (const r of plan.routers.values()) {
        await this.ensureRouter(r).catch((e: Error) => errors.push(`router ${r.id}: ${e.message}`));
      }
      await this.ensurePolicy(plan).catch((e: Error) => errors.push(`policy: ${e.message}`));
      await this.ensureLb(plan).catch((e: Error) => errors.push(`load balancer: ${e.message}`));
    });
    // What the plan holds, lingering included, read ONCE per decision: a linger that expires between two reads
    // would drop its key from `swept` without a sweep ever removing it (seen in CI: a router and its bridges left
    // on a host after its last workload went). An expiry after this read shows as lost in the timer's next pass.
    const heldNow = new Set([...keysOf(plan), ...this.lingering(plan).keys()]);
    const lost = this.swept === undefined || [...this.swept].some((k) => !heldNow.has(k));
    if (errors.length === 0 && (lost || this.sweepDue)) {
      await this.lock.runExclusive(async () => {
        // Plugs are removed by detach and gc (and stray ones by the forced resync's sweep), never because of a
        // transient cache state; pins keep plugs whose port the cache has not seen yet.
        const now = this.plan();
        const lingerNow = this.lingering(now);
        const linger = [...lingerNow.values()];
        this.sweepDue = false;
        await this.datapath
          .sweep({
            bridges: [...[...now.bridges.values()].map((b) => b.vni), ...linger.flatMap((w) => (w.vni === undefined ? [] : [w.vni]))],
            routers: [...now.routers.keys(), ...linger.flatMap((w) => (w.routerId === undefined ? [] : [w.routerId]))],
            plugs: [...now.plugs],
          })
          .catch((e: Error) => errors.push(`sweep: ${e.message}`));
        // What the sweep removed is no longer converged: a later ensure must re-create it, not skip it.
        const kept = new Set([...keysOf(now), ...lingerNow.keys()]);
        // With nothing left here the sweep dropped our tables, chains and sets with them.
        if (now.bridges.size === 0 && now.plugs.size === 0 && !linger.some((w) => w.vni !== undefined)) this.policy = undefined;
        for (const key of [...this.applied.keys()]) if (!kept.has(key)) this.applied.delete(key);
        for (const key of [...this.made]) if (!kept.has(key)) this.made.delete(key);
        this.swept = errors.length === 0 ? kept : undefined;
      });
    } else if (errors.length === 0) {
      this.swept = heldNow;
    }
    this.passes++;
    this.lastError = errors.length ? errors.join('; ') : undefined;
    if (errors.length) this.log(`reconcile: ${this.lastError}`, 'error');
    this.scheduleRetry(errors.length > 0);
  }

  private scheduleRetry(failed: boolean): void {
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (!failed || this.stopped) {
      this.retryMs = 0;
      return;
    }
    this.retryMs = Math.min(30_000, this.retryMs === 0 ? 500 : this.retryMs * 2);
    this.retryTimer = setTimeout(() => this.trigger(0), this.retryMs);
    this.retryTimer.unref();
  }

  /**
   * Bridges and routers the plan no longer holds that stay for now: the plan held them within LINGER_MS and their
   * network (router) still exists and is up. A pod recreated, or the next batch of workloads, then finds its bridge
   * and router ready instead of waiting for both to be torn down and rebuilt (the reference bridge plugin never
   * removes its bridge). A deleted or disabled network goes at once; a lingering one goes at the first pass after
   * its time is up.
   */
  private lingering(plan: HostPlan): Map<string, { vni?: number; routerId?: string }> {
    const now = performance.now();
    for (const [id, b] of plan.bridges) this.wanted.set(`bridge/${b.vni}`, { at: now, bridgeId: id, vni: b.vni });
    for (const id of plan.routers.keys()) this.wanted.set(`router/${id}`, { at: now, routerId: id });
    const out = new Map<string, { vni?: number; routerId?: string }>();
    let next = Infinity;
    for (const [key, w] of this.wanted) {
      if (w.at === now) continue;
      const b = w.bridgeId === undefined ? undefined : this.cache.get('Bridge', w.bridgeId);
      const r = w.routerId === undefined ? undefined : this.cache.get('Router', w.routerId);
      const alive = b ? b.tunnelKey === w.vni && b.adminStateUp : r ? r.adminStateUp : false;
      if (!alive || now - w.at >= this.lingerMs) {
        this.wanted.delete(key);
        continue;
      }
      out.set(key, w);
      next = Math.min(next, w.at + this.lingerMs);
    }
    if (next !== Infinity && !this.stopped) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = setTimeout(() => this.trigger(0), Math.max(0, next - now) + 10);
      this.lingerTimer.unref();
    }
    return out;
  }

  /** How long a bridge or router without local ports is kept (see lingering). */
  lingerMs = 60_000;

  /**
   * Plug a workload now (attach cannot wait for the next pass): its bridge and the routers on it are converged
   * first, then the veth is made. Runs alongside other plugs, never during a sweep.
   */
  /** `port`: the new port as it is being written (its groups apply before the cache shows it). */
  async plugPort(portId: string, bridge: Bridge, spec: PlugSpec, tr?: Trace, port?: Port): Promise<PlugResult> {
    this.pins.set(portId, { bridgeId: bridge.id, hostIfname: spec.hostIfname ?? '', portId, ...(port ? { port } : {}) });
    this.pinGen++;
    const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> => (tr ? tr.phase(name, fn) : fn());
    const waited = performance.now();
    try {
      return await this.lock.runShared(async () => {
        if (tr) tr.mark('lockWait', performance.now() - waited);
        await this.readyBridge(bridge, phase);
        // The port's filters (its own and its bridge's) go into the plug's own nft transaction, committed before
        // the port joins its bridge: its first frame meets them, and they cost no nft run of their own.
        const r = await this.plugWithPolicy(spec, phase);
        this.trigger();
        return r;
      });
    } catch (err) {
      this.pins.delete(portId);
      this.pinGen++;
      // A failed plug removed whatever chains it had: they are no longer in force.
      if (spec.hostIfname) await this.forgetBindings(spec.hostIfname);
      throw err;
    }
  }

  /** The bridge of a plug converged here, and a router on it made if missing (under the shared lock). */
  private async readyBridge(bridge: Bridge, phase: <T>(name: string, fn: () => Promise<T>) => Promise<T>): Promise<void> {
    const plan = await phase('plan', async () => this.plan());
    const desired = plan.bridges.get(bridge.id);
    if (!desired) throw new TopologyError('conflict', `network ${bridge.name} is administratively down`, 'network');
    await phase('ensureBridge', () => this.ensureBridge(desired));
    // A router already serving this bridge learns the new port's neighbour entry in the next pass; meanwhile
    // it resolves local ports by ARP on the local bridge, which works. Only a missing router is made now.
    for (const r of plan.routers.values()) {
      if (!r.legs.some((l) => l.vni === bridge.tunnelKey) || this.made.has(`router/${r.id}`)) continue;
      // The router's other legs hang on their own bridges, which must exist here first.
      for (const b of plan.bridges.values()) if (r.legs.some((l) => l.vni === b.vni)) await this.ensureBridge(b);
      await this.ensureRouter(r);
    }
  }

  /**
   * The plug with the policy change it needs (the difference between what was applied and the plan, which holds
   * the plug's pin) carried in its spec (PlugSpec.policy). Under the policy's lock when there is a change, so no
   * pass or other plug applies one meanwhile; a plug with nothing to change holds no lock while plugging, so a
   * burst of attaches is serialised only behind the one that carries their shared change.
   */
  private async plugWithPolicy(spec: PlugSpec, phase: <T>(name: string, fn: () => Promise<T>) => Promise<T>): Promise<PlugResult> {
    if (!this.datapath.applyPolicy) return phase('dpPlug', () => this.datapath.plug(spec));
    let plain = false;
    const r = await this.keyed.run('policy', async () => {
      const { next, change } = await phase('policy', async () => {
        const next = this.planPolicyNow(this.plan());
        return { next, change: policyDelta(this.policy, next) };
      });
      if (emptyChange(change)) {
        plain = true;
        return undefined;
      }
      this.policy = undefined;
      const res = await phase('dpPlug', () => this.datapath.plug({ ...spec, policy: change }));
      this.policy = next;
      return res;
    });
    return plain ? phase('dpPlug', () => this.datapath.plug(spec)) : r!;
  }

  /**
   * This host's policy as planned from the cache now, pins included (core/agent/plan.ts planPolicy), given the host
   * plan of the same moment (its bridges and routers).
   */
  private planPolicyNow(plan: HostPlan): HostPolicy {
    const next = planPolicy(
      this.cache,
      {
        hostId: this.hostId,
        underlayMtu: this.underlayMtu,
        pins: this.pins.values(),
        ...(this.acceptLog ? { acceptLog: this.acceptLog } : {}),
      },
      plan.bridges.values(),
      plan.routers.values(),
    );
    if (next.errors.length) this.log(`policy: ${next.errors.join('; ')}`);
    return next;
  }

  /**
   * Bring this host's policy to the plan (core/agent/plan.ts planPolicy) by changing only the difference. Planned
   * under the policy's own lock, so a pass planned before a plug began can never undo that plug's bindings.
   */
  private ensurePolicy(passPlan: HostPlan): Promise<void> {
    const dp = this.datapath;
    if (!dp.applyPolicy) return Promise.resolve();
    return this.keyed.run('policy', async () => {
      // The pass's plan, unless pins changed while waiting for the lock (a plug began: its bridge must be planned).
      const plan = this.planGen.get(passPlan) === this.pinGen ? passPlan : this.plan();
      const next = this.planPolicyNow(plan);
      const change = policyDelta(this.policy, next);
      if (!emptyChange(change)) {
        const t0 = performance.now();
        this.policy = undefined;
        // Ports about to get a filter leave the fast path first (the datapath drops them before it commits).
        await dp.applyPolicy!(change);
        this.policy = next;
        traceLine(`converge policy ${(performance.now() - t0).toFixed(1)}`);
      }
      // Under the policy's lock: what the fast path may carry follows the bindings just committed.
      if (dp.setFastPath) await dp.setFastPath(planFastPath(this.cache, this.hostId, plan, [next, this.policy]));
    });
  }

  /**
   * Bring this host's load balancer to the plan (plan-lb.ts): VIPs its clients reach, with their routing. Skipped
   * when the spec is what was applied last; the datapath changes only the chains that differ from it.
   */
  private ensureLb(plan: HostPlan): Promise<void> {
    const dp = this.datapath;
    if (!dp.applyLoadBalancers) return Promise.resolve();
    return this.keyed.run('lb', async () => {
      const lb = planLb(this.cache, this.hostId, plan, this.pins.values());
      this.onLbPlan?.(lb);
      const json = JSON.stringify(lb.spec);
      if (json === this.lbApplied) return;
      if (lb.skipped.length) this.log(`load balancer: ${lb.skipped.join('; ')}`);
      const full = this.lbApplied === undefined;
      this.lbApplied = undefined;
      const t0 = performance.now();
      await dp.applyLoadBalancers!(lb.spec, { full });
      this.lbApplied = json;
      traceLine(`converge lb ${(performance.now() - t0).toFixed(1)}`);
    });
  }

  /** An interface's stage chains went with it (unplug): the next apply must bind it anew, not skip it. */
  private forgetBindings(ifname: string): Promise<void> {
    return this.keyed.run('policy', async () => {
      this.policy?.bindings.delete(ifname);
    });
  }

  /** `deltaOnly` (the fast lane): only when the remote ports alone changed; anything else is left to a main pass. */
  private ensureBridge(b: DesiredBridge, deltaOnly = false): Promise<void> {
    const deltaOf = (prevJson: string | undefined) =>
      this.datapath.setBridgeRemotes
        ? bridgeDelta(prevJson === undefined ? undefined : (JSON.parse(prevJson) as DesiredBridge), b)
        : undefined;
    return this.converged(
      `bridge/${b.vni}`,
      b,
      async (prevJson) => {
        // A workload coming or going elsewhere changes only the remote ports: a full ensureBridge re-reads the links,
        // FDB and neighbours (four processes) and rewrites them, on every host of the network at once.
        const delta = deltaOf(prevJson);
        if (delta) return this.datapath.setBridgeRemotes!(b.vni, delta);
        traceLine(`bridge/${b.vni} whole: ${prevJson === undefined ? 'not applied before' : 'more than its remote ports changed'}`);
        await this.datapath.ensureBridge(b);
      },
      deltaOnly ? (prevJson) => deltaOf(prevJson) !== undefined : undefined,
    );
  }

  /** `deltaOnly` (the fast lane): only when its neighbours alone changed; anything else is left to a main pass. */
  private ensureRouter(r: DesiredRouter, deltaOnly = false): Promise<void> {
    const neighboursOnly = (prevJson: string | undefined): boolean =>
      prevJson !== undefined &&
      this.datapath.setRouterNeighbours !== undefined &&
      neighbourDelta(JSON.parse(prevJson) as DesiredRouter, r) !== undefined;
    return this.converged(
      `router/${r.id}`,
      r,
      async (prevJson) => {
        // A workload coming or going changes only the neighbours: a full ensureRouter re-reads and rewrites the
        // whole namespace (a dozen processes), which on a busy host competes with the attaches themselves.
        const prev = prevJson === undefined ? undefined : (JSON.parse(prevJson) as DesiredRouter);
        for (const e of r.filters?.errors ?? []) this.log(`router ${r.id}: ${e}`);
        // Only its chains changed: rewrite those chains alone (the neighbours follow, if they moved too).
        const chains = filtersDelta(prev, r);
        if (chains && this.datapath.setRouterFilters) {
          await this.datapath.setRouterFilters(r.id, chains.prev, chains.next);
          const n = neighbourDelta({ ...prev!, filters: r.filters! }, r);
          if (n && this.datapath.setRouterNeighbours && (n.add.length || n.remove.length))
            await this.datapath.setRouterNeighbours(r.id, n.add, n.remove);
          return;
        }
        const delta = neighbourDelta(prev, r);
        if (delta && this.datapath.setRouterNeighbours) {
          await this.datapath.setRouterNeighbours(r.id, delta.add, delta.remove);
          return;
        }
        await this.datapath.ensureRouter(r);
      },
      deltaOnly ? neighboursOnly : undefined,
    );
  }

  /**
   * Run `apply` unless `desired` is what was last applied under `key`; one apply per key at a time. `apply` is
   * given what was last applied (JSON), so it can change only the difference.
   */
  private converged(
    key: string,
    desired: unknown,
    apply: (prevJson: string | undefined) => Promise<void>,
    onlyIf?: (prevJson: string | undefined) => boolean,
  ): Promise<void> {
    return this.keyed.run(key, async () => {
      const json = JSON.stringify(desired);
      const prevJson = this.applied.get(key);
      if (prevJson === json || (onlyIf && !onlyIf(prevJson))) return;
      this.applied.delete(key);
      const t0 = performance.now();
      await apply(prevJson);
      traceLine(`converge ${key} ${(performance.now() - t0).toFixed(1)}`);
      this.applied.set(key, json);
      this.made.add(key);
    });
  }

  /**
   * The part of a new port's plug that needs no addresses (the datapath's veth pair), started by attach beside
   * IPAM: its bridge first, then the veth, pinned like a plug so no sweep takes it. Resolves whether it was made;
   * never rejects (the plug then makes it itself, and reports what fails). Undone by unplugPort.
   */
  async preparePort(portId: string, bridge: Bridge, spec: PlugSpec, tr?: Trace): Promise<boolean> {
    const dp = this.datapath;
    if (!dp.preparePlug) return false;
    this.pins.set(portId, { bridgeId: bridge.id, hostIfname: spec.hostIfname ?? '', portId });
    this.pinGen++;
    const phase = <T>(name: string, fn: () => Promise<T>): Promise<T> => (tr ? tr.phase(name, fn) : fn());
    try {
      await this.lock.runShared(async () => {
        await this.readyBridge(bridge, phase);
        await phase('prepare', () => dp.preparePlug!(spec));
      });
      return true;
    } catch {
      return false;
    }
  }

  async unplugPort(portId: string, hostIfname: string): Promise<void> {
    this.pins.delete(portId);
    this.pinGen++;
    await this.lock.runShared(() => this.datapath.unplug(hostIfname));
    await this.forgetBindings(hostIfname);
    this.trigger();
  }

  checkPlug(spec: PlugSpec): Promise<string[]> {
    return this.lock.runShared(() => this.datapath.checkPlug(spec));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    clearTimeout(this.fastTimer);
    clearTimeout(this.lingerTimer);
    clearTimeout(this.retryTimer);
  }
}
