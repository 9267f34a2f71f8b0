// A cluster-wide limit on rollouts in progress (--max-concurrent-rollouts). One shared change (a chart
// value, an operator upgrade released everywhere) must not start every canary at once.
//
// What holds a slot is read from status as the cache delivers it (a canary, or a runtime upgrade, in
// progress), so the count survives restarts and leader changes. A reconcile about to start a rollout
// reserves a slot first, synchronously (so two workers cannot take the last slot), and the
// reservation turns into the status-backed hold when the cache shows it, or is given back.
export class RolloutSlots {
  private readonly active = new Set<string>();
  private readonly reserved = new Map<string, number>();

  constructor(
    /** 0: no limit. */
    readonly limit: number,
    /** A reservation whose rollout never showed up in status (a failed write) is dropped after this. */
    private readonly reservationTtlMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Called for every ModelDeployment the cache delivers: whether its status shows a rollout in progress. */
  observe(key: string, inProgress: boolean): void {
    if (inProgress) {
      this.active.add(key);
      this.reserved.delete(key);
    } else {
      this.active.delete(key);
    }
  }

  forget(key: string): void {
    this.active.delete(key);
    this.reserved.delete(key);
  }

  /** Whether `key` may run a rollout now; takes a slot for it when one is free. */
  tryAcquire(key: string): boolean {
    if (this.limit <= 0 || this.active.has(key) || this.reserved.has(key)) return true;
    const now = this.now();
    for (const [k, at] of this.reserved) if (now - at > this.reservationTtlMs) this.reserved.delete(k);
    if (this.active.size + this.reserved.size >= this.limit) return false;
    this.reserved.set(key, now);
    return true;
  }

  /** The decision did not start a rollout after all. */
  release(key: string): void {
    this.reserved.delete(key);
  }

  get inUse(): number {
    return this.active.size + this.reserved.size;
  }
}

/** Whether a ModelDeployment's status shows a rollout that holds a slot. */
export function holdsRolloutSlot(status: { canaryRevision?: unknown; runtimeUpgrade?: unknown } | undefined): boolean {
  return !!status?.canaryRevision || !!status?.runtimeUpgrade;
}
