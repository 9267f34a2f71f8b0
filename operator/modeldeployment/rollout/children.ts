// The children that follow from the decision: the stable revision's Deployment, the Services, the
// HPA and the HTTPRoute; children the spec no longer wants; and revisions that no longer serve, kept
// warm until scaleDownAt, then deleted. Pure.
import type { KubeObject } from '../../api/object.js';
import { desiredHpa, scalerFor } from '../desired/hpa.js';
import { desiredScaledObject } from '../desired/scaledobject.js';
import { desiredHttpRoute } from '../desired/httproute.js';
import { desiredInferencePool } from '../desired/inferencepool.js';
import { desiredRevisionService, desiredService, revisionServicesWanted } from '../desired/service.js';
import { revisionLabel } from '../labels.js';
import { resolveRuntime } from '../resolve.js';
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
    d.apply.push(d.deployment(stable, d.stableReplicas));
  }
  const revisionServices = revisionServicesWanted(md, d.gateway);
  if (servingHash) {
    d.apply.push(desiredService(md, d.canaryTraffic ? undefined : servingHash));
    if (revisionServices) d.apply.push(desiredRevisionService(md, 'stable', servingHash));
    else d.remove.push({ kind: 'Service', name: `${name}-stable` });
  } else {
    // Before the first promotion only the first revision can serve: selecting it from the start saves
    // re-pointing the Service when it is promoted.
    d.apply.push(desiredService(md, d.hash));
  }
  const canaryBackend = d.canaryState?.hash ?? d.drainingHash;
  if (canaryBackend && revisionServices) d.apply.push(desiredRevisionService(md, 'canary', canaryBackend));
  else d.remove.push({ kind: 'Service', name: `${name}-canary` });
  // InferencePools, beside the Services of the same names (analysis and mirroring use the Services).
  // A pool's target port is its own revision's: a runtime change may move the server's port.
  const pools = md.spec.traffic?.router === 'InferencePool';
  const portOf = (hash: string) => (hash === stableHash ? stable?.runtime : d.canaryState?.hash === hash ? d.canaryState.runtime : d.revision(hash)?.runtime)?.port
    ?? stable?.runtime.port ?? d.canaryState?.runtime.port;
  const stablePort = servingHash && portOf(servingHash);
  if (pools && servingHash && stablePort) d.apply.push(desiredInferencePool(md, 'stable', servingHash, stablePort, d.ctx.endpointPicker));
  else d.remove.push({ kind: 'InferencePool', name: `${name}-stable` });
  const canaryPort = canaryBackend && portOf(canaryBackend);
  if (pools && canaryBackend && canaryPort) d.apply.push(desiredInferencePool(md, 'canary', canaryBackend, canaryPort, d.ctx.endpointPicker));
  else d.remove.push({ kind: 'InferencePool', name: `${name}-canary` });
  // One scaler on the ModelDeployment. Switching between them removes the old one first: KEDA refuses
  // a target another HPA scales, and two scalers would fight over /scale.
  const scaler = md.spec.autoscaling ? scalerFor(md, d.ctx.kedaAvailable) : undefined;
  // The spec's preset (the scaler follows the spec; plan refused a spec that resolves to none): the
  // revision of the spec is stable or the canary, already resolved, unless it was rejected.
  const current = [stable, d.canaryState].find((r) => r?.hash === d.hash)?.runtime;
  const resolved = md.spec.autoscaling && !current ? resolveRuntime(md.spec, name) : undefined;
  const preset = current?.preset ?? (resolved?.ok ? resolved.runtime.preset : undefined);
  if (scaler === 'KEDA') {
    d.remove.push({ kind: 'HorizontalPodAutoscaler', name });
    if (d.obs.hpa) d.soon(200);
    else d.apply.push(desiredScaledObject(md, preset ?? 'custom', d.ctx.tenancy?.providers ?? [])!);
  } else {
    d.remove.push({ kind: 'ScaledObject', name });
    if (scaler === 'HPA' && d.obs.scaledObject) d.soon(200);
    else if (scaler === 'HPA') d.apply.push(desiredHpa(md, preset)!);
    if (!scaler) d.remove.push({ kind: 'HorizontalPodAutoscaler', name });
  }
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
