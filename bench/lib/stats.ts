// Percentiles of samples, and of Prometheus histograms from the difference of two scrapes.

/** Nearest-rank percentile (p in 0..100) of unsorted values; undefined when there are none. */
export function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Summary {
  count: number;
  p50?: number;
  p90?: number;
  p99?: number;
  max?: number;
}

export function summarize(values: number[]): Summary {
  return {
    count: values.length,
    p50: percentile(values, 50),
    p90: percentile(values, 90),
    p99: percentile(values, 99),
    max: values.length ? Math.max(...values) : undefined,
  };
}

export interface Bucket { le: number; count: number }

/**
 * The q-quantile (0..1) of a cumulative Prometheus histogram, interpolated linearly inside its bucket
 * as histogram_quantile() does. `upper` is the bucket's upper bound: the value is at most that.
 */
export function histogramQuantile(q: number, buckets: Bucket[]): { value: number; upper: number; count: number } | undefined {
  const sorted = [...buckets].sort((a, b) => a.le - b.le);
  const total = sorted.at(-1)?.count ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevLe = 0;
  let prevCount = 0;
  for (const b of sorted) {
    if (b.count >= rank) {
      if (!Number.isFinite(b.le)) return { value: prevLe, upper: Number.POSITIVE_INFINITY, count: total };
      const inBucket = b.count - prevCount;
      const value = inBucket > 0 ? prevLe + ((b.le - prevLe) * (rank - prevCount)) / inBucket : b.le;
      return { value, upper: b.le, count: total };
    }
    prevLe = b.le;
    prevCount = b.count;
  }
  return undefined;
}

/** Bucket counts of `after` minus `before` (same le values): the observations between two scrapes. */
export function bucketDelta(after: Bucket[], before: Bucket[]): Bucket[] {
  const prior = new Map(before.map((b) => [b.le, b.count]));
  return after.map((b) => ({ le: b.le, count: b.count - (prior.get(b.le) ?? 0) }));
}

export const round = (v: number | undefined, digits = 2): number | undefined =>
  v === undefined || !Number.isFinite(v) ? v : Math.round(v * 10 ** digits) / 10 ** digits;
