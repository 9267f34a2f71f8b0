// Every bad ModelDeployment gets a clear answer: the apiserver rejects it with a readable message (the
// schema or a CEL rule), or the operator reports Ready=False/InvalidSpec with a Warning Event. The
// operator stays up throughout, and a spec turned bad leaves what already serves untouched.
import test from 'ava';
import type { ModelDeployment } from '../../operator/api/generated.js';
import { ApiError, type KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { createNamespace, deleteNamespace, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const operator = new OperatorProcess({ name: 'bad-input' });
let ns = '';

test.before(async () => {
  await installCrd();
  await operator.start();
  ns = await createNamespace('bad-input');
});

test.after.always(async () => {
  await operator.stop();
  await deleteNamespace(ns);
});

type Mutate = (spec: any, md: ModelDeployment) => void;

interface Case {
  title: string;
  mutate: Mutate;
  /** Rejected by the apiserver with a message matching this. */
  rejected?: RegExp;
  /** Accepted, then reported as InvalidSpec with a message matching this. */
  invalidSpec?: RegExp;
}

const cases: Case[] = [
  { title: 'no model', mutate: (s) => { delete s.model; }, rejected: /spec\.model: Required value/ },
  { title: 'no model version', mutate: (s) => { delete s.model.version; }, rejected: /spec\.model\.version: Required value/ },
  // It becomes a label value on every pod, where `+` is not allowed: a semver build suffix must go.
  { title: 'model version with +', mutate: (s) => { s.model.version = '1.2.0+build.7'; }, rejected: /spec\.model\.version.*should match/ },
  { title: 'unknown URI scheme', mutate: (s) => { s.model.uri = 'ftp://models/x'; }, rejected: /spec\.model\.uri.*should match/ },
  { title: 'URI with spaces', mutate: (s) => { s.model.uri = 's3://bucket/a b'; }, rejected: /spec\.model\.uri/ },
  { title: 'overlong URI', mutate: (s) => { s.model.uri = `https://x.example/${'a'.repeat(2100)}`; }, rejected: /spec\.model\.uri: Too long/ },
  { title: 'malformed digest', mutate: (s) => { s.model.digest = 'md5:abc'; }, rejected: /spec\.model\.digest.*should match/ },
  { title: 'unknown format', mutate: (s) => { s.model.format = 'pickle'; }, rejected: /spec\.model\.format: Unsupported value/ },
  { title: 'unknown preset', mutate: (s) => { s.runtime = { preset: 'flask' }; }, rejected: /spec\.runtime\.preset: Unsupported value/ },
  { title: 'custom preset without image', mutate: (s) => { s.runtime = { preset: 'custom' }; }, rejected: /custom preset needs runtime\.image/ },
  { title: 'port out of range', mutate: (s) => { s.runtime = { port: 70000 }; }, rejected: /spec\.runtime\.port/ },
  { title: 'negative replicas', mutate: (s) => { s.replicas = -1; }, rejected: /spec\.replicas/ },
  { title: 'minReplicas above maxReplicas', mutate: (s) => { s.autoscaling = { minReplicas: 5, maxReplicas: 2 }; }, rejected: /minReplicas must not exceed maxReplicas/ },
  { title: 'Prometheus autoscaling without a query', mutate: (s) => { s.autoscaling = { maxReplicas: 3, metrics: [{ type: 'Prometheus', targetAverageValue: '5' }] }; }, rejected: /Prometheus takes query, and only it does/ },
  { title: 'scale to zero with nothing to wake the model', mutate: (s) => { s.autoscaling = { minReplicas: 0, maxReplicas: 2, metrics: [{ type: 'RequestsWaiting', targetAverageValue: 4 }] }; }, rejected: /minReplicas 0 needs a Prometheus metric with activationValue/ },
  { title: 'scale to zero with an HPA', mutate: (s) => { s.autoscaling = { minReplicas: 0, maxReplicas: 2, scaler: 'HPA', metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1, activationValue: 0 }] }; }, rejected: /scale to zero needs KEDA/ },
  { title: 'KV-cache use above 100 %', mutate: (s) => { s.autoscaling = { maxReplicas: 2, metrics: [{ type: 'KVCacheUsage', targetAverageUtilization: 150 }] }; }, rejected: /KV-cache use is at most 100 percent/ },
  { title: 'time to first token without a target', mutate: (s) => { s.autoscaling = { maxReplicas: 2, metrics: [{ type: 'TimeToFirstToken', targetAverageValue: 1 }] }; }, rejected: /TimeToFirstToken takes targetValue/ },
  { title: 'an activation value on CPU', mutate: (s) => { s.autoscaling = { maxReplicas: 2, metrics: [{ type: 'CPU', targetAverageUtilization: 50, activationValue: 1 }] }; }, rejected: /activationValue applies to Prometheus and LLM metrics/ },
  { title: 'an InferencePool router with no Gateway to attach to', mutate: (s) => { s.traffic = { router: 'InferencePool' }; }, rejected: /need gatewayAPI\.parentRefs/ },
  { title: 'inferencePool settings under another router', mutate: (s) => { s.traffic = { router: 'ReplicaRatio', inferencePool: { endpointPicker: { name: 'epp', port: 9002 } } }; }, rejected: /inferencePool applies to traffic.router InferencePool/ },
  { title: 'an endpoint picker name that is no Service name', mutate: (s) => { s.traffic = { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] }, inferencePool: { endpointPicker: { name: 'EPP_1', port: 9002 } } }; }, rejected: /endpointPicker\.name.*should match/ },
  { title: 'an LLM signal the runtime does not export', mutate: (s) => { s.model.format = 'huggingface'; s.runtime = { preset: 'tgi' }; s.autoscaling = { maxReplicas: 2, scaler: 'HPA', metrics: [{ type: 'KVCacheUsage', targetAverageUtilization: 80 }] }; }, invalidSpec: /autoscaling\.metrics\[0\]: autoscaling metric KVCacheUsage: the tgi runtime exports no such series \(it offers RequestsWaiting\)/ },
  // Whether the InferencePool CRDs are installed depends on what ran before on this cluster; this
  // problem is reported either way (test/unit/inference-pool.test.ts covers missing CRDs).
  { title: 'an endpoint picker name too long for the pools\' Services', mutate: (s) => { s.traffic = { router: 'InferencePool', gatewayAPI: { parentRefs: [{ name: 'gw' }] }, inferencePool: { endpointPicker: { name: `{pool}-${'x'.repeat(55)}`, port: 9002 } } }; }, invalidSpec: /traffic\.inferencePool\.endpointPicker\.name ".*" gives ".*" for the stable pool, which is not a Service name/ },
  { title: 'weights that go down', mutate: (s) => { s.rollout = { steps: [{ setWeight: 50 }, { setWeight: 10 }] }; }, rejected: /must not decrease/ },
  { title: 'weight above 100', mutate: (s) => { s.rollout = { steps: [{ setWeight: 150 }] }; }, rejected: /setWeight.*100/ },
  { title: 'a step with two actions', mutate: (s) => { s.rollout = { steps: [{ setWeight: 10, pause: {} }] }; }, rejected: /exactly one of setWeight, setMirror and pause/ },
  { title: 'bad pause duration', mutate: (s) => { s.rollout = { steps: [{ pause: { duration: '5 minutes' } }] }; }, rejected: /duration.*should match/ },
  { title: 'a check with two providers', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', podHealth: {}, webhook: { url: 'http://x.ml.svc' } }] } }; }, rejected: /exactly one provider/ },
  { title: 'a check with no provider', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c' }] } }; }, rejected: /exactly one provider/ },
  { title: 'duplicate check names', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', podHealth: {} }, { name: 'c', podHealth: {} }] } }; }, rejected: /Duplicate value/ },
  { title: 'prometheus check without bounds', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', prometheus: { address: 'http://p.monitoring.svc:9090', query: 'up' } }] } }; }, rejected: /needs pass bounds or compareToStable/ },
  { title: 'pass.min above pass.max', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', prometheus: { address: 'http://p.monitoring.svc:9090', query: 'up' }, pass: { min: 2, max: 1 } }] } }; }, rejected: /pass\.min must not exceed pass\.max/ },
  { title: 'compareToStable in monitoring', mutate: (s) => { s.monitoring = { checks: [{ name: 'lat', prometheus: { address: 'http://p.monitoring.svc', query: 'q' }, compareToStable: { maxRatio: 1.2 } }] }; }, rejected: /monitoring judges the stable revision alone/ },
  { title: 'monitoring without checks', mutate: (s) => { s.monitoring = { checks: [] }; }, rejected: /checks: Invalid value|should have at least 1 items|must have at least 1 items/ },
  { title: 'monitoring onFailure outside the enum', mutate: (s) => { s.monitoring = { onFailure: 'Retrain' as 'Alert', checks: [{ name: 'p', podHealth: {} }] }; }, rejected: /Unsupported value: "Retrain"/ },
  { title: 'drift check in rollout analysis', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'd', drift: { histogram: 'h', prometheus: { address: 'http://p.monitoring.svc' }, maxPSI: 0.2 } }] } }; }, rejected: /drift checks belong in spec\.monitoring/ },
  { title: 'mirroring without a gateway', mutate: (s) => { s.rollout = { steps: [{ setMirror: 100 }] }; }, rejected: /setMirror steps need traffic\.router GatewayAPI/ },
  { title: 'GatewayAPI router without parentRefs', mutate: (s) => { s.traffic = { router: 'GatewayAPI' }; }, rejected: /routers need gatewayAPI\.parentRefs/ },
  { title: 'credentials for an OCI model', mutate: (s) => { s.model.uri = 'oci://registry.example/models/iris:1'; s.model.credentialsSecret = 'creds'; }, rejected: /imagePullSecrets/ },
  { title: 'env var with both value and valueFrom', mutate: (s) => { s.runtime = { env: [{ name: 'A', value: 'x', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] }; }, rejected: /value or valueFrom, not both/ },
  { title: 'malformed resource quantity', mutate: (s) => { s.resources = { requests: { cpu: 'lots' } }; }, rejected: /spec\.resources\.requests/ },
  { title: 'name that cannot name a Service', mutate: (_s, md) => { md.metadata!.name = '9lives'; }, rejected: /DNS-1035 label/ },
  { title: 'too many args', mutate: (s) => { s.runtime = { args: Array.from({ length: 70 }, () => 'x') }; }, rejected: /Too many/ },
  // Tenancy: what every cluster refuses.
  { title: 'an analysis interval of 0s', mutate: (s) => { s.rollout = { analysis: { interval: '0s', checks: [{ name: 'c', podHealth: {} }] } }; }, rejected: /interval: Invalid value.*must be at least 5s/ },
  { title: 'a monitoring interval under 5s', mutate: (s) => { s.monitoring = { interval: '4900ms', checks: [{ name: 'c', podHealth: {} }] }; }, rejected: /must be at least 5s/ },
  { title: 'a webhook with both url and provider', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', webhook: { url: 'http://x.ml.svc', provider: 'evals' } }] } }; }, rejected: /exactly one of url and provider/ },
  { title: 'a Prometheus with neither address nor provider', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'c', prometheus: { query: 'up' }, pass: { max: 1 } }] } }; }, rejected: /exactly one of address and provider/ },
  { title: 'an oci:// digest that differs from model.digest', mutate: (s) => { s.model.uri = `oci://registry.example/iris@sha256:${'a'.repeat(64)}`; s.model.digest = `sha256:${'b'.repeat(64)}`; }, rejected: /pins a digest that differs from digest/ },
  { title: 'a size limit that is not whole Mi, Gi or Ti', mutate: (s) => { s.model.sizeLimit = '1.5Gi'; }, rejected: /sizeLimit.*should match/ },
  // Tenancy: what this cluster's admin does not allow (the operator's outbound policy and Gateway rules).
  { title: 'a webhook at a link-local address', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'meta', webhook: { url: 'http://169.254.169.254/latest/meta-data/iam?token=SECRET' } }] } }; }, invalidSpec: /rollout\.analysis\.checks\[meta\]\.webhook\.url \(http:\/\/169\.254\.169\.254\): address 169\.254\.169\.254 is not in the operator's outbound allow list/ },
  { title: 'a Prometheus outside the cluster', mutate: (s) => { s.monitoring = { checks: [{ name: 'p', prometheus: { address: 'https://prometheus.example.com', query: 'up' }, pass: { max: 1 } }] }; }, invalidSpec: /monitoring\.checks\[p\]\.prometheus\.address .*host prometheus\.example\.com is not in the operator's outbound allow list/ },
  { title: 'KEDA pointed at a Prometheus outside the cluster', mutate: (s) => { s.autoscaling = { maxReplicas: 2, scaler: 'HPA', prometheus: { address: 'http://10.0.0.5:9090' }, metrics: [{ type: 'Prometheus', query: 'q', targetAverageValue: 1 }] }; }, invalidSpec: /autoscaling\.prometheus\.address \(http:\/\/10\.0\.0\.5:9090\): address 10\.0\.0\.5 is not in the operator's outbound allow list/ },
  { title: 'a provider that is not registered', mutate: (s) => { s.monitoring = { checks: [{ name: 'p', prometheus: { provider: 'shared' }, pass: { max: 1 } }] }; }, invalidSpec: /no prometheus provider named shared is registered/ },
  { title: "a Gateway in another tenant's namespace", mutate: (s) => { s.traffic = { router: 'GatewayAPI', gatewayAPI: { parentRefs: [{ name: 'public', namespace: 'infra' }] } }; }, invalidSpec: /Gateway infra\/public is in another namespace/ },
  { title: 'a response schema that refers to another schema', mutate: (s) => { s.rollout = { analysis: { checks: [{ name: 'h', http: { path: '/p', responseSchema: { $ref: 'https://schemas.example/other.json' } } }] } }; }, invalidSpec: /responseSchema: .*\$ref/ },
  // What only the operator can know:
  { title: 'a preset that cannot load the format', mutate: (s) => { s.model.format = 'onnx'; s.runtime = { preset: 'mlserver' }; }, invalidSpec: /mlserver cannot serve onnx models; use triton/ },
  { title: 'neither format nor preset', mutate: (s) => { delete s.model.format; }, invalidSpec: /set model\.format or runtime\.preset/ },
  { title: 'an invalid bucket name that passed the pattern', mutate: (s) => { s.model.uri = 's3://B!/model'; }, invalidSpec: /not a valid bucket name/ },
  { title: 'an hf URI without a repository', mutate: (s) => { s.model.uri = 'hf://just-an-org'; }, invalidSpec: /expected hf:\/\/organisation\/repository/ },
  { title: 'a PVC path escaping the claim', mutate: (s) => { s.model.uri = 'pvc://models/../../etc'; }, invalidSpec: /must not contain "\.\."/ },
  { title: 'GPU requests unequal to limits', mutate: (s) => { s.resources = { requests: { 'nvidia.com/gpu': 1 }, limits: { 'nvidia.com/gpu': 2 } }; }, invalidSpec: /requests and limits must be equal/ },
  { title: 'a request above its limit', mutate: (s) => { s.resources = { requests: { memory: '4Gi' }, limits: { memory: '1Gi' } }; }, invalidSpec: /memory request 4Gi exceeds its limit 1Gi/ },
  { title: 'an affinity the apiserver refuses', mutate: (s) => { s.scheduling = { affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'zone', operator: 'Sideways' }] }] } } } }; }, invalidSpec: /Deployment .*(Unsupported value|not a valid selector operator|operator)/ },
];

const condition = (md: ModelDeployment, type: string) => md.status?.conditions?.find((c) => c.type === type);

for (const [i, c] of cases.entries()) {
  test(`bad input: ${c.title}`, async (t) => {
    const md = modelDeployment(`bad-${i}`, ns);
    c.mutate(md.spec, md);
    if (c.rejected) {
      const err = await t.throwsAsync(client.create(Resources.ModelDeployment, md));
      t.true(err instanceof ApiError);
      t.is((err as ApiError).code, 422, err?.message);
      t.regex(err.message, c.rejected);
      return;
    }
    await client.create(Resources.ModelDeployment, md);
    const reported = await waitFor(`${md.metadata!.name} InvalidSpec`, async () => {
      const live = await client.get<ModelDeployment & KubeObject>(Resources.ModelDeployment, ns, md.metadata!.name!);
      const ready = condition(live, 'Ready');
      return ready?.reason === 'InvalidSpec' && ready.observedGeneration === live.metadata?.generation ? live : undefined;
    });
    t.is(condition(reported, 'Ready')?.status, 'False');
    t.regex(condition(reported, 'Ready')?.message ?? '', c.invalidSpec!);
    // The Event is recorded right after the status write.
    const event = await waitFor('a Warning Event', async () => {
      const events = await testCluster().core.listNamespacedEvent({ namespace: ns, fieldSelector: `involvedObject.name=${md.metadata!.name}` });
      return events.items.find((e) => e.type === 'Warning' && e.reason === 'InvalidSpec');
    }, 10_000);
    t.regex(event.message ?? '', c.invalidSpec!);
    // A URL's path and query can carry a token: only its origin is repeated.
    t.false(/SECRET/.test(JSON.stringify(reported.status) + (event.message ?? '')), 'no path or query of a URL in status or Events');
    t.is(await operator.metric('modelship_invalid_spec_total', { namespace: ns, name: md.metadata!.name! }), 1);
  });
}

test.serial('a spec turned bad leaves the serving revision untouched, and fixing it recovers', async (t) => {
  t.true(cases.length >= 25);
  const md = modelDeployment('serving', ns);
  await client.create(Resources.ModelDeployment, md);
  const ready = await waitFor('serving Ready', async () => {
    const live = await client.get<ModelDeployment & KubeObject>(Resources.ModelDeployment, ns, 'serving');
    return condition(live, 'Ready')?.status === 'True' ? live : undefined;
  });
  const hash = ready.status!.stableRevision!.hash;
  const before = await client.get<KubeObject>(Resources.Deployment, ns, `serving-${hash}`);
  await client.mergePatch(Resources.ModelDeployment, ns, 'serving', { spec: { model: { format: 'onnx' }, runtime: { preset: 'mlserver' } } });
  await waitFor('InvalidSpec', async () => {
    const live = await client.get<ModelDeployment & KubeObject>(Resources.ModelDeployment, ns, 'serving');
    return condition(live, 'Ready')?.reason === 'InvalidSpec';
  });
  const after = await client.get<KubeObject>(Resources.Deployment, ns, `serving-${hash}`);
  t.is(after.metadata?.resourceVersion, before.metadata?.resourceVersion, 'the serving Deployment was not touched');
  const deployments = await client.list<KubeObject>(Resources.Deployment, { namespace: ns, labelSelector: 'app.kubernetes.io/instance=serving' });
  t.is(deployments.items.length, 1, 'no new revision was started');
  t.true(operator.running, 'the operator is still up');

  await client.mergePatch(Resources.ModelDeployment, ns, 'serving', { spec: { model: { format: 'sklearn' }, runtime: null } });
  await waitFor('Ready again', async () => {
    const live = await client.get<ModelDeployment & KubeObject>(Resources.ModelDeployment, ns, 'serving');
    return condition(live, 'Ready')?.status === 'True' && condition(live, 'Ready')?.observedGeneration === live.metadata?.generation;
  });
});

test.after('the operator survived every bad input', (t) => {
  t.true(operator.running);
});
