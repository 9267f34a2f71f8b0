import test from 'ava';
import { createServer } from 'node:http';
import { checkFailed, dueChecks, durationMs, judgeAgreement, judgeValue, recordResult } from '../../operator/modeldeployment/analysis/evaluate.js';
import { renderQuery } from '../../operator/modeldeployment/analysis/prometheus.js';
import { measureWebhook } from '../../operator/modeldeployment/analysis/webhook.js';
import { clusterIpServiceUrl } from '../../operator/modeldeployment/analysis/run.js';
import { configureOutbound, defaultOutboundLimits } from '../../operator/runtime/outbound.js';
import { defaultTenancyPolicy } from '../../operator/tenancy/policy.js';

// The test endpoints listen on loopback, which the default policy denies (test/unit/outbound.test.ts).
configureOutbound({ ...defaultTenancyPolicy, allowCidrs: ['127.0.0.1/32'] }, defaultOutboundLimits);

test('bounds and stable comparison', (t) => {
  t.like(judgeValue(0.004, { max: 0.01 }, undefined), { phase: 'Passed' });
  t.like(judgeValue(0.07, { max: 0.01 }, undefined), { phase: 'Failed', message: '0.07 > 0.01' });
  t.like(judgeValue(3, { min: 5 }, undefined), { phase: 'Failed', message: '3 < 5' });
  t.like(judgeValue(0.012, { max: 0.05 }, { maxRatio: 1.2 }, 0.01), { phase: 'Passed', stableValue: 0.01 });
  t.like(judgeValue(0.02, { max: 0.05 }, { maxRatio: 1.2 }, 0.01), { phase: 'Failed', message: '0.02 is 2× stable 0.01 (max 1.2×)' });
  t.like(judgeValue(0.02, undefined, { maxRatio: 1.2 }, undefined), { phase: 'Inconclusive' });
  t.like(judgeValue(0, undefined, { maxRatio: 1.2 }, 0), { phase: 'Passed' }, 'zero against zero is no regression');
  t.like(judgeValue(0.001, undefined, { maxRatio: 1.2 }, 0), { phase: 'Failed' }, 'any errors against none is');
});

test('prediction agreement within a tolerance', (t) => {
  t.like(judgeAgreement([[0.9, 0.1]], [[0.905, 0.1]], 0.01, 1), { phase: 'Passed', value: 1, samples: 2 });
  t.like(judgeAgreement([0.9, 0.1, 0.5, 0.5], [0.9, 0.1, 0.5, 0.9], 0.01, 0.7), { phase: 'Passed', value: 0.75 });
  t.like(judgeAgreement([0.9, 0.1, 0.5, 0.5], [0.9, 0.1, 0.5, 0.9], 0.01, 0.95), { phase: 'Failed' });
  t.like(judgeAgreement(['cat', 'dog'], ['cat', 'dog']), { phase: 'Passed' }, 'labels compare by equality');
  t.like(judgeAgreement([1, 2], [1]), { phase: 'Failed', message: 'canary returned 2 values, stable 1' });
  t.like(judgeAgreement([], [1]), { phase: 'Failed' });
});

test('failures accumulate and failureLimit decides; due checks follow the interval and the step start', (t) => {
  const check = { name: 'c', webhook: { url: 'http://x' }, failureLimit: 1 };
  const r1 = recordResult(check, undefined, { phase: 'Failed', value: 3, message: 'HTTP 500' }, '2026-01-01T00:00:00.000Z');
  t.false(checkFailed(check, r1));
  const r2 = recordResult(check, r1, { phase: 'Passed', value: 200, message: 'ok' }, '2026-01-01T00:00:10.000Z');
  t.is(r2.failures, 1);
  const r3 = recordResult(check, r2, { phase: 'Failed', message: 'HTTP 500' }, '2026-01-01T00:00:20.000Z');
  t.true(checkFailed(check, r3));
  const at = Date.parse('2026-01-01T00:00:20.000Z');
  t.deepEqual(dueChecks([check], [r3], at - 1000, at + 5_000, 30_000), [], 'measured this step, interval not over');
  t.is(dueChecks([check], [r3], at - 1000, at + 30_000, 30_000).length, 1);
  t.is(dueChecks([check], [r3], at + 1000, at + 2_000, 30_000).length, 1, 'a new step measures at once');
  t.is(durationMs('1m30s', 0), 90_000);
  t.is(durationMs('250ms', 0), 250);
  t.is(durationMs(undefined, 7), 7);
});

test('PromQL variables are filled per revision', (t) => {
  t.is(renderQuery('rate(x{namespace="{{namespace}}",revision="{{ revision }}",role="{{role}}",md="{{name}}"}[1m])', { namespace: 'risk', name: 'fraud', revision: 'abc', role: 'canary' }),
    'rate(x{namespace="risk",revision="abc",role="canary",md="fraud"}[1m])');
});

test('a webhook gets the rollout context as JSON; 2xx passes, anything else fails, a hang times out', async (t) => {
  const bodies: unknown[] = [];
  let status = 204;
  const server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => { raw += c.toString(); });
    req.on('end', () => {
      bodies.push(JSON.parse(raw));
      if (status === 0) return; // hang
      res.writeHead(status).end(status >= 400 ? 'eval accuracy 0.61 < 0.9' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const check = { name: 'eval', webhook: { url: `http://127.0.0.1:${port}/run`, timeoutSeconds: 1 } };
  t.like(await measureWebhook(check, 'team-a', { canary: { revision: 'abc' } }), { phase: 'Passed' });
  t.deepEqual(bodies[0], { canary: { revision: 'abc' } });
  status = 500;
  const failed = await measureWebhook(check, 'team-a', {});
  t.like(failed, { phase: 'Failed', message: `HTTP 500 from http://127.0.0.1:${port} (24-byte answer)` });
  t.false(failed.message.includes('accuracy'), 'what the endpoint answered is not repeated');
  status = 0;
  t.like(await measureWebhook(check, 'team-a', {}), { phase: 'Error', message: `http://127.0.0.1:${port}: no answer in 1s` });
  server.closeAllConnections();
  server.close();
});

test('analysis runs in the background: a poll never waits for a slow check, and the finished run is picked up next', async (t) => {
  const { AnalysisRunner } = await import('../../operator/modeldeployment/analysis/run.js');
  const { revisionHash } = await import('../../operator/api/revision.js');
  const { modelDeployment } = await import('../support/builders.js');
  const md = modelDeployment('fraud', 'risk');
  md.spec.rollout = { analysis: { interval: '30s', checks: [{ name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } }] } };
  const stepStartedAt = '2026-11-26T10:00:00.000Z';
  md.status = { canaryRevision: { hash: revisionHash(md.spec) }, stableRevision: { hash: 'old' }, rollout: { step: 0, stepStartedAt, canaryReadyAt: stepStartedAt } };
  let release!: () => void;
  const measured = new Promise<void>((r) => { release = r; });
  let runs = 0;
  const finishedFor: string[] = [];
  const runner = new AnalysisRunner(() => 'http://x', (ns, name) => finishedFor.push(`${ns}/${name}`), async (_view, now) => {
    runs++;
    await measured;
    return [{ check: 'eval', phase: 'Passed', passed: true, failures: 0, message: 'HTTP 200', at: now.toISOString() }];
  });
  const now = new Date('2026-11-26T10:00:01.000Z');
  const started = Date.now();
  t.deepEqual(runner.poll(md, now), [], 'nothing measured yet; the poll returns at once');
  t.true(Date.now() - started < 50);
  runner.poll(md, now);
  t.is(runs, 1, 'one run at a time per ModelDeployment');
  release();
  await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(finishedFor, ['risk/fraud'], 'the finished run enqueues the object');
  t.like(runner.poll(md, now)?.[0], { check: 'eval', phase: 'Passed' });
});

test('nothing is measured while the canary loads: the first run starts at its first ready pod', async (t) => {
  const { AnalysisRunner } = await import('../../operator/modeldeployment/analysis/run.js');
  const { revisionHash } = await import('../../operator/api/revision.js');
  const { modelDeployment } = await import('../support/builders.js');
  const md = modelDeployment('llm', 'team-a');
  md.spec.rollout = { analysis: { interval: '30s', checks: [{ name: 'eval', webhook: { url: 'http://evals.ml.svc/run' } }] } };
  const stepStartedAt = '2026-11-26T10:00:00.000Z';
  md.status = { canaryRevision: { hash: revisionHash(md.spec) }, stableRevision: { hash: 'old' }, rollout: { step: 0, stepStartedAt } };
  let runs = 0;
  const runner = new AnalysisRunner(() => 'http://x', () => undefined, (_view, now) => {
    runs++;
    return Promise.resolve([{ check: 'eval', phase: 'Passed', passed: true, failures: 0, message: 'HTTP 200', at: now.toISOString() }]);
  });
  for (let s = 1; s <= 5; s++) runner.poll(md, new Date(Date.parse(stepStartedAt) + s * 60_000));
  t.is(runs, 0, 'five minutes of loading, no measurement');
  md.status.rollout = { ...md.status.rollout, canaryReadyAt: '2026-11-26T10:05:30.000Z' };
  runner.poll(md, new Date('2026-11-26T10:05:31.000Z'));
  t.is(runs, 1, 'measured once ready');
  const { runDueAnalysis } = await import('../../operator/modeldeployment/analysis/run.js');
  const loading: typeof md = { ...md, status: { ...md.status, rollout: { step: 0, stepStartedAt } } };
  t.deepEqual(await runDueAnalysis(loading, new Date('2026-11-26T10:03:00.000Z'), () => 'http://127.0.0.1:9'), [], 'and a direct run measures nothing either');
});

test('a failed request names the address and the network reason, not just "fetch failed"', async (t) => {
  const { measurePrometheus } = await import('../../operator/modeldeployment/analysis/prometheus.js');
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  server.close();
  const m = await measurePrometheus({ name: 'err', prometheus: { address: `http://127.0.0.1:${port}`, query: 'up' }, pass: { max: 1 } }, { namespace: 'n', name: 'm', revision: 'r', role: 'canary' }, undefined);
  t.is(m.phase, 'Error');
  t.is(m.message, `http://127.0.0.1:${port}: ECONNREFUSED`);
});

test('cluster-ip addressing: a Service is reached at its ClusterIP from the cache, by name until it has one', (t) => {
  const services: Record<string, { spec: { clusterIP?: string } }> = {
    'risk/fraud-canary': { spec: { clusterIP: '10.96.4.7' } },
    'risk/fraud-stable': { spec: { clusterIP: 'None' } },
    'risk/v6-canary': { spec: { clusterIP: 'fd00::7' } },
  };
  const url = clusterIpServiceUrl((ns, name) => services[`${ns}/${name}`]);
  t.is(url('risk', 'fraud-canary', 80), 'http://10.96.4.7:80');
  t.is(url('risk', 'v6-canary', 8080), 'http://[fd00::7]:8080');
  t.is(url('risk', 'fraud-stable', 80), 'http://fraud-stable.risk.svc:80');
  t.is(url('risk', 'missing', 80), 'http://missing.risk.svc:80');
});
