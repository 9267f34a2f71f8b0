// Autoscaling on what LLM servers are loaded by: the query per preset, the KEDA ScaledObject or the
// HPA, the choice between them, scale to zero, and a rollout on a model at zero.
import test from 'ava';
import type { AutoscalingSpec, ModelDeployment } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { statusView } from '../../operator/cli/plugin-view.js';
import { quantityDecimal, signalQuery } from '../../operator/modeldeployment/desired/autoscaling-signals.js';
import { desiredHpa } from '../../operator/modeldeployment/desired/hpa.js';
import { desiredScaledObject } from '../../operator/modeldeployment/desired/scaledobject.js';
import { plan, type Observations, type PlanContext } from '../../operator/modeldeployment/plan.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';

const now = new Date('2026-11-30T10:00:00Z');
const prometheus = { address: 'http://prometheus.monitoring.svc:9090' };

function llm(autoscaling?: AutoscalingSpec, preset: 'vllm' | 'tgi' = 'vllm'): ModelDeployment {
  const m = modelDeployment('chat', 'llm', withSpec({
    model: { uri: 'https://models.example.com/chat/v1', version: '1', format: 'huggingface' },
    runtime: { preset },
    ...(autoscaling ? { autoscaling } : {}),
  }));
  m.metadata = { ...m.metadata, uid: 'u1', generation: 1 };
  return m;
}

const pods = 'namespace="llm",pod=~"chat-[0-9a-f]{10}-[a-z0-9]+-[a-z0-9]+"';

test('vLLM signals become queries over every pod of the model, with the metric type that fits each', (t) => {
  const m = llm();
  t.deepEqual(signalQuery(m, 'vllm', { type: 'RequestsWaiting', targetAverageValue: 4 }), { query: `sum(vllm:num_requests_waiting{${pods}})`, metricType: 'AverageValue', threshold: '4' });
  t.deepEqual(signalQuery(m, 'vllm', { type: 'KVCacheUsage', targetAverageUtilization: 80 }), { query: `avg(vllm:kv_cache_usage_perc{${pods}})`, metricType: 'Value', threshold: '0.8' });
  t.deepEqual(signalQuery(m, 'vllm', { type: 'TimeToFirstToken', targetValue: '500m' }), {
    query: `histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{${pods}}[1m])))`, metricType: 'Value', threshold: '0.5',
  });
});

test('TGI scales on its queue; signals it does not export are refused, not approximated', (t) => {
  const m = llm(undefined, 'tgi');
  t.deepEqual(signalQuery(m, 'tgi', { type: 'RequestsWaiting', targetAverageValue: '10' }), { query: `sum(tgi_queue_size{${pods}})`, metricType: 'AverageValue', threshold: '10' });
  t.regex((signalQuery(m, 'tgi', { type: 'TimeToFirstToken', targetValue: 1 }) as { problem: string }).problem, /tgi runtime exports no such series \(it offers RequestsWaiting\)/);
  t.regex((signalQuery(m, 'mlserver', { type: 'KVCacheUsage', targetAverageUtilization: 50 }) as { problem: string }).problem, /known for the vllm and tgi presets/);
});

test('quantities become plain decimals for KEDA', (t) => {
  t.is(quantityDecimal(5), '5');
  t.is(quantityDecimal('500m'), '0.5');
  t.is(quantityDecimal('2k'), '2000');
  t.is(quantityDecimal('1.5'), '1.5');
  t.is(quantityDecimal('1Ki'), '1024');
});

test('a ScaledObject targets the ModelDeployment\'s /scale with one trigger per metric; minReplicas 0 and activation pass through', (t) => {
  const m = llm({
    minReplicas: 0, maxReplicas: 6, cooldownSeconds: 600, prometheus,
    metrics: [
      { type: 'RequestsWaiting', targetAverageValue: 4 },
      { type: 'Prometheus', query: 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=~".*chat.*"}[1m]))', targetAverageValue: 5, activationValue: '100m' },
      { type: 'CPU', targetAverageUtilization: 90 },
    ],
    behavior: { scaleDown: { stabilizationWindowSeconds: 600 } },
  });
  const so = desiredScaledObject(m, 'vllm', []) as any;
  t.like(so, { apiVersion: 'keda.sh/v1alpha1', kind: 'ScaledObject', metadata: { name: 'chat', namespace: 'llm' } });
  t.deepEqual(so.spec.scaleTargetRef, { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'chat' });
  t.like(so.spec, { minReplicaCount: 0, maxReplicaCount: 6, cooldownPeriod: 600 });
  t.deepEqual(so.spec.advanced, { horizontalPodAutoscalerConfig: { behavior: { scaleDown: { stabilizationWindowSeconds: 600 } } } });
  t.deepEqual(so.spec.triggers[0], {
    type: 'prometheus', name: 'requestswaiting-0', metricType: 'AverageValue',
    metadata: { serverAddress: prometheus.address, query: `sum(vllm:num_requests_waiting{${pods}})`, threshold: '4', ignoreNullValues: 'true' },
  });
  t.like(so.spec.triggers[1], { metricType: 'AverageValue', metadata: { threshold: '5', activationThreshold: '0.1' } });
  t.deepEqual(so.spec.triggers[2], { type: 'cpu', metricType: 'Utilization', metadata: { value: '90' } });
});

test('a registered provider with credentials is read through a ClusterTriggerAuthentication the admin names after it', (t) => {
  const m = llm({ maxReplicas: 3, prometheus: { provider: 'thanos' }, metrics: [{ type: 'KVCacheUsage', targetAverageUtilization: 75 }] });
  const so = desiredScaledObject(m, 'vllm', [{ name: 'thanos', type: 'prometheus', url: 'https://thanos.example.com', bearerTokenFile: '/etc/t' }]) as any;
  t.is(so.spec.triggers[0].metadata.serverAddress, 'https://thanos.example.com');
  t.deepEqual(so.spec.triggers[0].authenticationRef, { name: 'modelship-provider-thanos', kind: 'ClusterTriggerAuthentication' });
});

test('without KEDA, LLM signals are external metrics on the HPA, with their query for the adapter; the HPA never goes below one', (t) => {
  const m = llm({ minReplicas: 1, maxReplicas: 4, metrics: [{ type: 'TimeToFirstToken', targetValue: '800m' }, { type: 'KVCacheUsage', targetAverageUtilization: 70 }] });
  const hpa = desiredHpa(m, 'vllm') as any;
  t.deepEqual(hpa.spec.metrics[0].external.target, { type: 'Value', value: '800m' });
  t.deepEqual(hpa.spec.metrics[1].external.target, { type: 'Value', value: '700m' });
  t.regex(hpa.metadata.annotations['modelship.io/metric-0-query'], /^histogram_quantile\(0\.9/);
  t.is(hpa.spec.minReplicas, 1);
});

/** m served by its own revision: the Deployment as the operator builds it, with `ready` pods. */
const serving = (m: ModelDeployment, replicas: number, ready = replicas): { obs: Observations; hash: string } => {
  const hash = revisionHash(m.spec);
  const built = plan(m, { deployments: new Map(), pods: [] }, { fetcherImage: 'op:1', now, kedaAvailable: true }).apply.find((o) => o.kind === 'Deployment')!;
  m.status = { stableRevision: { hash, modelVersion: m.spec.model.version }, observedGeneration: 1 };
  const dep: KubeObject = {
    ...built, metadata: { ...built.metadata, generation: 1 },
    spec: { ...(built as { spec: object }).spec, replicas }, status: { readyReplicas: ready, updatedReplicas: ready, observedGeneration: 1, conditions: [] },
  };
  return { obs: { deployments: new Map([[hash, dep]]), pods: [] }, hash };
};
const ctx = (extra: Partial<PlanContext> = {}): PlanContext => ({ fetcherImage: 'op:1', now, ...extra });

test('Auto picks KEDA when its CRDs are there, and the HPA is removed before the ScaledObject is made', (t) => {
  const m = llm({ maxReplicas: 4, prometheus, metrics: [{ type: 'RequestsWaiting', targetAverageValue: 4 }] });
  const { obs } = serving(m, 1);
  const keda = plan(m, obs, ctx({ kedaAvailable: true }));
  t.truthy(keda.apply.find((o) => o.kind === 'ScaledObject'));
  t.false(keda.apply.some((o) => o.kind === 'HorizontalPodAutoscaler'));
  t.like(keda.status.conditions?.find((c) => c.type === 'AutoscalingReady'), { status: 'True', reason: 'ScaledObjectConfigured' });
  const switching = plan(m, { ...obs, hpa: { metadata: { name: 'chat' } } }, ctx({ kedaAvailable: true }));
  t.false(switching.apply.some((o) => o.kind === 'ScaledObject'), 'not while our HPA still scales the object');
  t.true(switching.remove.some((r) => r.kind === 'HorizontalPodAutoscaler'));
  // A spec written for prometheus-adapter (no autoscaling.prometheus) keeps its HPA beside KEDA.
  const adapter = llm({ maxReplicas: 4, metrics: [{ type: 'Prometheus', query: 'sum(rate(x[1m]))', targetAverageValue: 5 }] });
  const kept = plan(adapter, serving(adapter, 1).obs, ctx({ kedaAvailable: true }));
  t.truthy(kept.apply.find((o) => o.kind === 'HorizontalPodAutoscaler'));
  t.false(kept.apply.some((o) => o.kind === 'ScaledObject'));
  const hpa = plan(m, obs, ctx({ kedaAvailable: false }));
  t.truthy(hpa.apply.find((o) => o.kind === 'HorizontalPodAutoscaler'));
  t.true(hpa.remove.some((r) => r.kind === 'ScaledObject'));
});

test('specs the cluster or the preset cannot serve are InvalidSpec, and nothing is applied', (t) => {
  const cases: [ModelDeployment, boolean, RegExp][] = [
    [llm({ minReplicas: 0, maxReplicas: 2, prometheus, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] }), false, /minReplicas 0 \(scale to zero\) needs KEDA/],
    [llm({ maxReplicas: 2, scaler: 'KEDA', prometheus }), false, /scaler KEDA needs KEDA's CRDs/],
    [llm({ maxReplicas: 2, scaler: 'KEDA', metrics: [{ type: 'RequestsWaiting', targetAverageValue: 1 }] }), true, /autoscaling.prometheus: KEDA queries Prometheus/],
    [llm({ minReplicas: 0, maxReplicas: 2, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] }), true, /minReplicas 0 \(scale to zero\): give autoscaling.prometheus/],
    [llm({ maxReplicas: 2, prometheus, metrics: [{ type: 'KVCacheUsage', targetAverageUtilization: 50 }] }, 'tgi'), true, /metrics\[0\]: .*tgi runtime exports no such series/],
  ];
  for (const [m, keda, message] of cases) {
    const p = plan(m, { deployments: new Map(), pods: [] }, ctx({ kedaAvailable: keda }));
    t.deepEqual(p.apply, []);
    t.regex(p.events[0]?.message ?? '', message);
  }
});

test('a model scaled to zero is Ready with reason ScaledToZero, and kubectl modelship status says so', (t) => {
  const m = llm({ minReplicas: 0, maxReplicas: 2, prometheus, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] });
  m.spec.replicas = 0;
  const { obs } = serving(m, 0);
  const p = plan(m, obs, ctx({ kedaAvailable: true }));
  t.like(p.status.conditions?.find((c) => c.type === 'Ready'), { status: 'True', reason: 'ScaledToZero' });
  t.is(p.status.phase, 'Healthy');
  t.regex(statusView({ ...m, status: p.status }, now), /^Replicas: +scaled to zero \(autoscaled 0\.\.2; a request wakes it/m);
});

test('a rollout on a model at zero waits without judging or promoting, and its step starts afresh when the model is woken', (t) => {
  const m = llm({ minReplicas: 0, maxReplicas: 2, prometheus, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] });
  m.spec.replicas = 0;
  m.spec.rollout = { steps: [{ setWeight: 50 }, { pause: { duration: '1m' } }, { setWeight: 100 }], progressDeadlineSeconds: 60 };
  const { obs } = serving(m, 0);
  const v2 = { ...m, spec: { ...m.spec, model: { ...m.spec.model, version: '2', uri: 'https://models.example.com/chat/v2' } } };
  let p = plan(v2, obs, ctx({ kedaAvailable: true }));
  const canary = revisionHash(v2.spec);
  t.is(p.status.canaryRevision?.hash, canary);
  t.like(p.status.rollout, { pauseReason: 'ScaledToZero', position: '1/3' });
  t.like(p.status.conditions?.find((c) => c.type === 'Progressing'), { status: 'True', reason: 'ScaledToZero' });
  t.is((p.apply.find((o) => o.metadata?.name === `chat-${canary}`) as any)?.spec.replicas, 0);
  // An hour later, far beyond the progress deadline: still waiting, neither rolled back nor promoted.
  const later = new Date(now.getTime() + 3_600_000);
  const waiting = { ...v2, status: p.status };
  p = plan(waiting, obs, ctx({ kedaAvailable: true, now: later }));
  t.is(p.status.canaryRevision?.hash, canary);
  t.is(p.status.stableRevision?.hash, m.status!.stableRevision!.hash);
  t.falsy(p.status.rejectedRevision);
  t.deepEqual(p.events, []);
  // Woken: replicas 1. The step's clock starts now, and the canary gets its pod.
  const woken = { ...waiting, spec: { ...waiting.spec, replicas: 1 }, status: p.status };
  const wake = new Date(later.getTime() + 1_000);
  p = plan(woken, obs, ctx({ kedaAvailable: true, now: wake }));
  t.is(p.status.rollout?.stepStartedAt, wake.toISOString());
  t.not(p.status.rollout?.pauseReason, 'ScaledToZero');
  t.is((p.apply.find((o) => o.metadata?.name === `chat-${canary}`) as any)?.spec.replicas, 1);
});

test('a model at zero with two replicas asked again is not Ready until a pod is', (t) => {
  const m = llm({ minReplicas: 0, maxReplicas: 2, prometheus, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] });
  m.spec.replicas = 0;
  const { obs } = serving(m, 0);
  const at0 = plan(m, obs, ctx({ kedaAvailable: true }));
  const up = plan({ ...m, spec: { ...m.spec, replicas: 1 }, status: at0.status }, obs, ctx({ kedaAvailable: true }));
  t.like(up.status.conditions?.find((c) => c.type === 'Ready'), { status: 'False' });
  t.is(up.apply.find((o) => o.kind === 'Deployment')?.spec && (up.apply.find((o) => o.kind === 'Deployment') as any).spec.replicas, 1);
  void withReplicas;
});
