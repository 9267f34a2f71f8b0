// External judges (evaluation suites, load tests): a POST of the rollout's context; 2xx passes. What the
// judge answers is not shown: a tenant's endpoint could answer with anything it reached.
import type { Check } from '../../api/generated.js';
import { outbound } from '../../runtime/outbound.js';
import type { Measurement } from './evaluate.js';
import { resolveEndpoint } from './endpoint.js';
import { answerSize, requestError } from './errors.js';

export async function measureWebhook(check: Check, namespace: string, context: Record<string, unknown>, signal?: AbortSignal): Promise<Measurement> {
  const w = check.webhook!;
  const endpoint = await resolveEndpoint(w, 'webhook', namespace);
  if ('problem' in endpoint) return { phase: 'Error', message: `webhook not called: ${endpoint.problem}` };
  try {
    const res = await outbound.request({
      url: endpoint.url, trust: endpoint.trust, namespace, method: 'POST',
      headers: { 'content-type': 'application/json', ...w.headers, ...endpoint.headers },
      body: JSON.stringify(context),
      timeoutMs: (w.timeoutSeconds ?? 30) * 1000,
      ...(signal ? { signal } : {}),
    });
    const ok = res.status >= 200 && res.status < 300;
    return ok
      ? { phase: 'Passed', value: res.status, message: `HTTP ${res.status}` }
      : { phase: 'Failed', value: res.status, message: `HTTP ${res.status} from ${endpoint.label} (${answerSize(res.body)})` };
  } catch (err) {
    return { phase: 'Error', message: requestError(err, endpoint.label) };
  }
}
