// Generated from crds/modeldeployments.modelship.io.yaml by hack/generate-types.ts. Do not edit.
import type {ObjectMeta} from './object.js';

/**
 * A trained model served in production, with safe rollout of new versions.
 */
export interface ModelDeployment {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
  spec: ModelDeploymentSpec;
  status?: ModelDeploymentStatus;
}
export interface ModelDeploymentSpec {
  model: ModelSource;
  runtime?: RuntimeSpec;
  resources?: ResourceRequirements;
  scheduling?: SchedulingSpec;
  /**
   * Serving replicas. Set by you, by kubectl scale, or by the autoscaler through the scale subresource.
   */
  replicas?: number;
  autoscaling?: AutoscalingSpec;
  traffic?: TrafficSpec;
  rollout?: RolloutSpec;
  monitoring?: MonitoringSpec;
  revisionHistoryLimit?: number;
  paused?: boolean;
}
/**
 * The model to serve. A change here starts a new revision.
 */
export interface ModelSource {
  /**
   * Where the model lives: s3://bucket/path, gs://bucket/path, https://host/path, hf://org/repo[@revision], pvc://claim/path or oci://registry/repo:tag.
   */
  uri: string;
  /**
   * The human label of this model version, shown in columns, status, history and metrics.
   */
  version: string;
  /**
   * sha256 of the model (file, or canonical listing of a directory); the fetcher refuses a mismatch.
   */
  digest?: string;
  /**
   * The model's format; it picks the default runtime preset.
   */
  format?: 'sklearn' | 'xgboost' | 'lightgbm' | 'onnx' | 'pytorch' | 'tensorflow' | 'huggingface' | 'custom';
  /**
   * A Secret in the same namespace with the storage credentials; mounted into the fetcher only.
   */
  credentialsSecret?: string;
  /**
   * A ConfigMap in the same namespace whose key ca.crt holds the PEM certificates the fetcher trusts besides the public ones, for a model store with a private CA (an in-house S3 or HTTPS server). Mounted into the fetcher only.
   */
  caConfigMap?: string;
  /**
   * The most the downloaded model may take on the node (the emptyDir's sizeLimit; a pod that writes more is evicted). Unset, the operator's --model-size-limit applies.
   */
  sizeLimit?: string;
  dataset?: DatasetLineage;
}
/**
 * The data set the model was trained on, recorded in the history.
 */
export interface DatasetLineage {
  uri: string;
  digest?: string;
}
/**
 * The serving container. Unset fields come from the preset, which defaults from model.format.
 */
export interface RuntimeSpec {
  preset?: 'mlserver' | 'triton' | 'vllm' | 'torchserve' | 'tgi' | 'custom';
  image?: string;
  /**
   * @maxItems 64
   */
  args?: string[];
  /**
   * @maxItems 64
   */
  env?: EnvVar[];
  port?: number;
  protocol?: 'v2' | 'openai' | 'custom';
  readinessPath?: string;
  /**
   * How long the model may take to load; sizes the startup probe and the default progress deadline.
   */
  startupTimeoutSeconds?: number;
  metricsPath?: string;
}
export interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: EnvVarSource;
}
export interface EnvVarSource {
  secretKeyRef?: KeyRef;
  configMapKeyRef?: KeyRef;
}
export interface KeyRef {
  name: string;
  key: string;
}
export interface ResourceRequirements {
  requests?: {
    [k: string]: number | string;
  };
  limits?: {
    [k: string]: number | string;
  };
}
export interface SchedulingSpec {
  nodeSelector?: {
    [k: string]: string;
  };
  /**
   * @maxItems 32
   */
  tolerations?: Toleration[];
  /**
   * A core/v1 Affinity, passed through to the pods; the apiserver validates it when the Deployment is applied.
   */
  affinity?: Record<string, unknown>;
  priorityClassName?: string;
}
export interface Toleration {
  key?: string;
  operator?: 'Exists' | 'Equal';
  value?: string;
  effect?: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute';
  tolerationSeconds?: number;
}
/**
 * One scaler for the whole ModelDeployment, through its /scale subresource; the rollout splits the replicas between revisions, so a canary never fights the autoscaler. With KEDA's CRDs in the cluster (scaler Auto or KEDA) a KEDA ScaledObject, otherwise an autoscaling/v2 HPA.
 */
export interface AutoscalingSpec {
  minReplicas?: number;
  maxReplicas: number;
  /**
   * Auto: a KEDA ScaledObject when KEDA's CRDs are in the cluster and the spec names the Prometheus KEDA would query (autoscaling.prometheus, or no Prometheus metric at all), otherwise an HPA. KEDA: only a ScaledObject (InvalidSpec without KEDA). HPA: only an HPA.
   */
  scaler?: 'Auto' | 'KEDA' | 'HPA';
  prometheus?: AutoscalingPrometheus;
  /**
   * How long every metric must stay below its activationValue before the model scales to zero (KEDA's cooldownPeriod). Default 300.
   */
  cooldownSeconds?: number;
  /**
   * @maxItems 8
   */
  metrics?: AutoscalingMetric[];
  /**
   * An autoscaling/v2 HorizontalPodAutoscalerBehavior, passed through to the HPA (KEDA's too).
   */
  behavior?: Record<string, unknown>;
}
/**
 * The Prometheus KEDA queries for Prometheus and LLM metrics (the HPA path reads an adapter's external metrics instead).
 */
export interface AutoscalingPrometheus {
  address?: string;
  /**
   * A provider the cluster admin registered, by name.
   */
  provider?: string;
}
/**
 * CPU and Memory: targetAverageUtilization. Prometheus: query and targetAverageValue (per pod). RequestsWaiting: requests queued in the server, targetAverageValue per pod. KVCacheUsage: the servers' mean KV-cache use, targetAverageUtilization in percent. TimeToFirstToken: the p90 time to first token over the last minute, targetValue in seconds. The LLM signals become the right query for the runtime preset (vLLM, TGI).
 */
export interface AutoscalingMetric {
  type: 'CPU' | 'Memory' | 'Prometheus' | 'RequestsWaiting' | 'KVCacheUsage' | 'TimeToFirstToken';
  targetAverageUtilization?: number;
  query?: string;
  targetAverageValue?: number | string;
  targetValue?: number | string;
  /**
   * KEDA's activationThreshold: the model is active (at least one replica) while the metric is above it, and may scale to zero once every metric has stayed at or below it for cooldownSeconds.
   */
  activationValue?: number | string;
}
export interface TrafficSpec {
  /**
   * How traffic is split between the stable and canary revisions. ReplicaRatio: one Service over both, so the canary's share follows its share of ready pods. GatewayAPI: an HTTPRoute with exact weights between the Services <name>-stable and <name>-canary. InferencePool: the same HTTPRoute, but its backends are the InferencePools <name>-stable and <name>-canary (inference.networking.k8s.io/v1), so an endpoint picker chooses the pod inside each revision by queue depth and KV-cache use.
   */
  router?: 'ReplicaRatio' | 'GatewayAPI' | 'InferencePool';
  port?: number;
  /**
   * When the Services <name>-stable and <name>-canary exist under the ReplicaRatio router. Auto: only while something reaches one revision through them (analysis or monitoring checks of type http or webhook). Always: <name>-stable while a revision serves and <name>-canary during a rollout, for people and tools that call one revision directly. The GatewayAPI and InferencePool routers always have both: they are the route's backends.
   */
  revisionServices?: 'Auto' | 'Always';
  gatewayAPI?: GatewayAPITraffic;
  inferencePool?: InferencePoolTraffic;
}
export interface GatewayAPITraffic {
  /**
   * @maxItems 16
   */
  parentRefs?: ParentRef[];
  /**
   * @maxItems 16
   */
  hostnames?: string[];
  canaryHeader?: HeaderMatch;
}
export interface ParentRef {
  group?: string;
  kind?: string;
  name: string;
  namespace?: string;
  sectionName?: string;
  port?: number;
}
export interface HeaderMatch {
  name: string;
  value: string;
}
/**
 * The InferencePools of the InferencePool router. Each serving revision's pool selects its pods; the HTTPRoute (from gatewayAPI) splits weight between the pools.
 */
export interface InferencePoolTraffic {
  endpointPicker?: EndpointPickerRef;
}
/**
 * The endpoint picker (EPP) Service each pool names. An endpoint picker serves one pool, so the name may hold {pool}, which stands for the pool's name (<name>-stable or <name>-canary): "{pool}-epp" names one picker per pool. Unset: the operator's --inference-pool-endpoint-picker.
 */
export interface EndpointPickerRef {
  name: string;
  port: number;
  /**
   * What the gateway does when the picker does not answer (FailClose refuses the request).
   */
  failureMode?: 'FailOpen' | 'FailClose';
}
export interface RolloutSpec {
  /**
   * Canary steps. None means a plain rolling update of the stable revision.
   *
   * @maxItems 32
   */
  steps?: RolloutStep[];
  analysis?: AnalysisSpec;
  progressDeadlineSeconds?: number;
  scaleDownDelaySeconds?: number;
  capacity?: 'Surge' | 'Shift';
  onUnschedulable?: 'Hold' | 'Rollback';
}
export interface RolloutStep {
  setWeight?: number;
  setMirror?: number;
  pause?: PauseStep;
}
/**
 * Wait for duration, or with no duration until promoted by hand.
 */
export interface PauseStep {
  duration?: string;
}
export interface AnalysisSpec {
  /**
   * How often each check is measured (at least 5s).
   */
  interval?: string;
  /**
   * What missing or too little data means during a rollout.
   */
  inconclusive?: 'Hold' | 'Rollback';
  /**
   * @maxItems 16
   */
  checks?: Check[];
}
export interface Check {
  name: string;
  podHealth?: PodHealthCheck;
  prometheus?: PrometheusCheck;
  http?: HTTPCheck;
  webhook?: WebhookCheck;
  drift?: DriftCheck;
  pass?: Bounds;
  compareToStable?: StableComparison;
  /**
   * Failed measurements tolerated before the check fails the rollout.
   */
  failureLimit?: number;
}
export interface PodHealthCheck {
  maxRestarts?: number;
}
export interface PrometheusCheck {
  address?: string;
  /**
   * A provider the cluster admin registered (with its address and credentials), by name.
   */
  provider?: string;
  query?: string;
  samplesQuery?: string;
  minSamples?: number;
  timeoutSeconds?: number;
}
export interface HTTPCheck {
  path: string;
  method?: 'GET' | 'POST' | 'PUT';
  headers?: {
    [k: string]: string;
  };
  /**
   * JSON request body, sent as is.
   */
  body?: unknown;
  expectStatus?: number;
  /**
   * A JSON Schema the response body must satisfy.
   */
  responseSchema?: Record<string, unknown>;
  timeoutSeconds?: number;
  compareToStable?: PredictionComparison;
}
/**
 * Send the same request to stable and compare the values at jsonPath.
 */
export interface PredictionComparison {
  jsonPath: string;
  maxAbsDiff?: number;
  minAgreement?: number;
}
export interface WebhookCheck {
  url?: string;
  /**
   * A provider the cluster admin registered (with its address and credentials), by name.
   */
  provider?: string;
  timeoutSeconds?: number;
  headers?: {
    [k: string]: string;
  };
}
/**
 * Population Stability Index between the live histogram and a baseline captured at promotion.
 */
export interface DriftCheck {
  histogram: string;
  prometheus: PrometheusEndpoint;
  window?: string;
  maxPSI: number;
  minSamples?: number;
}
export interface PrometheusEndpoint {
  address?: string;
  /**
   * A provider the cluster admin registered (with its address and credentials), by name.
   */
  provider?: string;
}
export interface Bounds {
  min?: number;
  max?: number;
}
/**
 * Run the same query for the stable revision; the canary value must lie within these ratios of it.
 */
export interface StableComparison {
  maxRatio?: number;
  minRatio?: number;
}
/**
 * Keeps judging the stable revision after promotion, for as long as it serves.
 */
export interface MonitoringSpec {
  /**
   * How often each check is measured (at least 5s).
   */
  interval?: string;
  /**
   * @minItems 1
   * @maxItems 16
   */
  checks?: Check[];
  /**
   * Alert: Drifting condition, Event, metric and webhook. Rollback: all of that, then traffic and capacity return to the previous promoted revision.
   */
  onFailure?: 'Alert' | 'Rollback';
  /**
   * What an empty or too thin window means. Hold: no verdict, Drifting keeps its status. Fail: it counts as a failed measurement.
   */
  inconclusive?: 'Hold' | 'Fail';
  webhook?: MonitoringWebhook;
}
/**
 * Called once on each transition of Drifting (with retries and backoff), with the context as JSON.
 */
export interface MonitoringWebhook {
  url?: string;
  /**
   * A provider the cluster admin registered (with its address and credentials), by name.
   */
  provider?: string;
  timeoutSeconds?: number;
  headers?: {
    [k: string]: string;
  };
  maxAttempts?: number;
}
export interface ModelDeploymentStatus {
  observedGeneration?: number;
  phase?: 'Pending' | 'Progressing' | 'Paused' | 'Healthy' | 'Degraded';
  /**
   * @maxItems 16
   */
  conditions?: Condition[];
  replicas?: number;
  readyReplicas?: number;
  selector?: string;
  url?: string;
  stableRevision?: RevisionInfo;
  canaryRevision?: RevisionInfo;
  canaryWeight?: number;
  mirrorWeight?: number;
  rollout?: RolloutStatus;
  analysis?: AnalysisStatus;
  monitoring?: MonitoringStatus;
  /**
   * Revisions that no longer serve, kept warm until scaleDownAt, then removed.
   *
   * @maxItems 16
   */
  retiring?: RetiringRevision[];
  rejectedRevision?: RejectedRevision;
  runtimeUpgrade?: RuntimeUpgrade;
  /**
   * @maxItems 100
   */
  history?: HistoryEntry[];
}
export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  observedGeneration?: number;
  lastTransitionTime: string;
  reason: string;
  message: string;
}
export interface RevisionInfo {
  hash: string;
  modelVersion?: string;
  modelURI?: string;
  modelDigest?: string;
  image?: string;
  preset?: string;
  since?: string;
}
export interface RolloutStatus {
  step?: number;
  steps?: number;
  position?: string;
  startedAt?: string;
  stepStartedAt?: string;
  /**
   * When the canary first had a ready pod. Analysis measures only from then, so a model's loading time never counts as a failed or inconclusive measurement.
   */
  canaryReadyAt?: string;
  /**
   * While canary pods of the current step load, when the rollout gives up on them (the step's start plus the progress deadline, which the preset sizes for its servers' load times).
   */
  loadingDeadline?: string;
  pauseReason?: '' | 'ManualGate' | 'Inconclusive' | 'CapacityBlocked' | 'Paused' | 'Timed' | 'ScaledToZero';
  /**
   * The canary is an earlier promoted revision that monitoring brought back (onFailure Rollback).
   */
  restoring?: boolean;
  lastOperation?: OperationRecord;
}
export interface OperationRecord {
  kind?: string;
  revision?: string;
  /**
   * The number the operator bound the request to (`;op=<id>` on the annotation). Requests numbered at or below it were acted on, so a request that survives a crash is never acted on twice.
   */
  id?: number;
  /**
   * The rollout step (0-based) the request was bound to; a promote releases only that step.
   */
  step?: number;
  at?: string;
  result?: string;
}
export interface AnalysisStatus {
  /**
   * @maxItems 32
   */
  results?: CheckResult[];
}
export interface CheckResult {
  check: string;
  phase?: 'Passed' | 'Failed' | 'Inconclusive' | 'Error';
  passed?: boolean;
  value?: string;
  stableValue?: string;
  samples?: number;
  failures?: number;
  message?: string;
  at?: string;
}
export interface MonitoringStatus {
  /**
   * The stable revision these results and baselines describe.
   */
  revision?: string;
  baselineCapturedAt?: string;
  /**
   * Per drift check, the histogram captured when the revision was promoted (or on request).
   *
   * @maxItems 16
   */
  baselines?: DriftBaseline[];
  /**
   * @maxItems 32
   */
  results?: CheckResult[];
  /**
   * The last Drifting status the webhook was told about (True or False).
   */
  notified?: 'True' | 'False';
  notification?: PendingNotification;
}
export interface DriftBaseline {
  check: string;
  capturedAt?: string;
  window?: string;
  samples?: number;
  /**
   * Observations per bucket (not cumulative), keyed by the bucket's upper bound.
   *
   * @maxItems 64
   */
  buckets: BucketCount[];
}
export interface BucketCount {
  le: string;
  count: number;
}
/**
 * A transition the webhook has not acknowledged yet; retried with backoff.
 */
export interface PendingNotification {
  drifting: 'True' | 'False';
  check?: string;
  value?: string;
  message?: string;
  at?: string;
  attempts?: number;
  nextAttemptAt?: string;
  lastError?: string;
}
export interface RetiringRevision {
  hash: string;
  scaleDownAt: string;
  reason?: string;
  /**
   * Still taking the traffic the stable revision cannot carry yet (it is scaling back up after an abort, a rollback or a supersede); removed only once it carries none.
   */
  draining?: boolean;
}
export interface RejectedRevision {
  hash: string;
  modelVersion?: string;
  reason?: string;
  at?: string;
}
/**
 * The serving revision's pods moving to the images this operator runs (released with the modelship.io/upgrade-runtime annotation); cleared once every replica runs them.
 */
export interface RuntimeUpgrade {
  revision: string;
  /**
   * The images the pods move to.
   */
  images?: string;
  at?: string;
}
export interface HistoryEntry {
  revision: string;
  modelVersion?: string;
  modelURI?: string;
  modelDigest?: string;
  dataset?: DatasetRecord;
  image?: string;
  startedAt?: string;
  finishedAt?: string;
  outcome?: 'Promoted' | 'RolledBack' | 'Aborted' | 'Superseded' | 'Progressing';
  reason?: string;
  /**
   * The revision's model, runtime, resources and scheduling, so it can be rolled back to.
   */
  spec?: Record<string, unknown>;
}
export interface DatasetRecord {
  uri?: string;
  digest?: string;
}
