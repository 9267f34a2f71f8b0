// Phase Canary: a new revision rolls out beside stable. In order: start it (first time), judge it
// (abort, pod health, progress deadline, capacity, analysis), then either roll it back or move it
// through the steps, with every weight and replica count passed through the traffic guard, and
// promote it once all steps are done and it carries everything. Pure.
import type { CheckResult, ModelDeploymentSpec, RolloutStep } from '../../api/generated.js';
import { analysisChecks, analysisIntervalMs, checkFailed, durationMs, measuredSince } from '../analysis/evaluate.js';
import { progressDeadlineSeconds } from '../desired/deployment.js';
import { splitReplicas } from './capacity.js';
import { canaryReplicas, fullyReady, historyEntry, mustDrain, revisionInfo, type Decision, type RevisionState } from './decision.js';
import { guardTraffic } from './guard.js';
import { describeStep, mirrorAt, weightAt } from './steps.js';

type Failure = { reason: 'RolledBack' | 'Aborted'; message: string };
type Held = '' | 'Paused' | 'Inconclusive' | 'CapacityBlocked' | 'ManualGate' | 'Timed' | 'ScaledToZero';

function maxRestarts(spec: ModelDeploymentSpec): number {
  return spec.rollout?.analysis?.checks?.find((c) => c.podHealth)?.podHealth?.maxRestarts ?? 1;
}

export function advanceCanary(d: Decision): void {
  const canaryHash = d.canaryHash!;
  for (const op of d.pending('upgrade-runtime')) d.actOn(op, `ignored: revision ${canaryHash} rolls out, built with this operator's images`);
  const canary = d.revision(canaryHash)!;
  d.canaryState = canary;
  if (!d.status.canaryRevision) start(d, canary);
  // A revision promoted recently is trusted: a rollback to it skips the steps, not the readiness.
  const recentlyPromoted = d.history.slice(0, d.historyLimit).some((h) => h.revision === canaryHash && h.outcome === 'Promoted');
  const steps = recentlyPromoted ? [] : d.md.spec.rollout?.steps ?? [];
  const i = Math.min(d.rollout.step ?? 0, steps.length);
  if (d.total === 0) {
    waitAtZero(d, canary, steps, i);
    return;
  }
  // Woken from zero: the step's clock starts again, as nothing was judged while no pod ran.
  if (d.rollout.pauseReason === 'ScaledToZero') d.rollout.stepStartedAt = d.now;
  const stepStartedAt = d.rollout.stepStartedAt ? Date.parse(d.rollout.stepStartedAt) : d.nowMs;
  const wantCanary = canaryReplicas(d.total, steps, i, d.policy, d.gateway);
  const canaryUp = canary.ready >= wantCanary && !!canary.observed?.observedGenerationCurrent;
  // The canary's clock starts when it can answer: a large model may load for many minutes, and
  // nothing measured before its first ready pod says anything about the model (measuredSince).
  if (!d.rollout.canaryReadyAt && canary.ready > 0) d.rollout.canaryReadyAt = d.now;
  const judged = judge(d, canary, { i, stepStartedAt, wantCanary, canaryUp });
  if (judged.failure) rollBack(d, canary, judged.failure);
  else walkSteps(d, canary, { steps, i, stepStartedAt, canaryUp, inconclusive: judged.inconclusive });
  if (d.status.canaryRevision) {
    // While this step's pods load, status says until when they may (kubectl modelship status shows
    // "loading: 6m of at most 32m"); a fixed time, so waiting writes nothing.
    const loading = !canaryUp && canary.trouble?.reason !== 'Unschedulable';
    const deadline = new Date(stepStartedAt + progressDeadlineSeconds(d.md, canary.runtime) * 1000).toISOString();
    if (loading) d.rollout.loadingDeadline = deadline;
    else delete d.rollout.loadingDeadline;
  }
}

/**
 * A rollout on a model scaled to zero waits where it is. No pod runs and no request arrives, so there
 * is nothing to shift and nothing to judge: walking the steps would promote a revision no request
 * ever reached, and its progress deadline would roll back one that was never given a pod. When the
 * model is woken (KEDA sets replicas above zero), the step starts again with its full clock and the
 * canary is judged as any other. An abort still acts at once.
 */
function waitAtZero(d: Decision, canary: RevisionState, steps: RolloutStep[], i: number): void {
  for (const abort of d.pending('abort')) {
    if (abort.revision === canary.hash && !d.restoring) {
      d.actOn(abort, 'aborted while scaled to zero');
      rollBack(d, canary, { reason: 'Aborted', message: 'aborted by request' });
      return;
    }
    d.actOn(abort, d.restoring ? `ignored: revision ${canary.hash} is being restored; change the spec instead` : `ignored: the canary is ${canary.hash}`);
  }
  const n = steps.length;
  d.rollout.step = i;
  d.rollout.steps = n;
  d.rollout.pauseReason = 'ScaledToZero';
  if (n) d.rollout.position = `${Math.min(i + 1, n)}/${n}`;
  delete d.rollout.loadingDeadline;
  d.stableReplicas = 0;
  d.route = { canaryWeight: 0, mirrorPercent: 0, canaryReady: false };
  d.canaryTraffic = false;
  d.apply.push(d.deployment(canary, 0));
  d.status.canaryWeight = 0;
  delete d.status.mirrorWeight;
  d.progressing = d.condition('Progressing', 'True', 'ScaledToZero',
    `revision ${canary.hash} (model ${canary.spec.model.version}) waits${n ? ` at step ${Math.min(i + 1, n)}/${n}` : ''}: the model is scaled to zero, so no traffic reaches a canary to judge it by; the rollout resumes when the model is woken`);
  d.statusPhase = 'Paused';
}

function start(d: Decision, canary: RevisionState): void {
  const { now } = d;
  d.status.canaryRevision = revisionInfo(canary.spec, canary.hash, canary.runtime, now);
  d.resetRollout({ step: 0, startedAt: now, stepStartedAt: now });
  d.status.analysis = { results: [] };
  d.history = [historyEntry(canary.spec, canary.hash, canary.runtime.image, now, '', 'Progressing'), ...d.history.filter((e) => !(e.revision === canary.hash && e.outcome === 'Progressing'))];
  // No Event: the start is in status (Progressing, canaryRevision, history) and the outcome's Event
  // (Promoted, RolledBack, Aborted, Superseded) says when the rollout began.
}

/** Why the canary must go, if it must; and the built-in pod health result, reported beside the checks. */
function judge(d: Decision, canary: RevisionState, at: { i: number; stepStartedAt: number; wantCanary: number; canaryUp: boolean }): { failure?: Failure; inconclusive: CheckResult[] } {
  const { md } = d;
  const results = d.ctx.analysis ?? d.status.analysis?.results ?? [];
  const checks = analysisChecks(md.spec);
  let failure: Failure | undefined;
  for (const abort of d.pending('abort')) {
    // A restore is the way back from a revision monitoring rejected; aborting it would put traffic
    // back on that revision. Change the spec instead.
    if (d.restoring) d.actOn(abort, `ignored: revision ${canary.hash} is being restored after revision ${d.stableHash} failed monitoring; change the spec instead`);
    else if (abort.revision === canary.hash && !failure) {
      failure = { reason: 'Aborted', message: 'aborted by request' };
      d.actOn(abort, 'traffic returned to stable');
    } else d.actOn(abort, `ignored: the canary is ${canary.hash}`);
  }
  const capacityBlocked = canary.trouble?.reason === 'Unschedulable';
  if (!failure && canary.trouble && (canary.trouble.reason === 'CrashLoopBackOff' || canary.trouble.reason === 'OOMKilled') && canary.trouble.restarts > maxRestarts(md.spec)) {
    failure = { reason: 'RolledBack', message: `pod health: ${canary.trouble.reason}: ${canary.trouble.message}` };
  }
  const deadlineMs = progressDeadlineSeconds(md, canary.runtime) * 1000;
  if (!failure && !at.canaryUp && !capacityBlocked && d.nowMs - at.stepStartedAt > deadlineMs) {
    failure = { reason: 'RolledBack', message: `progress deadline: ${canary.ready}/${at.wantCanary} canary replicas ready after ${Math.round(deadlineMs / 1000)} s${canary.trouble ? ` (${canary.trouble.message})` : ''}` };
  }
  if (!failure && capacityBlocked && md.spec.rollout?.onUnschedulable === 'Rollback') {
    failure = { reason: 'RolledBack', message: `capacity: ${canary.trouble!.message}` };
  }
  for (const c of checks) {
    const r = results.find((x) => x.check === c.name);
    if (!failure && checkFailed(c, r)) failure = { reason: 'RolledBack', message: `${c.name}: ${r?.message ?? 'failed'}` };
  }
  const since = measuredSince(d.rollout, at.stepStartedAt);
  const inconclusive = checks.map((c) => results.find((r) => r.check === c.name))
    .filter((r): r is CheckResult => !!r && (r.phase === 'Inconclusive' || r.phase === 'Error') && Date.parse(r.at ?? '0') >= since);
  if (!failure && inconclusive.length && (md.spec.rollout?.analysis?.inconclusive ?? 'Hold') === 'Rollback') {
    failure = { reason: 'RolledBack', message: `inconclusive analysis: ${inconclusive.map((r) => `${r.check}: ${r.message}`).join('; ')}` };
  }
  if (!failure && !at.canaryUp && !capacityBlocked) d.soon(Math.max(1000, at.stepStartedAt + deadlineMs - d.nowMs + 10));

  const podCheck = md.spec.rollout?.analysis?.checks?.find((c) => c.podHealth)?.name ?? 'pods';
  const podFailed = !!failure && /^(pod health|progress deadline|capacity)/.test(failure.message);
  const podValue = `${canary.ready}/${at.wantCanary} ready${canary.trouble ? `, ${canary.trouble.reason}` : ''}`;
  const podPhase = podFailed ? 'Failed' : at.canaryUp && !canary.trouble ? 'Passed' : 'Inconclusive';
  const priorPod = (d.status.analysis?.results ?? []).find((r) => r.check === podCheck);
  d.podResult = {
    check: podCheck, phase: podPhase, passed: podPhase === 'Passed', value: podValue, failures: podFailed ? 1 : 0,
    message: podFailed ? failure!.message : canary.trouble?.message ?? (at.canaryUp ? 'canary pods ready' : 'canary pods loading (status.rollout.loadingDeadline says until when)'),
    at: priorPod && priorPod.phase === podPhase && priorPod.value === podValue ? priorPod.at ?? d.now : d.now,
  };
  return { ...(failure ? { failure } : {}), inconclusive };
}

/**
 * Roll back: the revision is rejected, traffic leaves it first. What stable cannot carry yet (it gave
 * replicas away under Shift, or lost pods) stays on it until stable can (drain.ts), and only then is
 * it scaled down, after scaleDownDelaySeconds.
 */
function rollBack(d: Decision, canary: RevisionState, failure: Failure): void {
  const version = canary.spec.model.version;
  const why = failure.message;
  d.status.rejectedRevision = { hash: canary.hash, modelVersion: version, reason: why.slice(0, 2000), at: d.now };
  d.rolledBack = true;
  d.finish(canary.spec, canary.hash, canary.runtime.image, failure.reason === 'Aborted' ? 'Aborted' : 'RolledBack', why);
  d.retire(canary.hash, failure.reason === 'Aborted' ? 'aborted' : 'rolled back', d.scaleDownDelayMs, mustDrain(canary.ready, d.stable!.ready, d.total));
  d.events.push({ type: 'Warning', reason: failure.reason, message: `revision ${canary.hash} (model ${version}): ${why}` });
  d.degraded = d.condition('Degraded', 'True', failure.reason, `revision ${canary.hash} (model ${version}) ${failure.reason === 'Aborted' ? 'aborted' : 'rolled back'}: ${why}`);
  d.progressing = d.condition('Progressing', 'False', failure.reason, `stable revision ${d.stableHash} serves; change the spec or retry`);
  delete d.status.canaryRevision;
  d.resetRollout();
  d.canaryState = undefined;
  d.statusPhase = 'Degraded';
  for (const op of d.pending('promote', 'promote-full')) d.actOn(op, 'ignored: the canary was rolled back');
}

/** Advance through the steps; a restore (after a monitoring rollback) has none, and Degraded keeps saying why. */
function walkSteps(d: Decision, canary: RevisionState, at: { steps: RolloutStep[]; i: number; stepStartedAt: number; canaryUp: boolean; inconclusive: CheckResult[] }): void {
  const { md, total, gateway, policy, now } = d;
  const { steps, stepStartedAt, canaryUp, inconclusive } = at;
  const n = steps.length;
  let i = at.i;
  if (d.restoring) d.degraded = d.prior.conditions?.find((c) => c.type === 'Degraded' && c.status === 'True');
  const results = d.ctx.analysis ?? d.status.analysis?.results ?? [];
  const checks = analysisChecks(md.spec);
  const since = measuredSince(d.rollout, stepStartedAt);
  const roundDone = checks.every((c) => {
    const r = results.find((x) => x.check === c.name);
    return r?.phase === 'Passed' && Date.parse(r.at ?? '0') >= since;
  });
  const capacityBlocked = canary.trouble?.reason === 'Unschedulable';
  let held: Held = md.spec.paused ? 'Paused' : capacityBlocked ? 'CapacityBlocked' : inconclusive.length ? 'Inconclusive' : '';
  const step = steps[i];
  let done = false;
  let skipped = false;
  if (!held && step) {
    if (step.setWeight !== undefined || step.setMirror !== undefined) done = canaryUp && roundDone;
    else if (step.pause?.duration) {
      const endsAt = stepStartedAt + durationMs(step.pause.duration, 0);
      done = d.nowMs >= endsAt;
      if (!done) { held = 'Timed'; d.soon(endsAt - d.nowMs); }
    } else held = 'ManualGate';
  }
  for (const op of d.pending('promote', 'promote-full')) {
    if (op.revision !== canary.hash) d.actOn(op, `ignored: the canary is ${canary.hash}`);
    else if (op.kind === 'promote-full') { i = n; done = false; held = ''; skipped = true; d.actOn(op, 'skipping to full promotion'); d.rollout.stepStartedAt = now; }
    else if (op.step !== undefined && op.step !== i) d.actOn(op, `ignored: it was given at step ${op.step + 1}, and the canary is at step ${Math.min(i + 1, n)}/${n}`);
    else if (step) { done = true; held = ''; d.actOn(op, `released step ${i + 1}/${n} (${describeStep(steps, i)})`); }
    else d.actOn(op, 'ignored: already promoting');
  }
  if (done) {
    i += 1;
    d.rollout.stepStartedAt = now;
    // An Event for a step that waits for a person (a pause without a duration): `kubectl describe`
    // says what the rollout needs. Steps that pass on their own are in status (position, stepStartedAt;
    // `kubectl modelship status`), not one Event each: a ten-step rollout would write ten.
    const next = steps[i];
    if (next?.pause && !next.pause.duration) d.events.push({ type: 'Normal', reason: 'StepAdvanced', message: `step ${i + 1}/${n}: ${describeStep(steps, i)}` });
    d.soon(50);
  }
  d.rollout.step = i;
  d.rollout.steps = n;
  d.rollout.pauseReason = held === 'Timed' ? '' : held;
  if (n) d.rollout.position = `${Math.min(i + 1, n)}/${n}`;
  else delete d.rollout.position;

  // What the router and the Deployments may be told now.
  const weight = weightAt(steps, i);
  const split = splitReplicas(total, weight, policy, gateway);
  const guarded = guardTraffic({
    exactWeights: gateway, policy, total, priorWeight: gateway ? d.liveWeight : 0, stableReady: d.stable!.ready, canaryReady: canary.ready,
    target: { weight, stableReplicas: split.stable, canaryReplicas: canaryReplicas(total, steps, i, policy, gateway) },
  });
  d.stableReplicas = guarded.stableReplicas;
  d.route = { canaryWeight: guarded.weight, mirrorPercent: mirrorAt(steps, i), canaryReady: canary.ready > 0 };
  d.canaryTraffic = guarded.canaryInService;
  // Through a gateway, promotion waits for the route to carry all traffic to the canary, so that
  // re-pointing the revision Services never sends a request to the old stable's last pods.
  if (!guarded.reached || (gateway && i >= n && d.liveWeight < 100)) d.soon(1_000);
  if (i >= n && fullyReady(canary, total) && !held && (!gateway || (guarded.weight >= 100 && d.liveWeight >= 100))) {
    promote(d, canary, n && !skipped ? ` after all ${n} steps` : '');
    return;
  }
  // The last step is done but promotion waits (full canary capacity, the route): said once. When
  // promotion follows at once, Promoted says it alone.
  if (done && i >= n) d.events.push({ type: 'Normal', reason: 'StepAdvanced', message: `all ${n} steps done: promoting ${canary.hash} once it has full capacity` });
  const version = canary.spec.model.version;
  const stepText = i < n ? `step ${i + 1}/${n}: ${describeStep(steps, i)}` : n ? 'all steps done, waiting for full canary capacity' : `${canary.ready}/${total} replicas ready`;
  const heldText = held === 'Paused' ? ' (paused by spec.paused)' : held === 'Inconclusive' ? ` (analysis inconclusive: ${inconclusive.map((r) => r.message).join('; ')})` : held === 'CapacityBlocked' ? ` (blocked: ${canary.trouble?.message ?? ''})` : '';
  d.progressing = d.condition('Progressing', 'True', held && held !== 'Timed' ? held : d.restoring ? 'Restoring' : 'CanaryStep', `${stepText} to ${canary.hash} (model ${version})${heldText}`);
  d.statusPhase = held && held !== 'Timed' ? 'Paused' : 'Progressing';
  if (checks.length) d.soon(analysisIntervalMs(md.spec));
  d.soon(5_000);
  if (held === 'Inconclusive') d.inconclusive = inconclusive.map((r) => `${r.check}: ${r.message}`).join('; ');
  if (capacityBlocked) d.capacityBlocked = canary.trouble!.message;
  d.apply.push(d.deployment(canary, guarded.canaryReplicas));
  d.status.canaryWeight = guarded.weight;
  const mirror = mirrorAt(steps, i);
  if (mirror) d.status.mirrorWeight = mirror;
  else delete d.status.mirrorWeight;
}

/** The canary becomes stable; the old stable stays warm for scaleDownDelaySeconds, then is removed. */
function promote(d: Decision, canary: RevisionState, how: string): void {
  const { restoring, stableHash } = d;
  d.status.stableRevision = revisionInfo(canary.spec, canary.hash, canary.runtime, d.now);
  d.finish(canary.spec, canary.hash, canary.runtime.image, 'Promoted', restoring ? `restored: revision ${stableHash} failed monitoring` : '');
  d.retire(stableHash!, restoring ? 'rolled back by monitoring' : 'superseded by promotion');
  const began = d.rollout.startedAt ? `; its rollout beside ${stableHash} began at ${d.rollout.startedAt}` : '';
  d.events.push({ type: 'Normal', reason: 'Promoted', message: `revision ${canary.hash} (model ${canary.spec.model.version}) is serving${how}${began}` });
  delete d.status.canaryRevision;
  // After a restore the spec still names the rejected revision: it stays rejected until retried.
  if (!restoring) delete d.status.rejectedRevision;
  d.resetRollout();
  d.canaryState = undefined;
  d.canaryTraffic = false;
  d.route = { canaryWeight: 0, mirrorPercent: 0, canaryReady: false };
  d.stableReplicas = d.total;
  d.progressing = d.condition('Progressing', 'False', 'Complete', `revision ${canary.hash} is fully rolled out`);
  d.apply.push(d.deployment(canary, d.total));
}
