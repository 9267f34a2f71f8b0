// One copy of each string that many cached objects repeat. JSON.parse makes a new string for every
// value it reads, so a thousand Deployments of the same runtime hold a thousand copies of its image,
// its probe paths, its env names and the namespace; a thousand pods, as many copies of their labels.
// The informers pass what they keep through a pool, and equal strings become one. Strings are values
// in JavaScript, so nothing that reads the cache can tell the difference.

/** Keys whose values are different on every object or every write: pooling them would only fill the pool. */
const uniqueKeys = new Set([
  'uid', 'resourceVersion', 'creationTimestamp', 'deletionTimestamp', 'lastTransitionTime', 'lastUpdateTime',
  'lastProbeTime', 'startedAt', 'finishedAt', 'startTime', 'podIP', 'ip', 'hostIP', 'clusterIP',
]);

export class StringPool {
  private readonly strings = new Map<string, string>();

  /**
   * @param maxEntries past this the pool starts again empty, so it never grows without bound: the
   *   objects keep the copies they have, and strings seen from then on are pooled anew.
   * @param maxLength longer strings (a recorded spec, a message) are seldom repeated and stay as they are.
   */
  constructor(private readonly maxEntries = 100_000, private readonly maxLength = 256) {}

  get size(): number {
    return this.strings.size;
  }

  intern(s: string): string {
    if (s.length > this.maxLength) return s;
    const pooled = this.strings.get(s);
    if (pooled !== undefined) return pooled;
    if (this.strings.size >= this.maxEntries) this.strings.clear();
    this.strings.set(s, s);
    return s;
  }

  /** Replaces, in place, every string in `value` (keys aside, which V8 already shares) by its pooled copy. */
  internAll<T>(value: T): T {
    return this.walk(value) as T;
  }

  private walk(value: unknown): unknown {
    if (typeof value === 'string') return this.intern(value);
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = this.walk(value[i]);
    } else if (value !== null && typeof value === 'object') {
      const obj = value as Record<string, unknown>;
      for (const key in obj) {
        if (!uniqueKeys.has(key)) obj[key] = this.walk(obj[key]);
      }
    }
    return value;
  }
}
