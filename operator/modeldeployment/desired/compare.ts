// Comparing what the operator wants with what the apiserver holds. Pure.

/** True when every field of `want` has the same value in `have` (extra fields in `have` are defaults or others'). */
export function isSubset(want: unknown, have: unknown): boolean {
  if (want === have) return true;
  if (typeof want === 'number' && typeof have === 'string') return String(want) === have;
  if (Array.isArray(want)) {
    return Array.isArray(have) && want.length === have.length && want.every((w, i) => isSubset(w, have[i]));
  }
  if (want && typeof want === 'object') {
    if (!have || typeof have !== 'object') return false;
    return Object.entries(want as Record<string, unknown>).every(([k, v]) => isSubset(v, (have as Record<string, unknown>)[k]));
  }
  return false;
}
