// Monitoring after promotion: drift arithmetic against hand-computed cases, baseline capture, the
// Drifting verdict, and the webhook's once-per-transition delivery with retries.
import test from 'ava';
import type { Check, CheckResult, Condition, ModelDeploymentSpec, MonitoringStatus } from '../../operator/api/generated.js';
import { bucketsFromCumulative, judgeDrift, populationStabilityIndex, psiEpsilon } from '../../operator/modeldeployment/monitoring/drift.js';
import { decideMonitoring, notifyBackoffMs, recordMonitoringResult, type MonitoringInput } from '../../operator/modeldeployment/monitoring/decide.js';
import { modelDeployment } from '../support/builders.js';

const b = (counts: number[], les = ['0.25', '0.5', '0.75', '+Inf']) => counts.map((count, i) => ({ le: les[i]!, count }));

test('cumulative bucket counts become per-bucket observations, in bound order, +Inf last', (t) => {
  t.deepEqual(bucketsFromCumulative([
    { le: '+Inf', value: 100 }, { le: '0.5', value: 30 }, { le: '0.25', value: 10 }, { le: '0.75', value: 60 },
  ]), b([10, 20, 30, 40]));
  // A counter reset inside the window can make a delta negative: it counts as nothing, not as less.
  t.deepEqual(bucketsFromCumulative([{ le: '1', value: 5 }, { le: '2', value: 3 }, { le: '+Inf', value: 9 }]), [{ le: '1', count: 5 }, { le: '2', count: 0 }, { le: '+Inf', count: 4 }]);
});

test('PSI matches a hand computation: a mirrored distribution', (t) => {
  // e = .1 .2 .3 .4, a = .4 .3 .2 .1:
  // .3·ln4 + .1·ln1.5 + (−.1)·ln(2/3) + (−.3)·ln(1/4) = 0.415888 + 0.040547 + 0.040547 + 0.415888
  const r = populationStabilityIndex(b([10, 20, 30, 40]), b([40, 30, 20, 10]));
  t.is(Number(r.psi.toFixed(6)), 0.91287);
  t.is(r.top.range, '≤0.25', 'the first and last buckets tie; the first is named');
  t.is(Number(r.top.contribution.toFixed(6)), 0.415888);
  t.is(populationStabilityIndex(b([10, 20, 30, 40]), b([1, 2, 3, 4])).psi, 0, 'the same shares at another volume do not drift');
});

test('PSI with empty buckets: shares are floored at epsilon, and a bucket empty on both sides adds nothing', (t) => {
  // e = .5 .5 0 0, a = .5 .25 .25 0 → 0 + (−.25)·ln(.5) + (.25 − ε)·ln(.25/ε) + 0
  const r = populationStabilityIndex(b([50, 50, 0, 0]), b([50, 25, 25, 0]));
  const expected = 0.25 * Math.log(2) + (0.25 - psiEpsilon) * Math.log(0.25 / psiEpsilon);
  t.is(Number(r.psi.toFixed(6)), Number(expected.toFixed(6)));
  t.is(Number(expected.toFixed(6)), 2.128516);
  t.is(r.top.range, '(0.5, 0.75]');
  t.is(r.contributions[3], 0);
});

const drift = (maxPSI = 0.2, minSamples?: number): Check => ({ name: 'score-drift', drift: { histogram: 'score_bucket{revision="{{revision}}"}', prometheus: { address: 'http://prom.monitoring.svc:9090' }, window: '10m', maxPSI, ...(minSamples !== undefined ? { minSamples } : {}) } });

test('the baseline is captured from the first window with enough observations, then live windows are compared with it', (t) => {
  const now = '2026-11-26T10:00:00.000Z';
  const thin = judgeDrift(drift(0.2, 50), undefined, b([5, 5, 5, 5]), now);
  t.is(thin.baseline, undefined);
  t.like(thin.measurement, { phase: 'Inconclusive', samples: 20 });
  t.regex(thin.measurement.message, /no baseline yet: 20 observations in the last 10m, 50 needed/);
  t.like(judgeDrift(drift(), undefined, b([0, 0, 0, 0]), now).measurement, { phase: 'Inconclusive' }, 'an empty window captures nothing');

  const first = judgeDrift(drift(0.2, 50), undefined, b([10, 20, 30, 40]), now);
  t.deepEqual(first.baseline, { check: 'score-drift', capturedAt: now, window: '10m', samples: 100, buckets: b([10, 20, 30, 40]) });
  t.like(first.measurement, { phase: 'Passed', value: 0 }, 'a baseline compared with itself does not drift');

  const shifted = judgeDrift(drift(0.2, 50), first.baseline, b([40, 30, 20, 10]), now);
  t.like(shifted.measurement, { phase: 'Failed', samples: 100 });
  t.regex(shifted.measurement.message, /^PSI 0\.9129 > 0\.2; bucket ≤0\.25 contributes most \(0\.4159: 10\.0% of the baseline, 40\.0% now\)/);
  t.like(judgeDrift(drift(0.2, 50), first.baseline, b([11, 19, 31, 39]), now).measurement, { phase: 'Passed' });
  t.like(judgeDrift(drift(0.2, 50), first.baseline, b([1, 1, 1, 1]), now).measurement, { phase: 'Inconclusive' }, 'a thin live window');
  t.like(judgeDrift(drift(), first.baseline, b([1, 2, 3], ['0.1', '1', '+Inf']), now).measurement, { phase: 'Error' }, 'new bucket bounds');
});

test('monitoring failures count consecutively; Fail turns missing data into a failure, Hold does not', (t) => {
  const c: Check = { name: 'p99', prometheus: { address: 'http://prom.monitoring.svc:9090', query: 'q' }, pass: { max: 1 }, failureLimit: 1 };
  let r = recordMonitoringResult(c, undefined, { phase: 'Failed', value: 2, message: '2 > 1' }, 't1');
  r = recordMonitoringResult(c, r, { phase: 'Failed', value: 2, message: '2 > 1' }, 't2');
  t.is(r.failures, 2);
  r = recordMonitoringResult(c, r, { phase: 'Passed', value: 0.5, message: '0.5' }, 't3');
  t.is(r.failures, 0, 'a pass resets the count');
  t.like(recordMonitoringResult(c, r, { phase: 'Inconclusive', message: 'no data' }, 't4'), { phase: 'Inconclusive', failures: 0 });
  t.like(recordMonitoringResult(c, r, { phase: 'Inconclusive', message: 'no data' }, 't4', 'Fail'), { phase: 'Failed', failures: 1, message: 'inconclusive: no data' });
});

/** Drives decideMonitoring through time the way reconciles do. */
class Monitor {
  spec: ModelDeploymentSpec;
  status: MonitoringStatus | undefined;
  drifting: Condition | undefined;
  now = Date.parse('2026-11-26T10:00:00Z');
  events: string[] = [];

  constructor(onFailure: 'Alert' | 'Rollback' = 'Alert') {
    this.spec = modelDeployment('fraud', 'risk').spec;
    this.spec.monitoring = { interval: '1m', checks: [drift()], onFailure, webhook: { url: 'http://retrain.ml.svc/trigger' } };
  }

  step(result: Partial<CheckResult> | undefined, delivery?: { ok: boolean; error?: string }) {
    const input: MonitoringInput = {
      revision: 'abc123',
      results: result ? [{ check: 'score-drift', at: new Date(this.now).toISOString(), ...result }] : this.status?.results ?? [],
      baselines: [],
      ...(delivery && this.status?.notification ? { delivery: { drifting: this.status.notification.drifting, at: this.status.notification.at!, ...delivery } } : {}),
    };
    const d = decideMonitoring({ spec: this.spec, prior: this.status, priorDrifting: this.drifting, input, stable: { hash: 'abc123', ready: 2, replicas: 2, trouble: undefined }, generation: 1, now: new Date(this.now) });
    this.status = d.monitoring;
    this.drifting = { ...d.drifting, lastTransitionTime: '' };
    this.events.push(...d.events.map((e) => e.reason));
    this.now += 1000;
    return d;
  }
}

const passed = { phase: 'Passed' as const, passed: true, value: '0.02', failures: 0, message: 'PSI 0.02 ≤ 0.2' };
const failed = { phase: 'Failed' as const, passed: false, value: '0.91', failures: 1, message: 'PSI 0.91 > 0.2' };
const thin = { phase: 'Inconclusive' as const, passed: false, failures: 0, message: 'too little traffic' };

test('Drifting: Unknown until a verdict, True on failure, False once checks pass again; events only on transitions', (t) => {
  const m = new Monitor();
  t.like(m.step(undefined).drifting, { status: 'Unknown', reason: 'Measuring' });
  t.like(m.step(passed).drifting, { status: 'False', reason: 'WithinBaseline' });
  t.is(m.status?.notification, undefined, 'a model that was never drifting needs no call');
  const d = m.step(failed);
  t.like(d.drifting, { status: 'True', reason: 'DriftDetected' });
  t.regex(d.drifting.message, /score-drift: PSI 0\.91 > 0\.2/);
  t.is(d.rollback, undefined, 'Alert does not roll back');
  m.step(failed);
  t.like(m.step(thin).drifting, { status: 'True' }, 'thin data (Hold) keeps the last verdict');
  t.like(m.step(passed).drifting, { status: 'False' });
  t.deepEqual(m.events, ['Drifting', 'DriftResolved']);
});

test('the webhook is told once per transition, retried with backoff until it answers, and not again while nothing changes', (t) => {
  const m = new Monitor();
  m.step(passed);
  m.step(failed);
  const pending = m.status!.notification!;
  t.like(pending, { drifting: 'True', check: 'score-drift', value: '0.91', attempts: 0 });
  m.step(failed, { ok: false, error: 'HTTP 503' });
  t.like(m.status!.notification, { attempts: 1, lastError: 'HTTP 503' });
  t.is(Date.parse(m.status!.notification!.nextAttemptAt!) - (m.now - 1000), notifyBackoffMs(1));
  m.step(failed, { ok: false, error: 'HTTP 503' });
  t.is(m.status!.notification!.attempts, 2);
  t.true(notifyBackoffMs(2) > notifyBackoffMs(1));
  m.step(failed, { ok: true });
  t.is(m.status!.notification, undefined);
  t.is(m.status!.notified, 'True');
  m.step(failed);
  m.step(failed);
  t.is(m.status!.notification, undefined, 'still drifting: nothing new to tell');
  m.step(passed);
  t.like(m.status!.notification, { drifting: 'False', attempts: 0 });
  m.step(passed, { ok: true });
  t.is(m.status!.notified, 'False');
});

test('a delivery outcome for an older transition is ignored, and a flip back before delivery cancels the call', (t) => {
  const m = new Monitor();
  m.step(passed);
  m.step(failed);
  const first = m.status!.notification!;
  m.step(passed);
  t.is(m.status!.notification, undefined, 'the receiver still believes False, which is true again');
  m.step(failed);
  const second = m.status!.notification!;
  t.not(second.at, first.at);
  const d = decideMonitoring({ spec: m.spec, prior: m.status, priorDrifting: m.drifting, input: { revision: 'abc123', results: m.status!.results!, baselines: [], delivery: { drifting: 'True', at: first.at!, ok: true } }, stable: { hash: 'abc123', ready: 2, replicas: 2, trouble: undefined }, generation: 1, now: new Date(m.now) });
  t.deepEqual(d.monitoring.notification, second, 'still pending');
});

test('after too many refused deliveries the operator gives up with a Warning', (t) => {
  const m = new Monitor();
  m.spec.monitoring!.webhook!.maxAttempts = 2;
  m.step(passed);
  m.step(failed);
  m.step(failed, { ok: false, error: 'refused' });
  m.step(failed, { ok: false, error: 'refused' });
  t.is(m.status!.notification, undefined);
  t.true(m.events.includes('NotificationFailed'));
});

test('onFailure Rollback asks for a rollback only on a failure verdict', (t) => {
  const m = new Monitor('Rollback');
  t.is(m.step(passed).rollback, undefined);
  t.is(m.step(thin).rollback, undefined);
  t.regex(m.step(failed).rollback ?? '', /score-drift: PSI 0\.91/);
});

test('results and baselines of another revision are not carried over', (t) => {
  const m = new Monitor();
  m.step(failed);
  const d = decideMonitoring({ spec: m.spec, prior: m.status, priorDrifting: m.drifting, input: undefined, stable: { hash: 'def456', ready: 2, replicas: 2, trouble: undefined }, generation: 1, now: new Date(m.now) });
  t.is(d.monitoring.revision, 'def456');
  t.is(d.monitoring.results, undefined);
  t.like(d.drifting, { status: 'True' }, 'the last verdict stands until the new revision has one');
});

test('kubectl modelship status shows monitoring results, the baseline age, Drifting and a pending webhook call', async (t) => {
  const { statusView } = await import('../../operator/cli/plugin-view.js');
  const md = modelDeployment('fraud', 'risk');
  md.metadata = { ...md.metadata, generation: 1 };
  md.spec.monitoring = { interval: '5m', onFailure: 'Rollback', checks: [drift()], webhook: { url: 'http://retrain.ml.svc/trigger' } };
  md.status = {
    observedGeneration: 1, phase: 'Healthy', stableRevision: { hash: 'abc123', modelVersion: '7' },
    conditions: [{ type: 'Drifting', status: 'True', reason: 'DriftDetected', message: 'revision abc123: score-drift: PSI 0.91 > 0.2', lastTransitionTime: '2026-11-26T10:00:00Z' }],
    monitoring: {
      revision: 'abc123', baselineCapturedAt: '2026-11-26T08:00:00Z',
      results: [{ check: 'score-drift', ...failed }],
      notification: { drifting: 'True', at: '2026-11-26T10:00:00Z', attempts: 2, lastError: 'HTTP 503' },
    },
  };
  const view = statusView(md, new Date('2026-11-26T10:00:30Z'));
  t.regex(view, /^Monitoring: +revision abc123, every 5m, on failure Rollback, baseline from 2h ago$/m);
  t.regex(view, /^ {2}✘ score-drift +Failed +0\.91 +failures 1 +PSI 0\.91 > 0\.2$/m);
  t.regex(view, /^Drifting: +DriftDetected: revision abc123: score-drift: PSI 0\.91 > 0\.2$/m);
  t.regex(view, /^Webhook: +telling Drifting=True, attempt 3 \(last: HTTP 503\)$/m);
});

test('kubectl modelship status shows how long a canary has loaded and for how long it may', async (t) => {
  const { statusView } = await import('../../operator/cli/plugin-view.js');
  const md = modelDeployment('llm', 'team-a');
  md.metadata = { ...md.metadata, generation: 1 };
  md.status = {
    observedGeneration: 1, phase: 'Progressing', stableRevision: { hash: 'abc123', modelVersion: '1' }, canaryRevision: { hash: 'def456', modelVersion: '2' },
    rollout: { step: 0, steps: 2, position: '1/2', startedAt: '2026-11-26T10:00:00Z', stepStartedAt: '2026-11-26T10:00:00Z', loadingDeadline: '2026-11-26T10:32:00Z' },
  };
  t.regex(statusView(md, new Date('2026-11-26T10:06:00Z')), /^Loading: +6m of at most 32m; rolled back if not ready by then, not judged until it is$/m);
  md.status.rollout = { ...md.status.rollout, loadingDeadline: undefined, canaryReadyAt: '2026-11-26T10:07:00Z' };
  delete md.status.rollout.loadingDeadline;
  t.regex(statusView(md, new Date('2026-11-26T10:09:00Z')), /^Canary ready: +since 2m ago; analysis counts from then$/m);
});
