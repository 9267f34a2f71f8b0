// The guard against acting on a stale cache. After the operator writes an object, its cache holds the
// old version until the watch delivers the write. A reconcile in that gap would decide from state the
// operator itself already replaced (and, say, record a promotion twice). So a write leaves an
// expectation of its resourceVersion; reconciles of that key wait until the watch has delivered it.
// Watch events arrive in order, so seeing that version means the cache is at least as new as the write.

export class WriteExpectations {
  private readonly pending = new Map<string, { resourceVersion: string; at: number }>();
  /** The last few versions the cache delivered per key: the watch can deliver our write before the write's response arrives. */
  private readonly recent = new Map<string, string[]>();
  private readonly expired = new Set<string>();

  constructor(
    /** After this long, assume the event was lost in a relist and stop waiting. */
    private readonly ttlMs = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  expect(key: string, resourceVersion: string | undefined): void {
    if (!resourceVersion || this.recent.get(key)?.includes(resourceVersion)) return;
    this.pending.set(key, { resourceVersion, at: this.now() });
  }

  /** Called for every object the cache receives. */
  observe(key: string, resourceVersion: string | undefined): void {
    if (!resourceVersion) return;
    const seen = [...(this.recent.get(key) ?? []), resourceVersion].slice(-8);
    this.recent.set(key, seen);
    if (this.pending.get(key)?.resourceVersion === resourceVersion) this.pending.delete(key);
  }

  /** True while the cache has not yet caught up with our last write of `key`. */
  isWaiting(key: string, cachedResourceVersion: string | undefined): boolean {
    const p = this.pending.get(key);
    if (!p) return false;
    if (p.resourceVersion === cachedResourceVersion) {
      this.pending.delete(key);
      return false;
    }
    if (this.now() - p.at > this.ttlMs) {
      this.pending.delete(key);
      this.expired.add(key);
      return false;
    }
    return true;
  }

  /**
   * True for a key whose expectation expired unmet, until confirmFresh: the cache may still be older
   * than our last write, so decisions must be checked against the object as the apiserver has it.
   */
  mayBeStale(key: string): boolean {
    return this.expired.has(key);
  }

  /** The apiserver's object was seen to be the cached one. */
  confirmFresh(key: string): void {
    this.expired.delete(key);
  }

  forget(key: string): void {
    this.pending.delete(key);
    this.recent.delete(key);
    this.expired.delete(key);
  }
}
