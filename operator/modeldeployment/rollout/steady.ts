// Phase Steady: the stable revision serves alone. Possibly after a rollback (the spec's revision is
// rejected), with a new revision queued or waiting for a leaving canary to drain, or with its pods
// rolling over to this operator's runtime (a released upgrade). Pure.
import type { Decision } from './decision.js';

export function holdSteady(d: Decision): void {
  const { stableHash, hash, status } = d;
  const stable = d.stable!;
  for (const op of d.pending('promote', 'promote-full', 'abort')) d.actOn(op, `ignored: no rollout in progress (stable is ${stableHash})`);
  d.resetRollout();
  d.progressing = d.waitingForDrain
    ? d.condition('Progressing', 'True', 'WaitingForDrain', `revision ${d.waitingForDrain} starts once revision ${d.drainingNow!.hash} has handed its traffic back to stable ${stableHash}`)
    : d.queued
      ? d.condition('Progressing', 'True', 'Queued', `revision ${d.queued} waits for a rollout slot: the cluster allows a limited number of rollouts at once (--max-concurrent-rollouts)`)
      : d.condition('Progressing', 'False', d.rejected ? 'RolledBack' : 'Complete',
        d.rejected ? `revision ${hash} was rejected: ${status.rejectedRevision?.reason ?? ''}; change the spec or retry` : `revision ${stableHash} is fully rolled out`);
  if (d.waitingForDrain || d.queued) {
    d.statusPhase = 'Progressing';
    d.soon(5_000);
  }
  upgradeRuntime(d, stable);
  if (d.rejected) {
    const priorDegraded = d.prior.conditions?.find((c) => c.type === 'Degraded');
    d.degraded = priorDegraded?.status === 'True' ? { ...priorDegraded, observedGeneration: d.generation }
      : d.condition('Degraded', 'True', 'RolledBack', `revision ${hash} was rolled back: ${status.rejectedRevision?.reason ?? ''}`);
    d.statusPhase = 'Degraded';
  }
}

/** A released runtime upgrade: the stable revision's pods roll over to this operator's template. */
function upgradeRuntime(d: Decision, stable: NonNullable<Decision['stable']>): void {
  const { stableHash, total, status } = d;
  d.deployment(stable, total);
  const outdated = d.outdated.get(stableHash!);
  for (const op of d.pending('upgrade-runtime')) {
    if (op.revision !== stableHash) d.actOn(op, `ignored: the serving revision is ${stableHash}`);
    else if (status.runtimeUpgrade?.revision === stableHash) d.actOn(op, 'ignored: its pods are already rolling over');
    else if (!outdated) d.actOn(op, `ignored: revision ${stableHash} already runs this operator's images`);
    else if (d.ctx.rolloutSlot === false) {
      // The request stays until a slot is free.
      d.progressing = d.condition('Progressing', 'True', 'Queued', `the runtime upgrade of revision ${stableHash} waits for a rollout slot (--max-concurrent-rollouts)`);
      d.statusPhase = 'Progressing';
      d.soon(5_000);
    } else {
      status.runtimeUpgrade = { revision: stableHash, images: outdated.wanted.join(', ').slice(0, 1024), at: d.now };
      d.actOn(op, `rolling the pods over to ${outdated.wanted.join(', ')}`);
    }
  }
  const upgrading = status.runtimeUpgrade?.revision === stableHash ? status.runtimeUpgrade : undefined;
  if (!upgrading) return;
  const live = stable.observed;
  if (!outdated && live && live.observedGenerationCurrent && live.updatedReplicas >= total && stable.ready >= total) {
    d.events.push({ type: 'Normal', reason: 'RuntimeUpgraded', message: `revision ${stableHash} runs ${upgrading.images ?? 'this operator\'s images'}` });
    delete status.runtimeUpgrade;
  } else {
    d.progressing = d.condition('Progressing', 'True', 'RuntimeUpgrade', `revision ${stableHash} rolls over to ${upgrading.images ?? 'this operator\'s images'}: ${live?.updatedReplicas ?? 0}/${total} updated, ${stable.ready} ready`);
    d.statusPhase = 'Progressing';
    d.soon(2_000);
  }
}
