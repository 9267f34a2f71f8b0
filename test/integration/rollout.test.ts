// Canary rollouts on the real control plane, with the operator as its own process, kwok fault stages
// for misbehaving canaries, the real Prometheus server for metric analysis, and a stand-in model
// server for smoke tests and prediction comparison.
import test from 'ava';
import type { ModelDeployment, RolloutSpec } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { Informer } from '../../operator/runtime/informer.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec, type Option } from '../support/builders.js';
import { adminClient, installCrd, installGatewayApi, installInferencePoolCrd } from '../support/crd.js';
import { ModelServerStub } from '../support/model-server.js';
import { OperatorProcess } from '../support/operator-process.js';
import { TestPrometheus } from '../support/prometheus.js';
import { TrafficSampler } from '../support/traffic-sampler.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const prometheus = new TestPrometheus();
const models = new ModelServerStub();
let operator: OperatorProcess;
const feeders: NodeJS.Timeout[] = [];

test.before(async () => {
  await installCrd();
  await installGatewayApi();
  await installInferencePoolCrd();
  await prometheus.start();
  await models.start();
  // The shared Gateway the GatewayAPI tests attach to lives in another namespace: the admin opens it.
  operator = new OperatorProcess({ name: 'rollout', env: { MODELSHIP_SERVICE_URL_TEMPLATE: models.urlTemplate, MODELSHIP_GATEWAY_PARENTS: 'gateways/inference-gw' } });
  await operator.start();
});

test.after.always(async () => {
  for (const f of feeders) clearInterval(f);
  await operator?.stop();
  await prometheus.stop();
  models.stop();
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };
const get = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);
const withRollout = (rollout: RolloutSpec): Option => withSpec({ rollout });
const withFault = (fault: 'never-ready' | 'crash-loop'): Option => (md) => {
  md.spec.runtime = { ...md.spec.runtime, env: [{ name: 'KWOK_FAULT', value: fault }] };
};

/** Serves v1, then asks for v2 (with `v2` options applied); returns both hashes. */
async function serveThenUpdate(ns: string, name: string, opts: Option[], v2: Option[] = []): Promise<{ v1: string; v2: string; md: Md }> {
  const md = modelDeployment(name, ns, ...opts);
  await client.create(Resources.ModelDeployment, md);
  const served = await waitFor(`${name} v1 serving`, async () => {
    const m = await get(ns, name);
    return cond(m, 'Ready')?.status === 'True' && m.status?.stableRevision ? m : undefined;
  });
  const next = modelDeployment(name, ns, ...opts);
  next.spec.model = { ...next.spec.model, version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' };
  for (const o of v2) o(next);
  await client.mergePatch(Resources.ModelDeployment, ns, name, { spec: next.spec });
  return { v1: served.status!.stableRevision!.hash, v2: revisionHash(next.spec), md: served };
}

const deployment = (ns: string, name: string, hash: string) => client.get<Obj>(Resources.Deployment, ns, `${name}-${hash}`).catch(() => undefined);
const service = (ns: string, name: string) => client.get<Obj>(Resources.Service, ns, name);

async function waitRejected(ns: string, name: string, timeoutMs = 60_000): Promise<Md> {
  return waitFor(`${name} rolled back`, async () => {
    const m = await get(ns, name);
    return m.status?.rejectedRevision ? m : undefined;
  }, timeoutMs, 250);
}

async function waitPromoted(ns: string, name: string, hash: string, timeoutMs = 60_000): Promise<Md> {
  return waitFor(`${name} promoted`, async () => {
    const m = await get(ns, name);
    return m.status?.stableRevision?.hash === hash ? m : undefined;
  }, timeoutMs, 250);
}

test('v1 → v2 through 10% → pause 5 s → 50% → 100%: Deployments, Service and status agree at each step', async (t) => {
  const ns = await namespaces.create('steps');
  const { v1, v2 } = await serveThenUpdate(ns, 'm', [withReplicas(4), withRollout({ steps: [{ setWeight: 10 }, { pause: { duration: '5s' } }, { setWeight: 50 }, { setWeight: 100 }] })]);
  // Every status write reaches a watch, so no step is missed however briefly it lasts; polling
  // alone can miss a step that completes between two reads on a loaded machine.
  const positions: string[] = [];
  const watcher = new Informer<Md>(client, Resources.ModelDeployment, {
    onUpsert: (m) => {
      const pos = m.status?.rollout?.position;
      if (pos && positions.at(-1) !== pos) positions.push(pos);
    },
  }, { namespace: ns });
  await watcher.start();
  t.teardown(() => watcher.stop());
  const pauseSeen: number[] = [];
  await waitFor('promoted', async () => {
    const m = await get(ns, 'm');
    const pos = m.status?.rollout?.position;
    if (pos === '2/4') {
      pauseSeen.push(Date.now());
      const [stable, canary, svc] = await Promise.all([deployment(ns, 'm', v1), deployment(ns, 'm', v2), service(ns, 'm')]);
      const again = await get(ns, 'm');
      if (again.status?.rollout?.position === '2/4') {
        t.is(stable?.spec.replicas, 4, 'Surge: stable keeps all 4 replicas');
        t.is(canary?.spec.replicas, 1, '10% beside 4 stable replicas is 1 canary replica');
        t.is(svc.spec.selector['modelship.io/revision'], undefined, 'the Service spreads traffic over both revisions');
        t.is(again.status?.canaryWeight, 20, 'the reported weight is the ready-pod share: 1 of 5');
        t.is(again.status?.canaryRevision?.hash, v2);
      }
    }
    return m.status?.stableRevision?.hash === v2 ? m : undefined;
  }, 90_000, 200);
  t.deepEqual(positions.filter((p) => p !== '1/4'), ['2/4', '3/4', '4/4'].filter((p) => positions.includes(p)));
  t.true(positions.includes('2/4') && positions.includes('3/4'), `positions seen: ${positions.join(' → ')}`);
  t.true(pauseSeen.length > 0 && pauseSeen.at(-1)! - pauseSeen[0]! >= 3_000, 'the pause held');
  const done = await get(ns, 'm');
  t.like(done.status?.history?.[0], { revision: v2, outcome: 'Promoted' });
  t.is((await service(ns, 'm')).spec.selector['modelship.io/revision'], v2);
  t.is(cond(done, 'Progressing')?.reason, 'Complete');
});

test('a canary that never becomes ready is rolled back in time, and stable keeps its replicas and all traffic throughout', async (t) => {
  const ns = await namespaces.create('never-ready');
  const { v1, v2 } = await serveThenUpdate(ns, 'm', [withReplicas(2), withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 10, analysis: { interval: '5s' } })], [withFault('never-ready')]);
  const started = Date.now();
  let samples = 0;
  const rejected = await waitFor('rolled back', async () => {
    const [m, stable, svc] = await Promise.all([get(ns, 'm'), deployment(ns, 'm', v1), service(ns, 'm')]);
    samples++;
    t.is(stable?.status?.readyReplicas, 2, 'stable keeps all its ready replicas');
    t.is(svc.spec.selector['modelship.io/revision'], v1, 'no traffic can reach a canary without ready pods');
    return m.status?.rejectedRevision ? m : undefined;
  }, 60_000, 250);
  const took = Date.now() - started;
  t.true(took <= 10_000 + 2_000 + 5_000, `rolled back after ${took} ms (deadline 10 s + interval 2 s + reconcile slack)`);
  t.true(samples > 10);
  t.is(rejected.status?.rejectedRevision?.hash, v2);
  t.regex(rejected.status?.rejectedRevision?.reason ?? '', /progress deadline/);
  t.like(cond(rejected, 'Degraded'), { status: 'True', reason: 'RolledBack' });
  t.like(rejected.status?.history?.[0], { revision: v2, outcome: 'RolledBack' });
  t.true(await operator.metric('modelship_rollbacks_total', { namespace: ns }) >= 1);
});

test('a crash-looping canary is rolled back with a reason naming CrashLoopBackOff', async (t) => {
  const ns = await namespaces.create('crash');
  await serveThenUpdate(ns, 'm', [withReplicas(1), withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }] })], [withFault('crash-loop')]);
  const m = await waitRejected(ns, 'm');
  t.regex(m.status?.rejectedRevision?.reason ?? '', /CrashLoopBackOff/);
});

const errorRateQuery = 'sum(rate(http_requests_total{namespace="{{namespace}}",revision="{{revision}}",code=~"5.."}[10s])) / sum(rate(http_requests_total{namespace="{{namespace}}",revision="{{revision}}"}[10s]))';
const samplesQuery = 'sum(increase(http_requests_total{namespace="{{namespace}}",revision="{{revision}}"}[10s]))';

/** Feeds Prometheus traffic for a revision: `perTick` requests every 250 ms, `errorShare` of them 5xx. */
function feed(ns: string, revision: string, perTick: number, errorShare: number) {
  feeders.push(setInterval(() => {
    const errors = Math.round(perTick * errorShare);
    prometheus.metrics.inc('http_requests_total', { namespace: ns, revision, code: '200' }, perTick - errors);
    prometheus.metrics.inc('http_requests_total', { namespace: ns, revision, code: '500' }, errors);
  }, 250));
}

function errorRateCheck(extra: Record<string, unknown> = {}) {
  return { name: 'error-rate', prometheus: { address: prometheus.address, query: errorRateQuery, ...extra }, pass: { max: 0.05 } };
}

test('Prometheus: an error rate above the bound rolls back, one below it is promoted', async (t) => {
  const bad = await namespaces.create('prom-bad');
  const good = await namespaces.create('prom-good');
  const rollout = (): RolloutSpec => ({ steps: [{ setWeight: 50 }, { pause: { duration: '4s' } }, { setWeight: 100 }], analysis: { interval: '5s', checks: [errorRateCheck()] } });
  const [b, g] = await Promise.all([
    serveThenUpdate(bad, 'm', [withRollout(rollout())]),
    serveThenUpdate(good, 'm', [withRollout(rollout())]),
  ]);
  // Until traffic arrives the check has no data, which holds the rollout (inconclusive: Hold).
  feed(bad, b.v2, 20, 0.3);
  feed(good, g.v2, 20, 0.01);
  const rejected = await waitRejected(bad, 'm');
  t.regex(rejected.status?.rejectedRevision?.reason ?? '', /error-rate: 0\.3\d* > 0\.05/);
  const result = rejected.status?.analysis?.results?.find((r) => r.check === 'error-rate');
  t.truthy(result);
  const promoted = await waitPromoted(good, 'm', g.v2);
  const passed = promoted.status?.analysis?.results?.find((r) => r.check === 'error-rate');
  t.is(passed?.passed, true);
  t.true(Number(passed?.value) < 0.05);
});

test('a canary that loads slowly is not judged while it loads: no measurement before its first ready pod, then promoted', async (t) => {
  const ns = await namespaces.create('slow-load');
  // inconclusive: Rollback, and no data for the canary while it loads: measured then, it would go at once.
  const { v2 } = await serveThenUpdate(ns, 'm', [withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 120, analysis: { interval: '5s', inconclusive: 'Rollback', checks: [errorRateCheck()] } })], [withFault('never-ready')]);
  const loading = await waitFor('the canary loading', async () => {
    const m = await get(ns, 'm');
    return m.status?.canaryRevision?.hash === v2 && m.status.rollout?.loadingDeadline ? m : undefined;
  }, 30_000, 250);
  const deadline = Date.parse(loading.status!.rollout!.loadingDeadline!) - Date.parse(loading.status!.rollout!.stepStartedAt!);
  t.is(deadline, 120_000, 'status says until when it may load: the step start plus the progress deadline');
  const loadedUntil = Date.now() + 15_000;
  while (Date.now() < loadedUntil) {
    const m = await get(ns, 'm');
    t.is(m.status?.rejectedRevision, undefined, 'not rolled back while it loads within its budget');
    t.is(m.status?.rollout?.canaryReadyAt, undefined);
    t.false((m.status?.analysis?.results ?? []).some((r) => r.check === 'error-rate'), 'and not measured');
    await new Promise((r) => setTimeout(r, 1_000));
  }
  feed(ns, v2, 20, 0.01);
  await new Promise((r) => setTimeout(r, 3_000));
  // Every status the apiserver serves is watched: once ready, the canary may be promoted within a poll.
  const seen: { canaryReadyAt?: string; loadingDeadline?: string }[] = [];
  const watcher = new Informer<Md>(client, Resources.ModelDeployment, {
    onUpsert: (m) => { if (m.status?.canaryRevision?.hash === v2) seen.push({ ...m.status.rollout }); },
  }, { namespace: ns });
  await watcher.start();
  t.teardown(() => watcher.stop());
  // The model has loaded: its pods become ready (every pod of the revision, whenever it appears).
  const promoted = await waitFor('promoted once ready', async () => {
    const pods = await client.list<Obj>(Resources.Pod, { namespace: ns, labelSelector: `modelship.io/revision=${v2}` });
    for (const p of pods.items.filter((x) => x.metadata?.annotations?.['kwok.modelship.io/ready'] !== 'true')) {
      await client.mergePatch(Resources.Pod, ns, p.metadata!.name!, { metadata: { annotations: { 'kwok.modelship.io/ready': 'true' } } });
    }
    const m = await get(ns, 'm');
    return m.status?.stableRevision?.hash === v2 ? m : undefined;
  }, 90_000, 500);
  t.true(seen.some((r) => r.canaryReadyAt && !r.loadingDeadline), `the canary clock started at its first ready pod, and loading was over: ${JSON.stringify(seen)}`);
  t.like(promoted.status?.analysis?.results?.find((r) => r.check === 'error-rate'), { passed: true });
});

test('Prometheus: too few samples hold the rollout as inconclusive, or roll it back when the policy says so', async (t) => {
  const hold = await namespaces.create('prom-hold');
  const back = await namespaces.create('prom-back');
  const rollout = (policy: 'Hold' | 'Rollback'): RolloutSpec => ({
    steps: [{ setWeight: 50 }, { setWeight: 100 }],
    analysis: { interval: '5s', inconclusive: policy, checks: [errorRateCheck({ samplesQuery, minSamples: 100000 })] },
  });
  await serveThenUpdate(hold, 'm', [withRollout(rollout('Hold'))]);
  await serveThenUpdate(back, 'm', [withRollout(rollout('Rollback'))]);
  const held = await waitFor('held as inconclusive', async () => {
    const m = await get(hold, 'm');
    return m.status?.rollout?.pauseReason === 'Inconclusive' ? m : undefined;
  }, 30_000, 250);
  t.like(cond(held, 'AnalysisInconclusive'), { status: 'True' });
  t.is(held.status?.phase, 'Paused');
  t.is(held.status?.rejectedRevision, undefined);
  const rolledBack = await waitRejected(back, 'm');
  t.regex(rolledBack.status?.rejectedRevision?.reason ?? '', /inconclusive/);
});

test('smoke tests: a response failing the JSON Schema, or predictions that disagree with stable, roll back', async (t) => {
  const schemaNs = await namespaces.create('smoke-schema');
  const predNs = await namespaces.create('smoke-pred');
  const infer = { path: '/v2/models/m/infer', method: 'POST' as const, body: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] } };
  models.answer(schemaNs, 'm-canary', () => ({ status: 200, body: { error: 'no outputs' } }));
  models.answer(predNs, 'm-canary', () => ({ status: 200, body: { outputs: [{ data: [0.91, 0.05] }] } }));
  models.answer(predNs, 'm-stable', () => ({ status: 200, body: { outputs: [{ data: [0.12, 0.80] }] } }));
  await serveThenUpdate(schemaNs, 'm', [withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }], analysis: { interval: '5s', checks: [
    { name: 'golden', http: { ...infer, expectStatus: 200, responseSchema: { type: 'object', required: ['outputs'] } } },
  ] } })]);
  await serveThenUpdate(predNs, 'm', [withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }], analysis: { interval: '5s', checks: [
    { name: 'golden', http: { ...infer, compareToStable: { jsonPath: '$.outputs[0].data', maxAbsDiff: 0.01, minAgreement: 0.95 } } },
  ] } })]);
  const schemaFail = await waitRejected(schemaNs, 'm');
  t.regex(schemaFail.status?.rejectedRevision?.reason ?? '', /golden: response does not match the schema: .*outputs/);
  const predFail = await waitRejected(predNs, 'm');
  t.regex(predFail.status?.rejectedRevision?.reason ?? '', /golden: agreement 0 \(0\/2 within 0\.01; min 0\.95\)/);
  t.true(models.requests.some((r) => r.service === `${predNs}/m-stable` && r.path === '/v2/models/m/infer'), 'the same request went to stable');
});

test('manual gate held until promote; a promote for an old hash is ignored and reported; abort and retry', async (t) => {
  const ns = await namespaces.create('manual');
  const { v1, v2 } = await serveThenUpdate(ns, 'm', [withReplicas(2), withRollout({ steps: [{ setWeight: 20 }, { pause: {} }, { setWeight: 100 }] })]);
  await waitFor('at the gate', async () => (await get(ns, 'm')).status?.rollout?.pauseReason === 'ManualGate', 30_000, 250);
  await new Promise((r) => setTimeout(r, 3_000));
  t.is((await get(ns, 'm')).status?.rollout?.position, '2/3', 'held at the gate');

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': v1 } } });
  const ignored = await waitFor('answered', async () => {
    const m = await get(ns, 'm');
    return !m.metadata?.annotations?.['modelship.io/promote'] && m.status?.rollout?.lastOperation ? m : undefined;
  });
  t.regex(ignored.status?.rollout?.lastOperation?.result ?? '', /^ignored/);
  t.is(ignored.status?.rollout?.position, '2/3');

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/abort': v2 } } });
  const aborted = await waitRejected(ns, 'm');
  t.like(cond(aborted, 'Degraded'), { status: 'True', reason: 'Aborted' });
  t.is((await service(ns, 'm')).spec.selector['modelship.io/revision'], v1, 'all traffic back on stable');
  await new Promise((r) => setTimeout(r, 2_000));
  t.is((await get(ns, 'm')).status?.canaryRevision, undefined, 'a rejected revision is not retried by itself');

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/retry': v2 } } });
  await waitFor('retried to the gate', async () => {
    const m = await get(ns, 'm');
    return m.status?.canaryRevision?.hash === v2 && m.status?.rollout?.pauseReason === 'ManualGate';
  }, 30_000, 250);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': v2 } } });
  const promoted = await waitPromoted(ns, 'm', v2);
  t.deepEqual(promoted.status?.history?.slice(0, 3).map((h) => h.outcome), ['Promoted', 'Aborted', 'Promoted']);
});

test('a GPU canary with no free GPU reports CapacityBlocked and leaves stable untouched', async (t) => {
  const ns = await namespaces.create('gpu-canary');
  const gpu: Option = (md) => {
    md.spec.model = { ...md.spec.model, format: 'huggingface', uri: 'hf://example/tiny-llm' };
    md.spec.resources = { limits: { 'nvidia.com/gpu': 1 } };
  };
  const { v1 } = await serveThenUpdate(ns, 'm', [gpu, withRollout({ steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 10 })],
    [(md) => { md.spec.resources = { limits: { 'nvidia.com/gpu': 8 } }; }]);
  const stableBefore = await deployment(ns, 'm', v1);
  const blocked = await waitFor('capacity blocked', async () => {
    const m = await get(ns, 'm');
    return cond(m, 'CapacityBlocked')?.status === 'True' ? m : undefined;
  }, 30_000, 250);
  t.regex(cond(blocked, 'CapacityBlocked')?.message ?? '', /Insufficient nvidia\.com\/gpu/);
  t.is(blocked.status?.rollout?.pauseReason, 'CapacityBlocked');
  await new Promise((r) => setTimeout(r, 12_000));
  const later = await get(ns, 'm');
  t.is(later.status?.rejectedRevision, undefined, 'held, not rolled back, past the progress deadline');
  const stableAfter = await deployment(ns, 'm', v1);
  t.is(stableAfter?.metadata?.resourceVersion, stableBefore?.metadata?.resourceVersion, 'stable untouched');
});

test('GatewayAPI: a shadow step mirrors, weights are exact on the HTTPRoute, tagged requests reach the canary', async (t) => {
  const ns = await namespaces.create('gateway');
  const traffic = { router: 'GatewayAPI' as const, gatewayAPI: { parentRefs: [{ name: 'inference-gw', namespace: 'gateways' }], hostnames: ['fraud.example.com'], canaryHeader: { name: 'x-canary', value: 'always' } } };
  const { v1, v2 } = await serveThenUpdate(ns, 'm', [withReplicas(4), withSpec({ traffic }), withRollout({ steps: [{ setMirror: 100 }, { pause: {} }, { setWeight: 25 }, { pause: {} }, { setWeight: 100 }] })]);
  const route = () => client.get<Obj>(Resources.HTTPRoute, ns, 'm');
  const atGate = async (position: string) => waitFor(`gate ${position}`, async () => {
    const m = await get(ns, 'm');
    return m.status?.rollout?.position === position && m.status.rollout.pauseReason === 'ManualGate' ? m : undefined;
  }, 30_000, 250);

  const shadow = await atGate('2/5');
  let r = await route();
  const main = r.spec.rules.at(-1);
  t.deepEqual(r.spec.parentRefs, [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'inference-gw', namespace: 'gateways' }]);
  t.deepEqual(r.spec.hostnames, ['fraud.example.com']);
  t.is(shadow.status?.canaryWeight, 0, 'a shadow step moves no traffic');
  t.deepEqual(main.backendRefs.map((b: any) => [b.name, b.weight]), [['m-stable', 100], ['m-canary', 0]]);
  t.is(main.filters, undefined, 'the mirror belongs to the setMirror step only, and the gate after it is a new step');
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': v2 } } });

  const quarter = await atGate('4/5');
  r = await route();
  t.is(quarter.status?.canaryWeight, 25);
  t.deepEqual(r.spec.rules.at(-1).backendRefs.map((b: any) => [b.name, b.weight]), [['m-stable', 75], ['m-canary', 25]]);
  t.deepEqual(r.spec.rules[0].matches.map((m: any) => m.headers), [[{ type: 'Exact', name: 'x-canary', value: 'always' }]]);
  t.is(r.spec.rules[0].backendRefs[0].name, 'm-canary');
  t.is((await deployment(ns, 'm', v2))?.spec.replicas, 1, 'exact weights: 25% of 4 replicas');
  t.is((await deployment(ns, 'm', v1))?.spec.replicas, 4);
  t.is((await service(ns, 'm')).spec.selector['modelship.io/revision'], v1, 'in-cluster clients of <md> stay on stable');

  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': `${v2}/full` } } });
  await waitPromoted(ns, 'm', v2);
  r = await route();
  t.is(r.spec.rules.length, 1, 'no canary, no header rule');
  t.deepEqual(r.spec.rules[0].backendRefs.map((b: any) => [b.name, b.weight]), [['m-stable', 100]]);
  t.is((await service(ns, 'm-stable')).spec.selector['modelship.io/revision'], v2);
});

test('InferencePool: a canary walks 0 → 25 → 50 → 100 % between two pools under analysis, and a bad one is rolled back automatically', async (t) => {
  const good = await namespaces.create('pool-good');
  const bad = await namespaces.create('pool-bad');
  const traffic = { router: 'InferencePool' as const, gatewayAPI: { parentRefs: [{ name: 'inference-gw', namespace: 'gateways' }] } };
  const rollout = (): RolloutSpec => ({ steps: [{ setWeight: 25 }, { pause: { duration: '5s' } }, { setWeight: 50 }, { pause: { duration: '5s' } }, { setWeight: 100 }], analysis: { interval: '5s', checks: [errorRateCheck()] } });
  const opts = [withReplicas(4), withSpec({ traffic }), withRollout(rollout())];
  const pool = (ns: string, name: string) => client.get<Obj>(Resources.InferencePool, ns, name).catch(() => undefined);
  // The samplers read the pools' selectors and the route's weights: the canary's pool never gets a
  // share its ready pods cannot carry, and its share never drops back on a step advance.
  const samplers = [new TrafficSampler(client, good, 'm'), new TrafficSampler(client, bad, 'm')];
  const [g, b] = await Promise.all([serveThenUpdate(good, 'm', opts), serveThenUpdate(bad, 'm', opts)]);
  await Promise.all(samplers.map((s) => s.start()));
  try {
    const stablePool = await pool(good, 'm-stable');
    t.deepEqual(stablePool?.spec.selector.matchLabels, { 'app.kubernetes.io/instance': 'm', 'app.kubernetes.io/managed-by': 'modelship', 'modelship.io/revision': g.v1 });
    t.deepEqual(stablePool?.spec.targetPorts, [{ number: 8080 }], 'the pool targets the server port of its revision');
    t.like(stablePool?.spec.endpointPickerRef, { kind: 'Service', name: 'm-stable-epp', port: { number: 9002 }, failureMode: 'FailClose' }, 'the operator default: one picker per pool, {pool}-epp');
    feed(good, g.v2, 20, 0.01);
    feed(bad, b.v2, 20, 0.3);
    const quarter = await waitFor('good canary at 25 %', async () => {
      const m = await get(good, 'm');
      return m.status?.canaryWeight === 25 ? m : undefined;
    }, 60_000, 250);
    t.is(quarter.status?.canaryRevision?.hash, g.v2);
    const route = await client.get<Obj>(Resources.HTTPRoute, good, 'm');
    t.deepEqual(route.spec.rules.at(-1).backendRefs.map((r: any) => [r.group, r.kind, r.name, r.weight]),
      [['inference.networking.k8s.io', 'InferencePool', 'm-stable', 75], ['inference.networking.k8s.io', 'InferencePool', 'm-canary', 25]]);
    t.is((await pool(good, 'm-canary'))?.spec.selector.matchLabels['modelship.io/revision'], g.v2);
    t.is((await pool(good, 'm-canary'))?.spec.endpointPickerRef.name, 'm-canary-epp');

    const rejected = await waitRejected(bad, 'm');
    t.regex(rejected.status?.rejectedRevision?.reason ?? '', /error-rate: 0\.3\d* > 0\.05/);
    await waitFor('the rejected canary\'s pool removed and the route back on stable alone', async () => {
      const r = await client.get<Obj>(Resources.HTTPRoute, bad, 'm');
      return !await pool(bad, 'm-canary') && r.spec.rules.at(-1).backendRefs.length === 1 ? true : undefined;
    }, 60_000, 250);
    t.is((await pool(bad, 'm-stable'))?.spec.selector.matchLabels['modelship.io/revision'], b.v1, 'stable kept serving through its pool');

    await waitPromoted(good, 'm', g.v2, 90_000);
    await waitFor('the stable pool selects v2 and the canary pool is gone', async () => {
      const r = await client.get<Obj>(Resources.HTTPRoute, good, 'm');
      return (await pool(good, 'm-stable'))?.spec.selector.matchLabels['modelship.io/revision'] === g.v2 && !await pool(good, 'm-canary')
        && r.spec.rules.at(-1).backendRefs.length === 1 ? true : undefined;
    }, 60_000, 250);
    const weights = new Set(samplers[0]!.samples.map((s) => s.shares?.[g.v2]).filter((w) => w !== undefined));
    t.true([25, 50, 100].every((w) => weights.has(w)), `the canary's pool was seen at 25, 50 and 100 %: ${[...weights].join(', ')}`);
  } finally {
    for (const s of samplers) s.stop();
  }
  for (const s of samplers) for (const line of s.report().split('\n')) t.log(line);
  t.deepEqual(samplers.flatMap((s) => s.violations.map((e) => `${s.namespace} (${e.invariant}) ${e.phase}: ${e.message}`)), [], 'traffic stayed within ready capacity');
});

test('GatewayAPI: the mirror filter copies traffic to the canary during a setMirror step', async (t) => {
  const ns = await namespaces.create('mirror');
  const traffic = { router: 'GatewayAPI' as const, gatewayAPI: { parentRefs: [{ name: 'gw' }] } };
  // A check that cannot pass yet holds the mirror step open long enough to look at it.
  const hold = { name: 'hold', prometheus: { address: prometheus.address, query: 'absent_metric_for_mirror_test' }, pass: { max: 1 } };
  await serveThenUpdate(ns, 'm', [withSpec({ traffic }), withRollout({ steps: [{ setMirror: 50 }, { setWeight: 100 }], analysis: { interval: '5s', checks: [hold] } })]);
  const r = await waitFor('mirror filter', async () => {
    const route = await client.get<Obj>(Resources.HTTPRoute, ns, 'm');
    return route.spec.rules.at(-1).filters ? route : undefined;
  }, 30_000, 250);
  t.like(r.spec.rules.at(-1).filters[0], { type: 'RequestMirror', requestMirror: { backendRef: { name: 'm-canary' }, percent: 50 } });
  t.deepEqual(r.spec.rules.at(-1).backendRefs.map((b: any) => b.weight), [100, 0]);
  const m = await get(ns, 'm');
  t.is(m.status?.mirrorWeight, 50);
});
