// Manual operations: annotations whose value is the revision hash they apply to (api.md).
//   modelship.io/promote: <hash> | <hash>/full    modelship.io/abort: <hash>    modelship.io/retry: <hash>
//   modelship.io/capture-baseline: <hash>   (monitoring: capture the drift baselines again from now)
export const promoteAnnotation = 'modelship.io/promote';
export const captureBaselineAnnotation = 'modelship.io/capture-baseline';
export const abortAnnotation = 'modelship.io/abort';
export const retryAnnotation = 'modelship.io/retry';

export interface Operation {
  kind: 'promote' | 'promote-full' | 'abort' | 'retry' | 'capture-baseline';
  revision: string;
  annotation: string;
}

/** The operations requested on the object, in the order they are acted on. */
export function requestedOperations(annotations: Record<string, string> | undefined): Operation[] {
  const out: Operation[] = [];
  const a = annotations ?? {};
  if (a[abortAnnotation]) out.push({ kind: 'abort', revision: a[abortAnnotation].trim(), annotation: abortAnnotation });
  if (a[retryAnnotation]) out.push({ kind: 'retry', revision: a[retryAnnotation].trim(), annotation: retryAnnotation });
  if (a[captureBaselineAnnotation]) out.push({ kind: 'capture-baseline', revision: a[captureBaselineAnnotation].trim(), annotation: captureBaselineAnnotation });
  if (a[promoteAnnotation]) {
    const [revision = '', mode] = a[promoteAnnotation].trim().split('/');
    out.push({ kind: mode === 'full' ? 'promote-full' : 'promote', revision, annotation: promoteAnnotation });
  }
  return out;
}
