// Canaries of real models on the real node, with users' traffic flowing through the Service all the
// while: a retrained model is promoted by the real analysis (an HTTP smoke test validated by a JSON
// Schema, a comparison of predictions with stable, pod health), and bad revisions roll back by
// themselves (a digest that does not match, a model that answers wrongly, a server that crashes)
// with stable serving throughout. Not one request may fail.
import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ModelDeploymentSpec, RolloutSpec } from '../../operator/api/generated.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { Traffic } from '../support/traffic.js';
import {
  clusterIp, condition, createMd, customServerImage, getMd, onRealNode, patchMdSpec, smallResources, startServing, storedModel, trustModelStore,
  v2Request, waitReady, type Md, type Serving,
} from '../support/real-node-serving.js';

const namespaces = new TestNamespaces();
let serving: Serving;
let ns = '';
let traffic: Traffic;
/**
 * From when the Service has answered. Ready says the pods are ready; kube-proxy programs their
 * endpoints a moment later, so requests sent before the first answer may be refused: that is the
 * cluster's propagation delay for a new Service, not a rollout, and is not counted.
 */
let servingSince = 0;

// MLServer answers with the class of each row: integers 0-2, one per row.
const predictionSchema = {
  type: 'object', required: ['model_name', 'outputs'],
  properties: {
    outputs: {
      type: 'array', minItems: 1,
      items: { type: 'object', required: ['name', 'data'], properties: { data: { type: 'array', minItems: 4, items: { type: 'integer', minimum: 0, maximum: 2 } } } },
    },
  },
};

const model = (path: string, version: string, digest?: string) => storedModel(serving.store, serving.models, path, version, 'sklearn', digest);

function rolloutSpec(steps: RolloutSpec['steps']): RolloutSpec {
  return {
    steps,
    analysis: {
      interval: '5s',
      checks: [
        { name: 'pods', podHealth: { maxRestarts: 1 } },
        {
          name: 'golden-inputs',
          http: {
            path: '/v2/models/iris/infer', method: 'POST', body: v2Request(serving.models.golden), timeoutSeconds: 5,
            responseSchema: predictionSchema,
            compareToStable: { jsonPath: '$.outputs[0].data[*]', maxAbsDiff: 0, minAgreement: 1 },
          },
        },
      ],
    },
    scaleDownDelaySeconds: 5,
  };
}

test.before(async () => {
  serving = await startServing('e2e-rollout');
  ns = await namespaces.create('e2e-rollout');
  await trustModelStore(ns, serving.store);
  await createMd(ns, 'iris', {
    model: model('sklearn/v1/model.joblib', '1'), replicas: 2, resources: smallResources, scheduling: onRealNode,
    rollout: rolloutSpec([{ setWeight: 25 }, { pause: { duration: '25s' } }, { setWeight: 50 }, { pause: { duration: '25s' } }]),
  });
  await waitReady(ns, 'iris');
  traffic = new Traffic(serving.link.netns, `http://${await clusterIp(ns, 'iris')}/v2/models/iris/infer`, v2Request([serving.models.golden[0]!]));
  traffic.start();
  servingSince = await waitFor('traffic answered', async () => traffic.firstAnswered(), 30_000);
});

test.after.always(async () => {
  await traffic?.stop();
  await namespaces.deleteAll();
  await serving?.stop();
});

/** Samples the status every 250 ms until `done` says so, keeping each step's time window and weight. */
async function followRollout(done: (md: Md) => boolean, timeoutMs: number) {
  const samples: { at: number; step?: number; weight?: number; canaryVersion?: string }[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const md = await getMd(ns, 'iris');
    samples.push({ at: Date.now(), step: md.status?.rollout?.step, weight: md.status?.canaryWeight, canaryVersion: md.status?.canaryRevision?.modelVersion });
    if (done(md)) return { md, samples };
    if (Date.now() > deadline) throw new Error(`rollout not done in ${timeoutMs} ms: ${JSON.stringify(md.status?.conditions)}`);
    await sleep(250);
  }
}

test.serial('a retrained model is promoted by the real analysis; the canary\'s share of live traffic follows the steps', async (t) => {
  t.timeout(300_000);
  const started = Date.now();
  await patchMdSpec(ns, 'iris', { model: model('sklearn/v2/model.joblib', '2') });
  const { md, samples } = await followRollout((m) => m.status?.stableRevision?.modelVersion === '2' && !m.status?.canaryRevision, 240_000);
  t.is(condition(md, 'Ready')?.status, 'True');
  t.is(md.status?.history?.[0]?.outcome, 'Promoted');

  // Each weight held for at least 5 s: its share of the answers is the canary's share of ready pods.
  const windows = new Map<number, { from: number; to: number }>();
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i]!;
    if (s.canaryVersion !== '2' || !s.weight || s.weight >= 100) continue;
    const w = windows.get(s.weight) ?? { from: s.at, to: s.at };
    w.to = s.at;
    windows.set(s.weight, w);
  }
  t.true(windows.size >= 2, `the canary took traffic at two weights: ${JSON.stringify([...windows.keys()])}`);
  for (const [weight, { from, to }] of windows) {
    if (to - from < 5_000) continue;
    // Skip the first second of a window: kube-proxy applies the new endpoints a moment after the status says so.
    const counts = traffic.byVersion(from + 1_000, to);
    const total = (counts['1'] ?? 0) + (counts['2'] ?? 0);
    const share = Math.round((100 * (counts['2'] ?? 0)) / Math.max(1, total));
    t.log(`weight ${weight}% for ${((to - from) / 1000).toFixed(1)} s: ${total} answers, ${share}% from the canary`);
    t.true(total >= 50, `enough answers at ${weight}%: ${total}`);
    // Requests are spread per connection at random: within 15 points of the weight at this sample size.
    t.true(Math.abs(share - weight) <= 15, `canary share ${share}% at weight ${weight}%`);
  }
  // Once the Service selects only the promoted revision (and kube-proxy has its endpoints), v2 answers alone.
  await sleep(4_000);
  const after = traffic.byVersion(Date.now() - 2_000);
  t.deepEqual(Object.keys(after), ['2'], 'after promotion every answer comes from v2');
  t.deepEqual(traffic.failures(servingSince), [], 'no request failed');
  t.log(`rollout to v2 took ${((Date.now() - started) / 1000).toFixed(1)} s; ${traffic.answers.length} requests so far`);
});

/** Applies a bad revision and waits for it to be rejected; stable (v2) serves throughout. */
async function rejected(version: string, spec: Partial<ModelDeploymentSpec>): Promise<Md> {
  await patchMdSpec(ns, 'iris', spec);
  const { md } = await followRollout((m) => m.status?.rejectedRevision?.modelVersion === version && !m.status?.canaryRevision, 240_000);
  return md;
}

function assertStableServed(t: ExecutionContext, since: number) {
  t.deepEqual(traffic.failures(servingSince), [], 'no request failed');
  const counts = traffic.byVersion(since);
  t.true((counts['2'] ?? 0) > 20, `stable kept answering: ${JSON.stringify(counts)}`);
}

test.serial('a model whose digest does not match is rolled back: the init container refuses it', async (t) => {
  t.timeout(300_000);
  const since = Date.now();
  const wrongDigest = serving.models.digests['sklearn/v1/model.joblib']!;
  const md = await rejected('3', { model: model('sklearn/v2/model.joblib', '3', wrongDigest) });
  t.is(condition(md, 'Degraded')?.status, 'True');
  // The fetcher's own words reach the rollback reason through its termination message.
  t.regex(md.status?.rejectedRevision?.reason ?? '', /fetch-model.*digest mismatch/);
  t.is(md.status?.stableRevision?.modelVersion, '2');
  t.is(md.status?.history?.[0]?.outcome, 'RolledBack');
  assertStableServed(t, since);
});

test.serial('a model that loads but answers wrongly is rolled back by the comparison with stable', async (t) => {
  t.timeout(300_000);
  const since = Date.now();
  const md = await rejected('4', { model: model('sklearn/wrong/model.joblib', '4') });
  t.regex(md.status?.rejectedRevision?.reason ?? '', /golden-inputs/);
  t.regex(md.status?.rejectedRevision?.reason ?? '', /agree/);
  t.is(md.status?.stableRevision?.modelVersion, '2');
  assertStableServed(t, since);
});

test.serial('a server that crashes is rolled back by pod health', async (t) => {
  t.timeout(300_000);
  const since = Date.now();
  // The custom server exits when its model does not load; a joblib file is not its JSON model.
  const md = await rejected('5', {
    model: { ...model('sklearn/v1/model.joblib', '5'), format: 'custom' },
    runtime: { preset: 'custom', image: customServerImage, readinessPath: '/v2/health/ready', env: [{ name: 'MODEL_NAME', value: 'iris' }] },
  });
  t.regex(md.status?.rejectedRevision?.reason ?? '', /CrashLoopBackOff/);
  t.regex(md.status?.rejectedRevision?.reason ?? '', /cannot load the model/);
  t.is(md.status?.stableRevision?.modelVersion, '2');
  assertStableServed(t, since);
});
