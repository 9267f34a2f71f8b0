// Drift of a served distribution, from Prometheus histogram buckets. Pure.
//
// A histogram's `_bucket` series are cumulative (observations ≤ le). `increase(...[window])` summed by
// `le` gives the cumulative counts over the window; the observations in each bucket are the deltas
// between neighbouring bounds. The Population Stability Index compares the share of observations per
// bucket in the live window (a) with the baseline (e):
//
//   PSI = Σ (aᵢ − eᵢ) · ln(aᵢ / eᵢ)
//
// An empty bucket has a share of 0 and would make the logarithm infinite, so shares are floored at
// `psiEpsilon` (the usual practice); a bucket empty on both sides then contributes exactly 0.
// Rules of thumb: < 0.1 no real change, 0.1–0.25 a moderate shift, > 0.25 a major one.
import type { BucketCount, Check, DriftBaseline } from '../../api/generated.js';
import { fmt, type Measurement } from '../analysis/evaluate.js';
import { defaultDriftWindow } from './decide.js';

export const psiEpsilon = 1e-4;

/** Bucket bounds in numeric order, with +Inf last. */
function boundValue(le: string): number {
  if (le === '+Inf' || le === 'Inf') return Number.POSITIVE_INFINITY;
  return Number(le);
}

/** Observations per bucket from cumulative `le` counts (in any order); negative deltas count 0. */
export function bucketsFromCumulative(cumulative: { le: string; value: number }[]): BucketCount[] {
  const sorted = [...cumulative].filter((c) => !Number.isNaN(boundValue(c.le))).sort((a, b) => boundValue(a.le) - boundValue(b.le));
  let previous = 0;
  return sorted.map(({ le, value }) => {
    const v = Number.isFinite(value) ? value : 0;
    const count = Math.max(0, v - previous);
    previous = Math.max(previous, v);
    return { le, count };
  });
}

export const totalOf = (buckets: BucketCount[]) => buckets.reduce((sum, b) => sum + b.count, 0);

/** A bucket named by its range, as a person reads it: ≤0.1, (0.1, 0.25], >10. */
export function bucketRange(buckets: BucketCount[], i: number): string {
  const le = buckets[i]!.le;
  if (i === 0) return `≤${le}`;
  const lower = buckets[i - 1]!.le;
  return boundValue(le) === Number.POSITIVE_INFINITY ? `>${lower}` : `(${lower}, ${le}]`;
}

export interface PsiResult {
  psi: number;
  /** Index of the bucket that contributes most, its range and its contribution. */
  top: { index: number; range: string; contribution: number; expected: number; actual: number };
  contributions: number[];
}

/** PSI of `live` against `baseline`; both must have the same bounds (see sameBounds) and non-zero totals. */
export function populationStabilityIndex(baseline: BucketCount[], live: BucketCount[]): PsiResult {
  const e = totalOf(baseline);
  const a = totalOf(live);
  const contributions = baseline.map((b, i) => {
    const expected = Math.max(b.count / e, psiEpsilon);
    const actual = Math.max((live[i]?.count ?? 0) / a, psiEpsilon);
    return (actual - expected) * Math.log(actual / expected);
  });
  let top = 0;
  contributions.forEach((c, i) => { if (c > contributions[top]!) top = i; });
  return {
    psi: contributions.reduce((s, c) => s + c, 0),
    contributions,
    top: { index: top, range: bucketRange(baseline, top), contribution: contributions[top] ?? 0, expected: (baseline[top]?.count ?? 0) / e, actual: (live[top]?.count ?? 0) / a },
  };
}

export function sameBounds(a: BucketCount[], b: BucketCount[]): boolean {
  return a.length === b.length && a.every((x, i) => boundValue(x.le) === boundValue(b[i]!.le));
}

export const maxBaselineBuckets = 64;

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/**
 * One drift measurement from the live window's buckets: captures the baseline first when there is
 * none (a freshly captured baseline is the live window itself, so its PSI is 0), then compares.
 * Windows with fewer than `minSamples` observations (at least 1) are inconclusive.
 */
export function judgeDrift(check: Check, baseline: DriftBaseline | undefined, live: BucketCount[], now: string): { measurement: Measurement; baseline?: DriftBaseline } {
  const d = check.drift!;
  const window = d.window ?? defaultDriftWindow;
  const min = Math.max(1, d.minSamples ?? 1);
  const total = totalOf(live);
  if (!baseline) {
    if (total < min) return { measurement: { phase: 'Inconclusive', samples: total, message: `no baseline yet: ${fmt(total)} observations in the last ${window}, ${fmt(min)} needed to capture one` } };
    if (live.length > maxBaselineBuckets) return { measurement: { phase: 'Error', message: `the histogram has ${live.length} buckets; a baseline keeps at most ${maxBaselineBuckets}` } };
    baseline = { check: check.name, capturedAt: now, window, samples: total, buckets: live };
  }
  if (!sameBounds(baseline.buckets, live)) {
    return { measurement: { phase: 'Error', message: `bucket bounds changed since the baseline was captured (${baseline.buckets.map((b) => b.le).join(',')} → ${live.map((b) => b.le).join(',') || 'none'}); capture a new baseline` }, baseline };
  }
  if (total < min) return { measurement: { phase: 'Inconclusive', samples: total, message: `${fmt(total)} observations in the last ${window} < minSamples ${fmt(min)}: too little traffic to judge` }, baseline };
  const r = populationStabilityIndex(baseline.buckets, live);
  const failed = r.psi > d.maxPSI;
  return {
    baseline,
    measurement: {
      phase: failed ? 'Failed' : 'Passed', value: r.psi, samples: total,
      message: `PSI ${fmt(r.psi)} ${failed ? '>' : '≤'} ${fmt(d.maxPSI)}; bucket ${r.top.range} contributes most (${fmt(r.top.contribution)}: ${pct(r.top.expected)} of the baseline, ${pct(r.top.actual)} now)`,
    },
  };
}
