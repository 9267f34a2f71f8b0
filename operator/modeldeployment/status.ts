// Conditions, phase and the serving summary, computed from what was observed. Pure.
// Each condition has one owner here; lastTransitionTime only moves when the status value does.
import type { Condition, ModelDeployment, ModelDeploymentStatus } from '../api/generated.js';
import type { KubeObject } from '../api/object.js';
import { canonicalJson } from '../api/revision.js';

export interface DeploymentObservation {
  replicas: number;
  readyReplicas: number;
  updatedReplicas: number;
  observedGenerationCurrent: boolean;
  progressDeadlineExceeded: boolean;
}

export interface PodTrouble {
  reason: 'Unschedulable' | 'CrashLoopBackOff' | 'ImagePullBackOff' | 'ErrImagePull' | 'OOMKilled' | 'CreateContainerConfigError' | 'InitContainerFailed';
  message: string;
  restarts: number;
}

interface DeploymentLike extends KubeObject {
  spec?: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; updatedReplicas?: number; observedGeneration?: number; conditions?: { type: string; status: string; reason?: string }[] };
}

export function observeDeployment(obj: KubeObject | undefined): DeploymentObservation | undefined {
  if (!obj) return undefined;
  const d = obj as DeploymentLike;
  return {
    replicas: d.spec?.replicas ?? 0,
    readyReplicas: d.status?.readyReplicas ?? 0,
    updatedReplicas: d.status?.updatedReplicas ?? 0,
    observedGenerationCurrent: (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0),
    progressDeadlineExceeded: !!d.status?.conditions?.some((c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded'),
  };
}

interface PodLike extends KubeObject {
  status?: {
    phase?: string;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
    containerStatuses?: ContainerStatusLike[];
    initContainerStatuses?: ContainerStatusLike[];
  };
}
interface ContainerStatusLike {
  name: string;
  restartCount?: number;
  state?: { waiting?: { reason?: string; message?: string }; terminated?: { reason?: string; exitCode?: number } };
  lastState?: { terminated?: { reason?: string; message?: string } };
}

/**
 * The line that says why a container last ended: its termination message, which with
 * FallbackToLogsOnError is the tail of its log. The fetcher logs JSON, so its `message` is taken.
 * Bounded: it goes into Events and status.
 */
export function exitReason(message: string | undefined): string | undefined {
  const line = message?.split('\n').map((l) => l.trim()).filter(Boolean).pop();
  if (!line) return undefined;
  let text = line;
  try {
    const parsed = JSON.parse(line) as { message?: unknown };
    if (typeof parsed?.message === 'string') text = parsed.message;
  } catch { /* a plain line */ }
  return text.length > 240 ? `${text.slice(0, 239)}…` : text;
}

/**
 * What the operator keeps of a pod: identity, labels, and the parts of status podTrouble reads. The
 * spec (containers, volumes, probes) is dropped: it is most of a pod's size and never read. So are the
 * owner references: a pod's owner is its ReplicaSet, and the pod is found by its instance label.
 */
export function podSummary(obj: KubeObject): KubeObject {
  const pod = obj as PodLike;
  const m = pod.metadata ?? {};
  const container = (s: ContainerStatusLike): ContainerStatusLike => ({
    name: s.name,
    ...(s.restartCount !== undefined ? { restartCount: s.restartCount } : {}),
    ...(s.state ? { state: {
      ...(s.state.waiting ? { waiting: { ...(s.state.waiting.reason ? { reason: s.state.waiting.reason } : {}), ...(s.state.waiting.message ? { message: s.state.waiting.message.slice(0, 512) } : {}) } } : {}),
      ...(s.state.terminated ? { terminated: { ...(s.state.terminated.reason ? { reason: s.state.terminated.reason } : {}), ...(s.state.terminated.exitCode !== undefined ? { exitCode: s.state.terminated.exitCode } : {}) } } : {}),
    } } : {}),
    ...(s.lastState?.terminated?.reason ? { lastState: { terminated: {
      reason: s.lastState.terminated.reason,
      ...(exitReason(s.lastState.terminated.message) ? { message: exitReason(s.lastState.terminated.message) } : {}),
    } } } : {}),
  });
  const scheduled = pod.status?.conditions?.filter((c) => c.type === 'PodScheduled' || c.type === 'Ready');
  return {
    ...(obj.apiVersion ? { apiVersion: obj.apiVersion } : {}),
    ...(obj.kind ? { kind: obj.kind } : {}),
    metadata: {
      name: m.name, namespace: m.namespace, uid: m.uid, resourceVersion: m.resourceVersion,
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    status: {
      ...(pod.status?.phase ? { phase: pod.status.phase } : {}),
      ...(scheduled?.length ? { conditions: scheduled.map((c) => ({ type: c.type, status: c.status, ...(c.reason ? { reason: c.reason } : {}), ...(c.message ? { message: c.message.slice(0, 512) } : {}) })) } : {}),
      ...(pod.status?.containerStatuses ? { containerStatuses: pod.status.containerStatuses.map(container) } : {}),
      ...(pod.status?.initContainerStatuses ? { initContainerStatuses: pod.status.initContainerStatuses.map(container) } : {}),
    },
  };
}

/**
 * Whether a pod update can change a decision: its summary (phase, scheduling, readiness, containers,
 * deletion, labels) differs, not only its resourceVersion. A pod's status is written several times on
 * its way up (IPs, timestamps, conditions nobody here reads); each would otherwise be a reconcile.
 */
export function podChanged(pod: KubeObject, old: KubeObject | undefined): boolean {
  if (!old) return true;
  const { resourceVersion: _a, ...meta } = pod.metadata ?? {};
  const { resourceVersion: _b, ...oldMeta } = old.metadata ?? {};
  return JSON.stringify([meta, (pod as PodLike).status]) !== JSON.stringify([oldMeta, (old as PodLike).status]);
}

/** The worst thing wrong with a revision's pods, named the way `kubectl describe` would. */
export function podTrouble(pods: KubeObject[]): PodTrouble | undefined {
  let worst: PodTrouble | undefined;
  const consider = (t: PodTrouble) => { if (!worst) worst = t; };
  for (const pod of pods as PodLike[]) {
    const name = pod.metadata?.name ?? '';
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    if (scheduled?.status === 'False' && scheduled.reason === 'Unschedulable') {
      consider({ reason: 'Unschedulable', message: `pod ${name} cannot be scheduled: ${scheduled.message ?? ''}`.trim(), restarts: 0 });
    }
    for (const s of [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]) {
      const waiting = s.state?.waiting?.reason;
      const restarts = s.restartCount ?? 0;
      if (waiting === 'CrashLoopBackOff' || waiting === 'ImagePullBackOff' || waiting === 'ErrImagePull' || waiting === 'CreateContainerConfigError') {
        const oom = s.lastState?.terminated?.reason === 'OOMKilled';
        const reason = oom ? 'OOMKilled' : waiting;
        const exited = exitReason(s.lastState?.terminated?.message);
        consider({ reason, message: `pod ${name} container ${s.name}: ${reason}${s.state?.waiting?.message ? `: ${s.state.waiting.message}` : ''} (restarts: ${restarts})${exited ? `; it last exited with: ${exited}` : ''}`, restarts });
      } else if (s.state?.terminated?.reason === 'OOMKilled' || s.lastState?.terminated?.reason === 'OOMKilled') {
        consider({ reason: 'OOMKilled', message: `pod ${name} container ${s.name} was OOMKilled (restarts: ${restarts})`, restarts });
      }
    }
  }
  return worst;
}

export function setCondition(
  conditions: Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: string,
): Condition[] {
  const prior = conditions.find((c) => c.type === next.type);
  const lastTransitionTime = prior && prior.status === next.status ? prior.lastTransitionTime : now;
  const merged: Condition = { ...next, lastTransitionTime };
  return [...conditions.filter((c) => c.type !== next.type), merged].sort((a, b) => conditionOrder(a.type) - conditionOrder(b.type));
}

const order = ['Ready', 'Progressing', 'Degraded', 'Drifting', 'CapacityBlocked', 'AnalysisInconclusive'];
const conditionOrder = (type: string) => (order.includes(type) ? order.indexOf(type) : order.length);

export function getCondition(md: ModelDeployment, type: string): Condition | undefined {
  return md.status?.conditions?.find((c) => c.type === type);
}

/** Whether a status write is needed; key order differs between the apiserver's JSON and ours. */
export function statusEquals(a: ModelDeploymentStatus | undefined, b: ModelDeploymentStatus | undefined): boolean {
  return canonicalJson(a ?? {}) === canonicalJson(b ?? {});
}
