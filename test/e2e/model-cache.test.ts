// The model cache on the real node: a hostPath cache the operator was started with (as the chart's
// modelCache values set it), real fetchers in real pods, and the model store counting requests. The
// first pod downloads the model; a canary of the same model and a rollback to the previous revision
// start without a download; the operator counts what the fetchers reported.
import test from 'ava';
import { chownSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { testCluster, TestNamespaces, waitFor } from '../cluster/cluster.js';
import { parseFetchReport, type FetchReport } from '../../operator/cli/fetch-report.js';
import {
  createMd, getMd, onRealNode, patchMdSpec, smallResources, startServing, storedModel, trustModelStore, waitReady, type Serving,
} from '../support/real-node-serving.js';

const namespaces = new TestNamespaces();
let serving: Serving;
let cacheDir = '';

test.before(async () => {
  // Prepared as docs/serving.md says an admin prepares it: writable by the model pods' UID 1000.
  cacheDir = join(testCluster().state.dir, 'model-cache');
  mkdirSync(cacheDir, { recursive: true, mode: 0o750 });
  chownSync(cacheDir, 1000, 1000);
  serving = await startServing('e2e-model-cache', { MODELSHIP_MODEL_CACHE: `hostPath:${cacheDir}`, MODELSHIP_MODEL_CACHE_MAX_SIZE: '1Gi' });
});
test.after.always(async () => { await namespaces.deleteAll(); await serving?.stop(); });

/** What each pod's fetcher reported, by revision. */
/**
 * Each pod's fetch report, from pods created at or after `since`: a rollback's revision has the same
 * hash as the first one, whose pod (and its "miss") may still be terminating when the rollback is done.
 */
async function reports(namespace: string, since = 0): Promise<{ revision: string; report: FetchReport | undefined }[]> {
  const pods = (await testCluster().core.listNamespacedPod({ namespace, labelSelector: 'app.kubernetes.io/instance=iris' })).items;
  // creationTimestamp has whole seconds.
  return pods.filter((p) => new Date(p.metadata?.creationTimestamp ?? 0).getTime() >= Math.floor(since / 1000) * 1000).map((p) => ({
    revision: p.metadata?.labels?.['modelship.io/revision'] ?? '',
    report: parseFetchReport(p.status?.initContainerStatuses?.find((s) => s.name === 'fetch-model')?.state?.terminated?.message),
  }));
}

test.serial('a canary of a cached model and a rollback to the previous revision start without a download', async (t) => {
  t.timeout(480_000);
  const ns = await namespaces.create('e2e-cache');
  await trustModelStore(ns, serving.store);
  const path = 'sklearn/v1/model.joblib';
  const downloads = () => serving.store.requests.filter((r) => r === path).length;
  const digest = serving.models.digests[path]!;
  const before = downloads();

  let started = Date.now();
  await createMd(ns, 'iris', {
    model: storedModel(serving.store, serving.models, path, '1'), replicas: 1, resources: smallResources, scheduling: onRealNode,
    rollout: { steps: [{ setWeight: 50 }, { setWeight: 100 }], scaleDownDelaySeconds: 0 },
  });
  const v1 = await waitReady(ns, 'iris', 240_000);
  const firstMs = Date.now() - started;
  const v1Hash: string = v1.status!.stableRevision!.hash;
  t.is(downloads() - before, 1, 'the first pod downloads the model');
  t.deepEqual((await reports(ns)).map((r) => r.report?.cache), ['miss']);
  t.deepEqual(readdirSync(cacheDir).filter((n) => n.startsWith('sha256-')), [`sha256-${digest.slice('sha256:'.length)}`], 'and stores it');

  // A canary: the same model, another revision.
  started = Date.now();
  await patchMdSpec(ns, 'iris', { runtime: { env: [{ name: 'REVISION', value: '2' }] } });
  const v2 = await waitFor('the canary promoted', async () => {
    const md = await getMd(ns, 'iris');
    return md.status?.stableRevision?.hash !== v1Hash && !md.status?.canaryRevision && md.status?.observedGeneration === md.metadata?.generation ? md : undefined;
  }, 240_000, 250);
  const canaryMs = Date.now() - started;
  const v2Hash: string = v2.status!.stableRevision!.hash;
  const canaryReports = (await reports(ns)).filter((r) => r.revision === v2Hash);
  t.true(canaryReports.length >= 1);
  t.true(canaryReports.every((r) => r.report?.cache === 'hit' && r.report.digest === digest), JSON.stringify(canaryReports));
  t.is(downloads() - before, 1, 'the canary downloaded nothing');

  // A rollback to the previous revision: the spec as it was.
  started = Date.now();
  await patchMdSpec(ns, 'iris', { runtime: null } as never);
  await waitFor('back on the previous revision', async () => {
    const md = await getMd(ns, 'iris');
    return md.status?.stableRevision?.hash === v1Hash && !md.status?.canaryRevision ? md : undefined;
  }, 240_000, 250);
  const rollbackMs = Date.now() - started;
  const rolledBack = (await reports(ns, started)).filter((r) => r.revision === v1Hash);
  t.true(rolledBack.length >= 1);
  t.true(rolledBack.every((r) => r.report?.cache === 'hit'), JSON.stringify(rolledBack));
  t.is(downloads() - before, 1, 'the rollback downloaded nothing');

  // The operator counted each fetcher's report as it saw the init container finish.
  await waitFor('the reports counted', async () => (await serving.operator.metric('modelship_model_cache_requests_total', { result: 'hit' })) >= 2);
  t.is(await serving.operator.metric('modelship_model_cache_requests_total', { result: 'miss' }), 1);
  t.true((await serving.operator.metric('modelship_model_cache_bytes_total', { result: 'hit' })) > 0);
  t.log(`first revision ready in ${(firstMs / 1000).toFixed(1)} s (downloaded), canary promoted in ${(canaryMs / 1000).toFixed(1)} s and rollback in ${(rollbackMs / 1000).toFixed(1)} s (from the cache); model store requests for the model: ${downloads() - before}`);
});
