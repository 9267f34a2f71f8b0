// Background measurements: a run that no longer describes what is decided on is aborted (its requests
// with it) and the due run starts at once; a finished result is handed out until status records it,
// and handing it out again never counts a measurement twice.
import test from 'ava';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { CheckResult, ModelDeployment, MonitoringStatus } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { BackgroundRuns } from '../../operator/modeldeployment/analysis/background.js';
import { checkFailed, recordResult } from '../../operator/modeldeployment/analysis/evaluate.js';
import { AnalysisRunner, runDueAnalysis } from '../../operator/modeldeployment/analysis/run.js';
import { decideMonitoring, recordMonitoringResult, type MonitoringInput } from '../../operator/modeldeployment/monitoring/decide.js';
import { MonitoringRunner, runDueMonitoring } from '../../operator/modeldeployment/monitoring/run.js';
import { modelDeployment, withVersion } from '../support/builders.js';
import { configureOutbound, defaultOutboundLimits } from '../../operator/runtime/outbound.js';
import { defaultTenancyPolicy } from '../../operator/tenancy/policy.js';

// The receivers listen on loopback, which the default outbound policy denies.
configureOutbound({ ...defaultTenancyPolicy, allowCidrs: ['127.0.0.1/32'] }, defaultOutboundLimits);

const t0 = Date.parse('2026-11-26T10:00:00.000Z');
const at = (ms: number) => new Date(t0 + ms);
const settle = () => new Promise((r) => setTimeout(r, 20));
const noop = () => undefined;

/** A canary of `version` at the step started at `stepStartedAt`, analysed by one check. */
function canaryMd(version: string, stepStartedAt: string, check: { name: string; webhook: { url: string; timeoutSeconds?: number }; failureLimit?: number }): ModelDeployment {
  const md = modelDeployment('fraud', 'risk', withVersion(version));
  md.spec.rollout = { analysis: { interval: '30s', checks: [check] } };
  md.status = { canaryRevision: { hash: revisionHash(md.spec) }, stableRevision: { hash: 'stable1' }, rollout: { step: 0, stepStartedAt, canaryReadyAt: stepStartedAt } };
  return md;
}

/** A ModelDeployment whose stable revision `hash` is monitored by one check. */
function monitoredMd(hash: string, monitoring?: MonitoringStatus): ModelDeployment {
  const md = modelDeployment('fraud', 'risk');
  md.spec.monitoring = { interval: '60s', checks: [{ name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } }] };
  md.status = { stableRevision: { hash }, ...(monitoring ? { monitoring } : {}) };
  return md;
}

/** A webhook receiver that never answers, and tells which requests arrived and which were hung up on. */
async function hangingReceiver(): Promise<{ url: string; server: Server; arrived: unknown[]; closed: unknown[]; next: () => Promise<unknown> }> {
  const arrived: unknown[] = [];
  const closed: unknown[] = [];
  let waiting: ((body: unknown) => void) | undefined;
  const server = createServer((req: IncomingMessage, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => { raw += c.toString(); });
    req.on('end', () => {
      const body = JSON.parse(raw) as unknown;
      arrived.push(body);
      waiting?.(body);
      waiting = undefined;
      res.on('close', () => closed.push(body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/run`;
  return { url, server, arrived, closed, next: () => new Promise((r) => { waiting = r; }) };
}

async function until(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('a run superseded by another tag is aborted, and its late result is never used', async (t) => {
  const runs = new BackgroundRuns<string>(noop);
  let finishOld!: (v: string) => void;
  let oldSignal!: AbortSignal;
  // The old run ignores its signal and resolves anyway: the runner must still discard it.
  runs.start('risk', 'fraud', 'A', (signal) => { oldSignal = signal; return new Promise((r) => { finishOld = r; }); });
  t.is(runs.current('risk/fraud', 'B', () => false), undefined);
  t.true(oldSignal.aborted, 'polling for another tag aborts the run in flight');
  t.false(runs.busy('risk/fraud'));
  runs.start('risk', 'fraud', 'B', () => Promise.resolve('B measured'));
  finishOld('A measured');
  await settle();
  t.is(runs.current('risk/fraud', 'B', () => false), 'B measured');
  t.is(runs.current('risk/fraud', 'A', () => false), undefined, 'A never finished as far as anyone can tell');
});

test('analysis: a hung check of a superseded canary is aborted, and the next canary is measured at once', async (t) => {
  const signals: { canary: string; signal: AbortSignal }[] = [];
  const runner = new AnalysisRunner(() => 'http://x', noop, (view, now, _url, signal) => {
    signals.push({ canary: view.status!.canaryRevision!.hash, signal: signal! });
    if (signals.length === 1) {
      // The first canary's webhook hangs (until its timeout, up to an hour); it finishes only if aborted.
      return new Promise((resolve) => signal!.addEventListener('abort', () => resolve([{ check: 'eval', phase: 'Passed', passed: true, failures: 0, message: 'late', at: now.toISOString() }])));
    }
    return new Promise(() => undefined);
  });
  const check = { name: 'eval', webhook: { url: 'http://evals.ml.svc/run', timeoutSeconds: 3600 } };
  const a = canaryMd('1', at(0).toISOString(), check);
  runner.poll(a, at(1000));
  t.is(signals.length, 1);

  // The spec moves on to B: until status names B, nothing is analysed, and A's run goes at once.
  const specB = canaryMd('2', at(0).toISOString(), check);
  const superseded: ModelDeployment = { ...specB, status: a.status! };
  t.is(runner.poll(superseded, at(2000)), undefined);
  t.true(signals[0]!.signal.aborted, "A's run was aborted");

  const b = canaryMd('2', at(2500).toISOString(), check);
  const started = Date.now();
  t.deepEqual(runner.poll(b, at(3000)), [], "A's late result is not B's");
  t.is(signals.length, 2, "B's first check started in the same poll");
  t.true(Date.now() - started < 50);
  t.is(signals[1]!.canary, b.status!.canaryRevision!.hash);
  t.false(signals[1]!.signal.aborted);
  await settle();
  t.deepEqual(runner.poll(b, at(3100)), [], 'the aborted run finishing later changes nothing');
});

test('analysis: a new step aborts the previous step\'s run and starts the new step\'s check in the same poll', (t) => {
  const signals: AbortSignal[] = [];
  const runner = new AnalysisRunner(() => 'http://x', noop, (_view, _now, _url, signal) => {
    signals.push(signal!);
    return new Promise(() => undefined);
  });
  const check = { name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } };
  runner.poll(canaryMd('2', at(0).toISOString(), check), at(1000));
  const nextStep = canaryMd('2', at(5000).toISOString(), check);
  nextStep.status!.rollout!.step = 1;
  runner.poll(nextStep, at(5000));
  t.is(signals.length, 2);
  t.true(signals[0]!.aborted);
  t.false(signals[1]!.aborted);
  runner.forget('risk/fraud');
  t.true(signals[1]!.aborted, 'forget aborts the run in flight (the ModelDeployment was deleted)');
});

test('analysis: the abort reaches the webhook request itself; the connection is closed and the next canary\'s request arrives without waiting', async (t) => {
  const receiver = await hangingReceiver();
  const runner = new AnalysisRunner(() => 'http://x', noop, runDueAnalysis);
  const check = { name: 'eval', webhook: { url: receiver.url, timeoutSeconds: 3600 } };
  const a = canaryMd('1', new Date(Date.now() - 1000).toISOString(), check);
  const firstArrived = receiver.next();
  runner.poll(a, new Date());
  const first = await firstArrived as { canary: { revision: string } };
  t.is(first.canary.revision, a.status!.canaryRevision!.hash);

  const b = canaryMd('2', new Date().toISOString(), check);
  const secondArrived = receiver.next();
  const started = Date.now();
  runner.poll(b, new Date());
  const second = await secondArrived as { canary: { revision: string } };
  t.is(second.canary.revision, b.status!.canaryRevision!.hash);
  await until(() => receiver.closed.length === 1);
  t.true(Date.now() - started < 2000, 'not held up by the first request\'s hour-long timeout');
  t.is((receiver.closed[0] as { canary: { revision: string } }).canary.revision, a.status!.canaryRevision!.hash, "A's request was hung up on");
  runner.forget('risk/fraud');
  await until(() => receiver.closed.length === 2);
  receiver.server.closeAllConnections();
  receiver.server.close();
});

test('analysis: a finished result is returned by every poll until status records it, then dropped', async (t) => {
  let measured = 0;
  const runner = new AnalysisRunner(() => 'http://x', noop, async (view, now) => {
    measured++;
    const old = view.status?.analysis?.results?.find((r) => r.check === 'eval');
    return [recordResult({ name: 'eval' }, old, { phase: 'Passed', value: 200, message: 'HTTP 200' }, now.toISOString())];
  });
  const md = canaryMd('2', at(0).toISOString(), { name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } });
  t.deepEqual(runner.poll(md, at(1000)), []);
  await settle();
  const first = runner.poll(md, at(1100));
  t.like(first?.[0], { check: 'eval', phase: 'Passed', at: at(1000).toISOString() });
  // The status write of that reconcile failed: status still has no result.
  t.deepEqual(runner.poll(md, at(1200)), first);
  t.deepEqual(runner.poll(md, at(1300)), first);
  t.is(measured, 1, 'the kept result is current, so nothing is due');

  // Status records it (beside the pod health result the decision adds).
  const pods: CheckResult = { check: 'pods', phase: 'Passed', passed: true, failures: 0, message: 'canary pods ready', at: at(1100).toISOString() };
  const recorded: ModelDeployment = { ...md, status: { ...md.status, analysis: { results: [pods, ...first!] } } };
  t.deepEqual(runner.poll(recorded, at(1400)), first);
  // A status without the result (only possible if it were lost) now gets nothing from the runner.
  t.deepEqual(runner.poll(md, at(1500)), [], 'the recorded result is no longer held');
});

test('analysis: a result for an earlier step is dropped once the step moves on', async (t) => {
  const runner = new AnalysisRunner(() => 'http://x', noop, async (_view, now) => [{ check: 'eval', phase: 'Passed', passed: true, failures: 0, message: 'ok', at: now.toISOString() }]);
  const check = { name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } };
  const md = canaryMd('2', at(0).toISOString(), check);
  runner.poll(md, at(1000));
  await settle();
  t.is(runner.poll(md, at(1100))?.length, 1);
  const next = canaryMd('2', at(2000).toISOString(), check);
  next.status!.rollout!.step = 1;
  t.deepEqual(runner.poll(next, at(2000)), []);
});

test('analysis: polling an unrecorded failure again does not count it again; only a new measurement does', async (t) => {
  let requests = 0;
  const server = createServer((_req, res) => { requests++; res.writeHead(500).end('accuracy 0.61 < 0.9'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const check = { name: 'eval', failureLimit: 1, webhook: { url: `http://127.0.0.1:${(server.address() as { port: number }).port}/run` } };
  const runner = new AnalysisRunner(() => 'http://x', noop, runDueAnalysis);
  const md = canaryMd('2', at(0).toISOString(), check);
  runner.poll(md, at(1000));
  await until(() => runner.poll(md, at(1000))?.length === 1);
  for (let i = 0; i < 3; i++) {
    // Each of these reconciles failed to write status (a 409, say) and polls again.
    const results = runner.poll(md, at(1000 + i * 1000))!;
    t.like(results[0], { check: 'eval', phase: 'Failed', failures: 1 });
    t.false(checkFailed(check, results[0]), 'one failure is within failureLimit 1, however often it is polled');
  }
  t.is(requests, 1);

  // Status records the failure; a second measurement after the interval is the second failure.
  const recorded: ModelDeployment = { ...md, status: { ...md.status, analysis: { results: runner.poll(md, at(5000))! } } };
  runner.poll(recorded, at(31_000));
  await until(() => requests === 2);
  await until(() => runner.poll(recorded, at(31_100))?.[0]?.failures === 2);
  t.true(checkFailed(check, runner.poll(recorded, at(31_200))![0]));
  server.close();
});

test('monitoring: a hung run for a revision that no longer serves alone is aborted; a new revision is measured at once', async (t) => {
  const calls: { revision: string; signal: AbortSignal }[] = [];
  const runner = new MonitoringRunner(() => 'http://x', noop, (_md, view, _now, _url, _deliver, signal) => {
    calls.push({ revision: view.revision, signal: signal! });
    return new Promise(() => undefined);
  });
  runner.poll(monitoredMd('rev1'), at(0));
  t.is(calls.length, 1);
  const b = monitoredMd('rev2');
  runner.poll(b, at(1000));
  t.true(calls[0]!.signal.aborted, "rev1's run was aborted");
  t.is(calls.length, 2, "rev2's first check started in the same poll");
  t.is(calls[1]!.revision, 'rev2');

  // A canary starts: monitoring pauses, and its run goes.
  const rolling = monitoredMd('rev2');
  rolling.status!.canaryRevision = { hash: 'rev3' };
  t.is(runner.poll(rolling, at(2000)), undefined);
  t.true(calls[1]!.signal.aborted);

  runner.poll(monitoredMd('rev2'), at(3000));
  runner.forget('risk/fraud');
  t.true(calls[2]!.signal.aborted, 'forget aborts the run in flight (the ModelDeployment was deleted)');
});

test('monitoring: the abort reaches the check\'s request; the connection is closed', async (t) => {
  const receiver = await hangingReceiver();
  const runner = new MonitoringRunner(() => 'http://x', noop, runDueMonitoring);
  const md = monitoredMd('rev1');
  md.spec.monitoring!.checks = [{ name: 'eval', webhook: { url: receiver.url, timeoutSeconds: 3600 } }];
  const arrived = receiver.next();
  runner.poll(md, new Date());
  await arrived;
  const moved = monitoredMd('rev2');
  moved.spec.monitoring = md.spec.monitoring;
  const next = receiver.next();
  runner.poll(moved, new Date());
  await next;
  await until(() => receiver.closed.length === 1);
  t.like(receiver.closed[0], { stable: { revision: 'rev1' } });
  t.like(receiver.arrived[1], { stable: { revision: 'rev2' } });
  runner.forget('risk/fraud');
  await until(() => receiver.closed.length === 2);
  receiver.server.closeAllConnections();
  receiver.server.close();
});

test('monitoring: a capture of new baselines aborts the run measuring against the old ones', (t) => {
  const calls: { view: MonitoringInput; signal: AbortSignal }[] = [];
  const runner = new MonitoringRunner(() => 'http://x', noop, (_md, view, _now, _url, _deliver, signal) => {
    calls.push({ view, signal: signal! });
    return new Promise(() => undefined);
  });
  const drift = { name: 'scores', drift: { histogram: 'score_bucket', maxPSI: 0.2, prometheus: { address: 'http://prom.monitoring.svc' } } };
  const baseline = { check: 'scores', capturedAt: at(0).toISOString(), buckets: [] };
  const md = monitoredMd('rev1', { revision: 'rev1', baselines: [baseline] });
  md.spec.monitoring!.checks = [drift];
  runner.poll(md, at(1000));
  t.deepEqual(calls[0]!.view.baselines, [baseline]);
  md.metadata!.annotations = { 'modelship.io/capture-baseline': 'rev1;op=1' };
  runner.poll(md, at(2000));
  t.true(calls[0]!.signal.aborted);
  t.is(calls.length, 2);
  t.deepEqual(calls[1]!.view.baselines, [], 'the new run captures afresh');
});

test('monitoring: a finished run is returned until status records it, and a refused delivery counts one attempt however often it is polled', async (t) => {
  let runs = 0;
  const runner = new MonitoringRunner(() => 'http://x', noop, async (_md, view, now, _url, deliver) => {
    runs++;
    const check = { name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } };
    const result = recordMonitoringResult(check, view.results.find((r) => r.check === 'eval'), { phase: 'Failed', value: 500, message: 'HTTP 500' }, now.toISOString());
    return { revision: view.revision, results: [result], baselines: view.baselines, ...(deliver ? { delivery: { drifting: 'True' as const, at: at(0).toISOString(), ok: false, error: 'HTTP 503' } } : {}) };
  });
  const prior: MonitoringStatus = {
    revision: 'rev1',
    results: [{ check: 'eval', phase: 'Failed', passed: false, failures: 1, message: 'HTTP 500', at: at(0).toISOString() }],
    notification: { drifting: 'True', at: at(0).toISOString(), attempts: 0, nextAttemptAt: at(0).toISOString(), message: 'eval failing' },
  };
  const md = monitoredMd('rev1', prior);
  md.spec.monitoring!.webhook = { url: 'http://alerts.ml.svc/hook' };
  const drifting = { type: 'Drifting', status: 'True' as const, reason: 'CheckFailed', message: 'eval failing', lastTransitionTime: at(0).toISOString() };
  const decide = (input: MonitoringInput | undefined, status: MonitoringStatus) => decideMonitoring({
    spec: md.spec, prior: status, priorDrifting: drifting, input, generation: 1, now: at(61_000),
    stable: { hash: 'rev1', ready: 1, replicas: 1, trouble: undefined },
  }).monitoring;

  runner.poll(md, at(61_000));
  await settle();
  const first = runner.poll(md, at(61_000))!;
  t.like(first, { delivery: { ok: false } });
  t.is(first.results[0]!.failures, 2);
  const decided = decide(first, prior);
  t.is(decided.notification?.attempts, 1);
  for (let i = 1; i <= 3; i++) {
    // The status writes failed: the same input, the same decision.
    const again = runner.poll(md, at(61_000 + i * 100));
    t.deepEqual(again, first);
    t.deepEqual(decide(again, prior), decided);
  }
  t.is(runs, 1, 'neither the checks nor the delivery run again while the result waits for status');

  // Status records the decision: the runner lets go, and deciding again changes nothing.
  const recorded = monitoredMd('rev1', decided);
  recorded.spec.monitoring = md.spec.monitoring;
  const after = runner.poll(recorded, at(61_500))!;
  t.is(after.delivery, undefined);
  t.is(after.results[0]!.failures, 2);
  t.deepEqual(decide(after, decided), decided, 'the refused delivery is counted once');
  t.is(runs, 1);
});
