// The first steps of a decision: which operation requests may act now, and which revisions are in
// play (stable, canary, one restored by monitoring, one that waits), hence the rollout phase. Pure.
import { bindOperations } from './operations.js';
import { specOfRevision } from './revisions.js';
import { mustDrain, readyOf, type Decision } from './decision.js';

/** Requests are bound before they act; a bound one at or below the last acted id is only removed. */
export function takeOperations(d: Decision): void {
  const requested = d.ctx.operations ?? [];
  const lastActedId = d.prior.rollout?.lastOperation?.id ?? 0;
  d.bindAnnotations = bindOperations(requested, lastActedId, d.prior.canaryRevision ? d.prior.rollout?.step ?? 0 : -1);
  for (const op of requested) {
    if (op.id === undefined) continue;
    if (op.id <= lastActedId) d.removeAnnotations.push(op.annotation);
    else d.operations.push(op);
  }
}

/** Retry lifts a rejection of the spec's revision; a retry of anything else is refused. */
export function actOnRetry(d: Decision): void {
  for (const op of d.pending('retry')) {
    if (d.prior.rejectedRevision?.hash === op.revision && op.revision === d.hash) {
      d.actOn(op, 'the rejected revision will be rolled out again');
      delete d.status.rejectedRevision;
    } else {
      d.actOn(op, `ignored: ${op.revision} is not the rejected revision of the current spec`);
    }
  }
}

/** Which revision rolls out as the canary now, if any, and so the phase. */
export function chooseRevisions(d: Decision): void {
  const { prior, stable, stableHash, hash } = d;
  // Monitoring rejected the revision the spec asks for and brings back an earlier promoted one, which
  // rolls out like a canary (no steps: it was promoted recently) until it is ready and serves.
  d.restoring = prior.rollout?.restoring && prior.canaryRevision && d.status.rejectedRevision?.hash === hash ? prior.canaryRevision.hash : undefined;
  d.canaryHash = d.restoring ?? (stableHash === hash || !stable ? undefined : hash);
  d.rejected = d.canaryHash !== undefined && d.status.rejectedRevision?.hash === d.canaryHash;
  if (d.rejected) d.canaryHash = undefined;

  // A canary that is no longer what the spec asks for is superseded (spec changed mid-rollout). It
  // leaves like an aborted canary: at once when stable carries everything, else after draining.
  const priorCanary = prior.canaryRevision?.hash;
  if (priorCanary && priorCanary !== d.canaryHash) {
    const oldSpec = specOfRevision(d.md, priorCanary, d.obs.deployments);
    if (oldSpec && !d.rejected) {
      d.finish(oldSpec, priorCanary, prior.canaryRevision?.image, 'Superseded', `replaced by revision ${hash} before promotion`);
      d.events.push({ type: 'Normal', reason: 'Superseded', message: `canary ${priorCanary} replaced by ${hash} before promotion` });
    }
    d.retire(priorCanary, 'superseded', 0, mustDrain(readyOf(d.obs, priorCanary), stable?.ready ?? 0, d.total));
    delete d.status.canaryRevision;
    d.resetRollout();
    d.status.analysis = { results: [] };
  }
  // The cluster-wide limit on rollouts in progress: a new canary waits for a slot (a restore after a
  // monitoring rollback does not: it is the way back to safety).
  if (d.canaryHash && !d.restoring && prior.canaryRevision?.hash === undefined && d.ctx.rolloutSlot === false) {
    d.queued = d.canaryHash;
    d.canaryHash = undefined;
  }
  // One canary at a time: one that left while stable could not yet carry everything keeps the rest of
  // the traffic, and the next canary starts once it has handed it back.
  // (A revision the live router still shares counts while stable cannot carry everything alone.)
  const leaving = d.leavingRevision(d.canaryHash);
  d.drainingNow = leaving && (leaving.draining || (stable?.ready ?? 0) < d.total) ? leaving : undefined;
  if (d.drainingNow && d.canaryHash && d.canaryHash !== d.drainingNow.hash && prior.canaryRevision?.hash !== d.canaryHash) {
    d.waitingForDrain = d.canaryHash;
    d.canaryHash = undefined;
  }
  d.phase = !stable ? 'FirstRevision' : d.canaryHash ? 'Canary' : 'Steady';
}
