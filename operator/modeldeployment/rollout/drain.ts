// A canary that left (aborted, rolled back, superseded, reverted) while stable could not carry all
// the traffic hands it back as stable's pods become ready, and scales down only once it carries
// nothing; the traffic guard decides how much it keeps. Pure.
import { readyOf, type Decision } from './decision.js';
import { guardTraffic } from './guard.js';

export function drainLeaving(d: Decision): void {
  const { obs, gateway, stable } = d;
  if (d.canaryState || !stable) return;
  const leaving = d.leavingRevision();
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
