// Instant queries against Prometheus' HTTP API. {{namespace}} {{name}} {{revision}} {{role}} in a
// query are replaced per revision, so one check compares canary and stable with the same PromQL.
import type { Check } from '../../api/generated.js';
import { judgeValue, type Measurement } from './evaluate.js';
import { outbound } from '../../runtime/outbound.js';
import { resolveEndpoint, type Endpoint } from './endpoint.js';
import { answerSize, requestError } from './errors.js';

export interface QueryVars {
  namespace: string;
  name: string;
  revision: string;
  role: 'canary' | 'stable';
}

export function renderQuery(query: string, vars: QueryVars): string {
  return query.replace(/\{\{\s*(namespace|name|revision|role)\s*\}\}/g, (_m, k: keyof QueryVars) => vars[k]);
}

interface QueryResult {
  resultType: string;
  result: unknown;
}

/**
 * One query. Prometheus' own error text is shown only when the admin registered the endpoint: a
 * tenant-given address could be anything, and its answer is not repeated.
 */
async function query(endpoint: Endpoint, namespace: string, promql: string, timeoutMs: number, at: Date | undefined, signal: AbortSignal | undefined): Promise<QueryResult> {
  const url = new URL('/api/v1/query', endpoint.url);
  url.searchParams.set('query', promql);
  if (at) url.searchParams.set('time', String(at.getTime() / 1000));
  const res = await outbound.request({ url, trust: endpoint.trust, namespace, headers: endpoint.headers, timeoutMs, ...(signal ? { signal } : {}) });
  let body: { status?: string; errorType?: string; error?: string; data?: QueryResult } | undefined;
  try {
    body = JSON.parse(res.body.toString('utf8')) as typeof body;
  } catch {
    body = undefined;
  }
  if (body?.status !== 'success' || !body.data) {
    // From a tenant's address only Prometheus' own error types are named: any other text is whatever
    // the endpoint answered. A registered provider is the admin's, and its words are shown.
    const raw = body?.errorType === undefined ? '' : String(body.errorType).slice(0, 32);
    const errorType = !raw || endpoint.trust === 'provider' || prometheusErrorTypes.has(raw) ? raw : 'unknown error type';
    const detail = errorType ? ` (${errorType}${endpoint.trust === 'provider' && body?.error ? `: ${String(body.error).slice(0, 200)}` : ''})` : body ? '' : `, ${answerSize(res.body)} that is not Prometheus' JSON`;
    throw new QueryError(`${endpoint.label}: query failed: HTTP ${res.status}${detail}`);
  }
  return body.data;
}

/** The errorType values of Prometheus' HTTP API (web/api/v1). */
const prometheusErrorTypes = new Set(['timeout', 'canceled', 'execution', 'bad_data', 'internal', 'unavailable', 'not_found', 'not_acceptable']);

class QueryError extends Error {
  override name = 'QueryError';
}

/** The query's single value, undefined when the result is empty (no data), an error when it is not a scalar. */
export async function instantQuery(endpoint: Endpoint, namespace: string, promql: string, timeoutMs: number, signal?: AbortSignal): Promise<number | undefined> {
  const { resultType, result } = await query(endpoint, namespace, promql, timeoutMs, undefined, signal);
  if (resultType === 'scalar') return Number((result as [number, string])[1]);
  const vector = result as { value: [number, string] }[];
  if (!Array.isArray(vector) || vector.length === 0) return undefined;
  if (vector.length > 1) throw new QueryError(`query returned ${vector.length} series; aggregate it to one (e.g. with sum)`);
  const v = Number(vector[0]!.value?.[1]);
  return Number.isNaN(v) ? undefined : v;
}

/** Every series of an instant vector with its labels, evaluated at `at` (so a result can be reproduced). */
export async function vectorQuery(endpoint: Endpoint, namespace: string, promql: string, timeoutMs: number, at: Date, signal?: AbortSignal): Promise<{ labels: Record<string, string>; value: number }[]> {
  const { resultType, result } = await query(endpoint, namespace, promql, timeoutMs, at, signal);
  if (resultType !== 'vector' || !Array.isArray(result)) throw new QueryError(`query returned a ${String(resultType).slice(0, 16)}, not an instant vector`);
  return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ labels: r.metric ?? {}, value: Number(r.value?.[1]) }));
}

export async function measurePrometheus(check: Check, canary: QueryVars, stable: QueryVars | undefined, signal?: AbortSignal): Promise<Measurement> {
  const p = check.prometheus!;
  const timeoutMs = (p.timeoutSeconds ?? 10) * 1000;
  const ns = canary.namespace;
  const endpoint = await resolveEndpoint(p, 'prometheus', ns);
  if ('problem' in endpoint) return { phase: 'Error', message: `Prometheus not queried: ${endpoint.problem}` };
  try {
    if (p.samplesQuery && p.minSamples !== undefined) {
      const samples = (await instantQuery(endpoint, ns, renderQuery(p.samplesQuery, canary), timeoutMs, signal)) ?? 0;
      if (samples < p.minSamples) {
        return { phase: 'Inconclusive', samples, message: `${samples} samples < minSamples ${p.minSamples}: too little traffic to judge` };
      }
    }
    const value = await instantQuery(endpoint, ns, renderQuery(p.query!, canary), timeoutMs, signal);
    if (value === undefined) return { phase: 'Inconclusive', message: 'no data for the canary' };
    const stableValue = check.compareToStable && stable ? await instantQuery(endpoint, ns, renderQuery(p.query!, stable), timeoutMs, signal) : undefined;
    return judgeValue(value, check.pass, check.compareToStable, stableValue);
  } catch (err) {
    return { phase: 'Error', message: requestError(err, endpoint.label) };
  }
}
