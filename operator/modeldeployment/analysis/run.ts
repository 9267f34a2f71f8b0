// Runs the checks that are due for the current canary (the I/O half of analysis) and folds the
// measurements into the rollout's results. What they mean is decided in plan.ts.
import type { CheckResult, ModelDeployment } from '../../api/generated.js';
import { revisionHash } from '../../api/revision.js';
import { servicePort } from '../desired/service.js';
import { analysisChecks, defaultAnalysisIntervalMs } from '../plan.js';
import { dueChecks, durationMs, recordResult, type Measurement } from './evaluate.js';
import { measureHttp } from './http.js';
import { measurePrometheus } from './prometheus.js';
import { measureWebhook } from './webhook.js';

/** Where a Service answers, from the operator's point of view. */
export type ServiceUrl = (namespace: string, service: string, port: number) => string;

export const inClusterServiceUrl: ServiceUrl = (namespace, service, port) => `http://${service}.${namespace}.svc:${port}`;

/** A template such as http://127.0.0.1:8000/{namespace}/{service} (for an operator outside the cluster). */
export function serviceUrlFromTemplate(template: string): ServiceUrl {
  return (namespace, service, port) => template.replaceAll('{namespace}', namespace).replaceAll('{service}', service).replaceAll('{port}', String(port));
}

/** Results for the canary now, or undefined when no canary is being analysed. */
export async function runDueAnalysis(md: ModelDeployment, now: Date, serviceUrl: ServiceUrl): Promise<CheckResult[] | undefined> {
  const status = md.status ?? {};
  const canary = status.canaryRevision?.hash;
  const stable = status.stableRevision?.hash;
  if (!canary || canary !== revisionHash(md.spec) || status.rejectedRevision?.hash === canary) return undefined;
  const prior = status.analysis?.results ?? [];
  const checks = analysisChecks(md.spec);
  const since = status.rollout?.stepStartedAt ? Date.parse(status.rollout.stepStartedAt) : now.getTime();
  const interval = durationMs(md.spec.rollout?.analysis?.interval, defaultAnalysisIntervalMs);
  const due = dueChecks(checks, prior, since, now.getTime(), interval);
  if (due.length === 0) return prior;
  const { namespace = '', name = '' } = md.metadata ?? {};
  const port = servicePort(md);
  const canaryUrl = serviceUrl(namespace, `${name}-canary`, port);
  const stableUrl = stable ? serviceUrl(namespace, `${name}-stable`, port) : undefined;
  const measured = await Promise.all(due.map(async (check): Promise<[string, Measurement]> => {
    if (check.prometheus) {
      return [check.name, await measurePrometheus(check, { namespace, name, revision: canary, role: 'canary' },
        stable ? { namespace, name, revision: stable, role: 'stable' } : undefined)];
    }
    if (check.http) return [check.name, await measureHttp(check, canaryUrl, stableUrl)];
    if (check.webhook) {
      return [check.name, await measureWebhook(check, {
        modelDeployment: { namespace, name }, check: check.name,
        canary: { revision: canary, modelVersion: md.spec.model.version, modelURI: md.spec.model.uri, url: canaryUrl },
        stable: stable ? { revision: stable, modelVersion: status.stableRevision?.modelVersion, url: stableUrl } : undefined,
        step: status.rollout?.step, steps: status.rollout?.steps, dataset: md.spec.model.dataset,
      })];
    }
    return [check.name, { phase: 'Error', message: 'no provider' }];
  }));
  const at = now.toISOString();
  return checks.map((c) => {
    const m = measured.find(([n]) => n === c.name)?.[1];
    const old = prior.find((r) => r.check === c.name);
    return m ? recordResult(c, old, m, at) : old;
  }).filter((r): r is CheckResult => !!r);
}
