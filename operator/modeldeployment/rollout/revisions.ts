// Where a revision's spec is kept, so that trimming the displayed history can never lose what serves.
//
// Each revision's Deployment carries its revision spec in an annotation, written with the Deployment
// itself: it lives exactly as long as the revision has pods, costs no extra object or write, and is
// removed with them. status.history keeps specs too, but only the last revisionHistoryLimit entries;
// it is the fallback for revisions that no longer have a Deployment (a rollback target).
import type { ModelDeployment, ModelDeploymentSpec } from '../../api/generated.js';
import { canonicalJson, revisionHash, revisionSpec } from '../../api/revision.js';
import type { KubeObject } from '../../api/object.js';

export const revisionSpecAnnotation = 'modelship.io/revision-spec';

/** The annotation value for a revision's Deployment. */
export function revisionSpecRecord(spec: ModelDeploymentSpec): string {
  return canonicalJson(revisionSpec(spec));
}

/**
 * The revision spec a Deployment records, if it is intact: an edited or truncated record hashes to
 * something else and is ignored rather than trusted.
 */
export function recordedRevisionSpec(deployment: KubeObject | undefined, hash: string): Partial<ModelDeploymentSpec> | undefined {
  const raw = deployment?.metadata?.annotations?.[revisionSpecAnnotation];
  if (!raw) return undefined;
  try {
    const parsed = JSON.parse(raw) as Partial<ModelDeploymentSpec>;
    if (!parsed || typeof parsed !== 'object' || !parsed.model) return undefined;
    return revisionHash(parsed as ModelDeploymentSpec) === hash ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The spec a revision was built from: the current spec for the newest, then the revision's own
 * Deployment, then history. Fields outside the revision (replicas, traffic, rollout) are today's.
 */
export function specOfRevision(md: ModelDeployment, hash: string, deployments: Map<string, KubeObject>): ModelDeploymentSpec | undefined {
  if (revisionHash(md.spec) === hash) return md.spec;
  const recorded = recordedRevisionSpec(deployments.get(hash), hash);
  if (recorded) return withRevision(md.spec, recorded);
  const entry = md.status?.history?.find((h) => h.revision === hash && h.spec);
  if (!entry) return undefined;
  const spec = withRevision(md.spec, entry.spec as Partial<ModelDeploymentSpec>);
  return revisionHash(spec) === hash ? spec : undefined;
}

/** Today's spec with a recorded revision's fields in place of its own; absent fields stay absent. */
function withRevision(current: ModelDeploymentSpec, recorded: Partial<ModelDeploymentSpec>): ModelDeploymentSpec {
  const { model: _m, runtime: _r, resources: _res, scheduling: _s, ...rest } = current;
  return { ...rest, ...recorded } as ModelDeploymentSpec;
}
