// The one-line report `modelship fetch` leaves about the model cache, and its reading by the operator,
// which counts it (modelship_model_cache_*). Pure: the fetcher writes it, the operator parses it.

/** What a fetch with a cache did: served from it, downloaded (miss), downloaded after finding a corrupt entry, or the cache could not be used. */
export type CacheResult = 'hit' | 'miss' | 'corrupt' | 'unavailable';
export const cacheResults: readonly CacheResult[] = ['hit', 'miss', 'corrupt', 'unavailable'];

/**
 * The one-line record a fetcher with a cache leaves as its termination message, which the operator reads
 * from the pod's status and counts (modelship_model_cache_*). `bytes`: of a hit, the bytes copied from the
 * cache (the download saved); otherwise the bytes downloaded.
 */
export interface FetchReport {
  cache: CacheResult;
  bytes: number;
  digest: string;
}

export function fetchReportLine(report: FetchReport): string {
  return JSON.stringify({ cache: report.cache, bytes: report.bytes, digest: report.digest });
}

/** A report as fetchReportLine writes it, or undefined for anything else (a log line, an edited message). */
export function parseFetchReport(text: string | undefined): FetchReport | undefined {
  if (!text || text.length > 512) return undefined;
  let parsed: unknown;
  try { parsed = JSON.parse(text.trim()); } catch { return undefined; }
  if (!parsed || typeof parsed !== 'object') return undefined;
  const { cache, bytes, digest } = parsed as Record<string, unknown>;
  if (typeof cache !== 'string' || !cacheResults.includes(cache as CacheResult)) return undefined;
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) return undefined;
  if (typeof digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(digest)) return undefined;
  return { cache: cache as CacheResult, bytes, digest };
}
