// Exponential backoff, shared by the work queue, watches and the decision (notification retries), so
// that pure decision code need not import the controller machinery.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const defaultBackoff: BackoffOptions = { baseMs: 5, maxMs: 1_000_000 };

/** Per-key exponential backoff: base × 2^failures, capped. Pure, so the schedule is testable. */
export function backoffDelay(failures: number, opts: BackoffOptions = defaultBackoff): number {
  if (failures <= 0) return 0;
  const exp = Math.min(failures - 1, 40);
  return Math.min(opts.maxMs, opts.baseMs * 2 ** exp);
}
