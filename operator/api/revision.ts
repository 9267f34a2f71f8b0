// The revision hash: what makes a new revision is any change to model, runtime, resources or
// scheduling, and nothing else (replicas, autoscaling, traffic, rollout and paused never start one).
import { createHash } from 'node:crypto';
import type { ModelDeploymentSpec } from './generated.js';

/**
 * JSON with object keys sorted at every depth, so equal specs always hash equally. Every reconcile
 * runs it over each desired child (the applied hash), so it builds one string without intermediate
 * arrays; its output must never change, because revision hashes name Deployments
 * (test/unit/runtime-helpers.test.ts holds it to the plain definition).
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) {
      if (i) out += ',';
      // As Array.prototype.join: an element with no JSON form is empty.
      out += canonicalJson(value[i]) ?? '';
    }
    return `${out}]`;
  }
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).sort();
  let out = '{';
  let first = true;
  for (const k of keys) {
    const v = obj[k];
    if (v === undefined) continue;
    if (!first) out += ',';
    first = false;
    out += `${JSON.stringify(k)}:${canonicalJson(v)}`;
  }
  return `${out}}`;
}

export type RevisionSpec = Pick<ModelDeploymentSpec, 'model' | 'runtime' | 'resources' | 'scheduling'>;

export function revisionSpec(spec: ModelDeploymentSpec): RevisionSpec {
  return { model: spec.model, runtime: spec.runtime, resources: spec.resources, scheduling: spec.scheduling };
}

/** 10 hex characters: short enough for object names, a label value, and collision-safe per object. */
export function revisionHash(spec: ModelDeploymentSpec): string {
  return createHash('sha256').update(canonicalJson(revisionSpec(spec))).digest('hex').slice(0, 10);
}
