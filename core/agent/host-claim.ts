// One live agent per host id. The host id lives in the agent's state directory, so a cloned VM (or a copied state
// directory) brings a second agent with the same id: both would bind ports to one Host, converge each other's
// workloads and gc each other's ports. An agent therefore claims its id through the liveness record before it does
// anything else, and refuses to start while another agent holds it.
//
// A record held by a dead agent (crash, kill -9) lingers until its store session expires. It is provably stale
// when it names this machine's current boot, our pid namespace and a process that no longer exists: then it is
// taken over at once. A record from another boot (another machine, or this one before a reboot) or another pid
// namespace (an agent in a container, whose pids mean nothing here) cannot be judged from here: it is given the
// store's session timeout to vanish, as a dead owner's record does, and a record that outlives that is a live
// agent.
import { randomUUID } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { HOST_LIVENESS_PREFIX } from '../api/paths.js';
import type { Store } from '../store/store.js';
import { pidAlive } from '../util/pid.js';

/** The liveness record an agent keeps under hosts/<hostId>. */
export interface LivenessRecord {
  hostId: string;
  pid: number;
  since: number;
  /** The kernel's boot id: tells this machine's current boot from any other. */
  boot?: string;
  /** The pid namespace `pid` is in (its /proc/self/ns/pid link). */
  pidns?: string;
  /** Random per agent instance: tells two agents of one process (tests) apart. */
  instance?: string;
  hostname?: string;
}

/** Longer than the default ZooKeeper session (10 s): a dead owner's record is gone by then. */
export const DEFAULT_CLAIM_WAIT_MS = 12_000;

export class HostIdInUseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HostIdInUseError';
  }
}

export function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return undefined;
  }
}

function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

type Verdict = 'free' | 'stale' | 'live' | 'unknown';

function judge(rec: Partial<LivenessRecord> | undefined, me: LivenessRecord): Verdict {
  if (!rec) return 'free';
  if (rec.instance !== undefined && rec.instance === me.instance) return 'free';
  if (rec.boot === undefined || rec.boot !== me.boot || rec.pidns !== me.pidns || typeof rec.pid !== 'number') return 'unknown';
  return pidAlive(rec.pid) ? 'live' : 'stale';
}

function describe(rec: Partial<LivenessRecord>): string {
  const since = typeof rec.since === 'number' ? new Date(rec.since).toISOString() : 'an unknown time';
  return `process ${rec.pid ?? '?'} on ${rec.hostname ?? 'an unknown machine'}${rec.boot ? ` (boot ${rec.boot})` : ''}, alive since ${since}`;
}

/**
 * Claims `hostId` for this agent and writes its liveness record; throws HostIdInUseError when another live agent
 * holds it. Returns the record written.
 */
export async function claimHostId(
  store: Store,
  hostId: string,
  opts: { waitMs?: number; log?: (msg: string) => void; stateDir?: string } = {},
): Promise<LivenessRecord> {
  const key = `${HOST_LIVENESS_PREFIX}${hostId}`;
  const boot = bootId();
  const pidns = pidNamespace();
  const me: LivenessRecord = {
    hostId,
    pid: process.pid,
    since: Date.now(),
    instance: randomUUID(),
    hostname: hostname(),
    ...(boot ? { boot } : {}),
    ...(pidns ? { pidns } : {}),
  };
  const deadline = Date.now() + (opts.waitMs ?? DEFAULT_CLAIM_WAIT_MS);
  let waiting = false;
  for (;;) {
    const rec = (await store.listEphemeral(key))[key] as Partial<LivenessRecord> | undefined;
    const verdict = judge(rec, me);
    if (verdict === 'free') break;
    if (verdict === 'stale') {
      opts.log?.(`host ${hostId}: taking over the liveness record of a dead agent (${describe(rec!)})`);
      break;
    }
    if (verdict === 'live' || Date.now() >= deadline) {
      const fix = opts.stateDir
        ? `remove ${opts.stateDir}/host_uuid so this agent makes a new id, or pass another --host-id`
        : 'give this agent another --host-id';
      throw new HostIdInUseError(
        `host id ${hostId} is in use by a live agent: ${describe(rec!)}. Two agents with one host id would bind ` +
          `and gc each other's ports. If this machine is a clone, ${fix}; if that agent is gone, its record expires with ` +
          'its store session: retry then',
      );
    }
    if (!waiting) {
      waiting = true;
      opts.log?.(`host ${hostId}: another machine's liveness record exists (${describe(rec!)}); waiting for it to expire`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await store.putEphemeral(key, me);
  // Two agents that checked at the same moment both wrote; the store keeps the newest. The loser learns it here.
  const kept = (await store.listEphemeral(key))[key] as Partial<LivenessRecord> | undefined;
  if (kept?.instance !== me.instance) {
    throw new HostIdInUseError(`host id ${hostId} was claimed at the same moment by another agent: ${kept ? describe(kept) : 'unknown'}`);
  }
  return me;
}
