// After promotion the serving revision keeps being judged (monitoring/decide.ts). On a failure with
// onFailure: Rollback, the previous promoted revision comes back as a canary that must be ready
// before it gets traffic. Pure.
import { decideMonitoring } from '../monitoring/decide.js';
import { historyEntry, revisionInfo, type Decision, type RevisionState } from './decision.js';

/** The revision that serves after this decision, and its state. */
export function servingState(d: Decision): RevisionState | undefined {
  const servingHash = d.status.stableRevision?.hash;
  if (!servingHash) return undefined;
  if (servingHash === d.stableHash) return d.stable;
  if (servingHash === d.canaryState?.hash) return d.canaryState;
  return d.revision(servingHash);
}

export function monitor(d: Decision): void {
  const { md, status, hash } = d;
  const servingHash = status.stableRevision?.hash;
  const serving = servingState(d);
  const monitoredHash = md.spec.monitoring?.checks?.length && !d.canaryState && servingHash ? servingHash : undefined;
  for (const op of d.pending('capture-baseline')) {
    if (op.revision === monitoredHash) d.actOn(op, 'drift baselines are captured again from the live window');
    else d.actOn(op, `ignored: ${monitoredHash ? `the monitored revision is ${monitoredHash}` : 'no revision is being monitored now'}`);
  }
  if (!md.spec.monitoring?.checks?.length) {
    delete status.monitoring;
    d.dropCondition('Drifting');
    return;
  }
  // Otherwise, while a canary rolls out it is judged by its analysis; the last monitoring verdict stands.
  if (!monitoredHash || !serving) return;
  const m = decideMonitoring({
    spec: md.spec, prior: d.prior.monitoring, priorDrifting: d.conditions.find((c) => c.type === 'Drifting'), input: d.ctx.monitoring,
    stable: { hash: monitoredHash, ready: serving.ready, replicas: d.total, trouble: serving.trouble }, generation: d.generation, now: d.ctx.now,
  });
  status.monitoring = m.monitoring;
  d.setCondition(m.drifting);
  d.events.push(...m.events);
  d.soon(m.requeueAfterMs);
  // A canary rolled back in this same decision (a restore that failed, say) is not followed at once by
  // another restore: the next decision judges the revision that serves then.
  if (!m.rollback || d.rolledBack) return;
  // One canary at a time: a leaving canary hands its traffic back first (the verdict stands in status,
  // so the restore starts once it has).
  if (d.drainingHash || d.retiring.some((r) => r.draining)) {
    d.soon(1_000);
    return;
  }
  // Only the revision the spec asks for is rejected this way; one already serving in its place (after
  // an earlier rollback) can only raise the alert.
  const target = monitoredHash === hash
    ? d.history.slice(0, d.historyLimit).find((h) => h.outcome === 'Promoted' && h.revision !== monitoredHash && h.spec)
    : undefined;
  const targetState = target ? d.revision(target.revision) : undefined;
  if (!target || !targetState) {
    const drifting = d.conditions.find((c) => c.type === 'Drifting')!;
    const why = monitoredHash === hash ? 'no earlier promoted revision in history to roll back to' : `revision ${monitoredHash} already serves in place of the rejected ${hash}`;
    if (!drifting.message?.includes(why)) d.setCondition({ ...drifting, message: `${drifting.message ?? ''} (${why}: alert only)`.slice(0, 2000) });
    return;
  }
  const why = `monitoring: ${m.rollback}`.slice(0, 2000);
  const version = md.spec.model.version;
  status.rejectedRevision = { hash: monitoredHash, modelVersion: version, reason: why, at: d.now };
  const promotedAt = d.history.findIndex((h) => h.revision === monitoredHash && h.outcome === 'Promoted');
  if (promotedAt >= 0) d.history[promotedAt] = { ...d.history[promotedAt]!, outcome: 'RolledBack', reason: why, finishedAt: d.now };
  d.history = [historyEntry(targetState.spec, target.revision, targetState.runtime.image, d.now, '', 'Progressing', `restoring: revision ${monitoredHash} failed monitoring`), ...d.history];
  status.canaryRevision = revisionInfo(targetState.spec, target.revision, targetState.runtime, d.now);
  d.resetRollout({ step: 0, steps: 0, startedAt: d.now, stepStartedAt: d.now, restoring: true });
  status.analysis = { results: [] };
  d.events.push({ type: 'Warning', reason: 'RolledBack', message: `revision ${monitoredHash} (model ${version}): ${why}; returning to revision ${target.revision} (model ${targetState.spec.model.version})` });
  d.degraded = d.condition('Degraded', 'True', 'RolledBack', `revision ${monitoredHash} (model ${version}) rolled back: ${why}`);
  d.progressing = d.condition('Progressing', 'True', 'Restoring', `returning to revision ${target.revision} (model ${targetState.spec.model.version}); it takes traffic as its pods become ready`);
  d.statusPhase = 'Progressing';
  d.soon(50);
}
