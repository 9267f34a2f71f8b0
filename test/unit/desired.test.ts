import test from 'ava';
import { desiredDeployment, progressDeadlineSeconds } from '../../operator/modeldeployment/desired/deployment.js';
import { desiredHpa } from '../../operator/modeldeployment/desired/hpa.js';
import { desiredService } from '../../operator/modeldeployment/desired/service.js';
import { resolveRuntime, type ResolvedRuntime } from '../../operator/modeldeployment/resolve.js';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { modelDeployment, withGpus, withSpec } from '../support/builders.js';

const md = (...opts: Parameters<typeof modelDeployment> extends [string, string, ...infer O] ? O : never): ModelDeployment => {
  const m = modelDeployment('fraud', 'risk', ...opts);
  m.metadata!.uid = 'uid-1';
  return m;
};
const runtimeOf = (m: ModelDeployment): ResolvedRuntime => {
  const r = resolveRuntime(m.spec, m.metadata!.name!);
  if (!r.ok) throw new Error(r.problems.join());
  return r.runtime;
};
const deployment = (m: ModelDeployment) => desiredDeployment({ md: m, hash: 'abc123', runtime: runtimeOf(m), replicas: 2, fetcherImage: 'op:1' }) as any;

test('the Deployment is named per revision, owned, labelled, and selects only its revision', (t) => {
  const d = deployment(md());
  t.is(d.metadata.name, 'fraud-abc123');
  t.is(d.metadata.namespace, 'risk');
  t.like(d.metadata.labels, { 'app.kubernetes.io/managed-by': 'modelship', 'app.kubernetes.io/instance': 'fraud', 'modelship.io/revision': 'abc123' });
  t.is(d.metadata.labels['modelship.io/role'], undefined, 'no role label: it would change, and be patched, at every promotion');
  t.like(d.metadata.ownerReferences[0], { kind: 'ModelDeployment', name: 'fraud', uid: 'uid-1', controller: true });
  t.deepEqual(d.spec.selector.matchLabels, { 'modelship.io/revision': 'abc123', 'app.kubernetes.io/managed-by': 'modelship', 'app.kubernetes.io/instance': 'fraud', 'app.kubernetes.io/name': 'model-server' });
  t.is(d.spec.template.metadata.labels['modelship.io/role'], undefined, 'the role is not on pods: promotion must not restart them');
  t.is(d.spec.replicas, 2);
  t.deepEqual(d.spec.strategy.rollingUpdate, { maxUnavailable: 0, maxSurge: '25%' });
});

test('pods meet the restricted Pod Security Standard', (t) => {
  const pod = deployment(md()).spec.template.spec;
  t.is(pod.automountServiceAccountToken, false);
  t.like(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
  for (const c of [...pod.initContainers, ...pod.containers]) {
    t.like(c.securityContext, { allowPrivilegeEscalation: false, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
  }
  t.is(pod.containers[0].securityContext.readOnlyRootFilesystem, true, 'MLServer runs read-only');
  t.is(pod.hostNetwork, undefined);
});

test('https and s3 models are fetched by the operator image into an emptyDir; credentials go to the fetcher only', (t) => {
  const m = md();
  m.spec.model = { uri: 's3://bucket/fraud/v7/', version: '7', format: 'sklearn', digest: `sha256:${'a'.repeat(64)}`, credentialsSecret: 's3-creds' };
  const pod = deployment(m).spec.template.spec;
  const [fetcher] = pod.initContainers;
  t.is(fetcher.image, 'op:1');
  t.deepEqual(fetcher.args, ['fetch', '--uri', 's3://bucket/fraud/v7/', '--dest', '/mnt/models', '--digest', `sha256:${'a'.repeat(64)}`]);
  t.deepEqual(fetcher.envFrom, [{ secretRef: { name: 's3-creds' } }]);
  t.is(pod.containers[0].envFrom, undefined, 'the server never sees the storage credentials');
  t.deepEqual(pod.volumes.find((v: any) => v.name === 'model'), { name: 'model', emptyDir: {} });
  t.like(pod.containers[0].volumeMounts.find((v: any) => v.name === 'model'), { mountPath: '/mnt/models', readOnly: true });
});

test('an oci model is an image volume pinned by digest; a pvc model is mounted in place', (t) => {
  const oci = md();
  oci.spec.model = { uri: 'oci://registry.example/models/iris:7', version: '7', format: 'sklearn', digest: `sha256:${'b'.repeat(64)}` };
  const ociPod = deployment(oci).spec.template.spec;
  t.deepEqual(ociPod.volumes[0], { name: 'model', image: { reference: `registry.example/models/iris@sha256:${'b'.repeat(64)}`, pullPolicy: 'IfNotPresent' } });
  t.is(ociPod.initContainers, undefined);

  const pvc = md();
  pvc.spec.model = { uri: 'pvc://model-store/iris/v7', version: '7', format: 'sklearn' };
  const pvcPod = deployment(pvc).spec.template.spec;
  t.deepEqual(pvcPod.volumes[0], { name: 'model', persistentVolumeClaim: { claimName: 'model-store', readOnly: true } });
  t.like(pvcPod.containers[0].volumeMounts[0], { name: 'model', subPath: 'iris/v7', readOnly: true });
  t.is(pvcPod.initContainers, undefined, 'nothing to fetch and no digest to check');
});

test('a GPU model requests GPUs and tolerates the GPU taint; scheduling fields pass through', (t) => {
  const m = md(withGpus(2), withSpec({ scheduling: { nodeSelector: { pool: 'l4' }, priorityClassName: 'high' } }));
  const pod = deployment(m).spec.template.spec;
  t.is(pod.containers[0].resources.limits['nvidia.com/gpu'], 2);
  t.deepEqual(pod.tolerations, [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  t.deepEqual(pod.nodeSelector, { pool: 'l4' });
  t.is(pod.priorityClassName, 'high');
  t.truthy(pod.volumes.find((v: any) => v.name === 'dshm'), 'vLLM gets shared memory');
});

test('probes are sized by the startup timeout; the progress deadline follows it unless set', (t) => {
  const m = md(withSpec({ runtime: { startupTimeoutSeconds: 1800 } }));
  const server = deployment(m).spec.template.spec.containers[0];
  t.is(server.startupProbe.failureThreshold, 900);
  t.is(server.startupProbe.periodSeconds, 2);
  t.is(server.readinessProbe.httpGet.path, '/v2/health/ready');
  t.is(progressDeadlineSeconds(m, runtimeOf(m)), 1920);
  const set = md(withSpec({ rollout: { progressDeadlineSeconds: 300 } }));
  t.is(progressDeadlineSeconds(set, runtimeOf(set)), 300);
});

test('the Service selects every revision of the instance; the HPA targets the ModelDeployment', (t) => {
  const svc = desiredService(md(withSpec({ traffic: { port: 8000 } }))) as any;
  t.deepEqual(svc.spec.selector, { 'app.kubernetes.io/instance': 'fraud', 'app.kubernetes.io/managed-by': 'modelship' });
  t.deepEqual(svc.spec.ports, [{ name: 'http', port: 8000, targetPort: 'http', protocol: 'TCP' }]);
  t.is(desiredHpa(md()), undefined);
  const hpa = desiredHpa(md(withSpec({ autoscaling: { minReplicas: 2, maxReplicas: 8, metrics: [
    { type: 'CPU', targetAverageUtilization: 70 },
    { type: 'Prometheus', query: 'sum(rate(x[1m]))', targetAverageValue: '50' },
  ] } }))) as any;
  t.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'modelship.io/v1alpha1', kind: 'ModelDeployment', name: 'fraud' });
  t.is(hpa.spec.minReplicas, 2);
  t.like(hpa.spec.metrics[0], { type: 'Resource', resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } } });
  t.like(hpa.spec.metrics[1], { type: 'External', external: { target: { type: 'AverageValue', averageValue: '50' } } });
});

test('a private model store: the fetcher alone trusts the CA of model.caConfigMap', (t) => {
  const pod = deployment(md(withSpec({ model: { uri: 'https://models.internal/iris/model.joblib', version: '1', format: 'sklearn', caConfigMap: 'store-ca' } }))).spec.template.spec;
  const fetcher = pod.initContainers[0];
  t.deepEqual(fetcher.env.find((e: { name: string }) => e.name === 'NODE_EXTRA_CA_CERTS'), { name: 'NODE_EXTRA_CA_CERTS', value: '/etc/modelship/model-ca/ca.crt' });
  t.deepEqual(fetcher.volumeMounts.find((m: { name: string }) => m.name === 'model-ca'), { name: 'model-ca', mountPath: '/etc/modelship/model-ca', readOnly: true });
  t.deepEqual(pod.volumes.find((v: { name: string }) => v.name === 'model-ca'), { name: 'model-ca', configMap: { name: 'store-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } });
  t.false(pod.containers[0].volumeMounts.some((m: { name: string }) => m.name === 'model-ca'), 'the server never sees it');
  const plain = deployment(md()).spec.template.spec;
  t.false(plain.volumes.some((v: { name: string }) => v.name === 'model-ca'));
  t.false(plain.initContainers[0].env.some((e: { name: string }) => e.name === 'NODE_EXTRA_CA_CERTS'));
});

test('a stopping model pod drains: the kubelet sleeps before SIGTERM, well within the grace period', (t) => {
  const pod = deployment(md()).spec.template.spec;
  t.deepEqual(pod.containers[0].lifecycle, { preStop: { sleep: { seconds: 5 } } });
  t.true(pod.terminationGracePeriodSeconds > 5);
});

test('MLServer writes its metrics, environments and caches under /tmp, so its root stays read-only; answers name the version', (t) => {
  const server = deployment(md()).spec.template.spec.containers[0];
  const env = Object.fromEntries(server.env.map((e: { name: string; value: string }) => [e.name, e.value]));
  t.true(server.securityContext.readOnlyRootFilesystem);
  for (const name of ['MLSERVER_METRICS_DIR', 'MLSERVER_ENVIRONMENTS_DIR', 'HF_HOME', 'NUMBA_CACHE_DIR']) t.regex(env[name], /^\/tmp\//, name);
  t.true(server.volumeMounts.some((m: { mountPath: string }) => m.mountPath === '/tmp'));
  t.is(env.MLSERVER_MODEL_VERSION, md().spec.model.version);
});
