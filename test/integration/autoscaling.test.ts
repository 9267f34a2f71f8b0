// Autoscaling large models on the real control plane, with KEDA's CRDs installed (its controller does
// not run: the test drives /scale as KEDA would). The operator writes ScaledObjects the apiserver
// validates against KEDA's own schema; a model scales to zero and back; a rollout on a model at zero
// waits; and an autoscaler resizing the object mid-canary never pins stable at max or grows the canary
// beyond its step.
import test from 'ava';
import type { AutoscalingSpec, ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec, withVersion } from '../support/builders.js';
import { userAgentPrefix } from '../../operator/runtime/kube.js';
import { writesSince } from '../support/audit.js';
import { adminClient, installCrd, installGatewayApi, installInferencePoolCrd, installKedaCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
let operator: OperatorProcess;

test.before(async () => {
  await installCrd();
  await installKedaCrd();
  await installGatewayApi();
  await installInferencePoolCrd();
  operator = new OperatorProcess({ name: 'autoscaling' });
  await operator.start();
});

test.after.always(async () => {
  await operator?.stop();
  await namespaces.deleteAll();
});

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };
const get = (ns: string) => client.get<Md>(Resources.ModelDeployment, ns, 'm');
const cond = (m: Md, type: string) => m.status?.conditions?.find((c) => c.type === type);
const waitMd = (what: string, ns: string, ok: (m: Md) => boolean, timeoutMs = 60_000) => waitFor(what, async () => { const m = await get(ns); return ok(m) ? m : undefined; }, timeoutMs, 250);
/** What KEDA (or an HPA) does: write spec.replicas through the /scale subresource. */
const scale = (ns: string, replicas: number) => client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { replicas } }, 'scale');
const deployment = (ns: string, hash: string) => client.get<Obj>(Resources.Deployment, ns, `m-${hash}`).catch(() => undefined);
const prometheus = { address: 'http://prometheus.monitoring.svc:9090' };
// What wakes a model at zero: a gateway's request rate, a series that exists while no pod runs.
const wake = { type: 'Prometheus' as const, query: 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name=~".*chat.*"}[1m]))', targetAverageValue: 5, activationValue: '100m' };

function llm(ns: string, preset: 'vllm' | 'tgi', autoscaling: AutoscalingSpec, extra: Record<string, unknown> = {}): ModelDeployment {
  return modelDeployment('m', ns, withReplicas(1), withSpec({
    model: { uri: 'https://models.example.com/chat/v1/', version: '1', format: 'huggingface' },
    runtime: { preset },
    autoscaling,
    ...extra,
  }));
}

test('KEDA ScaledObjects with the right trigger for vLLM and TGI, accepted by KEDA\'s CRD; the scale subresource reaches the model', async (t) => {
  const vllm = await namespaces.create('keda-vllm');
  const tgi = await namespaces.create('keda-tgi');
  await client.create(Resources.ModelDeployment, llm(vllm, 'vllm', { minReplicas: 0, maxReplicas: 4, prometheus, metrics: [{ type: 'RequestsWaiting', targetAverageValue: 4 }, { type: 'KVCacheUsage', targetAverageUtilization: 80 }, { type: 'TimeToFirstToken', targetValue: '500m' }, wake] }));
  await client.create(Resources.ModelDeployment, llm(tgi, 'tgi', { minReplicas: 1, maxReplicas: 3, prometheus, metrics: [{ type: 'RequestsWaiting', targetAverageValue: '8' }] }));
  const so = (ns: string) => waitFor(`ScaledObject in ${ns}`, () => client.get<Obj>(Resources.ScaledObject, ns, 'm').catch(() => undefined), 30_000, 250);
  const [v, g] = await Promise.all([so(vllm), so(tgi)]);
  const pods = (ns: string) => `namespace="${ns}",pod=~"m-[0-9a-f]{10}-[a-z0-9]+-[a-z0-9]+"`;
  t.like(v.spec, { minReplicaCount: 0, maxReplicaCount: 4, scaleTargetRef: { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'm' } });
  t.deepEqual(v.spec.triggers.map((x: any) => [x.type, x.metricType, x.metadata.query, x.metadata.threshold, x.metadata.activationThreshold]), [
    ['prometheus', 'AverageValue', `sum(vllm:num_requests_waiting{${pods(vllm)}})`, '4', undefined],
    ['prometheus', 'Value', `avg(vllm:kv_cache_usage_perc{${pods(vllm)}})`, '0.8', undefined],
    ['prometheus', 'Value', `histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{${pods(vllm)}}[1m])))`, '0.5', undefined],
    ['prometheus', 'AverageValue', wake.query, '5', '0.1'],
  ]);
  t.deepEqual(g.spec.triggers.map((x: any) => [x.metricType, x.metadata.query, x.metadata.threshold]), [['AverageValue', `sum(tgi_queue_size{${pods(tgi)}})`, '8']]);
  // The objects are as KEDA's schema wants them: the apiserver validated them on create, and a
  // server-side dry run of each again now.
  for (const obj of [v, g]) await client.apply(Resources.ScaledObject, { apiVersion: obj.apiVersion, kind: obj.kind, metadata: { name: obj.metadata!.name, namespace: obj.metadata!.namespace }, spec: obj.spec }, 'dry-run-check', { dryRun: true, force: true });
  const m = await waitMd('AutoscalingReady', vllm, (x) => cond(x, 'AutoscalingReady')?.reason === 'ScaledObjectConfigured');
  t.is(m.status?.selector, 'app.kubernetes.io/instance=m', 'KEDA\'s HPA needs the scale subresource\'s selector');
  const scaleView = await client.request<any>('GET', `/apis/modelship.io/v1alpha1/namespaces/${vllm}/modeldeployments/m/scale`);
  t.like(scaleView, { spec: { replicas: 1 }, status: { replicas: 1, selector: 'app.kubernetes.io/instance=m' } });
  t.false(await client.get(Resources.HorizontalPodAutoscaler, vllm, 'm').then(() => true, () => false), 'no HPA of ours beside KEDA\'s');
});

test('scale to zero and back, driven through /scale as KEDA does: status and kubectl modelship status say "scaled to zero"', async (t) => {
  const ns = await namespaces.create('zero');
  await client.create(Resources.ModelDeployment, llm(ns, 'vllm', { minReplicas: 0, maxReplicas: 3, prometheus, metrics: [wake] }));
  const v1 = (await waitMd('serving', ns, (m) => cond(m, 'Ready')?.status === 'True' && !!m.status?.stableRevision)).status!.stableRevision!.hash;
  await scale(ns, 0);
  const zero = await waitMd('scaled to zero', ns, (m) => cond(m, 'Ready')?.reason === 'ScaledToZero');
  t.is(cond(zero, 'Ready')?.status, 'True', 'scaled to zero is a healthy steady state');
  t.is(zero.status?.phase, 'Healthy');
  t.regex(cond(zero, 'Ready')?.message ?? '', /^scaled to zero: revision \w+ \(model 1\) runs no pod; a metric above its activationValue wakes it$/);
  await waitFor('no pod left', async () => (await client.list<Obj>(Resources.Pod, { namespace: ns })).items.length === 0 && (await deployment(ns, v1))?.spec.replicas === 0, 30_000, 250);
  const { statusView } = await import('../../operator/cli/plugin-view.js');
  t.regex(statusView(zero, new Date()), /^Replicas: +scaled to zero \(autoscaled 0\.\.3/m);

  await scale(ns, 2);
  const back = await waitMd('back at two ready replicas', ns, (m) => cond(m, 'Ready')?.reason === 'StableServing' && m.status?.readyReplicas === 2);
  t.is(back.status?.stableRevision?.hash, v1, 'the same revision comes back: waking is not a rollout');
  t.is((await deployment(ns, v1))?.spec.replicas, 2);
});

test('a rollout on a model at zero waits past its progress deadline, then walks its steps once the model is woken', async (t) => {
  const ns = await namespaces.create('zero-rollout');
  const rollout = { steps: [{ setWeight: 50 }, { setWeight: 100 }], progressDeadlineSeconds: 10 };
  await client.create(Resources.ModelDeployment, llm(ns, 'vllm', { minReplicas: 0, maxReplicas: 3, prometheus, metrics: [wake] }, { rollout }));
  const v1 = (await waitMd('serving', ns, (m) => cond(m, 'Ready')?.status === 'True' && !!m.status?.stableRevision)).status!.stableRevision!.hash;
  await scale(ns, 0);
  await waitMd('at zero', ns, (m) => cond(m, 'Ready')?.reason === 'ScaledToZero');
  const next = llm(ns, 'vllm', { minReplicas: 0, maxReplicas: 3, prometheus, metrics: [wake] }, { rollout });
  withVersion('2', 'https://models.example.com/chat/v2/')(next);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: next.spec.model } });
  const waiting = await waitMd('the canary waits at zero', ns, (m) => m.status?.rollout?.pauseReason === 'ScaledToZero');
  t.is(waiting.status?.canaryRevision?.modelVersion, '2');
  t.like(cond(waiting, 'Progressing'), { status: 'True', reason: 'ScaledToZero' });
  // Twice the progress deadline: a canary that was never given a pod is not rolled back for it.
  await new Promise((r) => setTimeout(r, 20_000));
  const still = await get(ns);
  t.is(still.status?.rollout?.pauseReason, 'ScaledToZero');
  t.falsy(still.status?.rejectedRevision);
  t.is(still.status?.stableRevision?.hash, v1);
  await scale(ns, 2);
  const promoted = await waitMd('woken, the canary walks its steps and is promoted', ns, (m) => m.status?.stableRevision?.modelVersion === '2' && !m.status.canaryRevision);
  t.is(promoted.status?.history?.[0]?.outcome, 'Promoted');
});

test('an autoscaler resizing the object mid-canary: the rollout splits whatever it asks, stable is never pinned at max, and the canary never grows beyond its step', async (t) => {
  const ns = await namespaces.create('scale-canary');
  const spec = () => llm(ns, 'vllm', { minReplicas: 1, maxReplicas: 8, scaler: 'HPA', metrics: [{ type: 'CPU', targetAverageUtilization: 70 }] },
    { replicas: 4, rollout: { steps: [{ setWeight: 25 }, { pause: {} }, { setWeight: 100 }], capacity: 'Surge', scaleDownDelaySeconds: 0 } });
  const v1md = spec();
  await client.create(Resources.ModelDeployment, v1md);
  const v1 = (await waitMd('serving', ns, (m) => cond(m, 'Ready')?.status === 'True' && m.status?.readyReplicas === 4)).status!.stableRevision!.hash;
  t.truthy(await client.get(Resources.HorizontalPodAutoscaler, ns, 'm'), 'without KEDA asked for, an HPA scales the object');
  const v2md = spec();
  withVersion('2', 'https://models.example.com/chat/v2/')(v2md);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: { model: v2md.spec.model } });
  const v2 = (await waitMd('canary at its gate', ns, (m) => m.status?.rollout?.pauseReason === 'ManualGate')).status!.canaryRevision!.hash;
  const replicasOf = async () => [(await deployment(ns, v1))?.spec.replicas, (await deployment(ns, v2))?.spec.replicas];
  // ReplicaRatio under Surge: stable keeps every replica and the canary is sized so that its share of
  // all pods is about 25 %, ceil(R × 25 / 75).
  t.deepEqual(await replicasOf(), [4, 2], '25 % beside 4');
  // The autoscaler doubles the model, then shrinks it, during the canary.
  for (const [total, stable, canary] of [[8, 8, 3], [2, 2, 1]] as const) {
    await scale(ns, total);
    await waitFor(`${total} replicas split ${stable}+${canary}`, async () => {
      const [s, c] = await replicasOf();
      return s === stable && c === canary ? true : undefined;
    }, 30_000, 250);
    const m = await get(ns);
    t.is(m.status?.replicas, total, '/scale reports the object\'s replicas, not the pods of both revisions (which would feed the autoscaler a surge)');
  }
  await scale(ns, 3);
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'modelship.io/promote': v2 } } });
  await waitMd('promoted', ns, (m) => m.status?.stableRevision?.hash === v2 && !m.status.canaryRevision);
  await waitFor('v2 alone, at the size the autoscaler last asked for', async () => {
    const [s, c] = await replicasOf();
    return s === undefined && c === 3 ? true : undefined;
  }, 30_000, 250);
});

test('a steady LLM behind InferencePools with a ScaledObject, at zero and up: a reconcile with nothing to do writes nothing', async (t) => {
  const ns = await namespaces.create('llm-noop');
  await client.create(Resources.ModelDeployment, llm(ns, 'vllm', { minReplicas: 0, maxReplicas: 3, prometheus, metrics: [{ type: 'RequestsWaiting', targetAverageValue: 4 }, wake] },
    { traffic: { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] } } }));
  await waitMd('serving through its pool', ns, (m) => cond(m, 'Ready')?.status === 'True' && !!m.status?.stableRevision);
  t.truthy(await client.get(Resources.InferencePool, ns, 'm-stable'));
  t.truthy(await client.get(Resources.ScaledObject, ns, 'm'));
  for (const replicas of [1, 0]) {
    await scale(ns, replicas);
    await waitMd(`settled at ${replicas}`, ns, (m) => m.status?.replicas === replicas && cond(m, 'Ready')?.status === 'True' && (replicas > 0 || cond(m, 'Ready')?.reason === 'ScaledToZero'));
    await new Promise((r) => setTimeout(r, 3_000));
    // Force a reconcile of the steady object: an annotation change enqueues it.
    const since = new Date();
    await client.mergePatch(Resources.ModelDeployment, ns, 'm', { metadata: { annotations: { 'example.com/touch': String(replicas) } } });
    await new Promise((r) => setTimeout(r, 3_000));
    const writes = await writesSince(since, userAgentPrefix, ns);
    t.deepEqual(writes.map((w) => `${w.verb} ${w.objectRef?.resource}/${w.objectRef?.name}`), [], `at ${replicas}: the pools, the route and the ScaledObject as the apiserver keeps them are what the operator wants`);
  }
});
