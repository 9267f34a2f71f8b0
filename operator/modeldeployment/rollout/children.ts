// The children that follow from the decision: the stable revision's Deployment, the Services, the
// HPA and the HTTPRoute; children the spec no longer wants; and revisions that no longer serve, kept
// warm until scaleDownAt, then deleted. Pure.
import type { KubeObject } from '../../api/object.js';
import { desiredHpa } from '../desired/hpa.js';
import { desiredHttpRoute } from '../desired/httproute.js';
import { desiredRevisionService, desiredService } from '../desired/service.js';
import { revisionLabel } from '../labels.js';
import type { Decision } from './decision.js';

export function buildChildren(d: Decision): void {
  const { md, name, stable, stableHash, status, obs } = d;
  if (status.runtimeUpgrade && status.runtimeUpgrade.revision !== status.stableRevision?.hash) delete status.runtimeUpgrade;
  if (!d.canaryState) {
    delete status.canaryRevision;
    delete status.canaryWeight;
    delete status.mirrorWeight;
  }

  const servingHash = status.stableRevision?.hash;
  if (stable && servingHash === stableHash) {
    d.apply.push(d.deployment(stable, 'stable', d.stableReplicas));
  }
  if (servingHash) {
    d.apply.push(desiredService(md, d.canaryTraffic ? undefined : servingHash));
    d.apply.push(desiredRevisionService(md, 'stable', servingHash));
  } else {
    d.apply.push(desiredService(md));
  }
  const canaryBackend = d.canaryState?.hash ?? d.drainingHash;
  if (canaryBackend) d.apply.push(desiredRevisionService(md, 'canary', canaryBackend));
  else d.remove.push({ kind: 'Service', name: `${name}-canary` });
  const hpa = desiredHpa(md);
  if (hpa) d.apply.push(hpa);
  else d.remove.push({ kind: 'HorizontalPodAutoscaler', name });
  const httpRoute = servingHash ? desiredHttpRoute(md, canaryBackend ? d.route : { canaryWeight: 0, mirrorPercent: 0, canaryReady: false }) : undefined;
  if (httpRoute) d.apply.push(httpRoute);
  else if (!d.gateway) d.remove.push({ kind: 'HTTPRoute', name });

  // Revisions that no longer serve: kept warm until scaleDownAt (unless the canary's traffic would
  // reach them through the shared Service), then removed; unknown ones go at once; draining ones stay.
  const keep = new Set([servingHash, d.canaryState?.hash].filter(Boolean));
  const deletes: KubeObject[] = [];
  d.retiring = d.retiring.filter((r) => !keep.has(r.hash));
  for (const [h, dep] of obs.deployments) {
    if (keep.has(h) || d.apply.some((a) => a.metadata?.name === dep.metadata?.name)) continue;
    const r = d.retiring.find((x) => x.hash === h);
    if (r?.draining) continue;
    const dueMs = r ? Date.parse(r.scaleDownAt) - d.nowMs : 0;
    if (!r || dueMs <= 0 || d.canaryTraffic) deletes.push(dep);
    else d.soon(dueMs);
  }
  d.deletes = deletes;
  d.retiring = d.retiring.filter((r) => obs.deployments.has(r.hash) && !deletes.some((x) => x.metadata?.labels?.[revisionLabel] === r.hash));
}
