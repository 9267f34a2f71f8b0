// Manual operations: annotations whose value is the revision hash they apply to (api.md).
//   modelship.io/promote: <hash> | <hash>/full    modelship.io/abort: <hash>    modelship.io/retry: <hash>
//   modelship.io/capture-baseline: <hash>   (monitoring: capture the drift baselines again from now)
//   modelship.io/upgrade-runtime: <hash>    (roll the serving revision's pods over to the images this
//                                            operator runs; an operator upgrade never does it by itself)
//
// Each acts exactly once. Acting takes two writes (status records the effect, then the annotation is
// removed), and a crash or a stale cache between them must not act again. So an operation is first
// bound: the operator rewrites the value to `<value>;op=<id>;step=<k>` (a metadata write with the
// object's resourceVersion, so a concurrent edit wins). <id> numbers operations per object and <k> is
// the rollout step the canary was at when the request was seen. The status write that acts records
// the id in status.rollout.lastOperation; a bound annotation whose id is not above it has been acted
// on and is only removed. A promote bound to step k releases step k and nothing later.
export const promoteAnnotation = 'modelship.io/promote';
export const captureBaselineAnnotation = 'modelship.io/capture-baseline';
export const abortAnnotation = 'modelship.io/abort';
export const retryAnnotation = 'modelship.io/retry';
export const upgradeRuntimeAnnotation = 'modelship.io/upgrade-runtime';

export type OperationKind = 'promote' | 'promote-full' | 'abort' | 'retry' | 'capture-baseline' | 'upgrade-runtime';

export interface Operation {
  kind: OperationKind;
  revision: string;
  annotation: string;
  /** The value as written, binding included. */
  value: string;
  /** Set once the operator has bound the request. */
  id?: number;
  /** The rollout step the request was bound to (promote), -1 when no canary was rolling out. */
  step?: number;
}

const order = [abortAnnotation, retryAnnotation, captureBaselineAnnotation, upgradeRuntimeAnnotation, promoteAnnotation];

function parseOperation(annotation: string, raw: string): Operation {
  const [request = '', ...binding] = raw.trim().split(';');
  const fields: Record<string, string> = Object.fromEntries(binding.map((b) => b.split('=').map((x) => x.trim()) as [string, string]));
  const id = /^\d{1,9}$/.test(fields.op ?? '') ? Number(fields.op) : undefined;
  const step = /^-?\d{1,4}$/.test(fields.step ?? '') ? Number(fields.step) : undefined;
  const [revision = '', mode] = request.trim().split('/');
  const kind: OperationKind = annotation === promoteAnnotation ? (mode === 'full' ? 'promote-full' : 'promote')
    : annotation === abortAnnotation ? 'abort' : annotation === retryAnnotation ? 'retry'
      : annotation === upgradeRuntimeAnnotation ? 'upgrade-runtime' : 'capture-baseline';
  return { kind, revision: revision.trim(), annotation, value: raw, ...(id !== undefined ? { id } : {}), ...(step !== undefined ? { step } : {}) };
}

/** The operations requested on the object, in the order they are acted on. */
export function requestedOperations(annotations: Record<string, string> | undefined): Operation[] {
  const a = annotations ?? {};
  return order.filter((k) => a[k]?.trim()).map((k) => parseOperation(k, a[k]!));
}

/** The bound form of a request: the value without any earlier binding, then the id and the step. */
export function boundValue(op: Operation, id: number, step: number): string {
  const request = op.value.split(';')[0]!.trim();
  return `${request};op=${id};step=${step}`;
}

/**
 * Bindings for the requests not yet bound, numbered after every id already seen. Empty when all are
 * bound: then they may be acted on.
 */
export function bindOperations(ops: Operation[], lastActedId: number, step: number): Record<string, string> {
  let next = Math.max(lastActedId, ...ops.map((o) => o.id ?? 0));
  const out: Record<string, string> = {};
  for (const op of ops) if (op.id === undefined) out[op.annotation] = boundValue(op, ++next, step);
  return out;
}
