// Pure judgement of measurements: bounds, stable comparison, prediction agreement, failure counting,
// and which checks are due. The providers (prometheus.ts, http.ts, webhook.ts) only measure.
import type { Bounds, Check, CheckResult, ModelDeploymentSpec, RolloutStatus, StableComparison } from '../../api/generated.js';

export const defaultAnalysisIntervalMs = 30_000;

/** The checks analysed during a rollout; podHealth is built in and judged from observations. */
export function analysisChecks(spec: ModelDeploymentSpec): Check[] {
  return (spec.rollout?.analysis?.checks ?? []).filter((c) => !c.podHealth);
}

export type Phase = 'Passed' | 'Failed' | 'Inconclusive' | 'Error';

export interface Measurement {
  phase: Phase;
  value?: number | string;
  stableValue?: number | string;
  samples?: number;
  message: string;
}

export const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toPrecision(4).replace(/\.?0+$/, ''));

/** Judges a numeric value against pass bounds and, when given, the stable revision's value. */
export function judgeValue(value: number, bounds: Bounds | undefined, compare: StableComparison | undefined, stableValue?: number): Measurement {
  if (bounds?.max !== undefined && value > bounds.max) return { phase: 'Failed', value, message: `${fmt(value)} > ${fmt(bounds.max)}` };
  if (bounds?.min !== undefined && value < bounds.min) return { phase: 'Failed', value, message: `${fmt(value)} < ${fmt(bounds.min)}` };
  if (compare) {
    if (stableValue === undefined || Number.isNaN(stableValue)) {
      return { phase: 'Inconclusive', value, message: 'no stable value to compare with' };
    }
    // A zero stable value makes any ratio infinite; then the canary must be zero too to pass a maxRatio.
    const ratio = stableValue === 0 ? (value === 0 ? 1 : Number.POSITIVE_INFINITY) : value / stableValue;
    if (compare.maxRatio !== undefined && ratio > compare.maxRatio) {
      return { phase: 'Failed', value, stableValue, message: `${fmt(value)} is ${fmt(ratio)}× stable ${fmt(stableValue)} (max ${fmt(compare.maxRatio)}×)` };
    }
    if (compare.minRatio !== undefined && ratio < compare.minRatio) {
      return { phase: 'Failed', value, stableValue, message: `${fmt(value)} is ${fmt(ratio)}× stable ${fmt(stableValue)} (min ${fmt(compare.minRatio)}×)` };
    }
    return { phase: 'Passed', value, stableValue, message: `${fmt(value)} vs stable ${fmt(stableValue)}` };
  }
  return { phase: 'Passed', value, message: fmt(value) };
}

/** Flattens a JSON value into the numbers (or strings) it holds, in document order. */
export function leaves(value: unknown): (number | string | boolean | null)[] {
  if (Array.isArray(value)) return value.flatMap(leaves);
  if (value && typeof value === 'object') return Object.values(value).flatMap(leaves);
  return [value as number | string | boolean | null];
}

/**
 * Prediction agreement between canary and stable: the share of positions whose values agree (numbers
 * within maxAbsDiff, anything else equal). Fails below minAgreement (default: all must agree).
 */
export function judgeAgreement(canary: unknown, stable: unknown, maxAbsDiff = 0, minAgreement = 1): Measurement {
  const a = leaves(canary);
  const b = leaves(stable);
  if (a.length === 0 || b.length === 0) return { phase: 'Failed', message: 'no values at jsonPath in one of the responses' };
  if (a.length !== b.length) {
    return { phase: 'Failed', value: 0, message: `canary returned ${a.length} values, stable ${b.length}` };
  }
  let agree = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (typeof x === 'number' && typeof y === 'number' ? Math.abs(x - y) <= maxAbsDiff : x === y) agree++;
  }
  const rate = agree / a.length;
  const phase = rate >= minAgreement ? 'Passed' : 'Failed';
  return { phase, value: rate, samples: a.length, message: `agreement ${fmt(rate)} (${agree}/${a.length} within ${fmt(maxAbsDiff)}; min ${fmt(minAgreement)})` };
}

/**
 * The floor of every measurement interval. Each measurement calls out of the operator and writes
 * status; the CRD refuses less, and objects stored before it said so are held to it here.
 */
export const minIntervalMs = 5_000;

/**
 * Measurements count from the later of the step's start and the canary's first ready pod, and none
 * counts before it: a model that loads for many minutes is not judged before it can answer.
 */
export function measuredSince(rollout: RolloutStatus | undefined, fallbackMs: number): number {
  if (!rollout?.canaryReadyAt) return Number.POSITIVE_INFINITY;
  const step = rollout.stepStartedAt ? Date.parse(rollout.stepStartedAt) : fallbackMs;
  return Math.max(step, Date.parse(rollout.canaryReadyAt));
}

/** How often analysis measures each check. */
export const analysisIntervalMs = (spec: ModelDeploymentSpec) => Math.max(minIntervalMs, durationMs(spec.rollout?.analysis?.interval, defaultAnalysisIntervalMs));

export function durationMs(d: string | undefined, fallbackMs: number): number {
  if (!d) return fallbackMs;
  let total = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) {
    total += Number(m[1]) * { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return total;
}

/** Checks whose last measurement is older than the interval, or that have none since `since`. */
export function dueChecks(checks: Check[], prior: CheckResult[], since: number, now: number, intervalMs: number): Check[] {
  return checks.filter((c) => {
    const last = prior.find((r) => r.check === c.name);
    const at = last?.at ? Date.parse(last.at) : 0;
    return at < since || now - at >= intervalMs;
  });
}

/** Folds a measurement into the check's running result: failures accumulate over the rollout. */
export function recordResult(check: Check, prior: CheckResult | undefined, m: Measurement, now: string): CheckResult {
  const failures = (prior?.failures ?? 0) + (m.phase === 'Failed' ? 1 : 0);
  return {
    check: check.name,
    phase: m.phase,
    passed: m.phase === 'Passed',
    ...(m.value !== undefined ? { value: typeof m.value === 'number' ? fmt(m.value) : m.value } : {}),
    ...(m.stableValue !== undefined ? { stableValue: typeof m.stableValue === 'number' ? fmt(m.stableValue) : m.stableValue } : {}),
    ...(m.samples !== undefined ? { samples: m.samples } : {}),
    failures,
    message: m.message.slice(0, 2000),
    at: now,
  };
}

/** A check has failed the rollout once its failures exceed failureLimit (default 0: the first one). */
export function checkFailed(check: Check, result: CheckResult | undefined): boolean {
  return !!result && (result.failures ?? 0) > (check.failureLimit ?? 0);
}
