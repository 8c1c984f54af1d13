// Addresses released in the store while an interface on this host may still hold them. A detach frees a port's
// addresses beside the deletion of its veth instead of after it (the veth's deletion waits for RCU grace periods,
// the release for an fsync: side by side, a detach waits for the longer, not the sum). Until the veth is gone the
// addresses stay here, and this host's allocations treat them as taken, so none is handed out while an interface
// still holds it. Only for a store this process alone writes (Store.exclusive): another host could not see this.
// Memory only: after a crash the agent's first pass sweeps the veth of a deleted port before it serves attaches.

/** How long addresses stay held when the interface's deletion failed: the periodic resync's sweep removes it. */
export const FAILED_UNPLUG_HOLD_MS = 60_000;

export class Quarantine {
  /** Per bridge, address → how many releases hold it. */
  private readonly held = new Map<string, Map<string, number>>();

  /** Hold `addresses` of `bridgeId` until `until` settles (FAILED_UNPLUG_HOLD_MS longer if it rejects). */
  hold(bridgeId: string, addresses: readonly string[], until: Promise<unknown>): void {
    if (addresses.length === 0) return;
    const m = this.held.get(bridgeId) ?? this.held.set(bridgeId, new Map()).get(bridgeId)!;
    for (const a of addresses) m.set(a, (m.get(a) ?? 0) + 1);
    const lift = (): void => {
      for (const a of addresses) {
        const n = (m.get(a) ?? 1) - 1;
        if (n > 0) m.set(a, n);
        else m.delete(a);
      }
      if (m.size === 0 && this.held.get(bridgeId) === m) this.held.delete(bridgeId);
    };
    until.then(lift, () => setTimeout(lift, FAILED_UNPLUG_HOLD_MS).unref());
  }

  has(bridgeId: string, address: string): boolean {
    return this.held.get(bridgeId)?.has(address) ?? false;
  }

  /** `allocations` with this bridge's held addresses added as taken (for SubnetPlan.freeAddress). */
  taken(bridgeId: string, allocations: Record<string, unknown>): Record<string, unknown> {
    const m = this.held.get(bridgeId);
    if (!m) return allocations;
    const out: Record<string, unknown> = { ...allocations };
    for (const a of m.keys()) out[a] ??= true;
    return out;
  }
}
