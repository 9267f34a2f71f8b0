import test from 'ava';
import fc from 'fast-check';
import { canonicalJson, revisionHash } from '../../operator/api/revision.js';
import { isSubset, appliedHash } from '../../operator/modeldeployment/reconcile.js';
import { WriteExpectations } from '../../operator/runtime/expectations.js';
import { microTime } from '../../operator/runtime/events.js';
import { apiPath } from '../../operator/runtime/kube.js';
import { podChanged, podSummary } from '../../operator/modeldeployment/status.js';
import { Resources } from '../../operator/runtime/resources.js';
import { modelDeployment } from '../support/builders.js';

test('the revision hash covers model, runtime, resources and scheduling, and nothing else', (t) => {
  const base = modelDeployment('m', 'ns').spec;
  const h = revisionHash(base);
  t.regex(h, /^[a-f0-9]{10}$/);
  t.is(revisionHash({ ...base, replicas: 9, paused: true, autoscaling: { maxReplicas: 4 }, traffic: { port: 1 }, rollout: { steps: [{ setWeight: 5 }] } }), h);
  t.not(revisionHash({ ...base, model: { ...base.model, version: '2' } }), h);
  t.not(revisionHash({ ...base, model: { ...base.model, dataset: { uri: 's3://d/2026' } } }), h, 'data lineage is part of the revision');
  t.not(revisionHash({ ...base, runtime: { image: 'x/y:1' } }), h);
  t.not(revisionHash({ ...base, resources: { limits: { memory: '1Gi' } } }), h);
  t.not(revisionHash({ ...base, scheduling: { nodeSelector: { a: 'b' } } }), h);
  t.is(revisionHash({ ...base, model: { format: base.model.format, version: base.model.version, uri: base.model.uri } }), h, 'key order does not matter');
});

/** The plain definition canonicalJson is held to: its output must never change (revision hashes name Deployments). */
function canonicalJsonReference(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJsonReference).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJsonReference(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

test('canonical JSON is the plain definition\'s, byte for byte, on any JSON value (with undefined mixed in)', (t) => {
  const withUndefined = fc.letrec((tie) => ({
    value: fc.oneof({ depthSize: 'small' }, fc.jsonValue({ maxDepth: 1 }), fc.constant(undefined), tie('array'), tie('object')),
    array: fc.array(tie('value'), { maxLength: 5 }),
    object: fc.dictionary(fc.oneof(fc.string(), fc.constantFrom('a', 'B', 'é', '\u00e9', '__proto__x', '10', '9')), tie('value'), { maxKeys: 6 }),
  }));
  fc.assert(fc.property(withUndefined.value, (v) => canonicalJson(v) === canonicalJsonReference(v)), { numRuns: 2_000 });
  t.pass();
});

test('canonical JSON sorts keys at every depth and drops undefined', (t) => {
  t.is(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: undefined }], c: null } }), '{"a":{"c":null,"d":[2,{"z":1}]},"b":1}');
});

test('isSubset: our fields must match, others may be added, numbers match their string form', (t) => {
  t.true(isSubset({ a: 1, b: { c: 'x' } }, { a: 1, b: { c: 'x', d: 'defaulted' }, e: 2 }));
  t.false(isSubset({ a: 1 }, { a: 2 }));
  t.false(isSubset({ list: [1, 2] }, { list: [1, 2, 3] }), 'lists are compared whole');
  t.true(isSubset({ q: 2 }, { q: '2' }));
  t.false(isSubset({ a: { b: 1 } }, { a: null }));
  t.not(appliedHash({ metadata: { name: 'a' } }), appliedHash({ metadata: { name: 'b' } }));
});

test('write expectations hold a key until the cache delivers the written version, or until they expire', (t) => {
  let now = 0;
  const e = new WriteExpectations(1000, () => now);
  t.false(e.isWaiting('k', '5'));
  e.expect('k', '7');
  t.true(e.isWaiting('k', '5'), 'the cache still has the version before our write');
  e.observe('k', '6');
  t.true(e.isWaiting('k', '6'));
  e.observe('k', '7');
  t.false(e.isWaiting('k', '7'));
  e.expect('k', '9');
  now = 1500;
  t.false(e.isWaiting('k', '8'), 'expired: a relist may have skipped the event');
  e.observe('k', '11');
  e.expect('k', '11');
  t.false(e.isWaiting('k', '12'), 'the watch delivered our write before its response arrived');
});

test('event times are MicroTime; API paths are built per scope', (t) => {
  t.is(microTime(new Date('2026-01-02T03:04:05.123Z')), '2026-01-02T03:04:05.123000Z');
  t.is(apiPath(Resources.Deployment, 'ns', 'd'), '/apis/apps/v1/namespaces/ns/deployments/d');
  t.is(apiPath(Resources.Pod), '/api/v1/pods');
  t.is(apiPath(Resources.ModelDeployment, 'ns', 'm', 'status'), '/apis/modelship.io/v1alpha1/namespaces/ns/modeldeployments/m/status');
});

test('a pod is cached as a summary: the trouble it shows is the same, at a fraction of the size', async (t) => {
  const { podSummary, podTrouble } = await import('../../operator/modeldeployment/status.js');
  const spec = {
    initContainers: [{ name: 'fetch', image: 'modelship:1', args: ['fetch', '--uri', 's3://models/x/'], volumeMounts: [{ name: 'model', mountPath: '/mnt/models' }] }],
    containers: [{ name: 'server', image: 'mlserver:1', env: Array.from({ length: 10 }, (_, i) => ({ name: `E${i}`, value: 'x'.repeat(40) })), readinessProbe: { httpGet: { path: '/v2/health/ready', port: 8080 } } }],
    volumes: [{ name: 'model', emptyDir: {} }], tolerations: [{ key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 }],
  };
  const pods = [
    { metadata: { name: 'crash', namespace: 'n', uid: '1', labels: { 'modelship.io/revision': 'a' } }, spec, status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'False' }, { type: 'Initialized', status: 'True' }], containerStatuses: [{ name: 'server', image: 'mlserver:1', imageID: 'sha', restartCount: 4, ready: false, state: { waiting: { reason: 'CrashLoopBackOff', message: 'back-off 40s' } }, lastState: { terminated: { reason: 'OOMKilled', exitCode: 137 } } }] } },
    { metadata: { name: 'pending', namespace: 'n', uid: '2' }, spec, status: { phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes are available' }] } },
    { metadata: { name: 'ok', namespace: 'n', uid: '3' }, spec, status: { phase: 'Running', containerStatuses: [{ name: 'server', restartCount: 0, state: { running: { startedAt: 'now' } } }] } },
  ];
  for (const p of pods) t.deepEqual(podTrouble([podSummary(p)]), podTrouble([p]), p.metadata.name);
  t.deepEqual(podTrouble(pods.map(podSummary)), podTrouble(pods));
  t.like(podTrouble([podSummary(pods[0]!)]), { reason: 'OOMKilled', restarts: 4 });
  const size = (o: unknown) => JSON.stringify(o).length;
  t.true(size(pods.map(podSummary)) * 2 < size(pods), `${size(pods.map(podSummary))} bytes kept of ${size(pods)}`);
});

test('why a container last exited comes from its termination message: the fetcher\'s last JSON log line, bounded', async (t) => {
  const { podSummary, podTrouble, exitReason } = await import('../../operator/modeldeployment/status.js');
  const log = '{"level":"info","message":"fetched 1 file(s)"}\n{"level":"error","message":"digest mismatch for https://store/m.joblib: expected sha256:aa, got sha256:bb"}\n';
  const pod = { metadata: { name: 'p', namespace: 'n', uid: '1' }, status: { phase: 'Pending', initContainerStatuses: [
    { name: 'fetch-model', restartCount: 2, state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { reason: 'Error', exitCode: 1, message: log } } },
  ] } };
  const trouble = podTrouble([podSummary(pod)]);
  t.like(trouble, { reason: 'CrashLoopBackOff', restarts: 2 });
  t.regex(trouble!.message, /container fetch-model: CrashLoopBackOff .*it last exited with: digest mismatch for https:\/\/store\/m\.joblib: expected sha256:aa, got sha256:bb$/);
  t.deepEqual(trouble, podTrouble([pod]));
  t.is(exitReason('Traceback (most recent call last):\n  File "x"\nValueError: bad model\n'), 'ValueError: bad model');
  const long = exitReason('x'.repeat(5000))!;
  t.is(long.length, 240);
  t.is(exitReason(long), long, 'bounding twice changes nothing');
  t.is(exitReason(undefined), undefined);
  t.is(exitReason('\n\n'), undefined);
});

test('list pages are sized to about 1 MB from the objects of the page before, between 25 and 500 objects', async (t) => {
  const { nextPageSize } = await import('../../operator/runtime/informer.js');
  // Model pods with managedFields, about 18 KB each: 55 per page, not 500 (9 MB, ~100 ms of JSON.parse).
  t.is(nextPageSize(100, 100, 1_800_000), 55);
  // Small objects: client-go's 500.
  t.is(nextPageSize(100, 100, 200_000), 500);
  // Huge objects never go below 25; an empty or unmeasured page keeps the size it had.
  t.is(nextPageSize(100, 10, 5_000_000), 25);
  t.is(nextPageSize(100, 0, 0), 100);
  t.is(nextPageSize(250, 40, 0), 250);
});

test('a pod update reconciles only when what the decision reads of it changed', (t) => {
  const pod = (extra: Record<string, unknown> = {}, rv = '1') => podSummary({
    apiVersion: 'v1', kind: 'Pod',
    metadata: { name: 'p', namespace: 'ml', resourceVersion: rv, labels: { 'modelship.io/revision': 'abc' } },
    status: { phase: 'Running', podIP: `10.0.0.${rv}`, conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: `t${rv}` }, { type: 'Initialized', status: 'True' }], ...extra },
  });
  t.true(podChanged(pod(), undefined), 'a new pod');
  t.false(podChanged(pod({}, '2'), pod()), 'a new resourceVersion, IP and timestamps: nothing the decision reads');
  t.true(podChanged(pod({ conditions: [{ type: 'Ready', status: 'True' }] }, '3'), pod()), 'readiness');
  t.true(podChanged(pod({ containerStatuses: [{ name: 'server', restartCount: 1 }] }, '3'), pod({ containerStatuses: [{ name: 'server', restartCount: 0 }] })), 'a restart');
  t.true(podChanged({ ...pod({}, '4'), metadata: { ...pod().metadata, resourceVersion: '4', deletionTimestamp: 'now' } }, pod()), 'deletion');
});
