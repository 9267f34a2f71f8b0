// Reading the step list. Step indexes are 0-based; index === steps.length means "all steps done".
import type { RolloutStep } from '../../api/generated.js';

/** The canary weight in force at step i: the last setWeight at or before it, 100 once all are done. */
export function weightAt(steps: RolloutStep[], i: number): number {
  if (i >= steps.length) return 100;
  for (let j = i; j >= 0; j--) {
    const w = steps[j]?.setWeight;
    if (w !== undefined) return w;
  }
  return 0;
}

export function mirrorAt(steps: RolloutStep[], i: number): number {
  return steps[i]?.setMirror ?? 0;
}

export function describeStep(steps: RolloutStep[], i: number): string {
  const s = steps[i];
  if (!s) return 'promoting';
  if (s.setWeight !== undefined) return `${s.setWeight}% of traffic`;
  if (s.setMirror !== undefined) return `mirroring ${s.setMirror}% of traffic`;
  return s.pause?.duration ? `pause ${s.pause.duration}` : 'waiting for promote';
}
