// Smoke tests against the canary: status and JSON Schema, and prediction comparison with stable. The
// URL is the operator's own (the tenant's Service; only the path is the tenant's), so no destination
// policy applies, but redirects are not followed and the answer is capped (runtime/outbound.ts). The
// answer is parsed, validated and picked off the event loop (response.ts), and what status says about it
// is its status code, size and schema paths, never its text.
import type { Check } from '../../api/generated.js';
import { outbound, OutboundError, type OutboundResponse } from '../../runtime/outbound.js';
import { judgeAgreement, type Measurement } from './evaluate.js';
import { answerSize, requestError } from './errors.js';
import { responseJudge } from './response.js';

function call(url: string, check: Check, namespace: string, signal: AbortSignal | undefined): Promise<OutboundResponse> {
  const h = check.http!;
  const method = h.method ?? (h.body !== undefined ? 'POST' : 'GET');
  return outbound.request({
    url, trust: 'service', namespace, method,
    headers: { 'content-type': 'application/json', ...h.headers },
    ...(h.body !== undefined && method !== 'GET' ? { body: JSON.stringify(h.body) } : {}),
    timeoutMs: (h.timeoutSeconds ?? 10) * 1000,
    ...(signal ? { signal } : {}),
  });
}

/** baseUrls: where the canary and stable Services answer (e.g. http://md-canary.ns.svc:80). */
export async function measureHttp(check: Check, namespace: string, canaryBase: string, stableBase: string | undefined, signal?: AbortSignal): Promise<Measurement> {
  const h = check.http!;
  let label = new URL(canaryBase).origin;
  try {
    const canary = await call(canaryBase + h.path, check, namespace, signal);
    const expect = h.expectStatus ?? 200;
    if (canary.status !== expect) return { phase: 'Failed', value: canary.status, message: `HTTP ${canary.status}, expected ${expect} (${answerSize(canary.body)})` };
    const cmp = h.compareToStable;
    const verdict = h.responseSchema || cmp
      ? await responseJudge.judge({ body: canary.body, ...(h.responseSchema ? { schema: h.responseSchema } : {}), ...(cmp ? { jsonPath: cmp.jsonPath } : {}) }, signal)
      : undefined;
    if (h.responseSchema) {
      if (!verdict!.json) return { phase: 'Failed', value: canary.status, message: `HTTP ${canary.status}, but the ${answerSize(canary.body)} is not JSON; the schema needs JSON` };
      if (verdict!.schemaErrors?.length) return { phase: 'Failed', value: canary.status, message: `response does not match the schema: ${verdict!.schemaErrors.join('; ')}` };
    }
    if (!cmp) return { phase: 'Passed', value: canary.status, message: `HTTP ${canary.status}${h.responseSchema ? ', schema valid' : ''}` };
    if (!stableBase) return { phase: 'Inconclusive', message: 'no stable revision to compare predictions with' };
    label = new URL(stableBase).origin;
    const stable = await call(stableBase + h.path, check, namespace, signal);
    if (stable.status !== expect) return { phase: 'Inconclusive', message: `stable answered HTTP ${stable.status}; cannot compare` };
    const stableVerdict = await responseJudge.judge({ body: stable.body, jsonPath: cmp.jsonPath }, signal);
    return judgeAgreement(verdict!.picked ?? [], stableVerdict.picked ?? [], cmp.maxAbsDiff ?? 0, cmp.minAgreement ?? 1);
  } catch (err) {
    // An answer over the cap is the model server's doing, as a wrong status is: the check fails.
    if (err instanceof OutboundError && err.reason === 'TooLarge') return { phase: 'Failed', message: err.message };
    return { phase: 'Error', message: requestError(err, label) };
  }
}
