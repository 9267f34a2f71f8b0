// The Helm chart on the real node: the operator runs as a real pod from its own image, under the
// chart's ServiceAccount and security context, talks to the apiserver through the `kubernetes`
// Service, and serves and rolls out a real model.
import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { realNodeName } from '../cluster/real-node.js';
import {
  clusterIp, createMd, getMd, onRealNode, operatorImage, patchMdSpec, postInNode, smallResources, startModelStore, storedModel, trustModelStore,
  v2Request, waitReady,
} from '../support/real-node-serving.js';
import type { ModelStore, TrainedModels } from '../support/real-models.js';
import type { NodeLink } from '../cluster/real-node.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const namespaces = new TestNamespaces();
let store: ModelStore;
let models: TrainedModels;
let link: NodeLink;
let release = '';

function helm(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(join(root, '.bin/helm'), [...args, '--kubeconfig', testCluster().state.kubeconfig], (err, stdout, stderr) => {
      resolve({ code: err ? 1 : 0, out: stdout + stderr });
    });
  });
}

test.before(async () => {
  ({ store, models, link } = await startModelStore());
});

test.after.always(async () => {
  if (release) await helm('uninstall', 'modelship', '-n', release, '--wait', '--timeout', '60s');
  await namespaces.deleteAll();
  await store?.stop();
});

test('the chart runs the operator as a pod from its image on the real node; it serves and rolls out a model', async (t) => {
  t.timeout(420_000);
  release = await namespaces.create('e2e-chart-system');
  const [repository, tag] = operatorImage.split(/:(?=[^:]+$)/) as [string, string];
  const install = await helm('install', 'modelship', join(root, 'charts/modelship'), '-n', release,
    '--set', `image.repository=${repository}`, '--set', `image.tag=${tag}`, '--set', 'replicaCount=1',
    // This cluster has no DNS: analysis reaches Services by ClusterIP.
    '--set', 'serviceAddress=cluster-ip',
    '--set-json', `nodeSelector=${JSON.stringify(onRealNode.nodeSelector)}`,
    '--set-json', `tolerations=${JSON.stringify(onRealNode.tolerations)}`,
    '--wait', '--timeout', '120s');
  t.is(install.code, 0, install.out);

  const { core } = testCluster();
  const [pod] = (await core.listNamespacedPod({ namespace: release, labelSelector: 'app.kubernetes.io/name=modelship' })).items;
  t.truthy(pod, 'the operator pod exists');
  t.is(pod!.spec?.nodeName, realNodeName);
  t.is(pod!.spec?.containers[0]?.image, operatorImage);
  t.is(pod!.spec?.serviceAccountName, 'modelship');
  t.true(pod!.status?.containerStatuses?.[0]?.ready, 'the operator pod is ready');
  t.is(pod!.status?.containerStatuses?.[0]?.restartCount, 0);

  const ns = await namespaces.create('e2e-chart');
  await trustModelStore(ns, store);
  const model = (path: string, version: string) => storedModel(store, models, path, version);
  await createMd(ns, 'iris', {
    model: model('sklearn/v1/model.joblib', '1'), replicas: 1, resources: smallResources, scheduling: onRealNode,
    rollout: {
      steps: [{ setWeight: 50 }, { pause: { duration: '5s' } }],
      analysis: { interval: '5s', checks: [{ name: 'golden', http: { path: '/v2/models/iris/infer', body: v2Request(models.golden), compareToStable: { jsonPath: '$.outputs[0].data[*]' } } }] },
      scaleDownDelaySeconds: 5,
    },
  });
  await waitReady(ns, 'iris');
  await patchMdSpec(ns, 'iris', { model: model('sklearn/v2/model.joblib', '2') });
  // The analysis runs from the operator pod, inside the cluster: it reaches the canary and stable Services.
  let goldenPassed = false;
  const promoted = await waitFor('v2 promoted', async () => {
    const md = await getMd(ns, 'iris');
    goldenPassed ||= (md.status?.analysis?.results ?? []).some((r: { check: string; phase?: string }) => r.check === 'golden' && r.phase === 'Passed');
    return md.status?.stableRevision?.modelVersion === '2' && !md.status?.canaryRevision ? md : undefined;
  }, 240_000, 250);
  t.true(goldenPassed, 'the golden-input comparison passed before promotion');
  t.is(promoted.status?.history?.find((h: { modelVersion?: string }) => h.modelVersion === '2')?.outcome, 'Promoted');

  const answer = await waitFor('v2 answers through the Service', async () => {
    const a = await postInNode(link, `http://${await clusterIp(ns, 'iris')}/v2/models/iris/infer`, v2Request(models.golden)).catch(() => undefined);
    return a?.status === 200 && a.json.model_version === '2' ? a : undefined;
  }, 60_000, 500);
  t.deepEqual(answer.json.outputs[0].data, models.expected.v2);
});
