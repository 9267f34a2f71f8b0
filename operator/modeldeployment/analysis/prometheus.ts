// Instant queries against Prometheus' HTTP API. {{namespace}} {{name}} {{revision}} {{role}} in a
// query are replaced per revision, so one check compares canary and stable with the same PromQL.
import type { Check } from '../../api/generated.js';
import { judgeValue, type Measurement } from './evaluate.js';
import { requestSignal } from './abort.js';
import { requestError } from './errors.js';

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

async function query(address: string, promql: string, timeoutMs: number, at: Date | undefined, signal: AbortSignal | undefined): Promise<QueryResult> {
  const url = new URL('/api/v1/query', address);
  url.searchParams.set('query', promql);
  if (at) url.searchParams.set('time', String(at.getTime() / 1000));
  const res = await fetch(url, { signal: requestSignal(timeoutMs, signal) });
  const body = (await res.json()) as { status: string; error?: string; data?: QueryResult };
  if (body.status !== 'success') throw new Error(`prometheus: ${body.error ?? `HTTP ${res.status}`}`);
  return body.data!;
}

/** The query's single value, undefined when the result is empty (no data), an error when it is not a scalar. */
export async function instantQuery(address: string, promql: string, timeoutMs: number, signal?: AbortSignal): Promise<number | undefined> {
  const { resultType, result } = await query(address, promql, timeoutMs, undefined, signal);
  if (resultType === 'scalar') return Number((result as [number, string])[1]);
  const vector = result as { value: [number, string] }[];
  if (vector.length === 0) return undefined;
  if (vector.length > 1) throw new Error(`query returned ${vector.length} series; aggregate it to one (e.g. with sum)`);
  const v = Number(vector[0]!.value[1]);
  return Number.isNaN(v) ? undefined : v;
}

/** Every series of an instant vector with its labels, evaluated at `at` (so a result can be reproduced). */
export async function vectorQuery(address: string, promql: string, timeoutMs: number, at: Date, signal?: AbortSignal): Promise<{ labels: Record<string, string>; value: number }[]> {
  const { resultType, result } = await query(address, promql, timeoutMs, at, signal);
  if (resultType !== 'vector') throw new Error(`query returned a ${resultType}, not an instant vector`);
  return (result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({ labels: r.metric, value: Number(r.value[1]) }));
}

export async function measurePrometheus(check: Check, canary: QueryVars, stable: QueryVars | undefined, signal?: AbortSignal): Promise<Measurement> {
  const p = check.prometheus!;
  const timeoutMs = (p.timeoutSeconds ?? 10) * 1000;
  try {
    if (p.samplesQuery && p.minSamples !== undefined) {
      const samples = (await instantQuery(p.address, renderQuery(p.samplesQuery, canary), timeoutMs, signal)) ?? 0;
      if (samples < p.minSamples) {
        return { phase: 'Inconclusive', samples, message: `${samples} samples < minSamples ${p.minSamples}: too little traffic to judge` };
      }
    }
    const value = await instantQuery(p.address, renderQuery(p.query!, canary), timeoutMs, signal);
    if (value === undefined) return { phase: 'Inconclusive', message: 'no data for the canary' };
    const stableValue = check.compareToStable && stable ? await instantQuery(p.address, renderQuery(p.query!, stable), timeoutMs, signal) : undefined;
    return judgeValue(value, check.pass, check.compareToStable, stableValue);
  } catch (err) {
    return { phase: 'Error', message: requestError(err, p.address) };
  }
}
