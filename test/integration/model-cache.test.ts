// The model cache on the real control plane. The fetcher, run as its own process as the init container
// runs it, against the HTTPS model store the real node's models come from (test/support/real-models.ts),
// which counts every request: a second fetch of a digest makes none, and a corrupt entry is detected and
// fetched again. The operator, as its own process: a cache enabled later reaches a canary and not the
// serving revision, is mounted into the fetcher alone, and the fetchers' reports in pod status become
// modelship_model_cache_* counters.
import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ModelDeployment } from '../../operator/api/generated.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { revisionHash } from '../../operator/api/revision.js';
import { fetchReportLine, parseFetchReport } from '../../operator/cli/fetch-report.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withEnv, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { OperatorProcess } from '../support/operator-process.js';
import { ModelStore } from '../support/real-models.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const client = adminClient();
const namespaces = new TestNamespaces();
const operators: OperatorProcess[] = [];
let store: ModelStore;
let work: string;
let caFile: string;
/** 64 MiB: large enough that a download and a copy take measurable time. */
const modelBytes = 64 << 20;
let digest: string;

test.before(async () => {
  await installCrd();
  work = mkdtempSync(join(testCluster().state.dir, 'model-cache-'));
  const root = join(work, 'store');
  mkdirSync(join(root, 'big'), { recursive: true });
  const body = randomBytes(modelBytes);
  writeFileSync(join(root, 'big/model.bin'), body);
  digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  store = new ModelStore(root, '127.0.0.1', join(work, 'pki'));
  await store.start();
  caFile = join(work, 'ca.crt');
  writeFileSync(caFile, store.caCert);
});

test.after.always(async () => {
  for (const o of operators) await o.stop();
  await namespaces.deleteAll();
  await store?.stop();
});

interface FetchRun { code: number | null; stderr: string; ms: number; report: ReturnType<typeof parseFetchReport>; requests: number; dest: string }

/** `modelship fetch` as a process, trusting the store's CA as NODE_EXTRA_CA_CERTS makes the init container do. */
async function fetchProcess(cacheDir: string): Promise<FetchRun> {
  const dest = mkdtempSync(join(work, 'dest-'));
  const terminationLog = join(dest, '..', `${dest.split('/').pop()}.termination-log`);
  writeFileSync(terminationLog, '');
  const before = store.requests.length;
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'operator/main.ts'), 'fetch',
    '--uri', store.url('big/model.bin'), '--dest', dest, '--digest', digest, '--cache-dir', cacheDir, '--cache-max-bytes', String(1 << 30),
    '--termination-log', terminationLog], { cwd: repoRoot, env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  return { code, stderr, ms: Date.now() - started, report: parseFetchReport(readFileSync(terminationLog, 'utf8')), requests: store.requests.length - before, dest };
}

const sha256 = (path: string) => `sha256:${createHash('sha256').update(readFileSync(path)).digest('hex')}`;

test.serial('the fetcher against the HTTPS model store: the second fetch of a digest makes no request; a corrupt entry is detected and fetched again', async (t) => {
  t.timeout(120_000);
  const cacheDir = join(work, 'cache');
  const miss = await fetchProcess(cacheDir);
  t.is(miss.code, 0, miss.stderr);
  t.deepEqual(miss.report, { cache: 'miss', bytes: modelBytes, digest });
  t.is(miss.requests, 1, 'the first fetch downloads the model');

  const hit = await fetchProcess(cacheDir);
  t.is(hit.code, 0, hit.stderr);
  t.deepEqual(hit.report, { cache: 'hit', bytes: modelBytes, digest });
  t.is(hit.requests, 0, 'the second fetch makes no request to the model store');
  t.is(sha256(join(hit.dest, 'model.bin')), digest);

  // One flipped byte in the middle of the entry: only the digest can tell.
  const entryFile = join(cacheDir, `sha256-${digest.slice('sha256:'.length)}`, 'data', 'model.bin');
  const handle = await open(entryFile, 'r+');
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, modelBytes / 2);
  await handle.write(Buffer.from([byte[0]! ^ 0xff]), 0, 1, modelBytes / 2);
  await handle.close();
  const corrupt = await fetchProcess(cacheDir);
  t.is(corrupt.code, 0, corrupt.stderr);
  t.deepEqual(corrupt.report, { cache: 'corrupt', bytes: modelBytes, digest });
  t.regex(corrupt.stderr, /model cache entry for sha256:[a-f0-9]{64} is corrupt: its copy digests to sha256:[a-f0-9]{64}; removed it, fetching from https:/);
  t.is(corrupt.requests, 1, 'fetched again from the store');
  t.is(sha256(join(corrupt.dest, 'model.bin')), digest, 'the pod got the real model, not the corrupt entry');
  t.is(sha256(entryFile), digest, 'and the entry is whole again');

  const again = await fetchProcess(cacheDir);
  t.is(again.report?.cache, 'hit');
  t.is(again.requests, 0);
  t.log(`64 MiB over HTTPS from 127.0.0.1, whole process: miss ${miss.ms} ms (download, verify, store), hit ${hit.ms} ms and ${again.ms} ms (copy, verify), corrupt ${corrupt.ms} ms`);
});

const get = (ns: string, name: string) => client.get<ModelDeployment & KubeObject & { status?: any }>(Resources.ModelDeployment, ns, name);
type Template = { spec: { template: { spec: { volumes: any[]; initContainers: any[]; containers: any[] } } }; metadata: { resourceVersion: string } };
const deployment = (ns: string, name: string) => client.get<KubeObject & Template>(Resources.Deployment, ns, name);

test.serial('the operator: a cache enabled later reaches the next revision only, in its fetcher alone; fetchers\' reports become metrics', async (t) => {
  t.timeout(180_000);
  const ns = await namespaces.create('model-cache');
  const without = new OperatorProcess({ name: 'model-cache-off' });
  operators.push(without);
  await without.start();
  const md = modelDeployment('cached', ns, withSpec({ model: { uri: 'https://models.example.com/iris/v1/model.joblib', digest, version: '1', format: 'sklearn' } }));
  await client.create(Resources.ModelDeployment, md);
  const v1 = revisionHash(md.spec);
  await waitFor('v1 serving', async () => (await get(ns, 'cached')).status?.stableRevision?.hash === v1);
  const before = await deployment(ns, `cached-${v1}`);
  t.false(before.spec.template.spec.volumes.some((v) => v.name === 'model-cache'));
  await without.stop();

  // The admin turns the cache on: the serving revision's pods stay as they are.
  const withCache = new OperatorProcess({ name: 'model-cache-on', env: { MODELSHIP_MODEL_CACHE: 'hostPath:/var/lib/modelship/model-cache', MODELSHIP_MODEL_CACHE_MAX_SIZE: '2Gi' } });
  operators.push(withCache);
  await withCache.start();
  await waitFor('a reconcile', async () => (await withCache.metric('modelship_reconcile_total')) > 0);
  await new Promise((r) => setTimeout(r, 1000));
  const kept = await deployment(ns, `cached-${v1}`);
  t.is(kept.metadata.resourceVersion, before.metadata.resourceVersion, 'the serving revision\'s Deployment was not rewritten');

  // A canary (any spec change) is built with the cache.
  const next = modelDeployment('cached', ns, withSpec({ ...md.spec }), withEnv('REVISION', '2'));
  await client.mergePatch(Resources.ModelDeployment, ns, 'cached', { spec: next.spec });
  const v2 = revisionHash(next.spec);
  const canary = await waitFor('the canary Deployment', () => deployment(ns, `cached-${v2}`).catch(() => undefined));
  const pod = canary.spec.template.spec;
  t.deepEqual(pod.volumes.find((v) => v.name === 'model-cache'), { name: 'model-cache', hostPath: { path: '/var/lib/modelship/model-cache', type: 'DirectoryOrCreate' } });
  const fetcher = pod.initContainers.find((c) => c.name === 'fetch-model');
  t.true(fetcher.volumeMounts.some((m: any) => m.name === 'model-cache'));
  t.deepEqual(fetcher.args.slice(fetcher.args.indexOf('--cache-dir')), ['--cache-dir', '/var/cache/modelship/models', '--cache-max-bytes', String(2 * 1024 ** 3)]);
  t.false(pod.containers.some((c) => c.volumeMounts.some((m: any) => m.name === 'model-cache')), 'never in the server');

  // KWOK runs no fetcher; the status a kubelet writes when one finishes is written here.
  const pods = await waitFor('the canary\'s pods', async () => {
    const list = await testCluster().core.listNamespacedPod({ namespace: ns, labelSelector: `modelship.io/revision=${v2}` });
    return list.items.length && list.items.every((p) => p.status?.phase === 'Running') ? list.items : undefined;
  }, 60_000);
  const report = { cache: 'hit' as const, bytes: 123_456_789, digest };
  const finish = async (name: string, message: string) => {
    const live = await testCluster().core.readNamespacedPodStatus({ namespace: ns, name });
    const fetch = live.status!.initContainerStatuses!.find((s) => s.name === 'fetch-model')!;
    fetch.state = { terminated: { ...fetch.state!.terminated!, exitCode: 0, message } };
    await testCluster().core.replaceNamespacedPodStatus({ namespace: ns, name, body: live });
  };
  await finish(pods[0]!.metadata!.name!, fetchReportLine(report));
  await waitFor('a hit counted', async () => (await withCache.metric('modelship_model_cache_requests_total', { result: 'hit' })) === 1);
  t.is(await withCache.metric('modelship_model_cache_bytes_total', { result: 'hit' }), report.bytes);
  // The same report seen again (any later update of the pod) is not counted again; a log line is no report.
  await finish(pods[0]!.metadata!.name!, fetchReportLine(report));
  if (pods[1]) await finish(pods[1].metadata!.name!, 'digest verified: sha256:…');
  await new Promise((r) => setTimeout(r, 1500));
  t.is(await withCache.metric('modelship_model_cache_requests_total'), 1);
});

test('the operator refuses a --model-cache it cannot use, naming it', async (t) => {
  const bad = new OperatorProcess({ name: 'model-cache-bad', env: { MODELSHIP_MODEL_CACHE: 'nfs://server/cache' } });
  operators.push(bad);
  await bad.start({ waitReady: false });
  t.is(await bad.exited(20_000), 2);
  const log = readFileSync(bad.logFile, 'utf8');
  t.regex(log, /MODELSHIP_MODEL_CACHE: "nfs:\/\/server\/cache": must be hostPath:\/absolute\/dir/);
});
