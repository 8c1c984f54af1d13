// Where the ms of a CNI ADD/DEL go: the bench's CNI comparison (ours vs bridge + host-local, serial and 20-way,
// interleaved) with the agent's phase trace (BEES_TRACE=1) summarised per phase. Not part of `npm run bench`:
// run it by hand, `node --import tsx bench/cni-profile.ts [containers] [rounds]`. It prints the agent's CPU per
// operation, split into the event loop's thread and the others (libuv's pool, V8's helpers), user and system.
// PROFILE_RAW=file keeps the raw trace lines; PROFILE_WINDOWS=file appends each ADD and DEL batch's bounds on the
// monotonic clock (µs), to cut a profile of the agent run with BEES_AGENT_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"
// (cni/test/real-agent.ts) to those batches.
import { appendFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseNetworkConfig } from '../cni/harness/config.js';
import { CniHarness } from '../cni/harness/libcni.js';
import { createNetns, sh, type Netns } from '../cni/harness/netns.js';
import { midonetSubject, type Subject } from './cni.js';
import { percentile, timed } from './report.js';

process.env.BEES_TRACE = '1';
const n = Number(process.argv[2] ?? '20');
const rounds = Number(process.argv[3] ?? '3');
const { buildPlugin } = await import('../cni/test/helpers.js');
const { startAgents } = await import('../cni/test/real-agent.js');

const work = await mkdtemp(join(tmpdir(), 'cni-profile-'));
const suffix = Math.random().toString(16).slice(2, 8);
const ref: Subject = {
  label: 'ref',
  pluginDirs: ['/usr/lib/cni'],
  list: parseNetworkConfig(
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `prof-${suffix}`,
      plugins: [
        {
          type: 'bridge',
          bridge: `bnp${suffix}`,
          isGateway: true,
          ipam: { type: 'host-local', subnet: '10.249.0.0/16', dataDir: join(work, 'hl') },
        },
      ],
    }),
  ),
  cleanup: () =>
    sh('ip', ['link', 'del', `bnp${suffix}`]).then(
      () => undefined,
      () => undefined,
    ),
};
const bin = await buildPlugin();
// The agent's default linger, as in bench/cni.ts: the network's bridge and router stay between batches.
// Under production's node flags, as deployed (the CPU per ADD/DEL depends on them).
const cluster = await startAgents(1, { lingerSeconds: 60, productionFlags: true });
const ours = { ...midonetSubject(bin, cluster.agents[0]!.socket, '10.248.0.0/16'), label: 'ours' };
const namespaces: Netns[] = [];
for (let i = 0; i < n; i++) namespaces.push(await createNetns('bprf'));
let runs = 0;
const p50 = (xs: number[]) => percentile(xs, 50).toFixed(1);
const ratios: Record<string, number[]> = {};
const logFile = join(cluster.agents[0]!.host.stateDir, 'agent.log');
/** Phase durations of the agent's trace lines, per mode ("attach c1 ipam" ...). */
const phases = new Map<string, number[]>();
let seen = 0;
/** CPU time (ms) the agent process has used so far: a steadier figure than wall time under load. */
interface Cpu {
  /** user and system time of the main thread (the event loop) */
  mainUser: number;
  mainSys: number;
  /** user and system time of all other threads (libuv's pool: netlink and nft calls, fsync; V8's helpers) */
  otherUser: number;
  otherSys: number;
}
async function agentCpu(): Promise<Cpu> {
  const pid = cluster.agents[0]!.proc?.pid;
  const out = { mainUser: 0, mainSys: 0, otherUser: 0, otherSys: 0 };
  if (pid === undefined) return out;
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue; // the thread has just exited
    const fields = stat.split(') ')[1]!.split(' ');
    // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second here).
    const [user, sys] = [Number(fields[11]) * 10, Number(fields[12]) * 10];
    if (tid === String(pid)) [out.mainUser, out.mainSys] = [user, sys];
    else [out.otherUser, out.otherSys] = [out.otherUser + user, out.otherSys + sys];
  }
  return out;
}
const cpuTotal = (c: Cpu) => c.mainUser + c.mainSys + c.otherUser + c.otherSys;
const cpuDiff = (a: Cpu, b: Cpu): Cpu => ({
  mainUser: b.mainUser - a.mainUser,
  mainSys: b.mainSys - a.mainSys,
  otherUser: b.otherUser - a.otherUser,
  otherSys: b.otherSys - a.otherSys,
});
/** The split per operation, summed over a mode's batches. */
const split = new Map<string, { ops: number; cpu: Cpu }>();
function addSplit(key: string, d: Cpu, ops: number): void {
  const s = split.get(key) ?? split.set(key, { ops: 0, cpu: { mainUser: 0, mainSys: 0, otherUser: 0, otherSys: 0 } }).get(key)!;
  s.ops += ops;
  for (const k of Object.keys(d) as (keyof Cpu)[]) s.cpu[k] += d[k];
}
/** Agent CPU ms per operation, per mode ("add c1" ...). */
const cpu = new Map<string, number[]>();
async function collect(mode: string): Promise<void> {
  const log = await readFile(logFile, 'utf8');
  const lines = log.slice(seen).split('\n');
  seen = log.length;
  for (const line of lines) {
    const route = /^trace cni (ADD|DEL) exit=0 ([\d.]+)$/.exec(line);
    if (route) {
      const key = `${route[1] === 'ADD' ? 'attach' : 'detach'} ${mode} cniRoute`;
      (phases.get(key) ?? phases.set(key, []).get(key)!).push(Number(route[2]));
      continue;
    }
    const m = /^trace (attach|detach) \S+ ok (.*)$/.exec(line);
    if (!m) continue;
    if (process.env.PROFILE_RAW) appendFileSync(process.env.PROFILE_RAW, `${mode} ${line}\n`);
    for (const kv of m[2]!.split(' ')) {
      const [name, v] = kv.split('@')[0]!.split('=');
      const key = `${m[1]} ${mode} ${name}`;
      (phases.get(key) ?? phases.set(key, []).get(key)!).push(Number(v));
    }
  }
}
try {
  for (let round = 1; round <= rounds; round++) {
    for (const conc of [1, 20]) {
      const res: Record<string, { add: number[]; del: number[] }> = {};
      for (const s of round % 2 ? [ref, ours] : [ours, ref]) {
        const h = new CniHarness({ pluginDirs: s.pluginDirs, cacheDir: join(work, `c${runs++}`) });
        const rts = namespaces.map((ns, i) => ({ containerId: `p${i}${ns.name.slice(-6)}${round}`, netns: ns.path, ifname: 'eth0' }));
        const out = { add: [] as number[], del: [] as number[] };
        const cpu0 = await agentCpu();
        const t0 = process.hrtime.bigint() / 1000n;
        for (let i = 0; i < rts.length; i += conc)
          out.add.push(...(await Promise.all(rts.slice(i, i + conc).map((rt) => timed(() => h.addNetworkList(s.list, rt))))));
        const cpu1 = await agentCpu();
        const t1 = process.hrtime.bigint() / 1000n;
        for (let i = 0; i < rts.length; i += conc)
          out.del.push(...(await Promise.all(rts.slice(i, i + conc).map((rt) => timed(() => h.delNetworkList(s.list, rt))))));
        const cpu2 = await agentCpu();
        const t2 = process.hrtime.bigint() / 1000n;
        if (s === ours) {
          (cpu.get(`add c${conc}`) ?? cpu.set(`add c${conc}`, []).get(`add c${conc}`)!).push(
            (cpuTotal(cpu1) - cpuTotal(cpu0)) / rts.length,
          );
          addSplit(`add c${conc}`, cpuDiff(cpu0, cpu1), rts.length);
          (cpu.get(`del c${conc}`) ?? cpu.set(`del c${conc}`, []).get(`del c${conc}`)!).push(
            (cpuTotal(cpu2) - cpuTotal(cpu1)) / rts.length,
          );
          addSplit(`del c${conc}`, cpuDiff(cpu1, cpu2), rts.length);
          // The batches' bounds on the monotonic clock in µs, the clock of a .cpuprofile's timestamps: with the agent
          // run under `--cpu-prof` (BEES_AGENT_NODE_ARGS), its samples can be cut to the ADD or DEL batches.
          if (process.env.PROFILE_WINDOWS)
            appendFileSync(process.env.PROFILE_WINDOWS, `add c${conc} ${t0} ${t1}\ndel c${conc} ${t1} ${t2}\n`);
        }
        res[s.label] = out;
        if (s === ours) await collect(`c${conc}`);
        else await collect('ref');
      }
      for (const op of ['add', 'del'] as const) {
        const k = `${op} c${conc}`;
        const r = percentile(res.ours![op], 50) / percentile(res.ref![op], 50);
        (ratios[k] ??= []).push(r);
        console.log(`round ${round} ${k}: ours ${p50(res.ours![op])} ref ${p50(res.ref![op])} ratio ${r.toFixed(2)}`);
      }
    }
  }
  for (const [k, rs] of Object.entries(ratios)) console.log(`${k}: ratios ${rs.map((r) => r.toFixed(2)).join(' ')}`);
  for (const [k, xs] of cpu) console.log(`agent CPU ms per ${k}: ${xs.map((x) => x.toFixed(1)).join(' ')}`);
  for (const [k, { ops, cpu: c }] of split) {
    const per = (x: number) => (x / ops).toFixed(1);
    console.log(
      `agent CPU ms per ${k}, all batches: main thread user ${per(c.mainUser)} sys ${per(c.mainSys)}, ` +
        `other threads user ${per(c.otherUser)} sys ${per(c.otherSys)}`,
    );
  }
  for (const [k, xs] of phases) console.log(`${k}: n ${xs.length} p50 ${p50(xs)} p90 ${percentile(xs, 90).toFixed(1)}`);
} finally {
  await cluster.close();
  await ref.cleanup();
  for (const ns of namespaces) await ns.remove();
  await rm(work, { recursive: true, force: true });
}
