// Phase FirstRevision: no revision serves yet. The spec's revision comes up at full size, without
// steps, and is promoted once every replica is ready. Pure.
import { fullyReady, revisionInfo, type Decision } from './decision.js';

export function deployFirst(d: Decision): void {
  const { md, hash, total, now } = d;
  for (const op of d.pending('promote', 'promote-full', 'abort', 'upgrade-runtime')) d.actOn(op, 'ignored: no revision serves yet');
  const target = d.revision(hash)!;
  d.apply.push(d.deployment(target, total));
  const ready = fullyReady(target, total);
  if (ready) {
    d.status.stableRevision = revisionInfo(md.spec, hash, target.runtime, now);
    d.finish(md.spec, hash, target.runtime.image, 'Promoted');
    d.events.push({ type: 'Normal', reason: 'Promoted', message: `revision ${hash} (model ${md.spec.model.version}) is serving` });
    d.resetRollout();
    d.progressing = d.condition('Progressing', 'False', 'Complete', `revision ${hash} is fully rolled out`);
  } else {
    d.rollout.startedAt ??= now;
    const why = target.trouble?.message ?? (target.observed ? `${target.ready}/${total} replicas of revision ${hash} ready` : `creating revision ${hash}`);
    d.progressing = d.condition('Progressing', 'True', 'Deploying', why);
    d.statusPhase = total === 0 ? 'Healthy' : 'Pending';
    if (target.observed?.progressDeadlineExceeded) {
      d.degraded = d.condition('Degraded', 'True', 'ProgressDeadlineExceeded', `revision ${hash} did not become ready within its progress deadline${target.trouble ? `: ${target.trouble.message}` : ''}`);
      d.statusPhase = 'Degraded';
    }
    d.soon(15_000);
  }
  const reason = ready ? 'StableServing' : target.trouble?.reason ?? (total === 0 ? 'ScaledToZero' : 'WaitingForReplicas');
  d.ready = d.condition('Ready', ready ? 'True' : 'False', reason,
    ready ? `revision ${hash} (model ${md.spec.model.version}) serves ${target.ready}/${total} ready replicas` : d.progressing.message ?? '');
  if (target.trouble && reason !== d.prior.conditions?.find((c) => c.type === 'Ready')?.reason) d.events.push({ type: 'Warning', reason: target.trouble.reason, message: target.trouble.message });
}
