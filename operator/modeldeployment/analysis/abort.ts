// A request made for a background run ends at its own timeout or when the run is abandoned (its canary,
// step or revision is no longer what is decided on), whichever comes first: an abandoned run must not
// keep a connection, or the next run's turn, for up to a check's timeoutSeconds.

export function requestSignal(timeoutMs: number, run?: AbortSignal): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return run ? AbortSignal.any([run, timeout]) : timeout;
}
