// The reconcile decision, from observations alone.
import test from 'ava';
import { plan, type Observations } from '../../operator/modeldeployment/plan.js';
import { revisionHash } from '../../operator/api/revision.js';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment, withReplicas } from '../support/builders.js';

const now = new Date('2026-11-26T10:00:00Z');
const ctx = { fetcherImage: 'op:1', now };

function md(...opts: ReturnType<typeof withReplicas>[]): ModelDeployment {
  const m = modelDeployment('iris', 'ml', ...opts);
  m.metadata = { ...m.metadata, uid: 'u1', generation: 3 };
  return m;
}

function deploymentObs(hash: string, replicas: number, ready: number, extra: Partial<{ deadline: boolean; generation: number; observed: number }> = {}): KubeObject {
  return {
    metadata: { name: `iris-${hash}`, namespace: 'ml', generation: extra.generation ?? 1, labels: { 'modelship.io/revision': hash } },
    spec: { replicas },
    status: {
      readyReplicas: ready, updatedReplicas: ready, observedGeneration: extra.observed ?? 1,
      conditions: extra.deadline ? [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }] : [],
    },
  };
}

const obs = (...deps: [string, KubeObject][]): Observations => ({ deployments: new Map(deps), pods: [] });
const cond = (s: { conditions?: { type: string }[] }, type: string) => s.conditions?.find((c) => c.type === type) as any;

test('a new ModelDeployment: desired Deployment, Service; Pending until replicas are ready', (t) => {
  const p = plan(md(withReplicas(2)), obs(), ctx);
  t.deepEqual(p.apply.map((o) => o.kind), ['Deployment', 'Service']);
  t.is((p.apply[1] as any).spec.selector['modelship.io/revision'], revisionHash(md(withReplicas(2)).spec),
    'the Service selects the first revision from the start: promoting it re-points nothing');
  t.is(p.status.phase, 'Pending');
  t.like(cond(p.status, 'Ready'), { status: 'False', reason: 'WaitingForReplicas', observedGeneration: 3 });
  t.like(cond(p.status, 'Progressing'), { status: 'True', reason: 'Deploying' });
  t.is(p.status.observedGeneration, 3);
  t.truthy(p.requeueAfterMs);
});

test('ready replicas promote the revision: Ready=True, history, a Normal event, stable revision recorded', (t) => {
  const m = md(withReplicas(2));
  const hash = revisionHash(m.spec);
  const p = plan(m, obs([hash, deploymentObs(hash, 2, 2)]), ctx);
  t.is(p.status.phase, 'Healthy');
  t.like(cond(p.status, 'Ready'), { status: 'True', reason: 'StableServing', observedGeneration: 3 });
  t.like(p.status.stableRevision, { hash, modelVersion: '1', preset: 'mlserver', since: now.toISOString() });
  t.is(p.status.history?.length, 1);
  t.like(p.status.history?.[0], { revision: hash, outcome: 'Promoted' });
  t.deepEqual(p.events.map((e) => e.reason), ['Promoted']);
  t.is(p.requeueAfterMs, undefined);
  // The same observation again changes nothing and emits nothing.
  const again = plan({ ...m, status: p.status }, obs([hash, deploymentObs(hash, 2, 2)]), { ...ctx, now: new Date(now.getTime() + 60_000) });
  t.deepEqual(again.status, p.status);
  t.deepEqual(again.events, []);
});

test('a stale Deployment status (observedGeneration behind) is not taken as ready', (t) => {
  const m = md(withReplicas(2));
  const hash = revisionHash(m.spec);
  const p = plan(m, obs([hash, deploymentObs(hash, 2, 2, { generation: 2, observed: 1 })]), ctx);
  t.is(cond(p.status, 'Ready').status, 'False');
});

test('a new revision keeps the old one serving until it is ready, then supersedes it', (t) => {
  const v1 = md(withReplicas(2));
  const h1 = revisionHash(v1.spec);
  const served = plan(v1, obs([h1, deploymentObs(h1, 2, 2)]), ctx).status;
  const v2 = md(withReplicas(2));
  v2.spec.model.version = '2';
  v2.status = served;
  const h2 = revisionHash(v2.spec);
  t.not(h1, h2);
  const rolling = plan(v2, obs([h1, deploymentObs(h1, 2, 2)], [h2, deploymentObs(h2, 2, 1)]), ctx);
  t.deepEqual(rolling.delete, [], 'the old revision stays while the new one is not ready');
  t.like(cond(rolling.status, 'Ready'), { status: 'True', reason: 'StableServing' });
  t.is(rolling.status.phase, 'Progressing');
  t.is((rolling.apply[0] as any).metadata.labels['modelship.io/role'], undefined, 'no role label: it would change at promotion');
  const services = (p: typeof rolling) => p.apply.filter((o) => o.kind === 'Service').map((o) => o.metadata?.name);
  t.deepEqual(services(rolling), ['iris'], 'ReplicaRatio with no check that calls a revision: no revision Services');
  t.true(rolling.remove.some((r) => r.kind === 'Service' && r.name === 'iris-canary') && rolling.remove.some((r) => r.kind === 'Service' && r.name === 'iris-stable'));
  const done = plan({ ...v2, status: rolling.status }, obs([h1, deploymentObs(h1, 2, 2)], [h2, deploymentObs(h2, 2, 2)]), ctx);
  t.deepEqual(done.delete, [], 'the old revision stays warm for scaleDownDelaySeconds');
  t.deepEqual(done.status.retiring?.map((r) => r.hash), [h1]);
  t.is(done.status.stableRevision?.hash, h2);
  t.deepEqual((done.apply.find((o) => o.kind === 'Service' && o.metadata?.name === 'iris') as any).spec.selector['modelship.io/revision'], h2, 'clients reach only the new stable');
  const later = plan({ ...v2, status: done.status }, obs([h1, deploymentObs(h1, 2, 2)], [h2, deploymentObs(h2, 2, 2)]), { ...ctx, now: new Date(now.getTime() + 31_000) });
  t.deepEqual(later.delete.map((d) => d.metadata?.name), [`iris-${h1}`]);
  t.deepEqual(done.status.history?.map((h) => [h.modelVersion, h.outcome]), [['2', 'Promoted'], ['1', 'Promoted']]);
  t.deepEqual(done.apply.find((o) => o.metadata?.name === `iris-${h2}`), rolling.apply.find((o) => o.metadata?.name === `iris-${h2}`),
    'promotion writes nothing to the canary\'s Deployment: it is already at full size');
  t.deepEqual(rolling.events, [], 'a rollout that starts is in status, not an Event');
  t.deepEqual(done.events.map((e) => e.reason), ['Promoted'], 'one event says the promotion');
  t.regex(done.events[0]!.message, new RegExp(`^revision ${h2} \\(model 2\\) is serving; its rollout beside ${h1} began at 2026-11-26T10:00:00`));
});

test('the revision Services exist only where something calls one revision: http or webhook checks, a gateway, or Always', (t) => {
  const during = (spec: Partial<ModelDeployment['spec']>) => {
    const v1 = md(withReplicas(2));
    Object.assign(v1.spec, spec);
    const h1 = revisionHash(v1.spec);
    const served = plan(v1, obs([h1, deploymentObs(h1, 2, 2)]), ctx).status;
    const v2 = { ...v1, spec: { ...v1.spec, model: { ...v1.spec.model, version: '2' } }, status: served };
    const h2 = revisionHash(v2.spec);
    const rolling = plan(v2, obs([h1, deploymentObs(h1, 2, 2)], [h2, deploymentObs(h2, 2, 1)]), ctx);
    const names = (p: typeof rolling) => p.apply.filter((o) => o.kind === 'Service').map((o) => o.metadata?.name).sort();
    return { steady: names(plan({ ...v1, status: served }, obs([h1, deploymentObs(h1, 2, 2)]), ctx)), rolling: names(rolling) };
  };
  t.deepEqual(during({}), { steady: ['iris'], rolling: ['iris'] });
  const http = { rollout: { analysis: { checks: [{ name: 'smoke', http: { path: '/v2/models/iris/ready' } }] } } };
  t.deepEqual(during(http), { steady: ['iris', 'iris-stable'], rolling: ['iris', 'iris-canary', 'iris-stable'] });
  const webhook = { monitoring: { checks: [{ name: 'hook', webhook: { url: 'http://hooks.monitoring.svc/check' } }] } };
  t.deepEqual(during(webhook as Partial<ModelDeployment['spec']>), { steady: ['iris', 'iris-stable'], rolling: ['iris', 'iris-canary', 'iris-stable'] });
  const prometheus = { rollout: { analysis: { checks: [{ name: 'errors', prometheus: { address: 'http://prometheus.monitoring.svc:9090', query: 'up' }, pass: { max: 1 } }] } } };
  t.deepEqual(during(prometheus), { steady: ['iris'], rolling: ['iris'] }, 'a Prometheus query calls no revision');
  t.deepEqual(during({ traffic: { revisionServices: 'Always' } }), { steady: ['iris', 'iris-stable'], rolling: ['iris', 'iris-canary', 'iris-stable'] });
});

test('an invalid spec applies and deletes nothing and keeps what serves', (t) => {
  const m = md();
  const h = revisionHash(m.spec);
  const served = plan(m, obs([h, deploymentObs(h, 1, 1)]), ctx).status;
  const bad = md();
  bad.spec.model.format = 'onnx';
  bad.spec.runtime = { preset: 'mlserver' };
  bad.status = served;
  const p = plan(bad, obs([h, deploymentObs(h, 1, 1)]), ctx);
  t.deepEqual(p.apply, []);
  t.deepEqual(p.delete, []);
  t.like(cond(p.status, 'Ready'), { status: 'False', reason: 'InvalidSpec' });
  t.is(p.status.stableRevision?.hash, h);
  t.deepEqual(p.events.map((e) => [e.type, e.reason]), [['Warning', 'InvalidSpec']]);
  const again = plan({ ...bad, status: p.status }, obs([h, deploymentObs(h, 1, 1)]), ctx);
  t.deepEqual(again.events, [], 'the warning is not repeated while nothing changes');
});

test('pod trouble is named: Unschedulable, CrashLoopBackOff, OOMKilled; a missed deadline is Degraded', (t) => {
  const m = md();
  const h = revisionHash(m.spec);
  const pod = (status: any): KubeObject => ({ metadata: { name: 'p', labels: { 'modelship.io/revision': h } }, status });
  const unsched = plan(m, { deployments: new Map([[h, deploymentObs(h, 1, 0)]]), pods: [pod({ conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/5 nodes are available: 5 Insufficient nvidia.com/gpu.' }] })] }, ctx);
  t.like(cond(unsched.status, 'Ready'), { reason: 'Unschedulable' });
  t.regex(cond(unsched.status, 'Ready').message, /Insufficient nvidia\.com\/gpu/);
  const oom = plan(m, { deployments: new Map([[h, deploymentObs(h, 1, 0, { deadline: true })]]), pods: [pod({ containerStatuses: [{ name: 'server', restartCount: 4, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { reason: 'OOMKilled' } } }] })] }, ctx);
  t.like(cond(oom.status, 'Ready'), { reason: 'OOMKilled' });
  t.like(cond(oom.status, 'Degraded'), { status: 'True', reason: 'ProgressDeadlineExceeded' });
  t.is(oom.status.phase, 'Degraded');
});

test('history is bounded by revisionHistoryLimit', (t) => {
  let m = md();
  m.spec.revisionHistoryLimit = 2;
  let status = undefined as ModelDeployment['status'];
  for (const v of ['1', '2', '3', '4']) {
    m = { ...m, spec: { ...m.spec, model: { ...m.spec.model, version: v } }, status };
    const h = revisionHash(m.spec);
    status = plan(m, obs([h, deploymentObs(h, 1, 1)]), ctx).status;
  }
  t.deepEqual(status?.history?.map((h) => h.modelVersion), ['4', '3']);
});

test('AutoscalingReady says when Prometheus autoscaling has no external metrics API to read from', (t) => {
  const m = md();
  m.spec.autoscaling = { maxReplicas: 4, metrics: [{ type: 'Prometheus', query: 'sum(rate(x[1m]))', targetAverageValue: '10' }] };
  const h = revisionHash(m.spec);
  const missing = plan(m, obs([h, deploymentObs(h, 1, 1)]), { ...ctx, externalMetricsAvailable: false });
  t.like(cond(missing.status, 'AutoscalingReady'), { status: 'False', reason: 'ExternalMetricsUnavailable' });
  t.deepEqual(missing.apply.map((o) => o.kind), ['Deployment', 'Service', 'HorizontalPodAutoscaler']);
  const present = plan(m, obs([h, deploymentObs(h, 1, 1)]), { ...ctx, externalMetricsAvailable: true });
  t.like(cond(present.status, 'AutoscalingReady'), { status: 'True', reason: 'HPAConfigured' });
  const none = plan({ ...md(), status: present.status }, obs([h, deploymentObs(h, 1, 1)]), ctx);
  t.is(cond(none.status, 'AutoscalingReady'), undefined, 'gone once autoscaling is removed');
});
