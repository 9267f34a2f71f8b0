// Pinned runtime images. A revision's pods run images the spec does not name: the preset's server
// image (when runtime.image is not set) and the fetcher (the operator's own image). Upgrading the
// operator changes them for every model at once, so each revision's Deployment records the images it
// was built with, and keeps them; only a released runtime upgrade (modelship.io/upgrade-runtime), under
// the cluster-wide limit on rollouts in progress, moves a serving revision to this operator's, and any
// new revision (a canary) is built with them from the start. Edits of the pod template itself are
// still repaired: the recorded images, not the live template, are what is kept. Pure.
import type { KubeObject } from '../../api/object.js';

export const runtimeImagesAnnotation = 'modelship.io/runtime-images';

export interface RuntimeImages {
  server: string;
  /** Absent when no init container fetches the model (an image volume, a pvc without digest). */
  fetcher?: string;
}

interface Container { name?: string; image?: string }
type DeploymentLike = { metadata?: KubeObject['metadata']; spec?: { template?: { spec?: { containers?: Container[]; initContainers?: Container[] } } } };

export function runtimeImagesRecord(images: RuntimeImages): string {
  return JSON.stringify(images.fetcher ? { server: images.server, fetcher: images.fetcher } : { server: images.server });
}

/**
 * The images a revision's Deployment was built with: its record, or, for a Deployment created before
 * records were kept, what its template runs.
 */
export function recordedImages(deployment: KubeObject | undefined): RuntimeImages | undefined {
  if (!deployment) return undefined;
  const d = deployment as DeploymentLike;
  const raw = d.metadata?.annotations?.[runtimeImagesAnnotation];
  if (raw) {
    try {
      const parsed = JSON.parse(raw) as Partial<RuntimeImages>;
      if (typeof parsed.server === 'string' && parsed.server) return { server: parsed.server, ...(typeof parsed.fetcher === 'string' && parsed.fetcher ? { fetcher: parsed.fetcher } : {}) };
    } catch { /* an edited record: fall back to the template */ }
  }
  const server = d.spec?.template?.spec?.containers?.find((c) => c.name === 'server')?.image;
  const fetcher = d.spec?.template?.spec?.initContainers?.find((c) => c.name === 'fetch-model')?.image;
  return server ? { server, ...(fetcher ? { fetcher } : {}) } : undefined;
}

/** The images of `recorded` this operator would replace with `wanted`, or undefined when none. */
export function imagesDiffer(recorded: RuntimeImages, wanted: RuntimeImages): { running: string[]; wanted: string[] } | undefined {
  const running: string[] = [];
  const next: string[] = [];
  if (recorded.server !== wanted.server) { running.push(recorded.server); next.push(wanted.server); }
  if (recorded.fetcher && wanted.fetcher && recorded.fetcher !== wanted.fetcher) { running.push(recorded.fetcher); next.push(wanted.fetcher); }
  return running.length ? { running, wanted: next } : undefined;
}
