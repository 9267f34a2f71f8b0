// The reconcile pipeline for one ModelDeployment: observe (from the caches) → decide (plan, pure) →
// apply (server-side apply, only what differs) → delete → one status write, only when it changed.
import type { TenancyPolicy } from '../tenancy/policy.js';
import { createHash } from 'node:crypto';
import type { EndpointPickerRef, ModelDeployment } from '../api/generated.js';
import { canonicalJson, revisionHash } from '../api/revision.js';
import type { EventRecorder } from '../runtime/events.js';
import type { ModelCache } from './model-cache.js';
import type { ObjectCache } from '../runtime/informer.js';
import { ApiError, isConflict, isInvalid, isNotFound, type KubeClient, type KubeObject, type ResourceType } from '../runtime/kube.js';
import type { Logger } from '../runtime/logger.js';
import type { WriteExpectations } from '../runtime/expectations.js';
import { holdsRolloutSlot, type RolloutSlots } from '../runtime/rollout-slots.js';
import type { OperatorMetrics } from '../runtime/metrics.js';
import { Resources } from '../runtime/resources.js';
import { isSubset } from './desired/compare.js';
import { revisionLabel } from './labels.js';
import { gitOpsConditions, plan, type Plan } from './plan.js';
import type { AnalysisRunner } from './analysis/run.js';
import type { MonitoringRunner } from './monitoring/run.js';
import { requestedOperations } from './rollout/operations.js';
import { setCondition, statusEquals } from './status.js';

export const fieldManager = 'modelship';
export const appliedHashAnnotation = 'modelship.io/applied-hash';

export interface ReconcilerDeps {
  client: KubeClient;
  events: EventRecorder;
  log: Logger;
  fetcherImage: string;
  /** The admin's tenancy policy; absent: the defaults. */
  tenancy?: TenancyPolicy;
  /** --model-size-limit. */
  modelSizeLimit?: string;
  /** --model-cache and --model-cache-max-size; undefined: no cache. */
  modelCache?: ModelCache;
  /** --inference-pool-endpoint-picker. */
  endpointPicker?: EndpointPickerRef;
  /** Refreshed by the manager; undefined until first known. */
  externalMetricsAvailable?: () => boolean | undefined;
  caches: {
    modelDeployments: ObjectCache<ModelDeployment & KubeObject>;
    deployments: ObjectCache<KubeObject>;
    services: ObjectCache<KubeObject>;
    hpas: ObjectCache<KubeObject>;
    pods: ObjectCache<KubeObject>;
    /** Present only when the cluster serves the Gateway API. */
    httpRoutes?: ObjectCache<KubeObject>;
    /** Present only when the cluster serves InferencePools (the Gateway API Inference Extension). */
    inferencePools?: ObjectCache<KubeObject>;
    /** Present only when the cluster serves KEDA's ScaledObjects. */
    scaledObjects?: ObjectCache<KubeObject>;
  };
  metrics?: OperatorMetrics;
  /** Rollout analysis, measured in the background. */
  analysis: AnalysisRunner;
  /** Monitoring of the stable revision after promotion, measured in the background. */
  monitoring: MonitoringRunner;
  /** Our last status write per key, until the cache has caught up with it. */
  expectations: WriteExpectations;
  /** The cluster-wide limit on rollouts in progress; absent: no limit. */
  rolloutSlots?: RolloutSlots;
  now?: () => Date;
}

export interface ReconcileResult {
  requeueAfterMs?: number;
  writes: number;
}

// A pool exists before the route names it, as a Service does.
const applyOrder = ['Service', 'InferencePool', 'HTTPRoute', 'HorizontalPodAutoscaler', 'ScaledObject', 'Deployment'];

const typeOf: Record<string, ResourceType> = {
  Deployment: Resources.Deployment,
  Service: Resources.Service,
  HorizontalPodAutoscaler: Resources.HorizontalPodAutoscaler,
  HTTPRoute: Resources.HTTPRoute,
  InferencePool: Resources.InferencePool,
  ScaledObject: Resources.ScaledObject,
};

/** Hash of what we apply: equal hashes on the live object mean our last apply is still what we want. */
export function appliedHash(obj: KubeObject): string {
  return createHash('sha256').update(canonicalJson(obj)).digest('hex').slice(0, 16);
}

export { isSubset };

function ownedBy(md: ModelDeployment, obj: KubeObject): boolean {
  return !!obj.metadata?.ownerReferences?.some((r) => r.uid === md.metadata?.uid);
}

export async function reconcile(deps: ReconcilerDeps, namespace: string, name: string): Promise<ReconcileResult> {
  const { client, caches, log } = deps;
  const md = caches.modelDeployments.get(namespace, name);
  if (!md || md.metadata?.deletionTimestamp) return { writes: 0 };
  const key = `${namespace}/${name}`;
  // Deciding from a status older than our own last write would repeat what that write recorded.
  if (deps.expectations.isWaiting(key, md.metadata?.resourceVersion)) return { writes: 0, requeueAfterMs: 100 };
  const now = deps.now?.() ?? new Date();

  // Observe.
  const deployments = new Map<string, KubeObject>();
  for (const d of caches.deployments.byIndex(key)) {
    const hash = d.metadata?.labels?.[revisionLabel];
    if (hash && ownedBy(md, d)) deployments.set(hash, d);
  }
  const pods = caches.pods.byIndex(key);

  // Decide.
  const externalMetricsAvailable = deps.externalMetricsAvailable?.();
  const analysis = deps.analysis.poll(md, now);
  const monitoring = deps.monitoring.poll(md, now);
  const liveRoute = caches.httpRoutes?.get(namespace, name);
  // A slot is taken before deciding, when this decision may start a rollout (a new revision or a
  // released runtime upgrade), and given back if it did not.
  const operations = requestedOperations(md.metadata?.annotations);
  const mayStart = !holdsRolloutSlot(md.status) && !!md.status?.stableRevision
    && (revisionHash(md.spec) !== md.status.stableRevision.hash || operations.some((o) => o.kind === 'upgrade-runtime'));
  const rolloutSlot = deps.rolloutSlots && mayStart ? deps.rolloutSlots.tryAcquire(key) : undefined;
  const liveService = caches.services.get(namespace, name);
  const liveHpa = caches.hpas.get(namespace, name);
  const liveScaledObject = caches.scaledObjects?.get(namespace, name);
  let decision: Plan = plan(md, {
    deployments, pods,
    ...(liveRoute && ownedBy(md, liveRoute) ? { route: liveRoute } : {}),
    ...(liveService && ownedBy(md, liveService) ? { service: liveService } : {}),
    ...(liveHpa && ownedBy(md, liveHpa) ? { hpa: liveHpa } : {}),
    ...(liveScaledObject && ownedBy(md, liveScaledObject) ? { scaledObject: liveScaledObject } : {}),
  }, {
    fetcherImage: deps.fetcherImage, now,
    ...(deps.tenancy ? { tenancy: deps.tenancy } : {}),
    ...(deps.modelSizeLimit ? { modelSizeLimit: deps.modelSizeLimit } : {}), ...(deps.modelCache ? { modelCache: deps.modelCache } : {}), ...(externalMetricsAvailable === undefined ? {} : { externalMetricsAvailable }),
    ...(analysis ? { analysis } : {}),
    ...(monitoring ? { monitoring } : {}),
    operations,
    gatewayApiAvailable: caches.httpRoutes !== undefined,
    inferencePoolAvailable: caches.inferencePools !== undefined,
    kedaAvailable: caches.scaledObjects !== undefined,
    ...(deps.endpointPicker ? { endpointPicker: deps.endpointPicker } : {}),
    ...(rolloutSlot !== undefined ? { rolloutSlot } : {}),
  });
  if (rolloutSlot && !holdsRolloutSlot(decision.status)) deps.rolloutSlots?.release(key);
  let writes = 0;
  const cacheOf = (kind: string) => ({ Deployment: caches.deployments, Service: caches.services, HorizontalPodAutoscaler: caches.hpas, HTTPRoute: caches.httpRoutes, InferencePool: caches.inferencePools, ScaledObject: caches.scaledObjects }[kind]);

  // An object with a child's name that this ModelDeployment does not own is someone else's: it is
  // never taken over (server-side apply with force would, and garbage collection would later delete
  // it). The caches hold only labelled objects, so a name they miss is looked up once.
  const live = new Map<KubeObject, KubeObject | undefined>();
  const conflicts: string[] = [];
  for (const desired of decision.apply) {
    const type = typeOf[desired.kind!]!;
    let obj = cacheOf(desired.kind!)?.get(desired.metadata!.namespace, desired.metadata!.name!);
    if (!obj) obj = await client.get<KubeObject>(type, desired.metadata!.namespace, desired.metadata!.name!).catch((err: unknown) => { if (isNotFound(err)) return undefined; throw err; });
    if (obj && !ownedBy(md, obj)) conflicts.push(`${desired.kind} ${desired.metadata!.name}`);
    live.set(desired, obj);
  }
  if (conflicts.length) decision = ownershipConflict(md, decision, conflicts, now);

  // Which child writes this decision needs (apply only what is missing, was edited, or changed), in
  // the order traffic needs: Services and the route move traffic (only onto pods already ready, the
  // guard sees to it) before any Deployment shrinks.
  const toApply = [...decision.apply].sort((a, b) => applyOrder.indexOf(a.kind!) - applyOrder.indexOf(b.kind!)).filter((desired) => {
    const current = live.get(desired);
    return !(current && current.metadata?.annotations?.[appliedHashAnnotation] === appliedHash(desired) && isSubset(desired, current));
  });
  let toRemove = decision.remove.filter((ref) => { const obj = cacheOf(ref.kind)?.get(namespace, ref.name); return !!obj && ownedBy(md, obj); });

  // A cache that may be older than our own last write (its expectation expired unmet) is checked
  // against the object as the apiserver has it before anything is written from it.
  if (deps.expectations.mayBeStale(key) && toApply.length + decision.delete.length + toRemove.length) {
    const current = await client.get<KubeObject>(Resources.ModelDeployment, namespace, name);
    if (current.metadata?.resourceVersion !== md.metadata?.resourceVersion) {
      log.info('the cache is behind the object; deciding again', { cached: md.metadata?.resourceVersion, current: current.metadata?.resourceVersion });
      return { writes, requeueAfterMs: 100 };
    }
    deps.expectations.confirmFresh(key);
  }

  // Apply: only objects that are missing, were edited, or whose desired form changed.
  for (const desired of toApply) {
    const type = typeOf[desired.kind!]!;
    const hash = appliedHash(desired);
    const current = live.get(desired);
    desired.metadata!.annotations = { ...desired.metadata!.annotations, [appliedHashAnnotation]: hash };
    try {
      await client.apply(type, desired, fieldManager);
      writes++;
      log.info('applied', { kind: desired.kind, name: desired.metadata!.name, reason: current ? 'changed' : 'missing' });
    } catch (err) {
      // The namespace is being deleted, and this ModelDeployment with it: nothing to retry.
      if (err instanceof ApiError && err.code === 403 && /being terminated/.test(err.message)) return { writes };
      if (!isInvalid(err)) throw err;
      // The apiserver refused what we built from the spec (e.g. an invalid affinity): a spec problem.
      const message = `${desired.kind} ${desired.metadata!.name}: ${(err as Error).message}`;
      decision = invalidFromApiserver(md, decision, message, now);
      toRemove = [];
      break;
    }
  }

  // Delete revisions that no longer serve.
  for (const obj of decision.delete) {
    try {
      await client.delete(Resources.Deployment, obj.metadata!.namespace, obj.metadata!.name!, { uid: obj.metadata!.uid });
      writes++;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  // Children the spec no longer wants: ours only, and only the copy we saw (uid precondition).
  for (const ref of toRemove) {
    const obj = cacheOf(ref.kind)!.get(namespace, ref.name)!;
    await client.delete(typeOf[ref.kind]!, namespace, ref.name, { uid: obj.metadata?.uid }).catch((err: unknown) => { if (!isNotFound(err) && !isConflict(err)) throw err; });
    writes++;
    log.info('removed', { kind: ref.kind, name: ref.name });
  }

  // One status write, only when something changed, after the children it describes (so Ready=True
  // never precedes the Services). It carries the resourceVersion the decision was made from: a writer
  // deciding from an older object (a deposed leader, a stale cache) gets a 409 instead of overwriting
  // newer progress, and decides again.
  let resourceVersion = md.metadata?.resourceVersion;
  if (!statusEquals(md.status, decision.status)) {
    let written: KubeObject;
    try {
      written = await client.apply(Resources.ModelDeployment, {
        apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment',
        metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) }, status: decision.status,
      }, fieldManager, { subresource: 'status' });
    } catch (err) {
      if (!isConflict(err)) throw err;
      log.info('the object changed since this decision; deciding again', { resourceVersion });
      return { writes, requeueAfterMs: 100 };
    }
    resourceVersion = written.metadata?.resourceVersion;
    deps.expectations.expect(key, resourceVersion);
    writes++;
    const before = (md.status ?? {}) as Record<string, unknown>;
    const after = decision.status as Record<string, unknown>;
    const changed = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((k) => canonicalJson(before[k]) !== canonicalJson(after[k]));
    log.info('status written', { phase: decision.status.phase, changed });
  }
  // Operations: requests are bound before they are acted on, and removed once status records them
  // (rollout/operations.ts). Both writes carry the resourceVersion, so a concurrent edit is never lost.
  const annotations: Record<string, string | null> = {
    ...decision.bindAnnotations,
    ...Object.fromEntries(decision.removeAnnotations.filter((a) => !(a in decision.bindAnnotations)).map((a) => [a, null])),
  };
  if (Object.keys(annotations).length) {
    try {
      const patched = await client.mergePatch<KubeObject>(Resources.ModelDeployment, namespace, name, {
        metadata: { annotations, ...(resourceVersion ? { resourceVersion } : {}) },
      });
      deps.expectations.expect(key, patched.metadata?.resourceVersion);
      writes++;
    } catch (err) {
      if (!isConflict(err)) throw err;
      log.info('annotations changed meanwhile; deciding again', { resourceVersion });
      return { writes, requeueAfterMs: 100 };
    }
  }
  recordMetrics(deps.metrics, namespace, name, decision);
  for (const e of decision.events) {
    await deps.events.emit(md, e.type, e.reason, 'Reconcile', e.message);
    log.info('event', { reason: e.reason, type: e.type, message: e.message });
  }
  return { writes, ...(decision.requeueAfterMs ? { requeueAfterMs: decision.requeueAfterMs } : {}) };
}

const phases = ['Pending', 'Progressing', 'Paused', 'Healthy', 'Degraded'] as const;

function recordMetrics(metrics: OperatorMetrics | undefined, namespace: string, name: string, decision: Plan): void {
  if (!metrics) return;
  const ready = decision.status.conditions?.find((c) => c.type === 'Ready');
  metrics.ready.set({ namespace, name }, ready?.status === 'True' ? 1 : 0);
  // Series per object are what /metrics costs at scale: only the current phase has one, and the canary
  // weight exists only while a canary does.
  for (const phase of phases) {
    if (decision.status.phase === phase) metrics.phase.set({ namespace, name, phase }, 1);
    else metrics.phase.remove({ namespace, name, phase });
  }
  if (decision.events.some((e) => e.reason === 'InvalidSpec')) metrics.invalidSpecs.inc({ namespace, name });
  for (const e of decision.events) if (e.reason === 'RolledBack' || e.reason === 'Aborted') metrics.rollbacks.inc({ namespace, name, reason: e.reason });
  if (decision.status.canaryRevision) metrics.canaryWeight.set({ namespace, name }, decision.status.canaryWeight ?? 0);
  else metrics.canaryWeight.remove({ namespace, name });
  metrics.setChecks('analysis', namespace, name, decision.status.analysis?.results ?? []);
  metrics.setChecks('monitoring', namespace, name, decision.status.monitoring?.results ?? []);
  const drifting = decision.status.conditions?.find((c) => c.type === 'Drifting');
  if (drifting) metrics.drifting.set({ namespace, name }, drifting.status === 'True' ? 1 : 0);
  for (const e of decision.events) {
    if (e.reason === 'Drifting') metrics.driftTransitions.inc({ namespace, name, to: 'True' });
    if (e.reason === 'DriftResolved') metrics.driftTransitions.inc({ namespace, name, to: 'False' });
  }
}

function invalidFromApiserver(md: ModelDeployment, decision: Plan, message: string, now: Date): Plan {
  const generation = md.metadata?.generation ?? 0;
  const at = now.toISOString();
  const prior = md.status?.conditions?.find((c) => c.type === 'Ready');
  let conditions = decision.status.conditions ?? [];
  conditions = setCondition(conditions, { type: 'Ready', status: 'False', reason: 'InvalidSpec', message, observedGeneration: generation }, at);
  return {
    apply: [], delete: [], remove: [], removeAnnotations: [], bindAnnotations: {},
    status: { ...md.status, observedGeneration: generation, conditions: gitOpsConditions(conditions, { type: 'Stalled', reason: 'InvalidSpec', message }, generation, at), phase: md.status?.phase ?? 'Pending' },
    events: prior?.reason === 'InvalidSpec' && prior.message === message ? [] : [{ type: 'Warning', reason: 'InvalidSpec', message }],
  };
}

/**
 * Objects with a child's name that are not ours: nothing is written but status, which names them.
 * Operations wait (they are neither bound nor removed) until the conflict is resolved.
 */
function ownershipConflict(md: ModelDeployment, decision: Plan, objects: string[], now: Date): Plan {
  const generation = md.metadata?.generation ?? 0;
  const at = now.toISOString();
  const message = `${objects.join(', ')} already exist${objects.length === 1 ? 's' : ''} in namespace ${md.metadata?.namespace} and ${objects.length === 1 ? 'is' : 'are'} not owned by this ModelDeployment; rename or delete ${objects.length === 1 ? 'it' : 'them'}, or give this ModelDeployment another name`;
  const prior = md.status?.conditions?.find((c) => c.type === 'Ready');
  let conditions = md.status?.conditions ?? [];
  conditions = setCondition(conditions, { type: 'Ready', status: 'False', reason: 'OwnershipConflict', message, observedGeneration: generation }, at);
  return {
    apply: [], delete: [], remove: [], removeAnnotations: [], bindAnnotations: {},
    status: { ...md.status, observedGeneration: generation, conditions: gitOpsConditions(conditions, { type: 'Stalled', reason: 'OwnershipConflict', message }, generation, at), phase: md.status?.phase ?? 'Pending' },
    events: prior?.reason === 'OwnershipConflict' && prior.message === message ? [] : [{ type: 'Warning', reason: 'OwnershipConflict', message }],
  };
}
