// The decision for one reconcile: a pure function of (spec, status, observations, now) → the objects to
// apply, the objects to delete, the next status, the events to emit and when to look again.
import type { Condition, HistoryEntry, ModelDeployment, ModelDeploymentStatus, RevisionInfo } from '../api/generated.js';
import { revisionHash, revisionSpec } from '../api/revision.js';
import type { KubeObject } from '../runtime/kube.js';
import { desiredDeployment } from './desired/deployment.js';
import { desiredHpa, usesExternalMetrics } from './desired/hpa.js';
import { desiredService, serviceUrl } from './desired/service.js';
import { instanceLabel, revisionLabel } from './labels.js';
import { resolveRuntime, type ResolvedRuntime } from './resolve.js';
import { observeDeployment, podTrouble, setCondition } from './status.js';

export interface Observations {
  /** Deployments owned by this ModelDeployment, by revision hash. */
  deployments: Map<string, KubeObject>;
  /** Pods of this ModelDeployment, any revision. */
  pods: KubeObject[];
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface Plan {
  apply: KubeObject[];
  delete: KubeObject[];
  status: ModelDeploymentStatus;
  events: PlannedEvent[];
  requeueAfterMs?: number;
}

export interface PlanContext {
  fetcherImage: string;
  now: Date;
  /** Whether the cluster serves external.metrics.k8s.io (prometheus-adapter, KEDA). */
  externalMetricsAvailable?: boolean;
}

const revisionInfo = (md: ModelDeployment, hash: string, runtime: ResolvedRuntime, since: string): RevisionInfo => ({
  hash,
  modelVersion: md.spec.model.version,
  modelURI: md.spec.model.uri,
  ...(md.spec.model.digest ? { modelDigest: md.spec.model.digest } : {}),
  image: runtime.image,
  preset: runtime.preset,
  since,
});

function historyEntry(md: ModelDeployment, hash: string, runtime: ResolvedRuntime, startedAt: string, finishedAt: string): HistoryEntry {
  return {
    revision: hash,
    modelVersion: md.spec.model.version,
    modelURI: md.spec.model.uri,
    ...(md.spec.model.digest ? { modelDigest: md.spec.model.digest } : {}),
    ...(md.spec.model.dataset ? { dataset: md.spec.model.dataset } : {}),
    image: runtime.image,
    startedAt,
    finishedAt,
    outcome: 'Promoted',
    spec: JSON.parse(JSON.stringify(revisionSpec(md.spec))) as Record<string, unknown>,
  };
}

/** AutoscalingReady exists only while autoscaling is set; it says when the HPA cannot get its metric. */
function autoscalingCondition(md: ModelDeployment, conditions: Condition[], ctx: PlanContext, generation: number, now: string): Condition[] {
  if (!md.spec.autoscaling) return conditions.filter((c) => c.type !== 'AutoscalingReady');
  const needsExternal = usesExternalMetrics(md);
  if (needsExternal && ctx.externalMetricsAvailable === false) {
    return setCondition(conditions, condition('AutoscalingReady', 'False', 'ExternalMetricsUnavailable',
      'Prometheus autoscaling metrics need the external.metrics.k8s.io API (prometheus-adapter or KEDA), which this cluster does not serve; the HPA keeps the current replicas', generation), now);
  }
  return setCondition(conditions, condition('AutoscalingReady', 'True', 'HPAConfigured', `HPA ${md.metadata!.name} scales between ${md.spec.autoscaling.minReplicas ?? 1} and ${md.spec.autoscaling.maxReplicas} replicas`, generation), now);
}

function condition(type: string, status: Condition['status'], reason: string, message: string, generation: number): Omit<Condition, 'lastTransitionTime'> {
  return { type, status, reason, message, observedGeneration: generation };
}

export function plan(md: ModelDeployment, obs: Observations, ctx: PlanContext): Plan {
  const now = ctx.now.toISOString();
  const generation = md.metadata?.generation ?? 0;
  const prior = md.status ?? {};
  const events: PlannedEvent[] = [];
  let conditions = prior.conditions ?? [];
  const name = md.metadata!.name!;

  const resolution = resolveRuntime(md.spec, name);
  if (!resolution.ok) {
    // Nothing is applied: whatever serves keeps serving, exactly as it was.
    const message = resolution.problems.join('; ');
    const priorReady = conditions.find((c) => c.type === 'Ready');
    if (priorReady?.reason !== 'InvalidSpec' || priorReady.message !== message) {
      events.push({ type: 'Warning', reason: 'InvalidSpec', message });
    }
    conditions = setCondition(conditions, condition('Ready', 'False', 'InvalidSpec', message, generation), now);
    conditions = setCondition(conditions, condition('Progressing', 'False', 'InvalidSpec', 'the spec cannot be served; fix it to continue', generation), now);
    conditions = setCondition(conditions, condition('Degraded', 'False', 'AsExpected', '', generation), now);
    return {
      apply: [], delete: [], events,
      status: { ...prior, observedGeneration: generation, phase: prior.stableRevision ? prior.phase ?? 'Healthy' : 'Pending', conditions },
    };
  }
  const runtime = resolution.runtime;
  const hash = revisionHash(md.spec);
  const replicas = md.spec.replicas ?? 1;
  const stableHash = prior.stableRevision?.hash;
  const stableDeploymentExists = stableHash !== undefined && obs.deployments.has(stableHash);
  // Without steps a new revision replaces the stable one: it comes up at full size beside it and takes
  // over once ready, so serving capacity never drops.
  const target = hash;
  const observed = observeDeployment(obs.deployments.get(target));
  const targetPods = obs.pods.filter((p) => p.metadata?.labels?.[revisionLabel] === target);
  const trouble = podTrouble(targetPods);
  const targetReady = !!observed && observed.observedGenerationCurrent && observed.replicas === replicas
    && observed.readyReplicas >= replicas && observed.updatedReplicas >= replicas;
  const promoted = targetReady && stableHash !== target;
  const role = promoted || stableHash === undefined || stableHash === target || !stableDeploymentExists ? 'stable' : 'canary';
  const apply: KubeObject[] = [
    desiredDeployment({ md, hash: target, runtime, role, replicas, fetcherImage: ctx.fetcherImage }),
    desiredService(md),
  ];
  const hpa = desiredHpa(md);
  if (hpa) apply.push(hpa);

  let status: ModelDeploymentStatus = {
    ...prior,
    observedGeneration: generation,
    selector: `${instanceLabel}=${name}`,
    url: serviceUrl(md),
    replicas,
  };
  const deletes: KubeObject[] = [];
  if (promoted) {
    status.stableRevision = revisionInfo(md, target, runtime, now);
    const superseded = (prior.history ?? []).map((h) => (h.revision === stableHash ? { ...h, outcome: h.outcome === 'Promoted' ? 'Superseded' as const : h.outcome } : h));
    status.history = [historyEntry(md, target, runtime, prior.rollout?.startedAt ?? now, now), ...superseded.filter((h) => h.revision !== target)]
      .slice(0, md.spec.revisionHistoryLimit ?? 10);
    events.push({ type: 'Normal', reason: 'Promoted', message: `revision ${target} (model ${md.spec.model.version}) is serving` });
  }
  const servingHash = promoted ? target : stableHash;
  for (const [h, dep] of obs.deployments) {
    if (h !== target && (promoted || h !== servingHash)) deletes.push(dep);
  }
  const servingObs = observeDeployment(servingHash ? obs.deployments.get(servingHash) : undefined);
  status.readyReplicas = (servingObs?.readyReplicas ?? 0) + (servingHash !== target ? observed?.readyReplicas ?? 0 : 0);
  if (stableHash === target && status.stableRevision) {
    // Keep the record current with what the builder resolves (e.g. a new default image), not stale.
    status.stableRevision = { ...status.stableRevision, image: runtime.image, preset: runtime.preset };
  }

  const serving = (servingObs?.readyReplicas ?? 0) > 0 || targetReady;
  if (targetReady) {
    conditions = setCondition(conditions, condition('Ready', 'True', 'StableServing', `revision ${target} (model ${md.spec.model.version}) serves ${observed.readyReplicas}/${replicas} ready replicas`, generation), now);
    conditions = setCondition(conditions, condition('Progressing', 'False', 'Complete', `revision ${target} is fully rolled out`, generation), now);
  } else {
    const why = trouble ? trouble.message : observed ? `${observed.readyReplicas}/${replicas} replicas of revision ${target} ready` : `creating revision ${target}`;
    const reason = trouble?.reason ?? (replicas === 0 ? 'ScaledToZero' : 'WaitingForReplicas');
    conditions = setCondition(conditions, condition('Ready', serving && stableHash !== target ? 'True' : 'False', serving && stableHash !== target ? 'StableServing' : reason,
      serving && stableHash !== target ? `revision ${stableHash} serves while ${target} rolls out: ${why}` : why, generation), now);
    conditions = setCondition(conditions, condition('Progressing', 'True', stableHash && stableHash !== target ? 'RollingUpdate' : 'Deploying', why, generation), now);
    if (trouble && conditions.find((c) => c.type === 'Ready')?.reason !== (prior.conditions ?? []).find((c) => c.type === 'Ready')?.reason) {
      events.push({ type: 'Warning', reason: trouble.reason, message: trouble.message });
    }
  }
  const deadline = !!observed?.progressDeadlineExceeded && !targetReady;
  conditions = setCondition(conditions, deadline
    ? condition('Degraded', 'True', 'ProgressDeadlineExceeded', `revision ${target} did not become ready within its progress deadline${trouble ? `: ${trouble.message}` : ''}`, generation)
    : condition('Degraded', 'False', 'AsExpected', '', generation), now);
  conditions = autoscalingCondition(md, conditions, ctx, generation, now);
  status.conditions = conditions;
  status.phase = deadline ? 'Degraded' : targetReady ? 'Healthy' : serving ? 'Progressing' : replicas === 0 ? 'Healthy' : 'Pending';
  if (!targetReady && !status.rollout?.startedAt) status.rollout = { ...(status.rollout ?? {}), startedAt: now };
  if (targetReady && status.rollout) {
    const { startedAt: _started, ...rest } = status.rollout;
    status.rollout = rest;
    if (Object.keys(rest).length === 0) delete status.rollout;
  }
  status = JSON.parse(JSON.stringify(status)) as ModelDeploymentStatus;
  return { apply, delete: deletes, status, events, ...(targetReady ? {} : { requeueAfterMs: 15_000 }) };
}
