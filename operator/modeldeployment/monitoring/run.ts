// Monitoring after promotion, the I/O half: measures the stable revision's due checks with the same
// providers as rollout analysis, captures and compares drift baselines, and delivers the pending
// webhook call, all in the background (see BackgroundRuns). What the results mean is decided in
// decide.ts.
import type { Check, CheckResult, DriftBaseline, ModelDeployment, PendingNotification } from '../../api/generated.js';
import { BackgroundRuns } from '../analysis/background.js';
import { dueChecks, type Measurement } from '../analysis/evaluate.js';
import { measureCheck } from '../analysis/measure.js';
import { renderQuery, vectorQuery, type QueryVars } from '../analysis/prometheus.js';
import { holdsMeasurements, newMeasurements, type ServiceUrl } from '../analysis/run.js';
import { outbound } from '../../runtime/outbound.js';
import { resolveEndpoint } from '../analysis/endpoint.js';
import { servicePort } from '../desired/service.js';
import { requestedOperations } from '../rollout/operations.js';
import { defaultDriftWindow, measuredChecks, monitoringIntervalMs, recordMonitoringResult, type Delivery, type MonitoringInput } from './decide.js';
import { bucketsFromCumulative, judgeDrift } from './drift.js';
import { answerSize, requestError } from '../analysis/errors.js';

/** The revision monitoring judges: the stable one, while it serves alone. */
export function monitoredRevision(md: ModelDeployment): string | undefined {
  const status = md.status ?? {};
  return md.spec.monitoring?.checks?.length && status.stableRevision?.hash && !status.canaryRevision ? status.stableRevision.hash : undefined;
}

/**
 * Whether a capture of new baselines was asked for this revision and not yet acted on: the request
 * must be bound (rollout/operations.ts) and numbered above the last operation status records.
 */
function captureRequested(md: ModelDeployment, hash: string): boolean {
  const lastActed = md.status?.rollout?.lastOperation?.id ?? 0;
  return requestedOperations(md.metadata?.annotations).some((o) => o.kind === 'capture-baseline' && o.revision === hash && o.id !== undefined && o.id > lastActed);
}

/** The live histogram over the window, as observations per bucket, evaluated at `now`. */
export async function measureDrift(check: Check, vars: QueryVars, baseline: DriftBaseline | undefined, now: Date, signal?: AbortSignal): Promise<{ measurement: Measurement; baseline?: DriftBaseline }> {
  const d = check.drift!;
  const promql = `sum by (le) (increase(${renderQuery(d.histogram, vars)}[${d.window ?? defaultDriftWindow}]))`;
  const endpoint = await resolveEndpoint(d.prometheus, 'prometheus', vars.namespace);
  if ('problem' in endpoint) return { measurement: { phase: 'Error', message: `Prometheus not queried: ${endpoint.problem}` }, ...(baseline ? { baseline } : {}) };
  try {
    const series = await vectorQuery(endpoint, vars.namespace, promql, 10_000, now, signal);
    const live = bucketsFromCumulative(series.filter((s) => s.labels.le !== undefined).map((s) => ({ le: s.labels.le!, value: s.value })));
    return judgeDrift(check, baseline, live, now.toISOString());
  } catch (err) {
    return { measurement: { phase: 'Error', message: requestError(err, endpoint.label) }, ...(baseline ? { baseline } : {}) };
  }
}

/** Calls the monitoring webhook for a pending transition. */
export async function deliverNotification(md: ModelDeployment, n: PendingNotification, signal?: AbortSignal): Promise<Delivery> {
  const w = md.spec.monitoring!.webhook!;
  const { namespace = '', name = '', uid = '' } = md.metadata ?? {};
  const stable = md.status?.stableRevision;
  const entry = md.status?.history?.find((h) => h.revision === stable?.hash);
  const context = {
    modelDeployment: { namespace, name, uid },
    drifting: n.drifting === 'True',
    revision: stable?.hash,
    model: { version: stable?.modelVersion, uri: stable?.modelURI, ...(stable?.modelDigest ? { digest: stable.modelDigest } : {}) },
    ...(entry?.dataset ? { dataset: entry.dataset } : {}),
    ...(n.check ? { check: n.check } : {}),
    ...(n.value !== undefined ? { value: n.value } : {}),
    message: n.message,
    baselineCapturedAt: md.status?.monitoring?.baselineCapturedAt,
    transitionAt: n.at,
    attempt: (n.attempts ?? 0) + 1,
  };
  const endpoint = await resolveEndpoint(w, 'webhook', namespace);
  if ('problem' in endpoint) return { drifting: n.drifting, at: n.at!, ok: false, error: `not called: ${endpoint.problem}` };
  try {
    const res = await outbound.request({
      url: endpoint.url, trust: endpoint.trust, namespace, method: 'POST',
      // The delivery id lets a receiver drop a repeat (a crash between a delivery and its status write).
      headers: { 'content-type': 'application/json', 'x-modelship-delivery': `${uid}/${n.at}`, ...w.headers, ...endpoint.headers },
      body: JSON.stringify(context),
      timeoutMs: (w.timeoutSeconds ?? 10) * 1000,
      ...(signal ? { signal } : {}),
    });
    const ok = res.status >= 200 && res.status < 300;
    return ok ? { drifting: n.drifting, at: n.at!, ok: true } : { drifting: n.drifting, at: n.at!, ok: false, error: `HTTP ${res.status} from ${endpoint.label} (${answerSize(res.body)})` };
  } catch (err) {
    return { drifting: n.drifting, at: n.at!, ok: false, error: requestError(err, endpoint.label) };
  }
}

/**
 * Measures the due checks (capturing missing drift baselines) and delivers a due notification;
 * undefined when `signal` abandoned the run.
 */
export async function runDueMonitoring(md: ModelDeployment, view: MonitoringInput, now: Date, serviceUrl: ServiceUrl, deliver: boolean, signal?: AbortSignal): Promise<MonitoringInput | undefined> {
  const spec = md.spec;
  const { namespace = '', name = '' } = md.metadata ?? {};
  const hash = view.revision;
  const vars: QueryVars = { namespace, name, revision: hash, role: 'stable' };
  const url = serviceUrl(namespace, `${name}-stable`, servicePort(md));
  const due = dueChecks(measuredChecks(spec), view.results, 0, now.getTime(), monitoringIntervalMs(spec));
  const at = now.toISOString();
  const fresh = await Promise.all(due.map(async (check): Promise<{ result: CheckResult; baseline?: DriftBaseline }> => {
    let m: Measurement;
    let baseline: DriftBaseline | undefined;
    if (check.drift) {
      ({ measurement: m, baseline } = await measureDrift(check, vars, view.baselines.find((b) => b.check === check.name), now, signal));
    } else {
      const stable = md.status?.stableRevision;
      m = await measureCheck(check, {
        vars, url,
        context: {
          modelDeployment: { namespace, name }, monitoring: true,
          stable: { revision: hash, modelVersion: stable?.modelVersion, modelURI: stable?.modelURI, url },
        },
      }, signal);
    }
    return { result: recordMonitoringResult(check, view.results.find((r) => r.check === check.name), m, at, spec.monitoring?.inconclusive), ...(baseline ? { baseline } : {}) };
  }));
  const checks = spec.monitoring?.checks ?? [];
  const latest = (c: Check) => fresh.find((f) => f.result.check === c.name);
  const results = checks.map((c) => latest(c)?.result ?? view.results.find((r) => r.check === c.name)).filter((r): r is CheckResult => !!r);
  const baselines = checks.filter((c) => c.drift).map((c) => latest(c)?.baseline ?? view.baselines.find((b) => b.check === c.name)).filter((b): b is DriftBaseline => !!b);
  const n = md.status?.monitoring?.notification;
  const delivery = deliver && n && !signal?.aborted ? await deliverNotification(md, n, signal) : undefined;
  // An abandoned request reads as an error or a refused delivery; it says nothing about the model.
  if (signal?.aborted) return undefined;
  return { revision: hash, results, baselines, ...(delivery ? { delivery } : {}) };
}

/** A finished run: what to decide with, and what status must show once it has recorded the run. */
interface MonitoringRun {
  input: MonitoringInput;
  measured: { check: string; at: string }[];
  /** The attempt count of the notification the run delivered, as status had it when the run started. */
  deliveredAttempt?: number;
}

/** Whether status has recorded the run: its measurements, and the outcome of its delivery. */
function recordedInStatus(md: ModelDeployment, run: MonitoringRun): boolean {
  const monitoring = md.status?.monitoring;
  if (monitoring?.revision !== run.input.revision || !holdsMeasurements(monitoring.results, run.measured)) return false;
  const d = run.input.delivery;
  const n = monitoring.notification;
  // The decision counts a failed delivery as one more attempt; the same delivery must not count twice.
  const pending = !!d && !!n && n.at === d.at && n.drifting === d.drifting && (n.attempts ?? 0) === run.deliveredAttempt;
  return !pending;
}

/** Monitoring, measured in the background (see BackgroundRuns). */
export class MonitoringRunner {
  private readonly runs: BackgroundRuns<MonitoringRun>;

  constructor(
    private readonly serviceUrl: ServiceUrl,
    onFinished: (namespace: string, name: string) => void,
    private readonly run: typeof runDueMonitoring = runDueMonitoring,
  ) {
    this.runs = new BackgroundRuns(onFinished);
  }

  /**
   * What to decide with now: the newest finished run's results until status records them, else what
   * status holds. Polling again before status records a run gives the same input.
   */
  poll(md: ModelDeployment, now: Date): MonitoringInput | undefined {
    const { namespace = '', name = '' } = md.metadata ?? {};
    const key = `${namespace}/${name}`;
    const hash = monitoredRevision(md);
    if (!hash) {
      this.runs.forget(key);
      return undefined;
    }
    const capture = captureRequested(md, hash);
    // A run begun before the capture measures against baselines that are being replaced; its result
    // would bring them back.
    if (capture) this.runs.forget(key);
    const fresh = this.runs.current(key, hash, (run) => recordedInStatus(md, run))?.input;
    const prior = md.status?.monitoring?.revision === hash ? md.status.monitoring : undefined;
    let current: MonitoringInput = fresh ?? { revision: hash, results: prior?.results ?? [], baselines: prior?.baselines ?? [] };
    if (capture) {
      // Baselines captured again from the live window: the drift checks are due now.
      const drift = new Set((md.spec.monitoring?.checks ?? []).filter((c) => c.drift).map((c) => c.name));
      current = { ...current, baselines: [], results: current.results.filter((r) => !drift.has(r.check)) };
    }
    const spec = md.spec;
    const n = md.status?.monitoring?.notification;
    // A delivery whose outcome is not in status yet must not start again.
    const deliver = !!spec.monitoring?.webhook && !!n && !fresh?.delivery && Date.parse(n.nextAttemptAt ?? '0') <= now.getTime();
    const due = dueChecks(measuredChecks(spec), current.results, 0, now.getTime(), monitoringIntervalMs(spec));
    if (!this.runs.busy(key) && (due.length > 0 || deliver)) {
      const view = { revision: hash, results: current.results, baselines: current.baselines };
      const deliveredAttempt = deliver ? n.attempts ?? 0 : undefined;
      this.runs.start(namespace, name, hash, async (signal) => {
        const input = await this.run(md, view, now, this.serviceUrl, deliver, signal);
        return input && { input, measured: newMeasurements(input.results, view.results), ...(deliveredAttempt !== undefined ? { deliveredAttempt } : {}) };
      });
    }
    return current;
  }

  /** Aborts the key's run and drops its results (the ModelDeployment is gone). */
  forget(key: string): void {
    this.runs.forget(key);
  }
}
