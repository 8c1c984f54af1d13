// CNI ADD/DEL latency as a runtime sees it: each call is one plugin process driven by the harness (cni/harness),
// in real network namespaces, serial and 20-way concurrent, in interleaved rounds. The reference is Debian's
// bridge + host-local. Ours: the built midonet shim in front of a real agent (file store) on an e2e harness host.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseNetworkConfig } from '../cni/harness/config.js';
import { CniHarness } from '../cni/harness/libcni.js';
import { createNetns, sh, type Netns } from '../cni/harness/netns.js';
import type { NetworkConfigList } from '../cni/harness/types.js';
import { median, pairedRatio, percentile, timed, type BenchContext, type BenchRow, type BenchSection } from './report.js';

/** One thing to measure: a conflist and the directories its plugins come from. */
export interface Subject {
  label: string;
  pluginDirs: string[];
  list: NetworkConfigList;
  cleanup(): Promise<void>;
}

interface Latencies {
  add: number[];
  del: number[];
}

async function referenceSubject(work: string): Promise<Subject> {
  const suffix = Math.random().toString(16).slice(2, 8);
  const bridge = `bnb${suffix}`;
  const list = parseNetworkConfig(
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `bench-${suffix}`,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipam: { type: 'host-local', subnet: '10.250.0.0/16', dataDir: join(work, 'hostlocal') },
        },
      ],
    }),
  );
  return {
    label: 'bridge + host-local',
    pluginDirs: ['/usr/lib/cni'],
    list,
    cleanup: () =>
      sh('ip', ['link', 'del', bridge]).then(
        () => undefined,
        () => undefined,
      ),
  };
}

/** ADD then DEL for each namespace, `concurrency` containers at a time. */
async function measure(s: Subject, namespaces: Netns[], concurrency: number, cacheDir: string): Promise<Latencies> {
  const h = new CniHarness({ pluginDirs: s.pluginDirs, cacheDir });
  const out: Latencies = { add: [], del: [] };
  const rts = namespaces.map((ns, i) => ({ containerId: `bench${i}${ns.name.slice(-6)}`, netns: ns.path, ifname: 'eth0' }));
  for (let i = 0; i < rts.length; i += concurrency) {
    const batch = rts.slice(i, i + concurrency);
    out.add.push(...(await Promise.all(batch.map((rt) => timed(() => h.addNetworkList(s.list, rt))))));
  }
  for (let i = 0; i < rts.length; i += concurrency) {
    const batch = rts.slice(i, i + concurrency);
    out.del.push(...(await Promise.all(batch.map((rt) => timed(() => h.delNetworkList(s.list, rt))))));
  }
  return out;
}

const stats = (xs: number[]) => ({ p50: Math.round(percentile(xs, 50) * 10) / 10, p99: Math.round(percentile(xs, 99) * 10) / 10 });

/** Our plugin (binary in `binDir`) in front of an agent serving the workload API on `agentSocket`. */
export function midonetSubject(binDir: string, agentSocket: string, subnet = '10.251.0.0/16'): Subject {
  const suffix = Math.random().toString(16).slice(2, 8);
  const list = parseNetworkConfig(
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `bench-mn-${suffix}`,
      plugins: [{ type: 'midonet', agentSocket, network: `bench-${suffix}`, subnet }],
    }),
  );
  return { label: 'midonet', pluginDirs: [binDir], list, cleanup: async () => undefined };
}

/** The plugins measured besides the reference: ours, built as shipped, against a real agent started for the run. */
async function subjects(_work: string): Promise<Subject[]> {
  const [{ buildPlugin }, { startAgents }] = await Promise.all([import('../cni/test/helpers.js'), import('../cni/test/real-agent.js')]);
  const bin = await buildPlugin();
  // The agent's default linger (60 s), as on a node: the network's bridge and router stay between batches, as the
  // reference's bridge does. With the tests' 1 s they went while the reference ran, and each batch of ours paid for
  // making them again (about 300 ms, which all 20 concurrent ADDs of a batch waited for).
  // Under production's node flags: the latency and CPU compared are the deployed agent's.
  const cluster = await startAgents(1, { lingerSeconds: 60, productionFlags: true });
  const s = midonetSubject(bin, cluster.agents[0]!.socket);
  return [{ ...s, label: 'midonet + real agent', cleanup: () => cluster.close() }];
}

/** Rounds of the whole comparison: each round measures the reference and then ours, back to back. */
const ROUNDS = 3;
type Mode = 'serial' | 'concurrent';
type Op = 'add' | 'del';
/** Per subject, mode and op: one {p50, p99} per round. */
type PerRound = Map<string, Record<Mode, Record<Op, { p50: number; p99: number }[]>>>;

const round1 = (x: number) => Math.round(x * 10) / 10;

export async function run(ctx: BenchContext): Promise<BenchSection> {
  const work = await mkdtemp(join(tmpdir(), 'bench-cni-'));
  const n = Math.max(4, Math.round(40 * ctx.scale));
  const namespaces: Netns[] = [];
  const all: Subject[] = [];
  try {
    for (let i = 0; i < n; i++) namespaces.push(await createNetns('bcni'));
    const reference = await referenceSubject(work);
    all.push(reference);
    const ours = await subjects(work);
    all.push(...ours);
    // Interleaved and repeated: load that comes and goes on a shared machine hits both sides alike.
    const perRound: PerRound = new Map(all.map((s) => [s.label, { serial: { add: [], del: [] }, concurrent: { add: [], del: [] } }]));
    let runs = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      for (const mode of ['serial', 'concurrent'] as const) {
        // The side going first alternates between rounds, so drift does not always favour one.
        for (const s of round % 2 ? all : [...all].reverse()) {
          ctx.progress(`cni: round ${round}/${ROUNDS}, ${s.label}, ${n} containers ${mode === 'serial' ? 'serial' : '20-way concurrent'}`);
          const lat = await measure(s, namespaces, mode === 'serial' ? 1 : 20, join(work, `cache-${runs++}`));
          for (const op of ['add', 'del'] as const) perRound.get(s.label)![mode][op].push(stats(lat[op]));
        }
      }
    }
    const summary = (label: string, mode: Mode, op: Op) => {
      const rounds = perRound.get(label)![mode][op];
      return { p50: round1(median(rounds.map((r) => r.p50))), p99: round1(median(rounds.map((r) => r.p99))) };
    };
    const rows: BenchRow[] = [];
    for (const mode of ['serial', 'concurrent'] as const) {
      for (const op of ['add', 'del'] as const) {
        const name = `CNI ${op.toUpperCase()} ${mode === 'serial' ? 'serial' : '20-way concurrent'}`;
        const refStats = summary(reference.label, mode, op);
        for (const s of ours) {
          const o = summary(s.label, mode, op);
          const paired = pairedRatio(
            perRound.get(s.label)![mode][op].map((r) => r.p50),
            perRound.get(reference.label)![mode][op].map((r) => r.p50),
          );
          rows.push({
            name: `${name} (${s.label})`,
            ours: o,
            reference: refStats,
            ...paired,
            unit: 'ms',
            compares:
              `like for like: p50 of one ${op.toUpperCase()} call chain as libcni runs it (a plugin process per call), ` +
              `bees (static shim + agent) ÷ ${reference.label}; lower is better`,
            note: `figures: medians over ${ROUNDS} rounds of each round's p50/p99`,
          });
        }
      }
    }
    return {
      title: 'CNI plugin latency',
      columns: ['bees', reference.label],
      method: `${n} containers, each its own network namespace; ADD then DEL of every container through cni/harness (one plugin process per call, as libcni runs it), serial and in batches of 20. ${ROUNDS} interleaved rounds, each measuring both sides back to back (serial, then concurrent), the side going first alternating; figures are medians across rounds of the per-round p50 and p99. Reference: ${reference.label} (containernetworking-plugins 1.1.1), spec 1.0.0. Ours: the static C shim (cni/shim) forwarding to a real agent (file store) that runs the CNI logic. Latency per call chain in ms.`,
      rows,
    };
  } finally {
    for (const s of all) await s.cleanup();
    for (const ns of namespaces) await ns.remove();
    await rm(work, { recursive: true, force: true });
  }
}
