// The revision hash: what makes a new revision is any change to model, runtime, resources or
// scheduling, and nothing else (replicas, autoscaling, traffic, rollout and paused never start one).
import { createHash } from 'node:crypto';
import type { ModelDeploymentSpec } from './generated.js';

/** JSON with object keys sorted at every depth, so equal specs always hash equally. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export type RevisionSpec = Pick<ModelDeploymentSpec, 'model' | 'runtime' | 'resources' | 'scheduling'>;

export function revisionSpec(spec: ModelDeploymentSpec): RevisionSpec {
  return { model: spec.model, runtime: spec.runtime, resources: spec.resources, scheduling: spec.scheduling };
}

/** 10 hex characters: short enough for object names, a label value, and collision-safe per object. */
export function revisionHash(spec: ModelDeploymentSpec): string {
  return createHash('sha256').update(canonicalJson(revisionSpec(spec))).digest('hex').slice(0, 10);
}
