// Monitoring after promotion, the pure half: what the stable revision's results mean (the Drifting
// condition), when the webhook is told, and whether to return to the previous promoted revision.
// The measurements themselves are taken by run.ts, in the background.
//
//  - Checks run on the stable revision at `monitoring.interval` while no canary rolls out; a rollout
//    is judged by its own analysis, and monitoring resumes on whatever revision serves afterwards.
//  - Failures count consecutively (a passing measurement resets them): a model that recovers is not
//    held to old failures forever, unlike a rollout's analysis, which ends.
//  - Drifting=True names the failing checks and values; False once every check passes again; Unknown
//    until the first verdict. Inconclusive data (Hold) gives no verdict: the condition keeps its status.
//  - Events and the webhook follow transitions only. The webhook is told the verdict once per
//    transition, retried with backoff until it answers 2xx; the pending call lives in status, so a
//    restarted operator neither forgets it nor repeats a delivered one.
import type { Check, CheckResult, Condition, DriftBaseline, ModelDeploymentSpec, MonitoringStatus, PendingNotification } from '../../api/generated.js';
import { backoffDelay } from '../../backoff.js';
import { durationMs, minIntervalMs, recordResult, type Measurement } from '../analysis/evaluate.js';
import type { PodTrouble } from '../status.js';

export const defaultMonitoringIntervalMs = 60_000;
export const defaultDriftWindow = '1h';
export const defaultNotifyAttempts = 10;

export const monitoringIntervalMs = (spec: ModelDeploymentSpec) => Math.max(minIntervalMs, durationMs(spec.monitoring?.interval, defaultMonitoringIntervalMs));

/** Checks measured by run.ts; podHealth is judged here, from what the caches show. */
export const measuredChecks = (spec: ModelDeploymentSpec): Check[] => (spec.monitoring?.checks ?? []).filter((c) => !c.podHealth);

/**
 * A measurement folded into a monitoring result. Failures are consecutive; with `inconclusive: Fail`
 * missing or thin data counts as a failure, with Hold it leaves the count where it was.
 */
export function recordMonitoringResult(check: Check, prior: CheckResult | undefined, m: Measurement, at: string, inconclusive: 'Hold' | 'Fail' = 'Hold'): CheckResult {
  const unsure = m.phase === 'Inconclusive' || m.phase === 'Error';
  const measured: Measurement = unsure && inconclusive === 'Fail' ? { ...m, phase: 'Failed', message: `${m.phase.toLowerCase()}: ${m.message}` } : m;
  // A pass starts the count afresh: without a prior result, recordResult counts from zero.
  return recordResult(check, measured.phase === 'Passed' ? undefined : prior, measured, at);
}

/** When the next delivery attempt may run: 2 s, 4 s, 8 s … capped at 5 minutes. */
export const notifyBackoffMs = (attempts: number) => backoffDelay(attempts, { baseMs: 2_000, maxMs: 300_000 });

export interface Delivery {
  drifting: 'True' | 'False';
  /** The transition time of the notification this delivery was for. */
  at: string;
  ok: boolean;
  error?: string;
}

/** What the background runner hands the decision. */
export interface MonitoringInput {
  revision: string;
  results: CheckResult[];
  baselines: DriftBaseline[];
  delivery?: Delivery;
}

export interface StableView {
  hash: string;
  ready: number;
  replicas: number;
  trouble: PodTrouble | undefined;
}

export interface MonitoringDecision {
  monitoring: MonitoringStatus;
  drifting: Omit<Condition, 'lastTransitionTime'>;
  events: { type: 'Normal' | 'Warning'; reason: string; message: string }[];
  /** Checks failed and onFailure is Rollback: return to the previous promoted revision. */
  rollback?: string;
  requeueAfterMs: number;
}

function podHealthResult(check: Check, stable: StableView, prior: CheckResult | undefined, now: string): CheckResult {
  const maxRestarts = check.podHealth?.maxRestarts ?? 1;
  const t = stable.trouble;
  const failing = !!t && (t.reason === 'ImagePullBackOff' || t.reason === 'ErrImagePull' || t.reason === 'Unschedulable' || t.restarts > maxRestarts);
  const value = `${stable.ready}/${stable.replicas} ready${t ? `, ${t.reason}` : ''}`;
  const phase = failing ? 'Failed' : 'Passed';
  return {
    check: check.name, phase, passed: !failing, value, failures: failing ? 1 : 0,
    message: failing ? t.message : t?.message ?? 'stable pods healthy',
    at: prior && prior.phase === phase && prior.value === value ? prior.at ?? now : now,
  };
}

export function decideMonitoring(args: {
  spec: ModelDeploymentSpec;
  prior: MonitoringStatus | undefined;
  priorDrifting: Condition | undefined;
  input: MonitoringInput | undefined;
  stable: StableView;
  generation: number;
  now: Date;
}): MonitoringDecision {
  const { spec, stable, generation } = args;
  const now = args.now.toISOString();
  const nowMs = args.now.getTime();
  const m = spec.monitoring!;
  const samePrior = args.prior?.revision === stable.hash ? args.prior : undefined;
  const input = args.input?.revision === stable.hash ? args.input : undefined;
  const checks = m.checks ?? [];
  const results: CheckResult[] = checks.map((c) => {
    const prior = (input?.results ?? samePrior?.results ?? []).find((r) => r.check === c.name);
    return c.podHealth ? podHealthResult(c, stable, prior, now) : prior;
  }).filter((r): r is CheckResult => !!r);
  const baselines = input?.baselines ?? samePrior?.baselines ?? [];
  const events: MonitoringDecision['events'] = [];

  // ---- The verdict.
  const failing = checks.map((c) => ({ c, r: results.find((r) => r.check === c.name) }))
    .filter(({ c, r }) => r?.phase === 'Failed' && (r.failures ?? 0) > (c.failureLimit ?? 0));
  const allPassed = checks.every((c) => results.find((r) => r.check === c.name)?.phase === 'Passed');
  const prior = args.priorDrifting;
  let drifting: Omit<Condition, 'lastTransitionTime'>;
  const describe = (list: typeof failing) => list.map(({ c, r }) => `${c.name}: ${r!.message}`).join('; ');
  if (failing.length) {
    drifting = { type: 'Drifting', status: 'True', reason: failing.some(({ c }) => c.drift) ? 'DriftDetected' : 'CheckFailed', message: `revision ${stable.hash}: ${describe(failing)}`.slice(0, 2000), observedGeneration: generation };
  } else if (allPassed && checks.length) {
    drifting = { type: 'Drifting', status: 'False', reason: 'WithinBaseline', message: `revision ${stable.hash}: all ${checks.length} monitoring checks pass`, observedGeneration: generation };
  } else if (prior && prior.status !== 'Unknown') {
    // No verdict (data missing, thin, or not measured yet): the last verdict stands.
    const { lastTransitionTime: _kept, ...rest } = prior;
    drifting = { ...rest, observedGeneration: generation };
  } else {
    const waiting = checks.filter((c) => results.find((r) => r.check === c.name)?.phase !== 'Passed')
      .map((c) => `${c.name}: ${results.find((r) => r.check === c.name)?.message ?? 'not measured yet'}`).join('; ');
    drifting = { type: 'Drifting', status: 'Unknown', reason: 'Measuring', message: `revision ${stable.hash}: no verdict yet (${waiting})`.slice(0, 2000), observedGeneration: generation };
  }

  // ---- Events on transitions.
  const was = prior?.status;
  if (drifting.status === 'True' && was !== 'True') {
    events.push({ type: 'Warning', reason: 'Drifting', message: drifting.message ?? '' });
  } else if (drifting.status === 'False' && was === 'True') {
    events.push({ type: 'Normal', reason: 'DriftResolved', message: drifting.message ?? '' });
  }

  // ---- The webhook: told once per transition of the verdict, until it acknowledges.
  let notified = args.prior?.notified;
  let notification: PendingNotification | undefined = args.prior?.notification;
  const requeues: number[] = [monitoringIntervalMs(spec)];
  if (m.webhook) {
    const d = args.input?.delivery;
    if (notification && d && d.at === notification.at && d.drifting === notification.drifting) {
      if (d.ok) {
        notified = notification.drifting;
        notification = undefined;
      } else {
        const attempts = (notification.attempts ?? 0) + 1;
        if (attempts >= (m.webhook.maxAttempts ?? defaultNotifyAttempts)) {
          events.push({ type: 'Warning', reason: 'NotificationFailed', message: `webhook ${webhookLabel(m.webhook)} refused Drifting=${notification.drifting} ${attempts} times; giving up: ${d.error ?? ''}`.slice(0, 1000) });
          notified = notification.drifting;
          notification = undefined;
        } else {
          notification = { ...notification, attempts, lastError: (d.error ?? '').slice(0, 1000), nextAttemptAt: new Date(nowMs + notifyBackoffMs(attempts)).toISOString() };
        }
      }
    }
    const verdict = drifting.status === 'Unknown' ? undefined : drifting.status;
    // A model that was never drifting needs no call; so the baseline for "told" is False.
    const told = notification?.drifting ?? notified ?? 'False';
    if (verdict && verdict !== told) {
      if (notification && verdict === (notified ?? 'False')) notification = undefined; // flipped back before delivery
      else {
        const top = failing[0];
        notification = {
          drifting: verdict, at: now, attempts: 0, nextAttemptAt: now,
          ...(top ? { check: top.c.name, ...(top.r!.value !== undefined ? { value: top.r!.value } : {}) } : {}),
          message: (drifting.message ?? '').slice(0, 2000),
        };
      }
    }
    if (notification?.nextAttemptAt) requeues.push(Math.max(50, Date.parse(notification.nextAttemptAt) - nowMs));
  } else {
    notification = undefined;
  }

  const monitoring: MonitoringStatus = {
    revision: stable.hash,
    ...(baselines.length ? { baselines, baselineCapturedAt: baselines.map((b) => b.capturedAt ?? '').sort().at(-1) } : {}),
    ...(results.length ? { results } : {}),
    ...(notified ? { notified } : {}),
    ...(notification ? { notification } : {}),
  };
  if (!monitoring.baselineCapturedAt) delete monitoring.baselineCapturedAt;
  return {
    monitoring, drifting, events,
    ...(m.onFailure === 'Rollback' && drifting.status === 'True' && failing.length ? { rollback: describe(failing) } : {}),
    requeueAfterMs: Math.min(...requeues),
  };
}

/**
 * How a webhook is named in Events and logs: its provider, or its URL's origin. A path or query can
 * carry a token (a Slack or Teams hook URL is its own credential), and Events are readable by anyone
 * who can read the namespace.
 */
export function webhookLabel(w: { url?: string; provider?: string }): string {
  if (w.provider) return `provider ${w.provider}`;
  return w.url && URL.canParse(w.url) ? new URL(w.url).origin : 'URL';
}
