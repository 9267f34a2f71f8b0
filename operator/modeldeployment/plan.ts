// The decision for one reconcile: a pure function of (spec, status, observations, now) → the objects to
// apply, the objects to delete, the next status, the events to emit and when to look again.
//
// Revisions: the stable one serves; a new spec hash becomes the canary, which walks the rollout steps
// (none: it comes up at full size and takes over when ready), is analysed on the way, and is promoted
// or rolled back. Every bit of progress is in status, so a restarted operator resumes exactly.
//
// It is a flat pipeline of steps over one Decision (rollout/decision.ts), in the manner of Argo
// Rollouts' canary reconciler: take the operations, choose the revisions and so the phase, act on the
// phase (rollout/first.ts, steady.ts, canary.ts), drain a leaving canary, build the children, monitor
// the serving revision, and conclude with the conditions and one status. Whatever may be told to the
// router and the Deployments passes through the traffic guard (rollout/guard.ts).
import type { ModelDeployment } from '../api/generated.js';
import { autoscalingProblems } from './desired/scaledobject.js';
import { endpointPickerProblem } from './desired/inferencepool.js';
import { serviceUrl } from './desired/service.js';
import { tenancyProblems } from './tenancy.js';
import { instanceLabel } from './labels.js';
import { resolveRuntime } from './resolve.js';
import { advanceCanary } from './rollout/canary.js';
import { buildChildren } from './rollout/children.js';
import { conclude, gitOpsConditions } from './rollout/conclude.js';
import { condition, Decision, type Observations, type Plan, type PlanContext } from './rollout/decision.js';
import { drainLeaving } from './rollout/drain.js';
import { deployFirst } from './rollout/first.js';
import { monitor } from './rollout/monitoring.js';
import { actOnRetry, chooseRevisions, takeOperations } from './rollout/select.js';
import { holdSteady } from './rollout/steady.js';
import { setCondition } from './status.js';

export type { ChildRef, Observations, Plan, PlanContext, PlannedEvent } from './rollout/decision.js';
export { gitOpsConditions };

export function plan(md: ModelDeployment, obs: Observations, ctx: PlanContext): Plan {
  const invalid = invalidSpec(md, ctx);
  if (invalid) return invalid;
  const d = new Decision(md, obs, ctx);
  d.status = { ...d.status, observedGeneration: d.generation, selector: `${instanceLabel}=${d.name}`, url: serviceUrl(md), replicas: d.total };
  takeOperations(d);
  d.stableHash = d.prior.stableRevision?.hash;
  d.stable = d.stableHash ? d.revision(d.stableHash) : undefined;
  if (d.stableHash && !d.stable) return revisionUnknown(d);
  actOnRetry(d);
  chooseRevisions(d);
  if (d.phase === 'FirstRevision') deployFirst(d);
  else if (d.phase === 'Steady') holdSteady(d);
  else advanceCanary(d);
  drainLeaving(d);
  buildChildren(d);
  monitor(d);
  return conclude(d);
}

/** A spec that cannot be served: nothing is applied, and whatever serves keeps serving exactly as it was. */
function invalidSpec(md: ModelDeployment, ctx: PlanContext): Plan | undefined {
  let resolution = resolveRuntime(md.spec, md.metadata!.name!);
  const router = md.spec.traffic?.router;
  if (resolution.ok && (router === 'GatewayAPI' || router === 'InferencePool') && ctx.gatewayApiAvailable === false) {
    resolution = { ok: false, problems: [`traffic.router ${router} needs the Gateway API CRDs (HTTPRoute, gateway.networking.k8s.io/v1) in the cluster; install them or use ReplicaRatio`] };
  }
  if (resolution.ok && router === 'InferencePool' && ctx.inferencePoolAvailable === false) {
    resolution = { ok: false, problems: ['traffic.router InferencePool needs the Gateway API Inference Extension CRDs (InferencePool, inference.networking.k8s.io/v1) in the cluster; install them or use GatewayAPI'] };
  }
  const picker = router === 'InferencePool' ? endpointPickerProblem(md, ctx.endpointPicker) : undefined;
  if (picker) resolution = { ok: false, problems: [...(resolution.ok ? [] : resolution.problems), picker] };
  const scaling = resolution.ok ? autoscalingProblems(md, resolution.runtime.preset, ctx.kedaAvailable) : [];
  if (scaling.length) resolution = { ok: false, problems: scaling };
  const tenancy = tenancyProblems(md.spec, md.metadata?.namespace ?? '', ctx.tenancy);
  if (tenancy.length) resolution = { ok: false, problems: [...(resolution.ok ? [] : resolution.problems), ...tenancy] };
  if (resolution.ok) return undefined;
  const now = ctx.now.toISOString();
  const generation = md.metadata?.generation ?? 0;
  const prior = md.status ?? {};
  const message = resolution.problems.join('; ');
  let conditions = prior.conditions ?? [];
  const priorReady = conditions.find((c) => c.type === 'Ready');
  const events = priorReady?.reason !== 'InvalidSpec' || priorReady.message !== message ? [{ type: 'Warning' as const, reason: 'InvalidSpec', message }] : [];
  conditions = setCondition(conditions, condition('Ready', 'False', 'InvalidSpec', message, generation), now);
  conditions = setCondition(conditions, condition('Progressing', 'False', 'InvalidSpec', 'the spec cannot be served; fix it to continue', generation), now);
  if (!conditions.some((c) => c.type === 'Degraded')) conditions = setCondition(conditions, condition('Degraded', 'False', 'AsExpected', '', generation), now);
  return {
    apply: [], delete: [], remove: [], events, removeAnnotations: [], bindAnnotations: {},
    status: { ...prior, observedGeneration: generation, phase: prior.stableRevision ? prior.phase ?? 'Healthy' : 'Pending', conditions: gitOpsConditions(conditions, { type: 'Stalled', reason: 'InvalidSpec', message }, generation, now) },
  };
}

/**
 * A revision serves but its spec is nowhere (its Deployment and history entry are gone, or it no
 * longer resolves). Without it there is no stable to roll back to, so nothing may proceed: the
 * first-revision path would promote the spec with no steps. Hold, and say why.
 */
function revisionUnknown(d: Decision): Plan {
  const message = `the spec of the serving revision ${d.stableHash} is not recorded on its Deployment or in status.history; restore the Deployment ${d.name}-${d.stableHash} or revert the spec to that revision`;
  const events = d.prior.conditions?.find((c) => c.type === 'Progressing')?.reason !== 'RevisionUnknown' ? [{ type: 'Warning' as const, reason: 'RevisionUnknown', message }] : [];
  d.setCondition(d.condition('Progressing', 'False', 'RevisionUnknown', message));
  return {
    apply: [], delete: [], remove: [], events, removeAnnotations: [], bindAnnotations: {},
    status: { ...d.prior, observedGeneration: d.generation, conditions: gitOpsConditions(d.conditions, { type: 'Stalled', reason: 'RevisionUnknown', message }, d.generation, d.now) },
  };
}
