// Runs the checks that are due for the current canary (the I/O half of analysis) and folds the
// measurements into the rollout's results. What they mean is decided in plan.ts.
import type { CheckResult, ModelDeployment } from '../../api/generated.js';
import { revisionHash } from '../../api/revision.js';
import type { KubeObject } from '../../api/object.js';
import { servicePort } from '../desired/service.js';
import { BackgroundRuns } from './background.js';
import { analysisChecks, analysisIntervalMs, dueChecks, measuredSince, recordResult, type Measurement } from './evaluate.js';
import { measureCheck, type MeasureTarget } from './measure.js';

/** Where a Service answers, from the operator's point of view. */
export type ServiceUrl = (namespace: string, service: string, port: number) => string;

export const inClusterServiceUrl: ServiceUrl = (namespace, service, port) => `http://${service}.${namespace}.svc:${port}`;

/** The Service's ClusterIP as the cache has it; the DNS name until the Service has one. */
export function clusterIpServiceUrl(lookup: (namespace: string, name: string) => KubeObject | undefined): ServiceUrl {
  return (namespace, service, port) => {
    const ip = (lookup(namespace, service)?.spec as { clusterIP?: string } | undefined)?.clusterIP;
    return ip && ip !== 'None' ? `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}` : inClusterServiceUrl(namespace, service, port);
  };
}

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

/**
 * Results for the canary now, or undefined when no canary is being analysed or `signal` abandoned the
 * run. Each due check's measurement is folded into the result `md`'s status holds for it.
 */
export async function runDueAnalysis(md: ModelDeployment, now: Date, serviceUrl: ServiceUrl, signal?: AbortSignal): Promise<CheckResult[] | undefined> {
  const status = md.status ?? {};
  const canary = canaryUnderAnalysis(md);
  const stable = status.stableRevision?.hash;
  if (!canary) return undefined;
  const prior = status.analysis?.results ?? [];
  // Nothing is measured while the canary loads: a refused connection or an empty series then says
  // nothing about the model, and under inconclusive: Rollback it would roll back a model still loading.
  if (!status.rollout?.canaryReadyAt) return prior;
  const checks = analysisChecks(md.spec);
  const since = measuredSince(status.rollout, now.getTime());
  const interval = analysisIntervalMs(md.spec);
  const due = dueChecks(checks, prior, since, now.getTime(), interval);
  if (due.length === 0) return prior;
  const { namespace = '', name = '' } = md.metadata ?? {};
  const port = servicePort(md);
  const canaryUrl = serviceUrl(namespace, `${name}-canary`, port);
  const stableUrl = stable ? serviceUrl(namespace, `${name}-stable`, port) : undefined;
  const canaryVars = { namespace, name, revision: canary, role: 'canary' as const };
  const target: MeasureTarget = {
    vars: canaryVars, url: canaryUrl,
    ...(stable && stableUrl ? { reference: { vars: { namespace, name, revision: stable, role: 'stable' as const }, url: stableUrl } } : {}),
    context: {
      modelDeployment: { namespace, name },
      canary: { revision: canary, modelVersion: md.spec.model.version, modelURI: md.spec.model.uri, url: canaryUrl },
      stable: stable ? { revision: stable, modelVersion: status.stableRevision?.modelVersion, url: stableUrl } : undefined,
      step: status.rollout?.step, steps: status.rollout?.steps, dataset: md.spec.model.dataset,
    },
  };
  const measured = await Promise.all(due.map(async (check): Promise<[string, Measurement]> => [check.name, await measureCheck(check, target, signal)]));
  // An abandoned request reads as an error measurement; it says nothing about the canary.
  if (signal?.aborted) return undefined;
  const at = now.toISOString();
  return checks.map((c) => {
    const m = measured.find(([n]) => n === c.name)?.[1];
    const old = prior.find((r) => r.check === c.name);
    return m ? recordResult(c, old, m, at) : old;
  }).filter((r): r is CheckResult => !!r);
}

/** A finished run: the results to decide with, and which of them it measured. */
interface AnalysisRun {
  results: CheckResult[];
  measured: { check: string; at: string }[];
}

/** Results in `next` that are not in `prior`: the measurements a run took. */
export function newMeasurements(next: CheckResult[], prior: CheckResult[]): { check: string; at: string }[] {
  return next.filter((r) => r.at !== undefined && prior.find((p) => p.check === r.check)?.at !== r.at).map((r) => ({ check: r.check, at: r.at! }));
}

/** Whether `results` (from status) hold each measurement, or a newer one for the same check. */
export function holdsMeasurements(results: CheckResult[] | undefined, measured: { check: string; at: string }[]): boolean {
  return measured.every((m) => (results ?? []).some((r) => r.check === m.check && r.at !== undefined && (r.at === m.at || Date.parse(r.at) > Date.parse(m.at))));
}

/** Rollout analysis, measured in the background (see BackgroundRuns). */
export class AnalysisRunner {
  private readonly runs: BackgroundRuns<AnalysisRun>;

  constructor(
    private readonly serviceUrl: ServiceUrl,
    onFinished: (namespace: string, name: string) => void,
    private readonly measure: typeof runDueAnalysis = runDueAnalysis,
  ) {
    this.runs = new BackgroundRuns(onFinished);
  }

  /**
   * The results to decide with now: the newest finished run's until status records them, else what
   * status holds. Polling again before status records a run gives the same results, so a measurement
   * is neither lost to a failed status write nor counted twice.
   */
  poll(md: ModelDeployment, now: Date): CheckResult[] | undefined {
    const { namespace = '', name = '' } = md.metadata ?? {};
    const key = `${namespace}/${name}`;
    const status = md.status ?? {};
    const canary = canaryUnderAnalysis(md);
    if (!canary) {
      this.runs.forget(key);
      return undefined;
    }
    // A run for another canary or an earlier step does not describe this one.
    const tag = `${canary}@${status.rollout?.stepStartedAt ?? ''}`;
    const fresh = this.runs.current(key, tag, (run) => holdsMeasurements(status.analysis?.results, run.measured));
    const checks = analysisChecks(md.spec);
    const current = fresh?.results ?? status.analysis?.results?.filter((r) => checks.some((c) => c.name === r.check)) ?? [];
    const view: ModelDeployment = { ...md, status: { ...status, analysis: { results: current } } };
    const since = measuredSince(status.rollout, now.getTime());
    const interval = analysisIntervalMs(md.spec);
    const loading = !status.rollout?.canaryReadyAt;
    if (!loading && !this.runs.busy(key) && dueChecks(checks, current, since, now.getTime(), interval).length > 0) {
      this.runs.start(namespace, name, tag, async (signal) => {
        const results = await this.measure(view, now, this.serviceUrl, signal);
        return results && { results, measured: newMeasurements(results, current) };
      });
    }
    return current;
  }

  /** Aborts the key's run and drops its results (the ModelDeployment is gone). */
  forget(key: string): void {
    this.runs.forget(key);
  }
}
