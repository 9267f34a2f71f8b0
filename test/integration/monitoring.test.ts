// Monitoring after promotion on the real control plane, with the operator as its own process and the
// real Prometheus server scraping histograms the test moves: drift raises Drifting with the PSI an
// independent computation gives, the webhook hears each transition exactly once however often it
// fails first, and onFailure Rollback brings the previous revision back only as its pods are ready.
import { createServer, type Server } from 'node:http';
import test from 'ava';
import type { ModelDeployment, MonitoringSpec } from '../../operator/api/generated.js';
import { Informer } from '../../operator/runtime/informer.js';
import type { KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { TestNamespaces, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withReplicas, withSpec } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { health } from '../support/lua.js';
import { OperatorProcess } from '../support/operator-process.js';
import { TestPrometheus } from '../support/prometheus.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const prometheus = new TestPrometheus();
let operator: OperatorProcess;
const feeders: NodeJS.Timeout[] = [];

type Md = ModelDeployment & KubeObject;
type Obj = KubeObject & { spec?: any; status?: any };
const get = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);

// The webhook receiver: refuses the first `failFirst` calls of each transition, then accepts.
interface Call { drifting: boolean; status: number; delivery: string; body: Record<string, unknown> }
const calls: Call[] = [];
let receiver: Server;
let receiverUrl = '';
const failFirst = 2;

test.before(async () => {
  await installCrd();
  await prometheus.start();
  receiver = createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => { data += c.toString(); });
    req.on('end', () => {
      const body = JSON.parse(data) as Record<string, unknown>;
      const sameTransition = calls.filter((c) => c.body.transitionAt === body.transitionAt);
      const status = sameTransition.length < failFirst ? 503 : 200;
      calls.push({ drifting: body.drifting as boolean, status, delivery: String(req.headers['x-modelship-delivery']), body });
      res.writeHead(status).end(status === 200 ? 'ok' : 'busy');
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/retrain`;
  operator = new OperatorProcess({ name: 'monitoring' });
  await operator.start();
});

test.after.always(async () => {
  for (const f of feeders) clearInterval(f);
  await operator?.stop();
  await prometheus.stop();
  receiver?.close();
  await namespaces.deleteAll();
});

const bounds = ['0.25', '0.5', '0.75', '+Inf'];
const windowSeconds = 20;

/** Feeds a cumulative histogram for one revision: `shares` observations per bucket every 250 ms. */
function feedHistogram(ns: string, name: string, revision: () => string | undefined, shares: () => number[]): void {
  feeders.push(setInterval(() => {
    const r = revision();
    if (!r) return;
    let cumulative = 0;
    shares().forEach((n, i) => {
      cumulative += n;
      prometheus.metrics.inc('model_score_bucket', { namespace: ns, name, revision: r, le: bounds[i]! }, cumulative);
    });
  }, 250));
}

const driftMonitoring = (webhook?: string): MonitoringSpec => ({
  interval: '5s',
  checks: [{
    name: 'score-drift',
    drift: {
      histogram: 'model_score_bucket{namespace="{{namespace}}",name="{{name}}",revision="{{revision}}"}',
      prometheus: { address: prometheus.address }, window: `${windowSeconds}s`, maxPSI: 0.2, minSamples: 100,
    },
  }],
  onFailure: 'Alert',
  ...(webhook ? { webhook: { url: webhook, timeoutSeconds: 2 } } : {}),
});

/** PSI computed here from Prometheus' own answer, independently of the operator's code. */
async function independentPsi(ns: string, name: string, revision: string, at: string, baseline: { le: string; count: number }[]): Promise<number> {
  const url = new URL('/api/v1/query', prometheus.address);
  url.searchParams.set('query', `sum by (le) (increase(model_score_bucket{namespace="${ns}",name="${name}",revision="${revision}"}[${windowSeconds}s]))`);
  url.searchParams.set('time', String(Date.parse(at) / 1000));
  const body = await (await fetch(url)).json() as { data: { result: { metric: { le: string }; value: [number, string] }[] } };
  const cumulative = new Map(body.data.result.map((r) => [r.metric.le, Number(r.value[1])]));
  const live = bounds.map((le, i) => cumulative.get(le)! - (i ? cumulative.get(bounds[i - 1]!)! : 0));
  const expected = bounds.map((le) => baseline.find((b) => b.le === le)!.count);
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  let psi = 0;
  for (let i = 0; i < bounds.length; i++) {
    const a = Math.max(live[i]! / sum(live), 1e-4);
    const e = Math.max(expected[i]! / sum(expected), 1e-4);
    psi += (a - e) * Math.log(a / e);
  }
  return psi;
}

async function events(ns: string, reason: string): Promise<{ note?: string; type?: string }[]> {
  const list = await client.list<KubeObject & { reason?: string; note?: string; type?: string }>(Resources.Event, { namespace: ns });
  return list.items.filter((e) => e.reason === reason);
}

test('a shifted histogram raises Drifting with the PSI an independent computation gives; an unshifted one stays False; the webhook hears each transition once', async (t) => {
  const ns = await namespaces.create('drift');
  const shift = { shifted: false };
  const steady = [1, 2, 3, 4];
  const moved = [4, 3, 2, 1];
  for (const name of ['shifted', 'steady']) {
    await client.create(Resources.ModelDeployment, modelDeployment(name, ns, withSpec({ monitoring: driftMonitoring(name === 'shifted' ? receiverUrl : undefined) })));
  }
  const stableOf = new Map<string, string>();
  feedHistogram(ns, 'shifted', () => stableOf.get('shifted'), () => (shift.shifted ? moved : steady));
  feedHistogram(ns, 'steady', () => stableOf.get('steady'), () => steady);
  for (const name of ['shifted', 'steady']) {
    const m = await waitFor(`${name} serving`, async () => {
      const md = await get(ns, name);
      return md.status?.stableRevision?.hash ? md : undefined;
    }, 60_000);
    stableOf.set(name, m.status!.stableRevision!.hash);
  }

  // The baseline is captured once enough observations are in the window, and the verdict is False.
  for (const name of ['shifted', 'steady']) {
    const m = await waitFor(`${name} baseline and a False verdict`, async () => {
      const md = await get(ns, name);
      return md.status?.monitoring?.baselines?.length && cond(md, 'Drifting')?.status === 'False' ? md : undefined;
    }, 60_000, 500);
    t.like(cond(m, 'Drifting'), { reason: 'WithinBaseline' });
    const b = m.status!.monitoring!.baselines![0]!;
    t.deepEqual(b.buckets.map((x) => x.le), bounds);
    t.true(b.samples! >= 100);
  }
  t.is(calls.length, 0, 'a model that never drifted needs no call');

  // Shift one distribution: after a window of moved data, PSI is far above 0.2.
  shift.shifted = true;
  const drifting = await waitFor('Drifting=True', async () => {
    const md = await get(ns, 'shifted');
    return cond(md, 'Drifting')?.status === 'True' ? md : undefined;
  }, 90_000, 500);
  const result = drifting.status!.monitoring!.results!.find((r) => r.check === 'score-drift')!;
  t.like(cond(drifting, 'Drifting'), { reason: 'DriftDetected' });
  t.regex(cond(drifting, 'Drifting')!.message, /score-drift: PSI [\d.]+ > 0\.2; bucket .* contributes most/);
  const ours = await independentPsi(ns, 'shifted', stableOf.get('shifted')!, result.at!, drifting.status!.monitoring!.baselines![0]!.buckets);
  t.true(ours > 0.2);
  t.is(Number(result.value), Number(ours.toPrecision(4)), `operator ${result.value}, independent ${ours}`);
  t.is(await operator.metric('modelship_drifting', { namespace: ns, name: 'shifted' }), 1);
  t.like(await health(drifting), { status: 'Degraded' });
  t.regex((await health(drifting)).message, /^Drifting: /);
  const warnings = await events(ns, 'Drifting');
  t.is(warnings.length, 1, 'one Warning for the transition');
  t.is(warnings[0]!.type, 'Warning');

  // The webhook: refused twice, delivered on the third attempt, then quiet while nothing changes.
  await waitFor('the True transition delivered', async () => calls.some((c) => c.drifting && c.status === 200), 60_000, 250);
  await new Promise((r) => setTimeout(r, 6_000));
  const toTrue = calls.filter((c) => c.drifting);
  t.deepEqual(toTrue.map((c) => c.status), [503, 503, 200], 'retried until acknowledged, then never again');
  t.is(new Set(toTrue.map((c) => c.delivery)).size, 1, 'every attempt carries the same delivery id');
  t.like(toTrue[2]!.body, { drifting: true, check: 'score-drift', revision: stableOf.get('shifted'), modelDeployment: { namespace: ns, name: 'shifted' } });
  t.truthy(toTrue[2]!.body.baselineCapturedAt);

  // Recovery: the distribution moves back; Drifting goes False, the webhook hears that once too.
  shift.shifted = false;
  const recovered = await waitFor('Drifting=False again', async () => {
    const md = await get(ns, 'shifted');
    return cond(md, 'Drifting')?.status === 'False' ? md : undefined;
  }, 90_000, 500);
  t.like(cond(recovered, 'Drifting'), { reason: 'WithinBaseline' });
  await waitFor('the False transition delivered', async () => calls.some((c) => !c.drifting && c.status === 200), 60_000, 250);
  await new Promise((r) => setTimeout(r, 6_000));
  t.deepEqual(calls.filter((c) => !c.drifting).map((c) => c.status), [503, 503, 200]);
  t.is(calls.filter((c) => c.status === 200).length, 2, 'exactly one delivery per transition');
  t.is((await events(ns, 'DriftResolved')).length, 1);
  t.is(await operator.metric('modelship_drift_transitions_total', { namespace: ns, name: 'shifted' }), 2);

  // The unshifted one never drifted.
  const quiet = await get(ns, 'steady');
  t.like(cond(quiet, 'Drifting'), { status: 'False' });
  t.is(Number(quiet.status?.monitoring?.results?.[0]?.failures), 0);
  t.true(Number(quiet.status?.monitoring?.results?.[0]?.value) < 0.2);
});

test('onFailure Rollback returns traffic to the previous promoted revision only as its pods are ready, and history records it', async (t) => {
  const ns = await namespaces.create('restore');
  const errorsQuery = 'sum(model_errors_total{namespace="{{namespace}}",revision="{{revision}}"}) or vector(0)';
  const md = modelDeployment('m', ns, withReplicas(2), withSpec({
    rollout: { scaleDownDelaySeconds: 0 },
    monitoring: { interval: '5s', onFailure: 'Rollback', checks: [{ name: 'errors', prometheus: { address: prometheus.address, query: errorsQuery }, pass: { max: 0 } }] },
  }));
  await client.create(Resources.ModelDeployment, md);
  const v1 = (await waitFor('v1 serving and judged', async () => {
    const m = await get(ns, 'm');
    return cond(m, 'Drifting')?.status === 'False' ? m : undefined;
  }, 60_000, 500)).status!.stableRevision!.hash;

  // v2 is promoted (no steps), v1's Deployment goes; then v2 starts failing its monitoring check.
  const next = structuredClone(md.spec);
  next.model = { ...next.model, version: '2', uri: 'https://models.example.com/iris/v2/model.joblib' };
  await client.mergePatch(Resources.ModelDeployment, ns, 'm', { spec: next });
  const promoted = await waitFor('v2 promoted, v1 gone', async () => {
    const m = await get(ns, 'm');
    const hash = m.status?.stableRevision?.hash;
    if (!hash || hash === v1) return undefined;
    const old = await client.get(Resources.Deployment, ns, `m-${v1}`).catch(() => undefined);
    return old ? undefined : m;
  }, 90_000, 500);
  const v2 = promoted.status!.stableRevision!.hash;
  // The restoring state can last less than a poll: every status the apiserver serves is watched.
  let sawRestoring = false;
  const watcher = new Informer<Md>(client, Resources.ModelDeployment, { onUpsert: (m) => { if (m.status?.rollout?.restoring) sawRestoring = true; } }, { namespace: ns });
  await watcher.start();
  t.teardown(() => watcher.stop());
  feeders.push(setInterval(() => prometheus.metrics.inc('model_errors_total', { namespace: ns, revision: v2 }, 1), 250));

  // Until v1 has ready pods, the Service selects v2 alone; when it selects v1 pods, some are ready.
  const restored = await waitFor('v1 restored', async () => {
    // Ready pods as the endpoints see them: a Deployment's readyReplicas can lag its pods by a sync.
    const [m, svc, pods] = await Promise.all([
      get(ns, 'm'), client.get<Obj>(Resources.Service, ns, 'm'),
      client.list<Obj>(Resources.Pod, { namespace: ns, labelSelector: `modelship.io/revision=${v1}` }),
    ]);
    const readyV1 = pods.items.filter((p) => p.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Ready' && c.status === 'True')).length;
    const pinned = svc.spec.selector['modelship.io/revision'];
    if (pinned !== v2) t.true(readyV1 > 0, `the Service reaches v1 (selector ${JSON.stringify(svc.spec.selector)}) only with ready v1 pods`);
    return m.status?.stableRevision?.hash === v1 && pinned === v1 ? m : undefined;
  }, 90_000, 200);
  t.true(sawRestoring, 'the rollback went through the restoring state');
  t.like(restored.status?.rejectedRevision, { hash: v2, modelVersion: '2' });
  t.regex(restored.status?.rejectedRevision?.reason ?? '', /^monitoring: errors: /);
  t.like(restored.status?.history?.[0], { revision: v1, outcome: 'Promoted', reason: `restored: revision ${v2} failed monitoring` });
  t.like(restored.status?.history?.find((h) => h.revision === v2), { outcome: 'RolledBack' });
  t.like(cond(restored, 'Degraded'), { status: 'True', reason: 'RolledBack' });
  t.is(restored.spec.model.version, '2', 'the spec is untouched: no GitOps drift');
  t.true((await events(ns, 'RolledBack')).some((e) => (e.note ?? '').includes(`returning to revision ${v1}`)));
  t.true(await operator.metric('modelship_rollbacks_total', { namespace: ns }) >= 1);
  // And v2 stays rejected: it is not rolled out again.
  await new Promise((r) => setTimeout(r, 4_000));
  const later = await get(ns, 'm');
  t.is(later.status?.stableRevision?.hash, v1);
  t.is(later.status?.canaryRevision, undefined);
});
