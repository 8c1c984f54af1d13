// The fast path as the datapath holds it: loaded at the first bridge (building the object takes a second, and a
// host without bridges needs none), turned off for good when it cannot load, and kept out of the datapath's own
// error paths: a fast-path failure leaves frames on the bridge path, which is complete, so it is logged and
// reported (FastPathStatus), never thrown into a bridge or plug operation.
import { getLink, withNetlink } from '../netlink/index.js';
import type { FastPathStatus } from '../types.js';
import { FastPath, type FastPort } from './fastpath.js';

export class FastPathHolder {
  private loading?: Promise<FastPath | undefined>;
  private fp?: FastPath;
  private unavailable?: string;
  private lastError?: string;
  /** Interfaces left on the bridge path at the last setPorts, and why: logged when the set changes. */
  private lastSkipped = '';
  /** The reconciler's last port list: a released hold puts its ports back from it. */
  private lastPorts?: FastPort[];

  constructor(
    private readonly netns: string | undefined,
    private readonly enabled: boolean,
    private readonly log: (msg: string, level?: 'warn') => void,
  ) {}

  private get(): Promise<FastPath | undefined> {
    if (!this.enabled) return Promise.resolve(undefined);
    this.loading ??= FastPath.load(this.netns).then(
      async (fp) => {
        const adopted = await fp.adoptDevices();
        this.fp = fp;
        this.log(
          `fast path on: ports without filters bypass the bridge (tc-BPF)${adopted ? `; took ${adopted} port(s) over from an earlier agent` : ''}`,
        );
        return fp;
      },
      (e: Error) => {
        this.unavailable = e.message;
        this.log(`fast path unavailable, every frame takes the bridge: ${e.message}`, 'warn');
        return undefined;
      },
    );
    return this.loading;
  }

  /** Load now rather than at the first bridge (the agent does, at start: the first attach should not wait for it). */
  async prepare(): Promise<void> {
    await this.get();
  }

  private failed(what: string, e: unknown): void {
    const msg = `${what}: ${(e as Error).message}`;
    if (msg !== this.lastError) this.log(`fast path: ${msg} (those frames take the bridge)`, 'warn');
    this.lastError = msg;
  }

  /** After ensureBridge: rx on the VXLAN device, the remote MACs. */
  async ensureBridge(vni: number, vxName: string, remoteMacs: string[]): Promise<void> {
    const fp = await this.get();
    if (!fp) return;
    try {
      const link = await withNetlink(this.netns, (s) => getLink(s, vxName));
      if (!link) throw new Error(`${vxName} is missing`);
      fp.ensureBridge(vni, link.index, vxName, remoteMacs);
    } catch (e) {
      fp.removeBridge(vni);
      this.failed(`bridge vni ${vni}`, e);
    }
  }

  updateRemotes(vni: number, add: string[], remove: string[]): void {
    this.fp?.updateRemotes(vni, add, remove);
  }

  /** Before the bridge goes. */
  removeBridge(vni: number): void {
    this.fp?.removeBridge(vni);
  }

  /** Before a filter is bound to the interface. */
  dropPort(ifname: string): void {
    this.fp?.dropPort(ifname);
  }

  /** Before the interface is deleted. */
  forgetDevice(ifname: string): void {
    this.fp?.forgetDevice(ifname);
  }

  /** Frames of these MACs take the bridge until `release` (a probe traces them through its nftables). */
  hold(macs: string[]): void {
    this.fp?.hold(macs);
  }

  /** Ends a hold: the held local ports come back at once, from the last port list. */
  async release(macs: string[]): Promise<void> {
    this.fp?.release(macs);
    if (this.lastPorts) await this.setPorts(this.lastPorts);
  }

  async setPorts(ports: FastPort[]): Promise<void> {
    this.lastPorts = ports;
    const fp = this.fp ?? (ports.length ? await this.get() : undefined);
    if (!fp) return;
    try {
      // A port whose veth is still being made is in the topology a moment before the kernel: not worth a line.
      const skipped = (await fp.setPorts(ports)).filter((s) => !s.endsWith(': no such interface')).join('; ');
      if (skipped && skipped !== this.lastSkipped) this.log(`fast path: left on the bridge path: ${skipped}`);
      this.lastSkipped = skipped;
    } catch (e) {
      this.failed('ports', e);
    }
  }

  status(): FastPathStatus {
    const fp = this.fp;
    if (!fp) {
      const state = this.enabled ? 'unavailable' : 'off';
      const reason = this.enabled ? (this.unavailable ?? 'loading') : 'turned off (--fast-path off)';
      return { state, reason, ports: [], outcomes: {}, counts: {} };
    }
    return {
      state: 'on',
      ...(this.lastError ? { reason: this.lastError } : {}),
      ports: fp.carried(),
      outcomes: fp.outcomes(),
      counts: Object.fromEntries(fp.portCounts()),
    };
  }
}
