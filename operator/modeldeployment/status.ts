// Conditions, phase and the serving summary, computed from what was observed. Pure.
// Each condition has one owner here; lastTransitionTime only moves when the status value does.
import type { Condition, ModelDeployment, ModelDeploymentStatus } from '../api/generated.js';
import type { KubeObject } from '../runtime/kube.js';
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
  lastState?: { terminated?: { reason?: string } };
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
        consider({ reason, message: `pod ${name} container ${s.name}: ${reason}${s.state?.waiting?.message ? `: ${s.state.waiting.message}` : ''} (restarts: ${restarts})`, restarts });
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
