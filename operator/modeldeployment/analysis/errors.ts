// fetch() reports every network failure as "fetch failed" and keeps the reason in `cause`; a person
// reading a check result needs the reason (DNS, refused, timeout) and the address it was about.

export function requestError(err: unknown, url: string | URL): string {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  const target = new URL(url).origin;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `${target}: no answer in time (${e.message})`;
  const cause = e?.cause?.code ?? e?.cause?.message;
  return `${target}: ${e?.message ?? String(err)}${cause && e.message === 'fetch failed' ? `: ${cause}` : ''}`;
}
