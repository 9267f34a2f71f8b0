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

/** The canary whose rollout is being analysed: the current spec's revision, neither promoted nor rejected. */
function canaryUnderAnalysis(md: ModelDeployment): string | undefined {
  const status = md.status ?? {};
  const canary = status.canaryRevision?.hash;
  return canary && canary === revisionHash(md.spec) && status.rejectedRevision?.hash !== canary ? canary : undefined;
}

/** Results for the canary now, or undefined when no canary is being analysed. */
export async function runDueAnalysis(md: ModelDeployment, now: Date, serviceUrl: ServiceUrl): Promise<CheckResult[] | undefined> {
  const status = md.status ?? {};
  const canary = canaryUnderAnalysis(md);
  const stable = status.stableRevision?.hash;
  if (!canary) return undefined;
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

interface Finished {
  canary: string;
  stepStartedAt: string | undefined;
  results: CheckResult[];
}

/**
 * Runs analysis in the background so a slow check (a webhook may take minutes) never holds a reconcile
 * worker. A reconcile polls: it gets the results of a run that finished since the last poll (then
 * writes them to status), and starts the checks that are due. When a run finishes, `onFinished`
 * enqueues the ModelDeployment. A run lost in a restart is simply measured again.
 */
export class AnalysisRunner {
  private readonly inFlight = new Set<string>();
  private readonly finished = new Map<string, Finished>();

  constructor(
    private readonly serviceUrl: ServiceUrl,
    private readonly onFinished: (namespace: string, name: string) => void,
    private readonly measure: typeof runDueAnalysis = runDueAnalysis,
  ) {}

  /** The results to decide with now: the newest finished run's, else what status holds. */
  poll(md: ModelDeployment, now: Date): CheckResult[] | undefined {
    const { namespace = '', name = '' } = md.metadata ?? {};
    const key = `${namespace}/${name}`;
    const status = md.status ?? {};
    const canary = canaryUnderAnalysis(md);
    if (!canary) {
      this.finished.delete(key);
      return undefined;
    }
    const done = this.finished.get(key);
    this.finished.delete(key);
    // A run for another canary or an earlier step is stale: its results do not describe this one.
    const fresh = done && done.canary === canary && done.stepStartedAt === status.rollout?.stepStartedAt ? done.results : undefined;
    const checks = analysisChecks(md.spec);
    const current = fresh ?? status.analysis?.results?.filter((r) => checks.some((c) => c.name === r.check)) ?? [];
    const view: ModelDeployment = { ...md, status: { ...status, analysis: { results: current } } };
    const since = status.rollout?.stepStartedAt ? Date.parse(status.rollout.stepStartedAt) : now.getTime();
    const interval = durationMs(md.spec.rollout?.analysis?.interval, defaultAnalysisIntervalMs);
    if (!this.inFlight.has(key) && dueChecks(checks, current, since, now.getTime(), interval).length > 0) {
      this.inFlight.add(key);
      void this.measure(view, now, this.serviceUrl).then((results) => {
        if (results) this.finished.set(key, { canary, stepStartedAt: status.rollout?.stepStartedAt, results });
      }).finally(() => {
        this.inFlight.delete(key);
        this.onFinished(namespace, name);
      });
    }
    return current;
  }

  forget(key: string): void {
    this.finished.delete(key);
  }
}
