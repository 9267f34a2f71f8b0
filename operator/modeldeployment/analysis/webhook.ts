// External judges (evaluation suites, load tests): a POST of the rollout's context; 2xx passes.
import type { Check } from '../../api/generated.js';
import type { Measurement } from './evaluate.js';
import { requestSignal } from './abort.js';
import { requestError } from './errors.js';

export async function measureWebhook(check: Check, context: Record<string, unknown>, signal?: AbortSignal): Promise<Measurement> {
  const w = check.webhook!;
  try {
    const res = await fetch(w.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...w.headers },
      body: JSON.stringify(context),
      signal: requestSignal((w.timeoutSeconds ?? 30) * 1000, signal),
    });
    const text = (await res.text()).slice(0, 300);
    return res.ok
      ? { phase: 'Passed', value: res.status, message: `HTTP ${res.status}` }
      : { phase: 'Failed', value: res.status, message: `HTTP ${res.status}${text ? `: ${text}` : ''}` };
  } catch (err) {
    return { phase: 'Error', message: requestError(err, w.url) };
  }
}
