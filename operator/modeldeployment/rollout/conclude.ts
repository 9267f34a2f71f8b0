// The last step: the conditions and the status. Each condition is written here and nowhere else
// (Drifting excepted, which monitoring owns), from what the steps before found. Pure.
import type { Condition, ModelDeployment, ModelDeploymentStatus } from '../../api/generated.js';
import { scalerFor, usesExternalMetrics } from '../desired/hpa.js';
import { setCondition } from '../status.js';
import { condition, type Decision, type Plan, type PlanContext } from './decision.js';
import { servingState } from './monitoring.js';

const without = (conditions: Condition[], type: string) => conditions.filter((c) => c.type !== type);

/**
 * kstatus's conventions (Flux, kpt, Config Sync read them): `Reconciling` while something is on its
 * way, `Stalled` when nothing will progress without a change to the spec. Each exists only while it
 * is true, and never both.
 */
export function gitOpsConditions(conditions: Condition[], state: { type: 'Reconciling' | 'Stalled'; reason: string; message: string } | undefined, generation: number, now: string): Condition[] {
  let out = conditions;
  for (const type of ['Reconciling', 'Stalled'] as const) {
    out = state?.type === type ? setCondition(out, condition(type, 'True', state.reason, state.message, generation), now) : without(out, type);
  }
  return out;
}

/** AutoscalingReady exists only while autoscaling is set; it says when the HPA cannot get its metric. */
export function autoscalingCondition(md: ModelDeployment, conditions: Condition[], ctx: PlanContext, generation: number, now: string): Condition[] {
  if (!md.spec.autoscaling) return without(conditions, 'AutoscalingReady');
  if (scalerFor(md, ctx.kedaAvailable) === 'KEDA') {
    return setCondition(conditions, condition('AutoscalingReady', 'True', 'ScaledObjectConfigured', `KEDA ScaledObject ${md.metadata!.name} scales between ${md.spec.autoscaling.minReplicas ?? 1} and ${md.spec.autoscaling.maxReplicas} replicas`, generation), now);
  }
  if (usesExternalMetrics(md) && ctx.externalMetricsAvailable === false) {
    return setCondition(conditions, condition('AutoscalingReady', 'False', 'ExternalMetricsUnavailable',
      'Prometheus autoscaling metrics need the external.metrics.k8s.io API (prometheus-adapter or KEDA), which this cluster does not serve; the HPA keeps the current replicas', generation), now);
  }
  return setCondition(conditions, condition('AutoscalingReady', 'True', 'HPAConfigured', `HPA ${md.metadata!.name} scales between ${md.spec.autoscaling.minReplicas ?? 1} and ${md.spec.autoscaling.maxReplicas} replicas`, generation), now);
}

export function conclude(d: Decision): Plan {
  const { md, status, total, generation, now } = d;
  const servingHash = status.stableRevision?.hash;

  // Existing revisions keep their images until a runtime upgrade is released (runtime-pin.ts).
  const outdated = servingHash && !status.runtimeUpgrade ? d.outdated.get(servingHash) : undefined;
  if (outdated) {
    d.setCondition(d.condition('RuntimeOutdated', 'True', 'OperatorUpgraded',
      `revision ${servingHash} runs ${outdated.running.join(', ')}; this operator would run ${outdated.wanted.join(', ')}. Annotate modelship.io/upgrade-runtime=${servingHash} to roll its pods over (at most --max-concurrent-rollouts at a time); a new revision gets them anyway`.slice(0, 2000)));
  } else d.dropCondition('RuntimeOutdated');

  // These two exist only while they hold a canary.
  if (d.canaryState && d.inconclusive) d.setCondition(d.condition('AnalysisInconclusive', 'True', 'NotEnoughData', d.inconclusive));
  else d.dropCondition('AnalysisInconclusive');
  if (d.canaryState && d.capacityBlocked) d.setCondition(d.condition('CapacityBlocked', 'True', 'Unschedulable', d.capacityBlocked));
  else d.dropCondition('CapacityBlocked');

  const serving = servingState(d);
  const stableReady = serving?.ready ?? 0;
  status.readyReplicas = stableReady + (d.canaryState && d.canaryTraffic ? d.canaryState.ready : 0);
  if (d.ready) d.setCondition(d.ready);
  else if (servingHash && d.stable) {
    const serves = stableReady > 0 || total === 0;
    // Scaled to zero is a steady state a GitOps tool should call healthy: Ready, with the reason.
    const message = total === 0
      ? `scaled to zero: revision ${servingHash} (model ${serving?.spec.model.version}) runs no pod${md.spec.autoscaling?.minReplicas === 0 ? '; a metric above its activationValue wakes it' : ''}`
      : `revision ${servingHash} (model ${serving?.spec.model.version}) serves ${stableReady}/${d.stableReplicas} ready replicas${d.canaryState ? `; canary ${d.canaryState.hash} has ${d.canaryState.ready}` : ''}`;
    const reason = total === 0 ? 'ScaledToZero' : serves ? 'StableServing' : serving?.trouble?.reason ?? 'WaitingForReplicas';
    d.setCondition(d.condition('Ready', serves ? 'True' : 'False', reason, message));
  }
  const progressing = d.progressing!;
  d.setCondition(progressing);
  d.setCondition(d.degraded ?? d.condition('Degraded', 'False', 'AsExpected', ''));
  let conditions = autoscalingCondition(md, d.conditions, d.ctx, generation, now);
  // Stalled: only a change to the spec (or a retry) moves it on. Reconciling: it is on its way.
  const rejectedServes = status.rejectedRevision?.hash === d.hash && !d.canaryState;
  const degraded = conditions.find((c) => c.type === 'Degraded');
  const stalled = degraded?.status === 'True' && (degraded.reason === 'ProgressDeadlineExceeded' || rejectedServes)
    ? { type: 'Stalled' as const, reason: degraded.reason ?? 'RolledBack', message: degraded.message ?? '' }
    : undefined;
  const inProgress = progressing.status === 'True' ? { type: 'Reconciling' as const, reason: progressing.reason ?? 'Progressing', message: progressing.message ?? '' } : undefined;
  conditions = gitOpsConditions(conditions, stalled ?? inProgress, generation, now);

  let phase = d.statusPhase;
  if (phase === 'Healthy' && servingHash && stableReady === 0 && total > 0) phase = 'Pending';
  status.phase = phase;
  status.conditions = conditions;
  status.history = d.history.slice(0, Math.max(d.historyLimit, 1));
  // A revision that serves or rolls out is not retiring, whatever step decided that last.
  const retiring = d.retiring.filter((r) => r.hash !== servingHash && r.hash !== status.canaryRevision?.hash);
  if (retiring.length) status.retiring = retiring;
  else delete status.retiring;
  if (Object.keys(d.rollout).length) status.rollout = d.rollout;
  else delete status.rollout;
  // Results stay after the rollout ends: they are why it was promoted or rolled back.
  if (d.ctx.analysis || d.podResult) {
    const others = (d.ctx.analysis ?? status.analysis?.results ?? []).filter((r) => r.check !== d.podResult?.check);
    status.analysis = { results: d.podResult ? [d.podResult, ...others] : others };
  }
  return {
    apply: d.apply, delete: d.deletes, remove: d.remove, events: d.events, removeAnnotations: d.removeAnnotations, bindAnnotations: d.bindAnnotations,
    status: JSON.parse(JSON.stringify(status)) as ModelDeploymentStatus,
    ...(d.requeue !== undefined && Number.isFinite(d.requeue) ? { requeueAfterMs: d.requeue } : {}),
  };
}
