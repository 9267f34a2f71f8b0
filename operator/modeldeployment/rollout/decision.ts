// The decision being built by one reconcile: what was observed, and what the steps of plan() have
// decided so far. The steps (first.ts, steady.ts, canary.ts, drain.ts, children.ts, monitoring.ts,
// conclude.ts) each read it and add to it, in a fixed order; none does I/O. Pure.
import type {
  CheckResult, Condition, EndpointPickerRef, HistoryEntry, ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus, RetiringRevision, RevisionInfo, RolloutStatus, RolloutStep,
} from '../../api/generated.js';
import type { KubeObject } from '../../api/object.js';
import { revisionHash, revisionSpec } from '../../api/revision.js';
import type { MonitoringInput } from '../monitoring/decide.js';
import { routeCanaryWeight, type RouteState } from '../desired/httproute.js';
import { revisionLabel } from '../labels.js';
import { resolveModelDigest, resolveRuntime, type ResolvedRuntime } from '../resolve.js';
import { observeDeployment, podTrouble, setCondition, type DeploymentObservation, type PodTrouble } from '../status.js';
import { splitReplicas, type CapacityPolicy } from './capacity.js';
import type { Operation } from './operations.js';
import { specOfRevision } from './revisions.js';
import { imagesDiffer, recordedImages } from './runtime-pin.js';
import { desiredDeployment, modelVolumeSizeLimit } from '../desired/deployment.js';
import { modelCacheFor, type ModelCache } from '../model-cache.js';
import type { TenancyPolicy } from '../../tenancy/policy.js';
import { mirrorAt, weightAt } from './steps.js';

export interface Observations {
  /** Deployments owned by this ModelDeployment, by revision hash. */
  deployments: Map<string, KubeObject>;
  /** Pods of this ModelDeployment, any revision. */
  pods: KubeObject[];
  /** The live HTTPRoute (GatewayAPI): the weight it carries now is where the guard starts from. */
  route?: KubeObject;
  /** The live main Service (ReplicaRatio): whether it still selects every revision. */
  service?: KubeObject;
  /** Our live HPA and ScaledObject: a switch of scaler removes the old one before the new one is made. */
  hpa?: KubeObject;
  scaledObject?: KubeObject;
}

export interface PlanContext {
  fetcherImage: string;
  now: Date;
  /** Whether the cluster serves external.metrics.k8s.io (prometheus-adapter, KEDA). */
  externalMetricsAvailable?: boolean;
  /** Analysis results for the current canary, including measurements taken just now. */
  analysis?: CheckResult[];
  operations?: Operation[];
  /** Whether the cluster serves HTTPRoutes (gateway.networking.k8s.io/v1). */
  gatewayApiAvailable?: boolean;
  /** Whether the cluster serves KEDA's ScaledObjects (keda.sh/v1alpha1). */
  kedaAvailable?: boolean;
  /** Whether the cluster serves InferencePools (inference.networking.k8s.io/v1). */
  inferencePoolAvailable?: boolean;
  /** The endpoint picker a pool names when its spec names none (--inference-pool-endpoint-picker). */
  endpointPicker?: EndpointPickerRef;
  /** Monitoring results for the stable revision, including measurements taken just now. */
  monitoring?: MonitoringInput;
  /**
   * Whether a rollout may start now under the cluster-wide limit (--max-concurrent-rollouts): false
   * queues a new canary or a runtime upgrade. Undefined: no limit.
   */
  rolloutSlot?: boolean;
  /** The admin's tenancy policy (absent: the defaults). */
  tenancy?: TenancyPolicy;
  /** The model emptyDir's sizeLimit when the spec sets none (--model-size-limit). */
  modelSizeLimit?: string;
  /** The model cache (--model-cache) for revisions built from now on; a serving revision keeps its own. */
  modelCache?: ModelCache;
}

/** A child that exists only while the spec wants it: removed when the plan no longer applies it. */
export interface ChildRef {
  kind: 'Service' | 'HorizontalPodAutoscaler' | 'HTTPRoute' | 'InferencePool' | 'ScaledObject';
  name: string;
}

export interface PlannedEvent {
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface Plan {
  apply: KubeObject[];
  delete: KubeObject[];
  /** Children to remove if they exist and are ours (the canary Service once no canary runs, an HPA or HTTPRoute no longer wanted). */
  remove: ChildRef[];
  status: ModelDeploymentStatus;
  events: PlannedEvent[];
  /** Operation annotations acted on (or refused), to remove from the object. */
  removeAnnotations: string[];
  /** Operation requests to bind before acting (rollout/operations.ts): annotation → bound value. */
  bindAnnotations: Record<string, string>;
  requeueAfterMs?: number;
}

export type ConditionInput = Omit<Condition, 'lastTransitionTime'>;

/**
 * Where the rollout is: the first revision comes up; the stable one serves alone (possibly with a
 * new revision queued, or waiting for a leaving canary to drain, or its pods rolling over to a new
 * runtime); or a canary rolls out beside it.
 */
export type RolloutPhase = 'FirstRevision' | 'Steady' | 'Canary';

export interface RevisionState {
  hash: string;
  spec: ModelDeploymentSpec;
  runtime: ResolvedRuntime;
  observed: DeploymentObservation | undefined;
  ready: number;
  trouble: PodTrouble | undefined;
}

const defaultScaleDownDelaySeconds = 30;

export function condition(type: string, status: Condition['status'], reason: string, message: string, generation: number): ConditionInput {
  return { type, status, reason, message, observedGeneration: generation };
}

/** The digest a revision's model is held to: model.digest, or the one its oci:// URI is pinned to. */
function modelDigestField(spec: ModelDeploymentSpec): { modelDigest?: string } {
  const { digest } = resolveModelDigest(spec.model);
  return digest ? { modelDigest: digest } : {};
}

export const revisionInfo = (spec: ModelDeploymentSpec, hash: string, runtime: ResolvedRuntime, since: string): RevisionInfo => ({
  hash,
  modelVersion: spec.model.version,
  modelURI: spec.model.uri,
  ...modelDigestField(spec),
  image: runtime.image,
  preset: runtime.preset,
  since,
});

export function historyEntry(spec: ModelDeploymentSpec, hash: string, image: string | undefined, startedAt: string, finishedAt: string,
  outcome: HistoryEntry['outcome'], reason = ''): HistoryEntry {
  return {
    revision: hash,
    modelVersion: spec.model.version,
    modelURI: spec.model.uri,
    ...modelDigestField(spec),
    ...(spec.model.dataset ? { dataset: spec.model.dataset } : {}),
    ...(image ? { image } : {}),
    startedAt,
    ...(finishedAt ? { finishedAt } : {}),
    outcome,
    ...(reason ? { reason } : {}),
    spec: JSON.parse(JSON.stringify(revisionSpec(spec))) as Record<string, unknown>,
  };
}

/**
 * A revision's ready pods as the Service's endpoints see them: its pods with Ready=True that are not
 * being deleted. The Deployment's readyReplicas says the same a moment later; without pods in the
 * cache (a revision just created) it is what there is.
 */
export function readyOf(obs: Observations, hash: string): number {
  const pods = obs.pods.filter((p) => p.metadata?.labels?.[revisionLabel] === hash);
  const conditions = (p: KubeObject) => (p as { status?: { conditions?: { type: string; status: string }[] } }).status?.conditions;
  if (!pods.some((p) => conditions(p))) return observeDeployment(obs.deployments.get(hash))?.readyReplicas ?? 0;
  return pods.filter((p) => !p.metadata?.deletionTimestamp && conditions(p)?.some((c) => c.type === 'Ready' && c.status === 'True')).length;
}

export function revisionState(md: ModelDeployment, hash: string, obs: Observations): RevisionState | undefined {
  const spec = specOfRevision(md, hash, obs.deployments);
  if (!spec) return undefined;
  const resolution = resolveRuntime(spec, md.metadata!.name!);
  if (!resolution.ok) return undefined;
  return {
    hash, spec, runtime: resolution.runtime, observed: observeDeployment(obs.deployments.get(hash)),
    ready: readyOf(obs, hash),
    trouble: podTrouble(obs.pods.filter((p) => p.metadata?.labels?.[revisionLabel] === hash)),
  };
}

/** A leaving canary keeps traffic while it has ready pods and stable cannot yet carry everything. */
export const mustDrain = (leavingReady: number, stableReady: number, total: number) => leavingReady > 0 && stableReady < total;

export const fullyReady = (r: RevisionState | undefined, replicas: number) =>
  !!r?.observed && r.observed.observedGenerationCurrent && r.observed.replicas === replicas && r.ready >= replicas && r.observed.updatedReplicas >= replicas;

/**
 * Canary replicas at step i: its share of the weight, enough to absorb a mirrored share, and at least
 * one while a rollout runs, so tagged requests, mirrors and smoke tests always have a pod to reach.
 */
export function canaryReplicas(total: number, steps: RolloutStep[], i: number, policy: CapacityPolicy, exactWeights: boolean): number {
  if (total <= 0) return 0;
  const byWeight = splitReplicas(total, weightAt(steps, i), policy, exactWeights).canary;
  const byMirror = Math.ceil((total * mirrorAt(steps, i)) / 100);
  return Math.min(total, Math.max(1, byWeight, byMirror));
}

export class Decision {
  readonly now: string;
  readonly nowMs: number;
  readonly generation: number;
  readonly prior: ModelDeploymentStatus;
  readonly name: string;
  /** The revision the spec asks for. */
  readonly hash: string;
  readonly gateway: boolean;
  /** The spec's replicas: the capacity that carries all the traffic. */
  readonly total: number;
  readonly policy: CapacityPolicy;
  /** The canary weight the live HTTPRoute carries now. */
  readonly liveWeight: number;
  readonly scaleDownDelayMs: number;
  readonly historyLimit: number;

  status: ModelDeploymentStatus;
  conditions: Condition[];
  history: HistoryEntry[];
  retiring: RetiringRevision[];
  rollout: RolloutStatus;
  readonly events: PlannedEvent[] = [];
  readonly removeAnnotations: string[] = [];
  bindAnnotations: Record<string, string> = {};
  /** Bound requests not acted on yet. */
  operations: Operation[] = [];
  readonly apply: KubeObject[] = [];
  readonly remove: ChildRef[] = [];
  deletes: KubeObject[] = [];
  requeue: number | undefined;

  phase: RolloutPhase = 'Steady';
  stableHash: string | undefined;
  stable: RevisionState | undefined;
  canaryHash: string | undefined;
  /** The earlier revision a monitoring rollback brings back, rolling out like a canary. */
  restoring: string | undefined;
  /** The spec's revision was rejected and is not rolled out again until a retry or a new spec. */
  rejected = false;
  /** A new revision waits for a slot under --max-concurrent-rollouts. */
  queued: string | undefined;
  /** A new revision waits for a leaving canary to hand its traffic back. */
  waitingForDrain: string | undefined;
  drainingNow: RetiringRevision | undefined;
  /** The leaving revision that still carries traffic after this decision. */
  drainingHash: string | undefined;
  /** A canary was rolled back in this decision. */
  rolledBack = false;

  /** What the router and the Deployments are told (rollout/guard.ts decides). */
  route: RouteState = { canaryWeight: 0, mirrorPercent: 0, canaryReady: false };
  canaryTraffic = false;
  stableReplicas: number;
  canaryState: RevisionState | undefined;
  podResult: CheckResult | undefined;

  // Conditions are written by conclude.ts only (one owner each); the steps say what they found.
  degraded: ConditionInput | undefined;
  progressing: ConditionInput | undefined;
  /** Ready before any revision serves (first.ts); once one serves, conclude.ts derives it. */
  ready: ConditionInput | undefined;
  /** Why the canary is held: analysis without enough data, or pods that cannot be scheduled. */
  inconclusive: string | undefined;
  capacityBlocked: string | undefined;
  statusPhase: ModelDeploymentStatus['phase'] = 'Healthy';

  /** Revisions whose pods keep images this operator would replace (runtime-pin.ts). */
  readonly outdated = new Map<string, { running: string[]; wanted: string[] }>();

  constructor(readonly md: ModelDeployment, readonly obs: Observations, readonly ctx: PlanContext) {
    this.now = ctx.now.toISOString();
    this.nowMs = ctx.now.getTime();
    this.generation = md.metadata?.generation ?? 0;
    this.prior = md.status ?? {};
    this.name = md.metadata!.name!;
    this.hash = revisionHash(md.spec);
    // Both route through an HTTPRoute with exact weights; InferencePool's backends are pools.
    this.gateway = md.spec.traffic?.router === 'GatewayAPI' || md.spec.traffic?.router === 'InferencePool';
    this.total = md.spec.replicas ?? 1;
    this.policy = md.spec.rollout?.capacity ?? 'Surge';
    this.liveWeight = routeCanaryWeight(obs.route, this.name);
    this.scaleDownDelayMs = (md.spec.rollout?.scaleDownDelaySeconds ?? defaultScaleDownDelaySeconds) * 1000;
    this.historyLimit = md.spec.revisionHistoryLimit ?? 10;
    this.status = { ...this.prior };
    this.conditions = this.prior.conditions ?? [];
    this.history = [...(this.prior.history ?? [])];
    this.retiring = [...(this.prior.retiring ?? [])];
    this.rollout = { ...(this.prior.rollout ?? {}) };
    this.stableReplicas = this.total;
  }

  condition(type: string, status: Condition['status'], reason: string, message: string): ConditionInput {
    return condition(type, status, reason, message, this.generation);
  }

  setCondition(c: ConditionInput): void {
    this.conditions = setCondition(this.conditions, c, this.now);
  }

  dropCondition(type: string): void {
    this.conditions = this.conditions.filter((c) => c.type !== type);
  }

  /** Look again within `ms` (the earliest of all the reasons wins). */
  soon(ms: number): void {
    this.requeue = Math.max(50, Math.min(this.requeue ?? Number.POSITIVE_INFINITY, ms));
  }

  /**
   * The Deployment of a revision, built from its own spec, with the images it was built with unless a
   * runtime upgrade of it was released (runtime-pin.ts).
   */
  deployment(r: RevisionState, replicas: number): KubeObject {
    const live = this.obs.deployments.get(r.hash);
    // Like its images, a serving revision keeps the size limit it was built with: a new operator
    // default must not restart every model's pods.
    const sizeLimit = r.spec.model.sizeLimit ?? (live ? modelVolumeSizeLimit(live) : this.ctx.modelSizeLimit);
    // And the model cache: enabling or changing it reaches new revisions only (model-cache.ts).
    const modelCache = modelCacheFor(live, this.ctx.modelCache);
    const built = desiredDeployment({ md: { ...this.md, spec: r.spec }, hash: r.hash, runtime: r.runtime, replicas, fetcherImage: this.ctx.fetcherImage, ...(sizeLimit ? { modelSizeLimit: sizeLimit } : {}), ...(modelCache ? { modelCache } : {}) });
    const recorded = recordedImages(live);
    const wanted = recordedImages(built);
    const differ = recorded && wanted ? imagesDiffer(recorded, wanted) : undefined;
    if (!differ || !recorded) return built;
    this.outdated.set(r.hash, differ);
    if (this.status.runtimeUpgrade?.revision === r.hash) return built;
    return desiredDeployment({
      md: { ...this.md, spec: r.spec }, hash: r.hash, runtime: { ...r.runtime, image: recorded.server }, replicas,
      fetcherImage: recorded.fetcher ?? this.ctx.fetcherImage, ...(sizeLimit ? { modelSizeLimit: sizeLimit } : {}), ...(modelCache ? { modelCache } : {}),
    });
  }

  /**
   * The revision on its way out that may still carry traffic: one marked draining, or one the live
   * router still sends traffic to (a crash came between the decision that took it out and the write
   * that did). Never the revision that serves, nor `except` (the canary rolling out).
   */
  leavingRevision(except?: string): RetiringRevision | undefined {
    const { obs } = this;
    const serving = this.status.stableRevision?.hash;
    const candidates = this.retiring.filter((r) => r.hash !== serving && r.hash !== except && obs.deployments.has(r.hash));
    const marked = candidates.find((r) => r.draining);
    if (marked) return marked;
    // Not after a promotion in this decision: the new stable is fully ready and carries everything.
    if (serving !== this.stableHash) return undefined;
    const selector = (obs.service as { spec?: { selector?: Record<string, string> } } | undefined)?.spec?.selector;
    const routerShares = this.gateway ? this.liveWeight > 0 : !!selector && !selector[revisionLabel];
    if (!routerShares) return undefined;
    return candidates.filter((r) => readyOf(obs, r.hash) > 0).sort((a, b) => readyOf(obs, b.hash) - readyOf(obs, a.hash))[0];
  }

  revision(hash: string): RevisionState | undefined {
    return revisionState(this.md, hash, this.obs);
  }

  /** A rollout's history entry is written when it starts (Progressing) and completed when it ends. */
  finish(spec: ModelDeploymentSpec, hash: string, image: string | undefined, outcome: HistoryEntry['outcome'], reason = ''): void {
    const open = this.history.findIndex((e) => e.revision === hash && e.outcome === 'Progressing');
    const started = open >= 0 ? this.history[open]!.startedAt ?? this.now : this.status.rollout?.startedAt ?? this.now;
    const entry = historyEntry(spec, hash, image, started, this.now, outcome, reason);
    this.history = open >= 0 ? this.history.map((e, k) => (k === open ? entry : e)) : [entry, ...this.history];
  }

  retire(hash: string, reason: string, delayMs = this.scaleDownDelayMs, draining = false): void {
    this.retiring = [...this.retiring.filter((r) => r.hash !== hash), { hash, scaleDownAt: new Date(this.nowMs + delayMs).toISOString(), reason, ...(draining ? { draining } : {}) }];
  }

  /** Records that an operation was acted on (or refused): status, an Event, and its annotation goes. */
  actOn(op: Operation, result: string): void {
    this.removeAnnotations.push(op.annotation);
    const id = Math.max(op.id ?? 0, this.rollout.lastOperation?.id ?? 0);
    this.rollout.lastOperation = { kind: op.kind, revision: op.revision, id, ...(op.step !== undefined ? { step: op.step } : {}), at: this.now, result };
    const ignored = result.startsWith('ignored');
    this.events.push({ type: ignored ? 'Warning' : 'Normal', reason: ignored ? 'OperationIgnored' : 'Operation', message: `${op.kind} ${op.revision}: ${result}` });
  }

  /** The operations of these kinds not acted on yet. */
  pending(...kinds: Operation['kind'][]): Operation[] {
    return this.operations.filter((o) => kinds.includes(o.kind) && !this.removeAnnotations.includes(o.annotation));
  }

  /** A new rollout record that keeps the last operation (it must outlive rollouts: see operations.ts). */
  resetRollout(fields: Partial<RolloutStatus> = {}): void {
    this.rollout = { ...(this.rollout.lastOperation ? { lastOperation: this.rollout.lastOperation } : {}), ...fields };
  }
}
