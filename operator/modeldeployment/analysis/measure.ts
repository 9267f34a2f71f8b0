// One measurement of one check against one revision, whatever the provider. Rollout analysis measures
// the canary (comparing with stable where asked); monitoring measures the stable revision alone.
import type { Check } from '../../api/generated.js';
import type { Measurement } from './evaluate.js';
import { measureHttp } from './http.js';
import { measurePrometheus, type QueryVars } from './prometheus.js';
import { measureWebhook } from './webhook.js';

export interface MeasureTarget {
  /** The revision measured, as Prometheus query variables. */
  vars: QueryVars;
  /** Where its Service answers. */
  url: string;
  /** The revision to compare with (stable, during a rollout). */
  reference?: { vars: QueryVars; url: string };
  /** What a webhook check is told, as JSON. */
  context: Record<string, unknown>;
}

/** `signal` abandons the measurement: every request it makes is aborted. */
export async function measureCheck(check: Check, target: MeasureTarget, signal?: AbortSignal): Promise<Measurement> {
  if (check.prometheus) return measurePrometheus(check, target.vars, target.reference?.vars, signal);
  if (check.http) return measureHttp(check, target.vars.namespace, target.url, target.reference?.url, signal);
  if (check.webhook) return measureWebhook(check, target.vars.namespace, { ...target.context, check: check.name }, signal);
  return { phase: 'Error', message: 'no provider this measurement can run' };
}
