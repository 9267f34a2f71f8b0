// Smoke tests against the canary: status and JSON Schema (ajv), and prediction comparison with stable.
import { Ajv } from 'ajv';
import { JSONPath } from 'jsonpath-plus';
import type { Check } from '../../api/generated.js';
import { judgeAgreement, type Measurement } from './evaluate.js';
import { requestSignal } from './abort.js';
import { requestError } from './errors.js';

const ajv = new Ajv({ allErrors: true, strict: false });

async function call(url: string, check: Check, signal: AbortSignal | undefined): Promise<{ status: number; body: unknown; text: string }> {
  const h = check.http!;
  const method = h.method ?? (h.body !== undefined ? 'POST' : 'GET');
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...h.headers },
    ...(h.body !== undefined && method !== 'GET' ? { body: JSON.stringify(h.body) } : {}),
    signal: requestSignal((h.timeoutSeconds ?? 10) * 1000, signal),
  });
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text };
}

/** baseUrls: where the canary and stable Services answer (e.g. http://md-canary.ns.svc:80). */
export async function measureHttp(check: Check, canaryBase: string, stableBase: string | undefined, signal?: AbortSignal): Promise<Measurement> {
  const h = check.http!;
  let url = canaryBase + h.path;
  try {
    const canary = await call(url, check, signal);
    const expect = h.expectStatus ?? 200;
    if (canary.status !== expect) return { phase: 'Failed', value: canary.status, message: `HTTP ${canary.status}, expected ${expect}: ${canary.text.slice(0, 200)}` };
    if (h.responseSchema) {
      const validate = ajv.compile(h.responseSchema);
      if (!validate(canary.body)) {
        return { phase: 'Failed', message: `response does not match the schema: ${ajv.errorsText(validate.errors)}` };
      }
    }
    const cmp = h.compareToStable;
    if (!cmp) return { phase: 'Passed', value: canary.status, message: `HTTP ${canary.status}${h.responseSchema ? ', schema valid' : ''}` };
    if (!stableBase) return { phase: 'Inconclusive', message: 'no stable revision to compare predictions with' };
    url = stableBase + h.path;
    const stable = await call(url, check, signal);
    if (stable.status !== expect) return { phase: 'Inconclusive', message: `stable answered HTTP ${stable.status}; cannot compare` };
    const pick = (json: unknown) => JSONPath<unknown[]>({ path: cmp.jsonPath, json: json as object, wrap: true });
    return judgeAgreement(pick(canary.body), pick(stable.body), cmp.maxAbsDiff ?? 0, cmp.minAgreement ?? 1);
  } catch (err) {
    return { phase: 'Error', message: requestError(err, url) };
  }
}
