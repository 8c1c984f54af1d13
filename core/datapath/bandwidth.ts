// Bandwidth of a workload port, as the reference CNI `bandwidth` plugin shapes it: traffic towards the workload
// (CNI "ingress") through a token bucket (tbf) at the root of the host end of its veth; traffic from the workload
// (CNI "egress") arrives on the host end's ingress, where a u32 match-all filter redirects it to an ifb device of
// the port's own, shaped by a tbf at that device's root. Rates are bits per second, bursts bits (CNI's units).
// The host veth's qdiscs go with the veth; the ifb is deleted by unplug (deleteIfb).
import { inNetns, run } from './exec.js';
import { deleteLink, withNetlink } from './netlink/index.js';
import { PLUG_PREFIX } from './names.js';

export interface Bandwidth {
  /** Towards the workload, bits per second; with ingressBurst (bits). */
  ingressRate?: number;
  ingressBurst?: number;
  /** From the workload, bits per second; with egressBurst (bits). */
  egressRate?: number;
  egressBurst?: number;
}

/** The ifb of a plug: `bw` + the plug's own suffix, so it is ours, unique per port, and within 15 characters. */
export const IFB_PREFIX = 'bw';
export const ifbName = (hostIfname: string): string => `${IFB_PREFIX}${hostIfname.slice(PLUG_PREFIX.length)}`;

/** The reference plugin's queue latency bound: the tbf's queue holds what drains in this long, plus the burst. */
const LATENCY = '25ms';
/** tc takes 32-bit byte counts. */
const MAX_BYTES = 0xffffffff;

/** Refuses what the reference plugin refuses: a rate without a burst or the reverse, negatives, too large. */
export function checkBandwidth(b: Bandwidth, what: string): void {
  for (const dir of ['ingress', 'egress'] as const) {
    const rate = b[`${dir}Rate`] ?? 0;
    const burst = b[`${dir}Burst`] ?? 0;
    for (const [k, v] of [
      [`${dir}Rate`, rate],
      [`${dir}Burst`, burst],
    ] as const) {
      if (!Number.isFinite(v) || v < 0) throw new Error(`${what}: bandwidth ${k} must be a non-negative number, got ${v}`);
    }
    if (rate > 0 && burst === 0) throw new Error(`${what}: bandwidth ${dir}Rate needs ${dir}Burst`);
    if (burst > 0 && rate === 0) throw new Error(`${what}: bandwidth ${dir}Burst needs ${dir}Rate`);
    if (burst / 8 >= MAX_BYTES) throw new Error(`${what}: bandwidth ${dir}Burst is too large`);
    if (rate / 8 >= MAX_BYTES * 8) throw new Error(`${what}: bandwidth ${dir}Rate is too large`);
  }
}

export function shapes(b: Bandwidth | undefined): b is Bandwidth {
  return !!b && ((b.ingressRate ?? 0) > 0 || (b.egressRate ?? 0) > 0);
}

const tbf = (dev: string, rate: number, burst: number): string =>
  `qdisc replace dev ${dev} root tbf rate ${Math.floor(rate)}bit burst ${Math.max(1, Math.ceil(burst / 8))} latency ${LATENCY}`;

/**
 * Shape the port whose host end is `hostIfname` (which must exist). Level-triggered: a leftover ifb or ingress
 * qdisc from an earlier attempt is replaced.
 */
export async function applyBandwidth(netns: string | undefined, hostIfname: string, b: Bandwidth): Promise<void> {
  const tc: string[] = [];
  if ((b.ingressRate ?? 0) > 0) tc.push(tbf(hostIfname, b.ingressRate!, b.ingressBurst!));
  if ((b.egressRate ?? 0) > 0) {
    const ifb = ifbName(hostIfname);
    await deleteIfb(netns, hostIfname);
    await run(inNetns(netns, ['ip', 'link', 'add', 'name', ifb, 'type', 'ifb']), { context: `could not create ${ifb}` });
    await run(inNetns(netns, ['ip', 'link', 'set', 'dev', ifb, 'up']), { context: `could not bring ${ifb} up` });
    tc.push(
      tbf(ifb, b.egressRate!, b.egressBurst!),
      `qdisc replace dev ${hostIfname} handle ffff: ingress`,
      `filter replace dev ${hostIfname} parent ffff: protocol all prio 1 handle 800::800 u32 match u32 0 0 action mirred egress redirect dev ${ifb}`,
    );
  }
  if (tc.length)
    await run(inNetns(netns, ['tc', '-batch', '-']), { input: tc.join('\n') + '\n', context: `could not shape ${hostIfname}` });
}

/** Delete the ifb of a plug; nothing to do when it has none. In-process: unplug must not spawn for unshaped ports. */
export async function deleteIfb(netns: string | undefined, hostIfname: string): Promise<void> {
  await withNetlink(netns, (s) => deleteLink(s, ifbName(hostIfname)));
}
