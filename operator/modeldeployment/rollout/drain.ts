// A canary that left (aborted, rolled back, superseded, reverted) while stable could not carry all
// the traffic hands it back as stable's pods become ready, and scales down only once it carries
// nothing; the traffic guard decides how much it keeps. Pure.
import { revisionLabel } from '../labels.js';
import { readyOf, type Decision } from './decision.js';
import { guardTraffic } from './guard.js';

export function drainLeaving(d: Decision): void {
  const { obs, gateway, stable } = d;
  if (d.canaryState || !stable) return;
  // A leaving revision is one marked draining, or one the live router still sends traffic to (a crash
  // came between the decision that took it out and the write that did). Not after a promotion in this
  // reconcile: the new stable is fully ready and carries everything.
  const liveSelector = (obs.service as { spec?: { selector?: Record<string, string> } } | undefined)?.spec?.selector;
  const routerStillShares = d.status.stableRevision?.hash === d.stableHash && (gateway ? d.liveWeight > 0 : !!liveSelector && !liveSelector[revisionLabel]);
  const leaving = d.retiring.find((r) => r.draining && obs.deployments.has(r.hash))
    ?? (routerStillShares ? d.retiring.filter((r) => readyOf(obs, r.hash) > 0).sort((a, b) => readyOf(obs, b.hash) - readyOf(obs, a.hash))[0] : undefined);
  if (!leaving) return;
  const g = guardTraffic({
    exactWeights: gateway, policy: d.policy, total: d.total, priorWeight: gateway ? d.liveWeight : 0, stableReady: stable.ready, canaryReady: readyOf(obs, leaving.hash),
    target: { weight: 0, stableReplicas: d.total, canaryReplicas: 0 },
  });
  if (g.weight > 0 || g.canaryInService) {
    d.drainingHash = leaving.hash;
    d.route = { canaryWeight: g.weight, mirrorPercent: 0, canaryReady: true, leaving: true };
    d.canaryTraffic = g.canaryInService;
    d.stableReplicas = Math.max(d.stableReplicas, g.stableReplicas);
    d.soon(1_000);
  } else {
    const { draining: _drained, ...drained } = leaving;
    d.retiring = d.retiring.map((r) => (r.hash === leaving.hash ? drained : r));
  }
}
