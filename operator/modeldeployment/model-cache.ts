// The model cache as the operator sees it (the fetcher's side is cli/model-cache.ts): the admin's
// configuration (--model-cache, --model-cache-max-size), what a revision's Deployment was built with, and
// the fetchers' reports read back from pod status. Pure.
import type { KubeObject } from '../api/object.js';
import { parseFetchReport, type FetchReport } from '../cli/fetch-report.js';

/** Where the cache lives: a directory on every node, or a PVC of that name in each model's namespace. */
export type ModelCacheVolume = { hostPath: string } | { claim: string };

export interface ModelCache {
  volume: ModelCacheVolume;
  /** The bound the fetchers evict down to. */
  maxBytes: number;
}

/** Where the fetcher sees the cache. */
export const modelCacheMountPath = '/var/cache/modelship/models';
export const modelCacheVolumeName = 'model-cache';

const dnsSubdomain = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

/**
 * --model-cache: `hostPath:/dir` (or just `/dir`) or `pvc:<claim>`; empty: no cache. Throws with the
 * reason for anything else.
 */
export function parseModelCacheVolume(text: string): ModelCacheVolume | undefined {
  const value = text.trim();
  if (!value) return undefined;
  if (value.startsWith('pvc:')) {
    const claim = value.slice('pvc:'.length);
    if (!dnsSubdomain.test(claim)) throw new Error(`"${value}": pvc: needs a PersistentVolumeClaim name (a DNS subdomain)`);
    return { claim };
  }
  const path = value.startsWith('hostPath:') ? value.slice('hostPath:'.length) : value;
  // A hostPath is the node's: "/" or a path with ".." would hand the fetcher far more than a cache.
  if (!path.startsWith('/') || path === '/' || path.split('/').includes('..')) {
    throw new Error(`"${value}": must be hostPath:/absolute/dir (not / and without ..) or pvc:<claim>`);
  }
  return { hostPath: path.replace(/\/+$/, '') };
}

/** Bytes of a quantity in whole Mi, Gi or Ti (as --model-size-limit takes it). */
export function quantityBytes(q: string): number | undefined {
  const m = /^([1-9][0-9]{0,6})(Mi|Gi|Ti)$/.exec(q);
  if (!m) return undefined;
  return Number(m[1]) * 1024 ** ({ Mi: 2, Gi: 3, Ti: 4 }[m[2] as 'Mi' | 'Gi' | 'Ti']);
}

/** The cache the flags configure, or undefined when none is. */
export function modelCacheConfig(volume: string, maxSize: string): ModelCache | undefined {
  const parsed = parseModelCacheVolume(volume);
  const maxBytes = quantityBytes(maxSize);
  if (maxBytes === undefined) throw new Error(`"${maxSize}" is not a whole number of Mi, Gi or Ti, such as 100Gi`);
  return parsed ? { volume: parsed, maxBytes } : undefined;
}

/** The fetcher's arguments and the volume the Deployment builder adds for a cache. */
export function modelCacheArgs(cache: ModelCache): string[] {
  return ['--cache-dir', modelCacheMountPath, '--cache-max-bytes', String(cache.maxBytes)];
}

export function modelCacheVolume(cache: ModelCache): Record<string, unknown> {
  return 'claim' in cache.volume
    ? { name: modelCacheVolumeName, persistentVolumeClaim: { claimName: cache.volume.claim } }
    // DirectoryOrCreate: a node without the directory still runs the model (the kubelet creates it, as
    // root, and the fetcher reports the cache unavailable until the admin prepares it; docs/serving.md).
    : { name: modelCacheVolumeName, hostPath: { path: cache.volume.hostPath, type: 'DirectoryOrCreate' } };
}

interface ContainerLike { name?: string; args?: string[] }
interface VolumeLike { name?: string; hostPath?: { path?: string }; persistentVolumeClaim?: { claimName?: string } }
type DeploymentLike = { spec?: { template?: { spec?: { initContainers?: ContainerLike[]; volumes?: VolumeLike[] } } } };

/**
 * The cache a Deployment's pods were built with, if any. A serving revision keeps it, as it keeps its
 * images and size limit: enabling, moving or resizing the cache must not restart every model's pods, so
 * it reaches a model with its next revision.
 */
export function modelCacheOf(deployment: KubeObject | undefined): ModelCache | undefined {
  const spec = (deployment as DeploymentLike | undefined)?.spec?.template?.spec;
  const args = spec?.initContainers?.find((c) => c.name === 'fetch-model')?.args ?? [];
  const maxAt = args.indexOf('--cache-max-bytes');
  const maxBytes = maxAt >= 0 ? Number(args[maxAt + 1]) : NaN;
  const volume = spec?.volumes?.find((v) => v.name === modelCacheVolumeName);
  if (!args.includes('--cache-dir') || !Number.isSafeInteger(maxBytes) || maxBytes <= 0 || !volume) return undefined;
  if (volume.persistentVolumeClaim?.claimName) return { volume: { claim: volume.persistentVolumeClaim.claimName }, maxBytes };
  if (volume.hostPath?.path) return { volume: { hostPath: volume.hostPath.path }, maxBytes };
  return undefined;
}

/** The cache a revision's Deployment is built with: the live one's for a revision that has pods, else the configured one. */
export function modelCacheFor(live: KubeObject | undefined, configured: ModelCache | undefined): ModelCache | undefined {
  return live ? modelCacheOf(live) : configured;
}

interface TerminatedLike { exitCode?: number; message?: string; reason?: string }
interface InitStatusLike { name?: string; state?: { terminated?: TerminatedLike } }
type PodLike = { metadata?: { uid?: string }; status?: { initContainerStatuses?: InitStatusLike[] } };

/** What the fetch-model init container of a pod reported about the cache, once it has succeeded. */
export function fetchReportOf(pod: KubeObject | undefined): FetchReport | undefined {
  const fetcher = (pod as PodLike | undefined)?.status?.initContainerStatuses?.find((s) => s.name === 'fetch-model');
  const terminated = fetcher?.state?.terminated;
  if (!terminated || terminated.exitCode !== 0) return undefined;
  return parseFetchReport(terminated.message);
}

/**
 * The pod summary the operator caches (status.ts's podSummary keeps no messages of finished containers)
 * with the fetcher's report put back, when it has one.
 */
export function withFetchReport(summary: KubeObject, pod: KubeObject): KubeObject {
  const report = fetchReportOf(pod);
  if (!report) return summary;
  const s = summary as PodLike;
  const statuses = s.status?.initContainerStatuses?.map((c) => (c.name === 'fetch-model' && c.state?.terminated
    ? { ...c, state: { ...c.state, terminated: { ...c.state.terminated, exitCode: 0, message: JSON.stringify(report) } } }
    : c));
  return statuses ? { ...summary, status: { ...s.status, initContainerStatuses: statuses } } : summary;
}

/**
 * A report to count: one the pod has now and did not have before. A pod first seen with its report (at
 * start, after a relist) is not counted, so restarts and new terms never count a fetch twice; fetches that
 * finished while no operator watched are not counted at all.
 */
export function newFetchReport(pod: KubeObject, old: KubeObject | undefined): FetchReport | undefined {
  if (!old) return undefined;
  const now = fetchReportOf(pod);
  return now && !fetchReportOf(old) ? now : undefined;
}
