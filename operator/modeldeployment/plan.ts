// The decision for one reconcile: a pure function of (spec, status, observations, now) → the objects to
// apply, the objects to delete, the next status, the events to emit and when to look again.
//
// Revisions: the stable one serves; a new spec hash becomes the canary, which walks the rollout steps
// (none: it comes up at full size and takes over when ready), is analysed on the way, and is promoted
// or rolled back. Every bit of progress is in status, so a restarted operator resumes exactly.
import type { Check, CheckResult, Condition, HistoryEntry, ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, RevisionInfo, RolloutStep } from '../api/generated.js';
import { revisionHash, revisionSpec } from '../api/revision.js';
import type { KubeObject } from '../runtime/kube.js';
import { checkFailed, durationMs } from './analysis/evaluate.js';
import { desiredDeployment, progressDeadlineSeconds } from './desired/deployment.js';
import { desiredHpa, usesExternalMetrics } from './desired/hpa.js';
import { desiredHttpRoute, routeCanaryWeight, type RouteState } from './desired/httproute.js';
import { desiredRevisionService, desiredService, serviceUrl } from './desired/service.js';
import { instanceLabel, revisionLabel } from './labels.js';
import { resolveRuntime, type ResolvedRuntime } from './resolve.js';
import { splitReplicas } from './rollout/capacity.js';
import { guardTraffic } from './rollout/guard.js';
import { bindOperations, type Operation } from './rollout/operations.js';
import { specOfRevision } from './rollout/revisions.js';
import { describeStep, mirrorAt, weightAt } from './rollout/steps.js';
import { decideMonitoring, type MonitoringInput } from './monitoring/decide.js';
import { observeDeployment, podTrouble, setCondition, type DeploymentObservation, type PodTrouble } from './status.js';

export interface Observations {
  /** Deployments owned by this ModelDeployment, by revision hash. */
  deployments: Map<string, KubeObject>;
  /** Pods of this ModelDeployment, any revision. */
  pods: KubeObject[];
  /** The live HTTPRoute (GatewayAPI): the weight it carries now is where the guard starts from. */
  route?: KubeObject;
  /** The live main Service (ReplicaRatio): whether it still selects every revision. */
  service?: KubeObject;
}

/** A child that exists only while the spec wants it: removed when the plan no longer applies it. */
export interface ChildRef {
  kind: 'Service' | 'HorizontalPodAutoscaler' | 'HTTPRoute';
  name: string;
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface Plan {
  apply: KubeObject[];
  delete: KubeObject[];
  /** Children to remove if they exist and are ours (the canary Service once no canary runs, an HPA or HTTPRoute no longer wanted). */
  remove: ChildRef[];
  status: ModelDeploymentStatus;
  events: PlannedEvent[];
  /** Operation annotations acted on (or refused), to remove from the object. */
  removeAnnotations: string[];
  /** Operation requests to bind before acting (rollout/operations.ts): annotation → bound value. */
  bindAnnotations: Record<string, string>;
  requeueAfterMs?: number;
}

export interface PlanContext {
  fetcherImage: string;
  now: Date;
  /** Whether the cluster serves external.metrics.k8s.io (prometheus-adapter, KEDA). */
  externalMetricsAvailable?: boolean;
  /** Analysis results for the current canary, including measurements taken just now. */
  analysis?: CheckResult[];
  operations?: Operation[];
  /** Whether the cluster serves HTTPRoutes (gateway.networking.k8s.io/v1). */
  gatewayApiAvailable?: boolean;
  /** Monitoring results for the stable revision, including measurements taken just now. */
  monitoring?: MonitoringInput;
}

export const defaultAnalysisIntervalMs = 30_000;
const defaultScaleDownDelaySeconds = 30;

const revisionInfo = (spec: ModelDeploymentSpec, hash: string, runtime: ResolvedRuntime, since: string): RevisionInfo => ({
  hash,
  modelVersion: spec.model.version,
  modelURI: spec.model.uri,
  ...(spec.model.digest ? { modelDigest: spec.model.digest } : {}),
  image: runtime.image,
  preset: runtime.preset,
  since,
});

function historyEntry(spec: ModelDeploymentSpec, hash: string, image: string | undefined, startedAt: string, finishedAt: string,
  outcome: HistoryEntry['outcome'], reason = ''): HistoryEntry {
  return {
    revision: hash,
    modelVersion: spec.model.version,
    modelURI: spec.model.uri,
    ...(spec.model.digest ? { modelDigest: spec.model.digest } : {}),
    ...(spec.model.dataset ? { dataset: spec.model.dataset } : {}),
    ...(image ? { image } : {}),
    startedAt,
    ...(finishedAt ? { finishedAt } : {}),
    outcome,
    ...(reason ? { reason } : {}),
    spec: JSON.parse(JSON.stringify(revisionSpec(spec))) as Record<string, unknown>,
  };
}

function condition(type: string, status: Condition['status'], reason: string, message: string, generation: number): Omit<Condition, 'lastTransitionTime'> {
  return { type, status, reason, message, observedGeneration: generation };
}

/** AutoscalingReady exists only while autoscaling is set; it says when the HPA cannot get its metric. */
function autoscalingCondition(md: ModelDeployment, conditions: Condition[], ctx: PlanContext, generation: number, now: string): Condition[] {
  if (!md.spec.autoscaling) return conditions.filter((c) => c.type !== 'AutoscalingReady');
  if (usesExternalMetrics(md) && ctx.externalMetricsAvailable === false) {
    return setCondition(conditions, condition('AutoscalingReady', 'False', 'ExternalMetricsUnavailable',
      'Prometheus autoscaling metrics need the external.metrics.k8s.io API (prometheus-adapter or KEDA), which this cluster does not serve; the HPA keeps the current replicas', generation), now);
  }
  return setCondition(conditions, condition('AutoscalingReady', 'True', 'HPAConfigured', `HPA ${md.metadata!.name} scales between ${md.spec.autoscaling.minReplicas ?? 1} and ${md.spec.autoscaling.maxReplicas} replicas`, generation), now);
}

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

/** The checks analysed during a rollout; podHealth is built in and judged from observations. */
export function analysisChecks(spec: ModelDeploymentSpec): Check[] {
  return (spec.rollout?.analysis?.checks ?? []).filter((c) => !c.podHealth);
}

function maxRestarts(spec: ModelDeploymentSpec): number {
  return spec.rollout?.analysis?.checks?.find((c) => c.podHealth)?.podHealth?.maxRestarts ?? 1;
}

/**
 * Canary replicas at step i: its share of the weight, enough to absorb a mirrored share, and at least
 * one while a rollout runs, so tagged requests, mirrors and smoke tests always have a pod to reach.
 */
function canaryReplicas(total: number, steps: RolloutStep[], i: number, policy: 'Surge' | 'Shift', exactWeights: boolean): number {
  if (total <= 0) return 0;
  const byWeight = splitReplicas(total, weightAt(steps, i), policy, exactWeights).canary;
  const byMirror = Math.ceil((total * mirrorAt(steps, i)) / 100);
  return Math.min(total, Math.max(1, byWeight, byMirror));
}

interface RevisionState {
  hash: string;
  spec: ModelDeploymentSpec;
  runtime: ResolvedRuntime;
  observed: DeploymentObservation | undefined;
  ready: number;
  trouble: PodTrouble | undefined;
}

/**
 * A revision's ready pods as the Service's endpoints see them: its pods with Ready=True that are not
 * being deleted. The Deployment's readyReplicas says the same a moment later; without pods in the
 * cache (a revision just created) it is what there is.
 */
function readyOf(obs: Observations, hash: string): number {
  const pods = obs.pods.filter((p) => p.metadata?.labels?.[revisionLabel] === hash);
  if (!pods.length) return observeDeployment(obs.deployments.get(hash))?.readyReplicas ?? 0;
  const conditions = (p: KubeObject) => (p as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions;
  if (!pods.some((p) => conditions(p))) return observeDeployment(obs.deployments.get(hash))?.readyReplicas ?? 0;
  return pods.filter((p) => !p.metadata?.deletionTimestamp && conditions(p)?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

function revisionState(md: ModelDeployment, hash: string, obs: Observations): RevisionState | undefined {
  const spec = specOfRevision(md, hash, obs.deployments);
  if (!spec) return undefined;
  const resolution = resolveRuntime(spec, md.metadata!.name!);
  if (!resolution.ok) return undefined;
  const observed = observeDeployment(obs.deployments.get(hash));
  return {
    hash, spec, runtime: resolution.runtime, observed,
    ready: readyOf(obs, hash),
    trouble: podTrouble(obs.pods.filter((p) => p.metadata?.labels?.[revisionLabel] === hash)),
  };
}

/** A leaving canary keeps traffic while it has ready pods and stable cannot yet carry everything. */
const mustDrain = (leavingReady: number, stableReady: number, total: number) => leavingReady > 0 && stableReady < total;

const fullyReady = (r: RevisionState | undefined, replicas: number) =>
  !!r?.observed && r.observed.observedGenerationCurrent && r.observed.replicas === replicas && r.ready >= replicas && r.observed.updatedReplicas >= replicas;

export function plan(md: ModelDeployment, obs: Observations, ctx: PlanContext): Plan {
  const nowMs = ctx.now.getTime();
  const now = ctx.now.toISOString();
  const generation = md.metadata?.generation ?? 0;
  const prior: ModelDeploymentStatus = md.status ?? {};
  const name = md.metadata!.name!;
  const events: PlannedEvent[] = [];
  const removeAnnotations: string[] = [];
  let conditions = prior.conditions ?? [];

  let resolution = resolveRuntime(md.spec, name);
  if (resolution.ok && md.spec.traffic?.router === 'GatewayAPI' && ctx.gatewayApiAvailable === false) {
    resolution = { ok: false, problems: ['traffic.router GatewayAPI needs the Gateway API CRDs (HTTPRoute, gateway.networking.k8s.io/v1) in the cluster; install them or use ReplicaRatio'] };
  }
  if (!resolution.ok) {
    // Nothing is applied: whatever serves keeps serving, exactly as it was.
    const message = resolution.problems.join('; ');
    const priorReady = conditions.find((c) => c.type === 'Ready');
    if (priorReady?.reason !== 'InvalidSpec' || priorReady.message !== message) events.push({ type: 'Warning', reason: 'InvalidSpec', message });
    conditions = setCondition(conditions, condition('Ready', 'False', 'InvalidSpec', message, generation), now);
    conditions = setCondition(conditions, condition('Progressing', 'False', 'InvalidSpec', 'the spec cannot be served; fix it to continue', generation), now);
    if (!conditions.some((c) => c.type === 'Degraded')) conditions = setCondition(conditions, condition('Degraded', 'False', 'AsExpected', '', generation), now);
    return {
      apply: [], delete: [], remove: [], events, removeAnnotations: [], bindAnnotations: {},
      status: { ...prior, observedGeneration: generation, phase: prior.stableRevision ? prior.phase ?? 'Healthy' : 'Pending', conditions: gitOpsConditions(conditions, { type: 'Stalled', reason: 'InvalidSpec', message }, generation, now) },
    };
  }

  const hash = revisionHash(md.spec);
  const gateway = md.spec.traffic?.router === 'GatewayAPI';
  let route: RouteState = { canaryWeight: 0, mirrorPercent: 0, canaryReady: false };
  const total = md.spec.replicas ?? 1;
  const policy = md.spec.rollout?.capacity ?? 'Surge';
  const liveWeight = routeCanaryWeight(obs.route, name);
  const scaleDownDelayMs = (md.spec.rollout?.scaleDownDelaySeconds ?? defaultScaleDownDelaySeconds) * 1000;
  const historyLimit = md.spec.revisionHistoryLimit ?? 10;
  let status: ModelDeploymentStatus = {
    ...prior, observedGeneration: generation, selector: `${instanceLabel}=${name}`, url: serviceUrl(md), replicas: total,
  };
  let history = [...(prior.history ?? [])];
  let retiring = [...(prior.retiring ?? [])];
  // A rollout's history entry is written when it starts (Progressing) and completed when it ends.
  const finish = (spec: ModelDeploymentSpec, h: string, image: string | undefined, outcome: HistoryEntry['outcome'], reason = '') => {
    const open = history.findIndex((e) => e.revision === h && e.outcome === 'Progressing');
    const started = open >= 0 ? history[open]!.startedAt ?? now : status.rollout?.startedAt ?? now;
    const entry = historyEntry(spec, h, image, started, now, outcome, reason);
    history = open >= 0 ? history.map((e, k) => (k === open ? entry : e)) : [entry, ...history];
  };
  const retire = (h: string, reason: string, delayMs = scaleDownDelayMs, draining = false) => {
    retiring = [...retiring.filter((r) => r.hash !== h), { hash: h, scaleDownAt: new Date(nowMs + delayMs).toISOString(), reason, ...(draining ? { draining } : {}) }];
  };
  let rollout = { ...(status.rollout ?? {}) };

  // ---- Operations: bound first, acted on once (rollout/operations.ts).
  const requested = ctx.operations ?? [];
  const lastActedId = prior.rollout?.lastOperation?.id ?? 0;
  const bindAnnotations = bindOperations(requested, lastActedId, prior.canaryRevision ? prior.rollout?.step ?? 0 : -1);
  const operations: Operation[] = [];
  for (const op of requested) {
    if (op.id === undefined) continue;
    if (op.id <= lastActedId) removeAnnotations.push(op.annotation); // acted on already; only the removal was lost
    else operations.push(op);
  }
  const actOn = (op: Operation, result: string) => {
    removeAnnotations.push(op.annotation);
    const id = Math.max(op.id ?? 0, rollout.lastOperation?.id ?? 0);
    rollout.lastOperation = { kind: op.kind, revision: op.revision, id, ...(op.step !== undefined ? { step: op.step } : {}), at: now, result };
    events.push({ type: result.startsWith('ignored') ? 'Warning' : 'Normal', reason: result.startsWith('ignored') ? 'OperationIgnored' : 'Operation', message: `${op.kind} ${op.revision}: ${result}` });
  };
  const keepLastOperation = () => (rollout.lastOperation ? { lastOperation: rollout.lastOperation } : {});

  // ---- Which revisions exist: stable (serving), canary (rolling out), or a first deployment.
  const stableHash = prior.stableRevision?.hash;
  const stable = stableHash ? revisionState(md, stableHash, obs) : undefined;
  let requeue: number | undefined;
  const soon = (ms: number) => { requeue = Math.max(50, Math.min(requeue ?? Number.POSITIVE_INFINITY, ms)); };

  if (stableHash && !stable) {
    // A revision serves but its spec is nowhere (its Deployment and history entry are gone, or it no
    // longer resolves). Without it there is no stable to roll back to, so nothing may proceed: the
    // first-revision path would promote the spec with no steps. Hold, and say why.
    const message = `the spec of the serving revision ${stableHash} is not recorded on its Deployment or in status.history; restore the Deployment ${name}-${stableHash} or revert the spec to that revision`;
    if (prior.conditions?.find((c) => c.type === 'Progressing')?.reason !== 'RevisionUnknown') events.push({ type: 'Warning', reason: 'RevisionUnknown', message });
    conditions = setCondition(conditions, condition('Progressing', 'False', 'RevisionUnknown', message, generation), now);
    return {
      apply: [], delete: [], remove: [], events, removeAnnotations: [], bindAnnotations: {},
      status: { ...prior, observedGeneration: generation, conditions: gitOpsConditions(conditions, { type: 'Stalled', reason: 'RevisionUnknown', message }, generation, now) },
    };
  }

  // Retry lifts a rejection; any other operation on a rejected or unknown revision is refused.
  for (const op of operations) {
    if (op.kind === 'retry') {
      if (prior.rejectedRevision?.hash === op.revision && op.revision === hash) {
        actOn(op, 'the rejected revision will be rolled out again');
        delete status.rejectedRevision;
      } else {
        actOn(op, `ignored: ${op.revision} is not the rejected revision of the current spec`);
      }
    }
  }
  // Monitoring rejected the revision the spec asks for and brings back an earlier promoted one, which
  // rolls out like a canary (no steps: it was promoted recently) until it is ready and serves.
  const restoring = prior.rollout?.restoring && prior.canaryRevision && status.rejectedRevision?.hash === hash ? prior.canaryRevision.hash : undefined;
  let canaryHash: string | undefined = restoring ?? (stableHash === hash || !stable ? undefined : hash);
  const rejected = canaryHash !== undefined && status.rejectedRevision?.hash === canaryHash;
  if (rejected) canaryHash = undefined;
  // A canary that is no longer what the spec asks for is superseded (spec changed mid-rollout).
  const priorCanary = prior.canaryRevision?.hash;
  if (priorCanary && priorCanary !== canaryHash) {
    const oldSpec = specOfRevision(md, priorCanary, obs.deployments);
    if (oldSpec && !rejected) {
      finish(oldSpec, priorCanary, prior.canaryRevision?.image, 'Superseded', `replaced by revision ${hash} before promotion`);
      events.push({ type: 'Normal', reason: 'Superseded', message: `canary ${priorCanary} replaced by ${hash} before promotion` });
    }
    // It leaves like an aborted canary: at once when stable carries everything, else after draining.
    retire(priorCanary, 'superseded', 0, mustDrain(readyOf(obs, priorCanary), stable?.ready ?? 0, total));
    delete status.canaryRevision;
    rollout = keepLastOperation();
    status.analysis = { results: [] };
  }
  // One canary at a time: one that left while stable could not yet carry everything keeps the rest of
  // the traffic, and the next canary starts once it has handed it back.
  const drainingNow = retiring.find((r) => r.draining && obs.deployments.has(r.hash));
  let waitingForDrain: string | undefined;
  if (drainingNow && canaryHash && canaryHash !== drainingNow.hash && prior.canaryRevision?.hash !== canaryHash) {
    waitingForDrain = canaryHash;
    canaryHash = undefined;
  }

  const apply: KubeObject[] = [];
  const remove: ChildRef[] = [];
  let canaryTraffic = false;
  let stableReplicas = total;
  let canaryState: RevisionState | undefined;
  let podResult: CheckResult | undefined;
  let degraded: Omit<Condition, 'lastTransitionTime'> | undefined;
  let progressing: Omit<Condition, 'lastTransitionTime'>;
  let phase: ModelDeploymentStatus['phase'] = 'Healthy';

  if (!stable) {
    // ---- First revision (or the stable one is unknown): bring it up and promote it when ready.
    const target = revisionState(md, hash, obs)!;
    apply.push(desiredDeployment({ md, hash, runtime: target.runtime, role: 'stable', replicas: total, fetcherImage: ctx.fetcherImage }));
    if (fullyReady(target, total)) {
      status.stableRevision = revisionInfo(md.spec, hash, target.runtime, now);
      finish(md.spec, hash, target.runtime.image, 'Promoted');
      events.push({ type: 'Normal', reason: 'Promoted', message: `revision ${hash} (model ${md.spec.model.version}) is serving` });
      rollout = keepLastOperation();
      progressing = condition('Progressing', 'False', 'Complete', `revision ${hash} is fully rolled out`, generation);
    } else {
      rollout.startedAt ??= now;
      const why = target.trouble?.message ?? (target.observed ? `${target.ready}/${total} replicas of revision ${hash} ready` : `creating revision ${hash}`);
      progressing = condition('Progressing', 'True', 'Deploying', why, generation);
      phase = total === 0 ? 'Healthy' : 'Pending';
      if (target.observed?.progressDeadlineExceeded) {
        degraded = condition('Degraded', 'True', 'ProgressDeadlineExceeded', `revision ${hash} did not become ready within its progress deadline${target.trouble ? `: ${target.trouble.message}` : ''}`, generation);
        phase = 'Degraded';
      }
      soon(15_000);
    }
    const ready = fullyReady(target, total);
    const reason = ready ? 'StableServing' : target.trouble?.reason ?? (total === 0 ? 'ScaledToZero' : 'WaitingForReplicas');
    conditions = setCondition(conditions, condition('Ready', ready ? 'True' : 'False', reason,
      ready ? `revision ${hash} (model ${md.spec.model.version}) serves ${target.ready}/${total} ready replicas` : progressing.message ?? '', generation), now);
    if (target.trouble && reason !== prior.conditions?.find((c) => c.type === 'Ready')?.reason) events.push({ type: 'Warning', reason: target.trouble.reason, message: target.trouble.message });
  } else if (!canaryHash) {
    // ---- Steady: the stable revision serves alone (possibly after a rollback).
    for (const op of operations.filter((o) => o.kind !== 'retry' && o.kind !== 'capture-baseline')) actOn(op, `ignored: no rollout in progress (stable is ${stableHash})`);
    rollout = keepLastOperation();
    progressing = waitingForDrain
      ? condition('Progressing', 'True', 'WaitingForDrain', `revision ${waitingForDrain} starts once revision ${drainingNow!.hash} has handed its traffic back to stable ${stableHash}`, generation)
      : condition('Progressing', 'False', rejected ? 'RolledBack' : 'Complete',
        rejected ? `revision ${hash} was rejected: ${status.rejectedRevision?.reason ?? ''}; change the spec or retry` : `revision ${stableHash} is fully rolled out`, generation);
    if (waitingForDrain) phase = 'Progressing';
    if (rejected) {
      const priorDegraded = prior.conditions?.find((c) => c.type === 'Degraded');
      degraded = priorDegraded?.status === 'True' ? { ...priorDegraded, observedGeneration: generation } : condition('Degraded', 'True', 'RolledBack', `revision ${hash} was rolled back: ${status.rejectedRevision?.reason ?? ''}`, generation);
      phase = 'Degraded';
    }
  } else {
    // ---- A canary rolls out.
    const canary = revisionState(md, canaryHash, obs)!;
    canaryState = canary;
    const steps = md.spec.rollout?.steps ?? [];
    const isNew = !status.canaryRevision;
    const version = canary.spec.model.version;
    if (isNew) {
      status.canaryRevision = revisionInfo(canary.spec, canaryHash, canary.runtime, now);
      rollout = { ...keepLastOperation(), step: 0, startedAt: now, stepStartedAt: now };
      status.analysis = { results: [] };
      history = [historyEntry(canary.spec, canaryHash, canary.runtime.image, now, '', 'Progressing'), ...history.filter((e) => !(e.revision === canaryHash && e.outcome === 'Progressing'))];
      events.push({ type: 'Normal', reason: 'RolloutStarted', message: `rolling out revision ${canaryHash} (model ${version}) beside ${stableHash}` });
    }
    // A revision promoted recently is trusted: a rollback to it skips the steps, not the readiness.
    const recentlyPromoted = history.slice(0, historyLimit).some((h) => h.revision === canaryHash && h.outcome === 'Promoted');
    const activeSteps = recentlyPromoted ? [] : steps;
    const n = activeSteps.length;
    let i = Math.min(rollout.step ?? 0, n);
    const stepStartedAt = rollout.stepStartedAt ? Date.parse(rollout.stepStartedAt) : nowMs;
    const results = ctx.analysis ?? status.analysis?.results ?? [];
    const checks = analysisChecks(md.spec);
    const intervalMs = durationMs(md.spec.rollout?.analysis?.interval, defaultAnalysisIntervalMs);
    const inconclusivePolicy = md.spec.rollout?.analysis?.inconclusive ?? 'Hold';

    // Why the canary must go, if it must.
    let failure: { reason: 'RolledBack' | 'Aborted'; message: string } | undefined;
    const abort = operations.find((o) => o.kind === 'abort');
    if (abort) {
      if (abort.revision === canaryHash) {
        failure = { reason: 'Aborted', message: 'aborted by request' };
        actOn(abort, 'traffic returned to stable');
      } else actOn(abort, `ignored: the canary is ${canaryHash}`);
    }
    const wantCanary = canaryReplicas(total, activeSteps, i, policy, gateway);
    const canaryUp = canary.ready >= wantCanary && !!canary.observed?.observedGenerationCurrent;
    const capacityBlocked = canary.trouble?.reason === 'Unschedulable';
    if (!failure && canary.trouble && (canary.trouble.reason === 'CrashLoopBackOff' || canary.trouble.reason === 'OOMKilled') && canary.trouble.restarts > maxRestarts(md.spec)) {
      failure = { reason: 'RolledBack', message: `pod health: ${canary.trouble.reason}: ${canary.trouble.message}` };
    }
    const deadlineMs = progressDeadlineSeconds(md, canary.runtime) * 1000;
    if (!failure && !canaryUp && !capacityBlocked && nowMs - stepStartedAt > deadlineMs) {
      failure = { reason: 'RolledBack', message: `progress deadline: ${canary.ready}/${wantCanary} canary replicas ready after ${Math.round(deadlineMs / 1000)} s${canary.trouble ? ` (${canary.trouble.message})` : ''}` };
    }
    if (!failure && capacityBlocked && md.spec.rollout?.onUnschedulable === 'Rollback') {
      failure = { reason: 'RolledBack', message: `capacity: ${canary.trouble!.message}` };
    }
    for (const c of checks) {
      const r = results.find((x) => x.check === c.name);
      if (!failure && checkFailed(c, r)) failure = { reason: 'RolledBack', message: `${c.name}: ${r?.message ?? 'failed'}` };
    }
    const inconclusive = checks.map((c) => results.find((r) => r.check === c.name)).filter((r): r is CheckResult => !!r && (r.phase === 'Inconclusive' || r.phase === 'Error') && Date.parse(r.at ?? '0') >= stepStartedAt);
    if (!failure && inconclusive.length && inconclusivePolicy === 'Rollback') {
      failure = { reason: 'RolledBack', message: `inconclusive analysis: ${inconclusive.map((r) => `${r.check}: ${r.message}`).join('; ')}` };
    }

    // The built-in pod health check, reported beside the others.
    const podCheck = md.spec.rollout?.analysis?.checks?.find((c) => c.podHealth)?.name ?? 'pods';
    const podFailed = !!failure && /^(pod health|progress deadline|capacity)/.test(failure.message);
    const podValue = `${canary.ready}/${wantCanary} ready${canary.trouble ? `, ${canary.trouble.reason}` : ''}`;
    const podPhase = podFailed ? 'Failed' : canaryUp && !canary.trouble ? 'Passed' : 'Inconclusive';
    const priorPod = (status.analysis?.results ?? []).find((r) => r.check === podCheck);
    podResult = {
      check: podCheck, phase: podPhase, passed: podPhase === 'Passed', value: podValue, failures: podFailed ? 1 : 0,
      message: podFailed ? failure!.message : canary.trouble?.message ?? (canaryUp ? 'canary pods ready' : 'waiting for canary pods'),
      at: priorPod && priorPod.phase === podPhase && priorPod.value === podValue ? priorPod.at ?? now : now,
    };

    if (failure) {
      // ---- Roll back: traffic to stable first, the canary kept warm for scaleDownDelaySeconds, then removed.
      const why = failure.message;
      status.rejectedRevision = { hash: canaryHash, modelVersion: version, reason: why.slice(0, 2000), at: now };
      finish(canary.spec, canaryHash, canary.runtime.image, failure.reason === 'Aborted' ? 'Aborted' : 'RolledBack', why);
      // Traffic leaves the canary first; what stable cannot carry yet (it gave replicas away under
      // Shift, or lost pods) stays on the canary until it can, and only then does the canary go.
      retire(canaryHash, failure.reason === 'Aborted' ? 'aborted' : 'rolled back', scaleDownDelayMs, mustDrain(canary.ready, stable.ready, total));
      events.push({ type: 'Warning', reason: failure.reason, message: `revision ${canaryHash} (model ${version}): ${why}` });
      degraded = condition('Degraded', 'True', failure.reason, `revision ${canaryHash} (model ${version}) ${failure.reason === 'Aborted' ? 'aborted' : 'rolled back'}: ${why}`, generation);
      progressing = condition('Progressing', 'False', failure.reason, `stable revision ${stableHash} serves; change the spec or retry`, generation);
      delete status.canaryRevision;
      rollout = keepLastOperation();
      canaryState = undefined;
      phase = 'Degraded';
      for (const op of operations.filter((o) => o.kind.startsWith('promote'))) actOn(op, 'ignored: the canary was rolled back');
    } else {
      // ---- Advance through the steps. A restore follows a rollback: Degraded keeps saying so.
      if (restoring) degraded = prior.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True');
      const roundDone = checks.every((c) => {
        const r = results.find((x) => x.check === c.name);
        return r?.phase === 'Passed' && Date.parse(r.at ?? '0') >= stepStartedAt;
      });
      let held: '' | 'Paused' | 'Inconclusive' | 'CapacityBlocked' | 'ManualGate' | 'Timed' = '';
      if (md.spec.paused) held = 'Paused';
      else if (capacityBlocked) held = 'CapacityBlocked';
      else if (inconclusive.length) held = 'Inconclusive';
      const step = activeSteps[i];
      let done = false;
      if (!held && step) {
        if (step.setWeight !== undefined || step.setMirror !== undefined) done = canaryUp && roundDone;
        else if (step.pause?.duration) {
          const endsAt = stepStartedAt + durationMs(step.pause.duration, 0);
          done = nowMs >= endsAt;
          if (!done) { held = 'Timed'; soon(endsAt - nowMs); }
        } else held = 'ManualGate';
      }
      for (const op of operations.filter((o) => o.kind.startsWith('promote'))) {
        if (op.revision !== canaryHash) actOn(op, `ignored: the canary is ${canaryHash}`);
        else if (op.kind === 'promote-full') { i = n; done = false; held = ''; actOn(op, 'skipping to full promotion'); rollout.stepStartedAt = now; }
        else if (op.step !== undefined && op.step !== i) actOn(op, `ignored: it was given at step ${op.step + 1}, and the canary is at step ${Math.min(i + 1, n)}/${n}`);
        else if (step) { done = true; held = ''; actOn(op, `released step ${i + 1}/${n} (${describeStep(activeSteps, i)})`); }
        else actOn(op, 'ignored: already promoting');
      }
      if (done) {
        i += 1;
        rollout.stepStartedAt = now;
        events.push({ type: 'Normal', reason: 'StepAdvanced', message: i < n ? `step ${i + 1}/${n}: ${describeStep(activeSteps, i)}` : `all ${n} steps done: promoting ${canaryHash}` });
        soon(50);
      }
      rollout.step = i;
      rollout.steps = n;
      rollout.position = n ? `${Math.min(i + 1, n)}/${n}` : '';
      rollout.pauseReason = held === 'Timed' ? '' : held;
      if (!rollout.position) delete rollout.position;
      const weight = weightAt(activeSteps, i);
      const split = splitReplicas(total, weight, policy, gateway);
      const guarded = guardTraffic({
        exactWeights: gateway, policy, total, priorWeight: gateway ? liveWeight : 0, stableReady: stable.ready, canaryReady: canary.ready,
        target: { weight, stableReplicas: split.stable, canaryReplicas: canaryReplicas(total, activeSteps, i, policy, gateway) },
      });
      stableReplicas = guarded.stableReplicas;
      route = { canaryWeight: guarded.weight, mirrorPercent: mirrorAt(activeSteps, i), canaryReady: canary.ready > 0 };
      canaryTraffic = guarded.canaryInService;
      // Through a gateway, promotion waits for the route to carry all traffic to the canary, so that
      // re-pointing the revision Services never sends a request to the old stable's last pods.
      if (!guarded.reached || (gateway && i >= n && liveWeight < 100)) soon(1_000);
      if (i >= n && fullyReady(canary, total) && !held && (!gateway || (guarded.weight >= 100 && liveWeight >= 100))) {
        // ---- Promote: the canary becomes stable; the old stable stays warm, then is removed.
        status.stableRevision = revisionInfo(canary.spec, canaryHash, canary.runtime, now);
        finish(canary.spec, canaryHash, canary.runtime.image, 'Promoted', restoring ? `restored: revision ${stableHash} failed monitoring` : '');
        retire(stableHash!, restoring ? 'rolled back by monitoring' : 'superseded by promotion');
        events.push({ type: 'Normal', reason: 'Promoted', message: `revision ${canaryHash} (model ${version}) is serving` });
        delete status.canaryRevision;
        // After a restore the spec still names the rejected revision: it stays rejected until retried.
        if (!restoring) delete status.rejectedRevision;
        rollout = keepLastOperation();
        canaryState = undefined;
        canaryTraffic = false;
        route = { canaryWeight: 0, mirrorPercent: 0, canaryReady: false };
        stableReplicas = total;
        progressing = condition('Progressing', 'False', 'Complete', `revision ${canaryHash} is fully rolled out`, generation);
        apply.push(desiredDeployment({ md, hash: canaryHash, runtime: canary.runtime, role: 'stable', replicas: total, fetcherImage: ctx.fetcherImage }));
      } else {
        const stepText = i < n ? `step ${i + 1}/${n}: ${describeStep(activeSteps, i)}` : n ? 'all steps done, waiting for full canary capacity' : `${canary.ready}/${total} replicas ready`;
        const heldText = held === 'Paused' ? ' (paused by spec.paused)' : held === 'Inconclusive' ? ` (analysis inconclusive: ${inconclusive.map((r) => r.message).join('; ')})` : held === 'CapacityBlocked' ? ` (blocked: ${canary.trouble?.message ?? ''})` : '';
        progressing = condition('Progressing', 'True', held && held !== 'Timed' ? held : restoring ? 'Restoring' : 'CanaryStep', `${stepText} to ${canaryHash} (model ${version})${heldText}`, generation);
        phase = held && held !== 'Timed' ? 'Paused' : 'Progressing';
        // Timers: the next analysis, and the progress deadline.
        if (checks.length) soon(intervalMs);
        if (!canaryUp) soon(Math.max(1000, stepStartedAt + deadlineMs - nowMs + 10));
        soon(5_000);
        if (held === 'Inconclusive') {
          conditions = setCondition(conditions, condition('AnalysisInconclusive', 'True', 'NotEnoughData', inconclusive.map((r) => `${r.check}: ${r.message}`).join('; '), generation), now);
        }
        if (capacityBlocked) {
          conditions = setCondition(conditions, condition('CapacityBlocked', 'True', 'Unschedulable', canary.trouble!.message, generation), now);
        }
      }
      if (canaryState) {
        apply.push(desiredDeployment({ md, hash: canaryHash, runtime: canary.runtime, role: 'canary', replicas: guarded.canaryReplicas, fetcherImage: ctx.fetcherImage }));
        status.canaryWeight = guarded.weight;
        const mirror = mirrorAt(activeSteps, i);
        if (mirror) status.mirrorWeight = mirror;
        else delete status.mirrorWeight;
      }
    }
  }
  // ---- A canary that left while stable could not carry everything hands its traffic back as stable's
  // pods become ready, and scales down only once it carries nothing (the guard decides how much it keeps).
  // A leaving revision is one marked draining, or one the live router still sends traffic to (a crash
  // came between the decision that took it out and the write that did).
  const liveServiceSelector = (obs.service as { spec?: { selector?: Record<string, string> } } | undefined)?.spec?.selector;
  // (Not after a promotion in this reconcile: the new stable is fully ready and carries everything.)
  const routerStillShares = status.stableRevision?.hash === stableHash && (gateway ? liveWeight > 0 : !!liveServiceSelector && !liveServiceSelector[revisionLabel]);
  const drainingEntry = canaryState ? undefined
    : retiring.find((r) => r.draining && obs.deployments.has(r.hash))
      ?? (routerStillShares ? retiring.filter((r) => readyOf(obs, r.hash) > 0).sort((a, b) => readyOf(obs, b.hash) - readyOf(obs, a.hash))[0] : undefined);
  let drainingHash: string | undefined;
  if (drainingEntry && stable) {
    const leavingReady = readyOf(obs, drainingEntry.hash);
    const g = guardTraffic({
      exactWeights: gateway, policy, total, priorWeight: gateway ? liveWeight : 0, stableReady: stable.ready, canaryReady: leavingReady,
      target: { weight: 0, stableReplicas: total, canaryReplicas: 0 },
    });
    if (g.weight > 0 || g.canaryInService) {
      drainingHash = drainingEntry.hash;
      route = { canaryWeight: g.weight, mirrorPercent: 0, canaryReady: true, leaving: true };
      canaryTraffic = g.canaryInService;
      stableReplicas = Math.max(stableReplicas, g.stableReplicas);
      soon(1_000);
    } else {
      const { draining: _drained, ...drained } = drainingEntry;
      retiring = retiring.map((r) => (r.hash === drainingEntry.hash ? drained : r));
    }
  }
  // These two exist only while they hold a canary.
  if (!(canaryState && rollout.pauseReason === 'CapacityBlocked')) conditions = without(conditions, 'CapacityBlocked');
  if (!(canaryState && rollout.pauseReason === 'Inconclusive')) conditions = without(conditions, 'AnalysisInconclusive');
  if (!canaryState) {
    delete status.canaryRevision;
    delete status.canaryWeight;
    delete status.mirrorWeight;
  }

  // ---- The stable revision's Deployment, Services, HPA.
  const servingHash = status.stableRevision?.hash;
  if (stable && servingHash === stableHash) {
    apply.push(desiredDeployment({ md: { ...md, spec: stable.spec }, hash: stableHash!, runtime: stable.runtime, role: 'stable', replicas: stableReplicas, fetcherImage: ctx.fetcherImage }));
  }
  if (servingHash) {
    apply.push(desiredService(md, canaryTraffic ? undefined : servingHash));
    apply.push(desiredRevisionService(md, 'stable', servingHash));
  } else {
    apply.push(desiredService(md));
  }
  const canaryBackend = canaryState?.hash ?? drainingHash;
  if (canaryBackend) apply.push(desiredRevisionService(md, 'canary', canaryBackend));
  else remove.push({ kind: 'Service', name: `${name}-canary` });
  const hpa = desiredHpa(md);
  if (hpa) apply.push(hpa);
  else remove.push({ kind: 'HorizontalPodAutoscaler', name });
  const httpRoute = servingHash ? desiredHttpRoute(md, canaryBackend ? route : { canaryWeight: 0, mirrorPercent: 0, canaryReady: false }) : undefined;
  if (httpRoute) apply.push(httpRoute);
  else if (!gateway) remove.push({ kind: 'HTTPRoute', name });

  // ---- Revisions that no longer serve: kept warm until scaleDownAt (unless the canary's traffic
  // would reach them through the shared Service), then removed; unknown ones go at once.
  const keep = new Set([servingHash, canaryState?.hash].filter(Boolean));
  const deletes: KubeObject[] = [];
  retiring = retiring.filter((r) => !keep.has(r.hash));
  for (const [h, dep] of obs.deployments) {
    if (keep.has(h) || apply.some((a) => a.metadata?.name === dep.metadata?.name)) continue;
    const r = retiring.find((x) => x.hash === h);
    const dueMs = r ? Date.parse(r.scaleDownAt) - nowMs : 0;
    if (r?.draining) continue;
    if (!r || dueMs <= 0 || canaryTraffic) deletes.push(dep);
    else soon(dueMs);
  }
  retiring = retiring.filter((r) => obs.deployments.has(r.hash) && !deletes.some((d) => d.metadata?.labels?.[revisionLabel] === r.hash));

  // ---- Monitoring: the serving revision keeps being judged after promotion.
  const servingState = servingHash === stableHash ? stable : servingHash === canaryState?.hash ? canaryState : servingHash ? revisionState(md, servingHash, obs) : undefined;
  const monitoredHash = md.spec.monitoring?.checks?.length && !canaryState && servingHash ? servingHash : undefined;
  for (const op of operations.filter((o) => o.kind === 'capture-baseline')) {
    if (op.revision === monitoredHash) actOn(op, 'drift baselines are captured again from the live window');
    else actOn(op, `ignored: ${monitoredHash ? `the monitored revision is ${monitoredHash}` : 'no revision is being monitored now'}`);
  }
  if (!md.spec.monitoring?.checks?.length) {
    delete status.monitoring;
    conditions = without(conditions, 'Drifting');
  } else if (monitoredHash && servingState) {
    const m = decideMonitoring({
      spec: md.spec, prior: prior.monitoring, priorDrifting: conditions.find((c) => c.type === 'Drifting'), input: ctx.monitoring,
      stable: { hash: monitoredHash, ready: servingState.ready, replicas: total, trouble: servingState.trouble }, generation, now: ctx.now,
    });
    status.monitoring = m.monitoring;
    conditions = setCondition(conditions, m.drifting, now);
    events.push(...m.events);
    soon(m.requeueAfterMs);
    if (m.rollback) {
      // ---- onFailure Rollback: back to the previous promoted revision, as a canary that must be ready
      // before it gets traffic. Only the revision the spec asks for is rejected this way; one already
      // serving in its place (after an earlier rollback) can only raise the alert.
      const target = monitoredHash === hash
        ? history.slice(0, historyLimit).find((h) => h.outcome === 'Promoted' && h.revision !== monitoredHash && h.spec)
        : undefined;
      const targetState = target ? revisionState(md, target.revision, obs) : undefined;
      if (target && targetState) {
        const why = `monitoring: ${m.rollback}`.slice(0, 2000);
        const version = md.spec.model.version;
        status.rejectedRevision = { hash: monitoredHash, modelVersion: version, reason: why, at: now };
        const promotedAt = history.findIndex((h) => h.revision === monitoredHash && h.outcome === 'Promoted');
        if (promotedAt >= 0) history[promotedAt] = { ...history[promotedAt]!, outcome: 'RolledBack', reason: why, finishedAt: now };
        history = [historyEntry(targetState.spec, target.revision, targetState.runtime.image, now, '', 'Progressing', `restoring: revision ${monitoredHash} failed monitoring`), ...history];
        status.canaryRevision = revisionInfo(targetState.spec, target.revision, targetState.runtime, now);
        rollout = { ...keepLastOperation(), step: 0, steps: 0, startedAt: now, stepStartedAt: now, restoring: true };
        status.analysis = { results: [] };
        events.push({ type: 'Warning', reason: 'RolledBack', message: `revision ${monitoredHash} (model ${version}): ${why}; returning to revision ${target.revision} (model ${targetState.spec.model.version})` });
        degraded = condition('Degraded', 'True', 'RolledBack', `revision ${monitoredHash} (model ${version}) rolled back: ${why}`, generation);
        progressing = condition('Progressing', 'True', 'Restoring', `returning to revision ${target.revision} (model ${targetState.spec.model.version}); it takes traffic as its pods become ready`, generation);
        phase = 'Progressing';
        soon(50);
      } else {
        const drifting = conditions.find((c) => c.type === 'Drifting')!;
        const why = monitoredHash === hash ? 'no earlier promoted revision in history to roll back to' : `revision ${monitoredHash} already serves in place of the rejected ${hash}`;
        if (!drifting.message?.includes(why)) conditions = setCondition(conditions, { ...drifting, message: `${drifting.message ?? ''} (${why}: alert only)`.slice(0, 2000) }, now);
      }
    }
  }
  // Otherwise a canary rolls out and is judged by its analysis; the last monitoring verdict stands.

  // ---- Status.
  const stableReady = servingState?.ready ?? 0;
  status.readyReplicas = stableReady + (canaryState && canaryTraffic ? canaryState.ready : 0);
  if (servingHash && stable) {
    const serves = stableReady > 0 || total === 0;
    const readyMsg = `revision ${servingHash} (model ${servingState?.spec.model.version}) serves ${stableReady}/${stableReplicas} ready replicas${canaryState ? `; canary ${canaryState.hash} has ${canaryState.ready}` : ''}`;
    conditions = setCondition(conditions, condition('Ready', serves ? 'True' : 'False', serves ? 'StableServing' : servingState?.trouble?.reason ?? 'WaitingForReplicas', readyMsg, generation), now);
  }
  conditions = setCondition(conditions, progressing!, now);
  conditions = setCondition(conditions, degraded ?? condition('Degraded', 'False', 'AsExpected', '', generation), now);
  conditions = autoscalingCondition(md, conditions, ctx, generation, now);
  // Stalled: only a change to the spec (or a retry) moves it on. Reconciling: it is on its way.
  const rejectedServes = status.rejectedRevision?.hash === hash && !canaryState;
  const finalDegraded = conditions.find((c) => c.type === 'Degraded');
  const stalled = finalDegraded?.status === 'True' && (finalDegraded.reason === 'ProgressDeadlineExceeded' || rejectedServes)
    ? { type: 'Stalled' as const, reason: finalDegraded.reason ?? 'RolledBack', message: finalDegraded.message ?? '' }
    : undefined;
  const inProgress = progressing!.status === 'True' ? { type: 'Reconciling' as const, reason: progressing!.reason ?? 'Progressing', message: progressing!.message ?? '' } : undefined;
  conditions = gitOpsConditions(conditions, stalled ?? inProgress, generation, now);
  if (phase === 'Healthy' && servingHash && stableReady === 0 && total > 0) phase = 'Pending';
  status.phase = phase;
  status.conditions = conditions;
  status.history = history.slice(0, Math.max(historyLimit, 1));
  if (retiring.length) status.retiring = retiring;
  else delete status.retiring;
  if (Object.keys(rollout).length) status.rollout = rollout;
  else delete status.rollout;
  // Results stay after the rollout ends: they are why it was promoted or rolled back.
  if (ctx.analysis || podResult) {
    const others = (ctx.analysis ?? status.analysis?.results ?? []).filter((r) => r.check !== podResult?.check);
    status.analysis = { results: podResult ? [podResult, ...others] : others };
  }
  status = JSON.parse(JSON.stringify(status)) as ModelDeploymentStatus;
  return { apply, delete: deletes, remove, status, events, removeAnnotations, bindAnnotations, ...(requeue !== undefined && Number.isFinite(requeue) ? { requeueAfterMs: requeue } : {}) };
}
