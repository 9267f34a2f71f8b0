// Real models on the real node: the quickstart fetched through the init container with its digest
// verified, every preset built here (hack/images) started under the operator's own security context,
// answering its readiness path and a V2 inference through its Service's ClusterIP, and an oci:// model
// mounted as an image volume.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import type { ModelDeploymentSpec, ModelSource } from '../../operator/api/generated.js';
import { testCluster, TestNamespaces, waitFor } from '../cluster/cluster.js';
import { realNodeName } from '../cluster/real-node.js';
import {
  clusterIp, createMd, customServerImage, getInNode, onRealNode, postInNode, smallResources, startServing, storedModel, trustModelStore,
  v2Request, waitReady, type Serving,
} from '../support/real-node-serving.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const namespaces = new TestNamespaces();
let serving: Serving;

test.before(async () => { serving = await startServing('e2e-serving'); });
test.after.always(async () => { await namespaces.deleteAll(); await serving?.stop(); });

async function modelPods(namespace: string, name: string) {
  return (await testCluster().core.listNamespacedPod({ namespace, labelSelector: `app.kubernetes.io/instance=${name}` })).items;
}

test.serial('the quickstart is fetched and verified by its init container, becomes Ready and answers V2 predictions through its ClusterIP', async (t) => {
  t.timeout(300_000);
  const ns = await namespaces.create('e2e-quickstart');
  await trustModelStore(ns, serving.store);
  const quickstart = yaml.load(readFileSync(join(repoRoot, 'examples/quickstart.yaml'), 'utf8')) as { metadata: { name: string }; spec: ModelDeploymentSpec };
  const model = { ...quickstart.spec.model, ...storedModel(serving.store, serving.models, 'sklearn/v1/model.joblib', quickstart.spec.model.version) };
  const applied = Date.now();
  await createMd(ns, 'iris', { ...quickstart.spec, model, resources: smallResources, scheduling: onRealNode });
  const md = await waitReady(ns, 'iris');
  const readyMs = Date.now() - applied;

  const pods = await modelPods(ns, 'iris');
  t.is(pods.length, 2);
  for (const pod of pods) {
    t.is(pod.spec?.nodeName, realNodeName);
    t.true(pod.status?.containerStatuses?.[0]?.ready);
    // The operator's own image ran `modelship fetch` in the pod, and it checked the digest.
    const log = await testCluster().core.readNamespacedPodLog({ namespace: ns, name: pod.metadata!.name!, container: 'fetch-model' });
    t.regex(log, new RegExp(`digest verified: ${serving.models.digests['sklearn/v1/model.joblib']}`));
  }
  t.true(serving.store.requests.filter((r) => r === 'sklearn/v1/model.joblib').length >= 2, 'each pod downloaded the model');
  // kubectl exec reaches the kubelet: MLServer's multiprocess metrics live in /tmp, its root is read-only.
  const kubectl = (...args: string[]) => execFileSync(join(repoRoot, '.bin/kubectl'), ['--kubeconfig', testCluster().state.kubeconfig, '-n', ns, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const pod0 = pods[0]!.metadata!.name!;
  t.regex(kubectl('exec', pod0, '-c', 'server', '--', 'ls', '/tmp/mlserver'), /metrics/);
  t.throws(() => kubectl('exec', pod0, '-c', 'server', '--', 'touch', '/opt/mlserver/probe'), undefined, 'the root filesystem is read-only');

  const ip = await clusterIp(ns, 'iris');
  t.is(md.status?.url, `http://iris.${ns}.svc:80`);
  // The endpoints reach kube-proxy's rules a moment after the pods are ready: the first answer is polled.
  const answer = await waitFor('a prediction through the ClusterIP', async () => {
    const a = await postInNode(serving.link, `http://${ip}/v2/models/iris/infer`, v2Request(serving.models.golden)).catch(() => undefined);
    return a?.status === 200 ? a : undefined;
  }, 30_000, 100);
  const firstPredictionMs = Date.now() - applied;
  t.is(answer.status, 200, JSON.stringify(answer.json));
  t.is(answer.json.model_version, '1');
  t.deepEqual(answer.json.outputs[0].data, serving.models.expected.v1);
  t.log(`quickstart: apply → Ready ${(readyMs / 1000).toFixed(1)} s, apply → first prediction ${(firstPredictionMs / 1000).toFixed(1)} s`);
});

interface PresetCase {
  name: string;
  spec: Partial<ModelDeploymentSpec>;
  expected: number[];
  readOnlyRoot: boolean;
  /** The inference request and where the predicted classes are in its answer. */
  infer: { path: string; body: unknown; classes: (answer: any) => number[] };
}

/** V2 answers: outputs[0].data holds a class per row, or (LightGBM) the class probabilities, row by row. */
const v2Classes = (rows: number) => (answer: any): number[] => {
  const data = answer.outputs[0].data as number[];
  if (data.length === rows) return data;
  const width = data.length / rows;
  return Array.from({ length: rows }, (_, i) => data.slice(i * width, (i + 1) * width)).map((r) => r.indexOf(Math.max(...r)));
};

test('every preset built here starts under the restricted security context, answers its readiness path and one inference', async (t) => {
  t.timeout(360_000);
  const ns = await namespaces.create('e2e-presets');
  await trustModelStore(ns, serving.store);
  const { models } = serving;
  const rows = models.golden.length;
  const model = (path: string, format: ModelSource['format']) => storedModel(serving.store, models, path, '1', format);
  const v2 = (name: string) => ({ path: `/v2/models/${name}/infer`, body: v2Request(models.golden), classes: v2Classes(rows) });
  const cases: PresetCase[] = [
    { name: 'mlserver-sklearn', spec: { model: model('sklearn/v1/model.joblib', 'sklearn') }, expected: models.expected.v1, readOnlyRoot: true, infer: v2('mlserver-sklearn') },
    { name: 'mlserver-xgboost', spec: { model: model('xgboost/model.json', 'xgboost') }, expected: models.expected.xgboost, readOnlyRoot: true, infer: v2('mlserver-xgboost') },
    { name: 'mlserver-lightgbm', spec: { model: model('lightgbm/model.bst', 'lightgbm') }, expected: models.expected.lightgbm, readOnlyRoot: true, infer: v2('mlserver-lightgbm') },
    {
      name: 'torchserve', spec: { model: model('torchserve/iris.mar', 'pytorch') }, expected: models.expected.v1, readOnlyRoot: true,
      infer: { path: '/predictions/iris', body: { instances: models.golden }, classes: (answer: { predictions: number[] }) => answer.predictions },
    },
    {
      name: 'custom', expected: models.expected.v1, readOnlyRoot: false, infer: v2('custom'),
      spec: {
        model: model('custom/model.json', 'custom'),
        runtime: { preset: 'custom', image: customServerImage, readinessPath: '/v2/health/ready', env: [{ name: 'MODEL_NAME', value: 'custom' }] },
      },
    },
  ];
  await Promise.all(cases.map((c) => createMd(ns, c.name, { ...c.spec, replicas: 1, resources: smallResources, scheduling: onRealNode })));
  await Promise.all(cases.map((c) => waitReady(ns, c.name, 300_000)));

  for (const c of cases) {
    const [pod] = await modelPods(ns, c.name);
    const server = pod!.spec!.containers[0]!;
    t.is(pod!.spec!.nodeName, realNodeName, c.name);
    t.is(pod!.spec!.securityContext?.runAsNonRoot, true, c.name);
    t.is(server.securityContext?.allowPrivilegeEscalation, false, c.name);
    t.deepEqual(server.securityContext?.capabilities?.drop, ['ALL'], c.name);
    t.is(server.securityContext?.readOnlyRootFilesystem, c.readOnlyRoot, c.name);
    t.is(pod!.status?.containerStatuses?.[0]?.restartCount, 0, `${c.name} never restarted`);

    const readiness = server.readinessProbe!.httpGet!.path!;
    t.is(await getInNode(serving.link, `http://${pod!.status!.podIP}:8080${readiness}`), 200, `${c.name} ${readiness}`);
    const ip = await clusterIp(ns, c.name);
    // TorchServe says Healthy before its model has loaded: the first inference may wait for it.
    const answer = await waitFor(`${c.name} answers`, async () => {
      const a = await postInNode(serving.link, `http://${ip}${c.infer.path}`, c.infer.body).catch(() => undefined);
      return a?.status === 200 ? a : undefined;
    }, 60_000, 500);
    t.deepEqual(c.infer.classes(answer.json), c.expected, c.name);
  }

  // A stop is quick: TorchServe's wrapper ignores SIGTERM, so the preset traps it and stops the server.
  const [ts] = await modelPods(ns, 'torchserve');
  const stopping = Date.now();
  await testCluster().core.deleteNamespacedPod({ namespace: ns, name: ts!.metadata!.name! });
  await waitFor('the TorchServe pod gone', async () => {
    try { await testCluster().core.readNamespacedPod({ namespace: ns, name: ts!.metadata!.name! }); return false; } catch { return true; }
  }, 40_000, 250);
  const stopMs = Date.now() - stopping;
  t.log(`TorchServe pod stopped in ${(stopMs / 1000).toFixed(1)} s (5 s of it the drain)`);
  t.true(stopMs < 20_000, `stopped in ${stopMs} ms, not at the end of the 30 s grace period`);
});

test('an oci:// model is an image volume: imported into the node\'s containerd, pinned by digest, served read-only', async (t) => {
  t.timeout(240_000);
  const { state } = testCluster();
  // The model as an OCI image whose only layer is model.joblib, built and imported with no registry.
  const work = mkdtempSync(join(tmpdir(), 'oci-model-'));
  mkdirSync(join(work, 'rootfs'));
  copyFileSync(join(serving.models.dir, 'sklearn/v1/model.joblib'), join(work, 'rootfs/model.joblib'));
  execFileSync('tar', ['--sort=name', '--mtime=@0', '--owner=0', '--group=0', '--numeric-owner', '-C', join(work, 'rootfs'), '-cf', join(work, 'layer.tar'), '.']);
  writeFileSync(join(work, 'config.json'), '{"Labels":{"modelship.io/model":"iris-v1"}}');
  const reference = 'modelship.io/models/iris:v1';
  execFileSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'hack/images/oci.ts'), '--layer', join(work, 'layer.tar'), '--name', reference, '--config', join(work, 'config.json'), '--out', join(work, 'oci')], { stdio: 'ignore' });
  const index = JSON.parse(readFileSync(join(work, 'oci/index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifestDigest = index.manifests[0]!.digest;
  const ctr = (...args: string[]) => execFileSync(join(repoRoot, '.bin/ctr'), ['--address', state.realNode!.containerdSocket, '-n', 'k8s.io', ...args], { stdio: 'ignore' });
  ctr('images', 'import', join(work, 'oci.tar'));
  // A pull records the image under its digest too; an import records only the tag, so do what a pull does.
  ctr('images', 'tag', reference, `modelship.io/models/iris@${manifestDigest}`);

  const ns = await namespaces.create('e2e-oci');
  await createMd(ns, 'iris-oci', { model: { uri: `oci://${reference}`, digest: manifestDigest, version: '1', format: 'sklearn' }, replicas: 1, resources: smallResources, scheduling: onRealNode });
  await waitReady(ns, 'iris-oci', 120_000);
  const [pod] = await modelPods(ns, 'iris-oci');
  t.deepEqual({ ...pod!.spec!.volumes!.find((v) => v.name === 'model')?.image }, { reference: `modelship.io/models/iris@${manifestDigest}`, pullPolicy: 'IfNotPresent' });
  t.is(pod!.spec!.initContainers, undefined, 'nothing to fetch: the kubelet mounts the image');
  const ip = await clusterIp(ns, 'iris-oci');
  const answer = await waitFor('the oci model answers', async () => {
    const a = await postInNode(serving.link, `http://${ip}/v2/models/iris-oci/infer`, v2Request(serving.models.golden)).catch(() => undefined);
    return a?.status === 200 ? a : undefined;
  }, 30_000, 250);
  t.deepEqual(answer.json.outputs[0].data, serving.models.expected.v1);
});
