// A ModelDeployment serves one revision on the real control plane, with the operator as its own process.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import yaml from 'js-yaml';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { isNotFound, userAgentPrefix } from '../../operator/runtime/kube.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { writesSince } from '../support/audit.js';
import { modelDeployment, withGpus, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const operator = new OperatorProcess({ name: 'serving' });
const namespaces = new TestNamespaces();
const run = promisify(execFile);

test.before(async () => {
  await installCrd();
  await operator.start();
});

test.after.always(async () => {
  await operator.stop();
  await namespaces.deleteAll();
});

const namespace = (prefix: string) => namespaces.create(prefix);

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };

const getMd = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);
const condition = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);

async function waitReady(ns: string, name: string, timeoutMs = 30_000): Promise<Md> {
  return waitFor(`${ns}/${name} Ready`, async () => {
    const md = await getMd(ns, name);
    const ready = condition(md, 'Ready');
    return ready?.status === 'True' && ready.observedGeneration === md.metadata?.generation && md.status?.observedGeneration === md.metadata?.generation ? md : undefined;
  }, timeoutMs);
}

/** Waits until the object's status has not changed for 3 s: the world has stopped moving. */
async function waitSettled(ns: string, name: string): Promise<void> {
  let last = '';
  let since = Date.now();
  await waitFor(`${ns}/${name} settled`, async () => {
    const rv = (await getMd(ns, name)).metadata?.resourceVersion ?? '';
    if (rv !== last) { last = rv; since = Date.now(); }
    return Date.now() - since >= 3_000;
  }, 30_000, 250);
}

function deploymentsOf(ns: string, name: string) {
  return client.list<Obj>(Resources.Deployment, { namespace: ns, labelSelector: `app.kubernetes.io/instance=${name}` });
}

test('the quickstart serves: Deployment, Service, ready pods, Ready=True at the current generation, kubectl wait returns', async (t) => {
  const ns = await namespace('quickstart');
  const quickstart = yaml.load(readFileSync(new URL('../../examples/quickstart.yaml', import.meta.url), 'utf8')) as Md;
  quickstart.metadata!.namespace = ns;
  await client.create(Resources.ModelDeployment, quickstart);
  const waited = await run(`${process.cwd()}/.bin/kubectl`, ['wait', '--for=condition=Ready', `md/${quickstart.metadata!.name}`, '-n', ns, '--timeout=60s'], {
    env: { ...process.env, KUBECONFIG: testCluster().state.kubeconfig },
  });
  t.regex(waited.stdout, /condition met/);
  const md = await waitReady(ns, 'iris');
  const hash = md.status?.stableRevision?.hash;
  t.truthy(hash);
  t.is(md.status?.phase, 'Healthy');
  t.is(md.status?.readyReplicas, 2);
  t.is(md.status?.selector, 'app.kubernetes.io/instance=iris');
  t.is(md.status?.url, `http://iris.${ns}.svc:80`);
  t.is(md.status?.stableRevision?.modelVersion, '1');
  t.is(md.status?.stableRevision?.image, 'docker.io/seldonio/mlserver:1.7.1');
  t.is(md.status?.history?.length, 1);
  t.is(md.status?.history?.[0]?.outcome, 'Promoted');

  const dep = await client.get<Obj>(Resources.Deployment, ns, `iris-${hash}`);
  t.is(dep.metadata?.labels?.['app.kubernetes.io/managed-by'], 'modelship');
  t.is(dep.metadata?.labels?.['modelship.io/revision'], hash);
  t.is(dep.metadata?.labels?.['modelship.io/role'], undefined);
  t.is(dep.metadata?.ownerReferences?.[0]?.kind, 'ModelDeployment');
  t.is(dep.metadata?.ownerReferences?.[0]?.uid, md.metadata?.uid);
  const pod = dep.spec.template.spec;
  t.is(pod.automountServiceAccountToken, false);
  t.is(pod.securityContext.runAsNonRoot, true);
  t.is(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  const [fetcher] = pod.initContainers;
  t.is(fetcher.image, 'example.invalid/modelship:test');
  t.deepEqual(fetcher.args.slice(0, 5), ['fetch', '--uri', 'https://models.example.com/iris/v1/model.joblib', '--dest', '/mnt/models']);
  const [server] = pod.containers;
  t.is(server.image, 'docker.io/seldonio/mlserver:1.7.1');
  t.is(server.readinessProbe.httpGet.path, '/v2/health/ready');
  t.is(server.startupProbe.failureThreshold, 150, '300 s startup timeout / 2 s period');
  t.deepEqual(server.securityContext.capabilities.drop, ['ALL']);
  t.is(server.securityContext.allowPrivilegeEscalation, false);
  t.is(server.resources.requests.cpu, '500m');

  const svc = await client.get<Obj>(Resources.Service, ns, 'iris');
  t.deepEqual(svc.spec.selector, { 'app.kubernetes.io/instance': 'iris', 'app.kubernetes.io/managed-by': 'modelship', 'modelship.io/revision': hash });
  // Nothing calls one revision by itself here (ReplicaRatio, no http or webhook checks): no `iris-stable`.
  t.false(await client.get<Obj>(Resources.Service, ns, 'iris-stable').then(() => true, (err: unknown) => { if (isNotFound(err)) return false; throw err; }));
  t.is(svc.spec.ports[0].port, 80);
  t.is(svc.spec.ports[0].targetPort, 'http');
  const pods = await testCluster().core.listNamespacedPod({ namespace: ns, labelSelector: `modelship.io/revision=${hash}` });
  t.is(pods.items.length, 2);
  t.true(pods.items.every((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')));

  t.is(await operator.metric('modelship_modeldeployment_ready', { namespace: ns, name: 'iris' }), 1);
  t.is(await operator.metric('modelship_modeldeployment_phase', { namespace: ns, name: 'iris', phase: 'Healthy' }), 1);
  t.is(await operator.metric('modelship_modeldeployment_phase', { namespace: ns, name: 'iris', phase: 'Pending' }), 0);
  const events = await testCluster().core.listNamespacedEvent({ namespace: ns, fieldSelector: 'involvedObject.name=iris' });
  t.true(events.items.some((e) => e.reason === 'Promoted' && e.type === 'Normal'));
});

test('autoscaling creates an HPA that scales the ModelDeployment through /scale, and its replicas are respected', async (t) => {
  const ns = await namespace('hpa');
  // scaler HPA: other tests may have installed KEDA's CRDs on this cluster, and Auto would pick KEDA.
  await client.create(Resources.ModelDeployment, modelDeployment('scaled', ns, withReplicas(2),
    withSpec({ autoscaling: { minReplicas: 1, maxReplicas: 5, scaler: 'HPA', metrics: [{ type: 'CPU', targetAverageUtilization: 60 }] } })));
  await waitReady(ns, 'scaled');
  const hpa = await client.get<Obj>(Resources.HorizontalPodAutoscaler, ns, 'scaled');
  t.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'scaled' });
  t.is(hpa.spec.maxReplicas, 5);
  t.is(hpa.spec.metrics[0].resource.name, 'cpu');
  // What the HPA does: write the scale subresource. The Deployment follows; the spec is not fought over.
  await client.mergePatch(Resources.ModelDeployment, ns, 'scaled', { spec: { replicas: 4 } }, 'scale');
  await waitFor('deployment scaled to 4', async () => {
    const deps = await deploymentsOf(ns, 'scaled');
    return deps.items[0]?.spec.replicas === 4 && deps.items[0]?.status?.readyReplicas === 4;
  });
  const scale = await client.request<{ spec: { replicas: number }; status: { replicas: number; selector: string } }>(
    'GET', `/apis/modelship.io/v1alpha1/namespaces/${ns}/modeldeployments/scaled/scale`);
  t.is(scale.spec.replicas, 4);
  await waitFor('status replicas 4', async () => (await getMd(ns, 'scaled')).status?.replicas === 4);
  t.is(scale.status.selector, 'app.kubernetes.io/instance=scaled');

  // This cluster serves no external.metrics.k8s.io: Prometheus autoscaling says so instead of failing quietly.
  await client.create(Resources.ModelDeployment, modelDeployment('by-rps', ns,
    withSpec({ autoscaling: { maxReplicas: 3, metrics: [{ type: 'Prometheus', query: 'sum(rate(requests_total[1m]))', targetAverageValue: '50' }] } })));
  const byRps = await waitReady(ns, 'by-rps');
  t.like(condition(byRps, 'AutoscalingReady'), { status: 'False', reason: 'ExternalMetricsUnavailable' });
  const hpa2 = await client.get<Obj>(Resources.HorizontalPodAutoscaler, ns, 'by-rps');
  t.is(hpa2.spec.metrics[0].type, 'External');
});

test('a GPU model lands only on GPU nodes; one asking for more GPUs than a node has reports Unschedulable', async (t) => {
  const ns = await namespace('gpu');
  await client.create(Resources.ModelDeployment, modelDeployment('llm', ns, withGpus(1)));
  const md = await waitReady(ns, 'llm');
  const pods = await testCluster().core.listNamespacedPod({ namespace: ns, labelSelector: 'app.kubernetes.io/instance=llm' });
  t.true(pods.items.length > 0);
  for (const p of pods.items) t.regex(p.spec?.nodeName ?? '', /^kwok-gpu-/);
  t.is(md.status?.stableRevision?.preset, 'vllm');

  await client.create(Resources.ModelDeployment, modelDeployment('huge', ns, withGpus(8)));
  const stuck = await waitFor('Unschedulable reported', async () => {
    const m = await getMd(ns, 'huge');
    return condition(m, 'Ready')?.reason === 'Unschedulable' ? m : undefined;
  });
  t.is(condition(stuck, 'Ready')?.status, 'False');
  t.regex(condition(stuck, 'Ready')?.message ?? '', /Insufficient nvidia\.com\/gpu/);
  t.is(stuck.status?.phase, 'Pending');
});

test('deleted and edited children are repaired, others\' fields are kept, and a steady state makes no writes', async (t) => {
  const ns = await namespace('drift');
  await client.create(Resources.ModelDeployment, modelDeployment('steady', ns, withReplicas(2)));
  const md = await waitReady(ns, 'steady');
  const depName = `steady-${md.status!.stableRevision!.hash}`;

  await client.delete(Resources.Service, ns, 'steady');
  await waitFor('service recreated', async () => (await client.get<Obj>(Resources.Service, ns, 'steady')).metadata?.uid);

  await client.mergePatch(Resources.Deployment, ns, depName, {
    metadata: { annotations: { 'team.example.com/owner': 'ml-platform' } },
    spec: { replicas: 7, template: { spec: { containers: [{ name: 'server', image: 'evil.example/hijack:1' }] } } },
  });
  const repaired = await waitFor('deployment repaired', async () => {
    const d = await client.get<Obj>(Resources.Deployment, ns, depName);
    return d.spec.replicas === 2 && d.spec.template.spec.containers[0].image === 'docker.io/seldonio/mlserver:1.7.1' ? d : undefined;
  });
  t.is(repaired.metadata?.annotations?.['team.example.com/owner'], 'ml-platform', 'an annotation we do not own stays');

  await waitReady(ns, 'steady');
  await waitSettled(ns, 'steady');
  // Force reconciles of the steady object: an annotation change enqueues it, and so does a resync.
  const since = new Date();
  await client.mergePatch(Resources.ModelDeployment, ns, 'steady', { metadata: { annotations: { 'example.com/touch': '1' } } });
  await new Promise((r) => setTimeout(r, 3_000));
  const writes = await writesSince(since, userAgentPrefix, ns);
  t.deepEqual(writes.map((w) => `${w.verb} ${w.objectRef?.resource}/${w.objectRef?.name}`), [], 'a reconcile with nothing to do writes nothing');
});

test('a new model version replaces the serving revision without losing capacity and records history', async (t) => {
  const ns = await namespace('update');
  await client.create(Resources.ModelDeployment, modelDeployment('upd', ns, withReplicas(2), withSpec({ rollout: { scaleDownDelaySeconds: 2 } })));
  const first = await waitReady(ns, 'upd');
  const oldHash = first.status!.stableRevision!.hash;
  await client.mergePatch(Resources.ModelDeployment, ns, 'upd', { spec: { model: { version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' } } });
  const second = await waitFor('v2 serving', async () => {
    const m = await getMd(ns, 'upd');
    return m.status?.stableRevision?.modelVersion === '2' && condition(m, 'Ready')?.status === 'True' ? m : undefined;
  });
  t.not(second.status!.stableRevision!.hash, oldHash);
  t.deepEqual(second.status?.history?.map((h) => [h.modelVersion, h.outcome]), [['2', 'Promoted'], ['1', 'Promoted']]);
  await waitFor('old revision removed', async () => (await deploymentsOf(ns, 'upd')).items.length === 1);
  // Changing only replicas is not a new revision.
  await client.mergePatch(Resources.ModelDeployment, ns, 'upd', { spec: { replicas: 3 } });
  const third = await waitReady(ns, 'upd');
  t.is(third.status?.stableRevision?.hash, second.status?.stableRevision?.hash);
  t.is(third.status?.history?.length, 2);
});
