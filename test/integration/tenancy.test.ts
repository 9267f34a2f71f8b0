// A hostile tenant on the real control plane, with the operator as its own process: its canary answers
// with redirects to a "metadata" server, a 200 MB body, a body made for catastrophic backtracking, and
// no answer at all; two tenants' schemas share an $id; it asks for 0s intervals and a link-local
// webhook. Meanwhile a benign tenant rolls out. The operator must stay responsive and bounded, never
// call the metadata server, never repeat what the tenant's endpoints answered, explain every denial in
// status, and finish the benign rollout about as fast as it does alone.
import test from 'ava';
import type { Check, ModelDeployment, RolloutSpec } from '../../operator/api/generated.js';
import { revisionHash } from '../../operator/api/revision.js';
import { ApiError, type KubeObject } from '../../operator/runtime/kube.js';
import { Resources } from '../../operator/runtime/resources.js';
import { readFileSync } from 'node:fs';
import { probe } from '../cluster/control-plane.js';
import { TestNamespaces, testCluster, waitFor } from '../cluster/cluster.js';
import { modelDeployment, withSpec, type Option } from '../support/builders.js';
import { adminClient, installCrd } from '../support/crd.js';
import { HostileServer, hostileMarker } from '../support/hostile-server.js';
import { OperatorProcess } from '../support/operator-process.js';

const client = adminClient();
const namespaces = new TestNamespaces();
const hostile = new HostileServer();
const fakeNode = 'tenancy-kubelet';
let operator: OperatorProcess;

type Md = ModelDeployment & KubeObject;
const get = (ns: string, name: string) => client.get<Md>(Resources.ModelDeployment, ns, name);
const cond = (md: Md, type: string) => md.status?.conditions?.find((c) => c.type === type);

test.before(async () => {
  await installCrd();
  await hostile.start();
  // A node whose address the admin's allow list covers (127.0.0.3/32), as a wide allow such as
  // 10.0.0.0/8 covers real nodes: the operator learns it from the Node and refuses it all the same.
  await client.create(Resources.Node, { apiVersion: 'v1', kind: 'Node', metadata: { name: fakeNode } });
  await client.mergePatch(Resources.Node, undefined, fakeNode, { status: { addresses: [{ type: 'InternalIP', address: '127.0.0.3' }] } }, 'status');
  operator = new OperatorProcess({ name: 'tenancy', env: { MODELSHIP_SERVICE_URL_TEMPLATE: hostile.urlTemplate, MODELSHIP_OUTBOUND_ALLOW: '*.svc,*.svc.cluster.local,127.0.0.1/32,127.0.0.3/32', MODELSHIP_OUTBOUND_DENY_NODE_ADDRESSES: 'true' } });
  await operator.start();
});

test.after.always(async () => {
  await client.delete(Resources.Node, undefined, fakeNode).catch(() => undefined);
  await operator?.stop();
  hostile.stop();
  await namespaces.deleteAll();
});

/** Samples the operator from outside, as the kubelet and Prometheus would, every 250 ms. */
class OperatorSampler {
  healthFailures: string[] = [];
  healthSlowestMs = 0;
  lagP99MaxMs = 0;
  lagMaxMs = 0;
  rssMaxBytes = 0;
  samples = 0;
  private scrapes = 0;
  private timer: NodeJS.Timeout | undefined;
  private busy = false;

  start(): void {
    this.timer = setInterval(() => void this.sample(), 250);
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const base = `http://127.0.0.1:${operator.metricsPort}`;
    try {
      const started = Date.now();
      const health = await probe(`${base}/healthz`, {}, 2_000).catch((e: Error) => ({ status: 0, body: e.message }));
      this.healthSlowestMs = Math.max(this.healthSlowestMs, Date.now() - started);
      if (health.status !== 200) this.healthFailures.push(`${new Date().toISOString()} ${health.status} ${health.body.slice(0, 100)}`);
      const metrics = await probe(`${base}/metrics`, {}, 2_000).catch(() => undefined);
      // The lag histogram resets at each scrape, so the first one also holds the operator's start-up
      // (module loading); the suite judges the operator at work, from the second on.
      if (metrics?.status === 200 && this.scrapes++ > 0) {
        const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics.body)?.[1] ?? 0);
        this.lagP99MaxMs = Math.max(this.lagP99MaxMs, value('nodejs_eventloop_lag_p99_seconds') * 1000);
        this.lagMaxMs = Math.max(this.lagMaxMs, value('nodejs_eventloop_lag_max_seconds') * 1000);
        this.rssMaxBytes = Math.max(this.rssMaxBytes, value('process_resident_memory_bytes'));
        this.samples++;
      }
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

const infer = { path: '/v2/models/m/infer', method: 'POST' as const, body: { inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP32', data: [5.1, 3.5, 1.4, 0.2] }] } };
const goodAnswer = { outputs: [{ name: 'label', data: [0] }] };
const rollout = (checks: Check[]): RolloutSpec => ({ steps: [{ setWeight: 50 }, { pause: { duration: '5s' } }, { setWeight: 100 }], analysis: { interval: '5s', checks } });

async function serve(ns: string, name: string, opts: Option[] = []): Promise<Md> {
  await client.create(Resources.ModelDeployment, modelDeployment(name, ns, ...opts));
  return waitFor(`${ns}/${name} serving`, async () => {
    const m = await get(ns, name);
    return cond(m, 'Ready')?.status === 'True' && m.status?.stableRevision ? m : undefined;
  }, 60_000, 250);
}

/** Moves to version `version` with `rollout`; returns the new revision's hash. */
async function update(ns: string, name: string, version: string, r: RolloutSpec): Promise<string> {
  const md = await get(ns, name);
  const spec = { ...md.spec, model: { ...md.spec.model, version, uri: `https://models.example.com/iris/v${version}/model.joblib` }, rollout: r };
  await client.mergePatch(Resources.ModelDeployment, ns, name, { spec });
  return revisionHash(spec);
}

const waitFinished = (ns: string, name: string, hash: string, timeoutMs = 120_000) => waitFor(`${ns}/${name} ${hash} finished`, async () => {
  const m = await get(ns, name);
  return m.status?.stableRevision?.hash === hash || m.status?.rejectedRevision?.hash === hash ? m : undefined;
}, timeoutMs, 200);

async function timedRollout(ns: string, version: string): Promise<number> {
  const started = Date.now();
  const hash = await update(ns, 'benign', version, rollout([{ name: 'golden', http: { ...infer, responseSchema: { type: 'object', required: ['outputs'] } } }]));
  const done = await waitFinished(ns, 'benign', hash);
  if (done.status?.stableRevision?.hash !== hash) throw new Error(`the benign rollout was not promoted: ${JSON.stringify(done.status?.rejectedRevision)}`);
  return Date.now() - started;
}

test.serial('a hostile tenant cannot reach, stall or crash the operator, and a benign rollout is not slowed by it', async (t) => {
  t.timeout(420_000);
  const benign = await namespaces.create('tenancy-benign');
  const evil = await namespaces.create('tenancy-hostile');
  const other = await namespaces.create('tenancy-other');
  // The endpoints that never answer live in a namespace of their own: they hold that namespace's
  // outbound slots (and so its own other checks), and must hold nobody else's.
  const slow = await namespaces.create('tenancy-slow');
  hostile.set(benign, 'benign-canary', { kind: 'json', body: goodAnswer });
  hostile.set(benign, 'benign-stable', { kind: 'json', body: goodAnswer });
  await serve(benign, 'benign');

  const sampler = new OperatorSampler();
  sampler.start();
  t.teardown(() => sampler.stop());

  // The benign rollout alone, for the yardstick.
  const alone = await timedRollout(benign, '2');

  // 0s intervals never reach the operator: the apiserver refuses them.
  const fast = modelDeployment('fast', evil, withSpec({ rollout: { analysis: { interval: '0s', checks: [{ name: 'c', podHealth: {} }] } } }));
  const refused = await t.throwsAsync(client.create(Resources.ModelDeployment, fast));
  t.is((refused as ApiError).code, 422);
  t.regex(refused.message, /must be at least 5s/);

  // The hostile canaries. Each serves v1 first (a first revision is not analysed), then rolls out v2.
  const sharedIdSchema = { $id: 'https://schemas.modelship.test/prediction.json', type: 'object', required: ['outputs'], properties: { outputs: { type: 'array' } } };
  const redos = { type: 'object', required: ['label'], properties: { label: { type: 'string', pattern: '^(a+)+$' } } };
  const hostileRollouts: Record<string, { ns: string; checks: Check[] }> = {
    redirect: { ns: evil, checks: [{ name: 'smoke', http: { ...infer } }] },
    huge: { ns: evil, checks: [{ name: 'smoke', http: { ...infer } }] },
    redos: { ns: evil, checks: [{ name: 'smoke', http: { ...infer, responseSchema: redos } }] },
    hang: { ns: slow, checks: [1, 2, 3, 4, 5, 6].map((i) => ({ name: `hang-${i}`, http: { ...infer, timeoutSeconds: 300 } })) },
    ids: { ns: evil, checks: [{ name: 'schema', http: { ...infer, responseSchema: sharedIdSchema } }] },
    'ids-too': { ns: other, checks: [{ name: 'schema', http: { ...infer, responseSchema: sharedIdSchema } }] },
  };
  hostile.set(evil, 'redirect-canary', { kind: 'redirect', location: `${hostile.metadataUrl}/latest/meta-data/iam/security-credentials/` });
  hostile.set(evil, 'huge-canary', { kind: 'huge', bytes: 200 * 1024 * 1024 });
  hostile.set(evil, 'redos-canary', { kind: 'json', body: { label: `${'a'.repeat(5000)}!`, note: hostileMarker } });
  hostile.set(slow, 'hang-canary', { kind: 'hang' });
  hostile.set(evil, 'ids-canary', { kind: 'json', body: { ...goodAnswer, note: hostileMarker } });
  hostile.set(other, 'ids-too-canary', { kind: 'json', body: { ...goodAnswer, note: hostileMarker } });
  await Promise.all(Object.entries(hostileRollouts).map(([name, h]) => serve(h.ns, name)));
  // A webhook at a node's address, which the allow list covers: refused when called.
  await serve(evil, 'kubelet');
  const kubeletHash = await update(evil, 'kubelet', '2', rollout([{ name: 'nodes', webhook: { url: `${hostile.kubeletUrl}/pods?token=${hostileMarker}` } }]));
  // And a webhook aimed straight at the metadata server.
  await client.create(Resources.ModelDeployment, modelDeployment('metadata', evil, withSpec({ rollout: rollout([{ name: 'exfiltrate', webhook: { url: `${hostile.metadataUrl}/latest/meta-data?token=${hostileMarker}` } }]) })));

  const hashes = Object.fromEntries(await Promise.all(Object.entries(hostileRollouts).map(async ([name, h]) => [name, await update(h.ns, name, '2', rollout(h.checks))] as const)));
  // Let the hostile checks start (and the hung ones take their namespace's slots) before timing.
  await waitFor('the hung checks hold their slots', async () => hostile.requests.filter((r) => r === `${slow}/hang-canary`).length >= 4, 30_000, 200);
  const loaded = await timedRollout(benign, '3');

  const finished = Object.fromEntries(await Promise.all(['redirect', 'huge', 'redos', 'ids', 'ids-too'].map(async (name) => [name, await waitFinished(hostileRollouts[name]!.ns, name, hashes[name]!)] as const)));
  const metadataMd = await waitFor('the metadata webhook explained', async () => {
    const m = await get(evil, 'metadata');
    return cond(m, 'Ready')?.reason === 'InvalidSpec' ? m : undefined;
  });
  sampler.stop();

  // Never reached: not through a redirect, not through a webhook.
  t.deepEqual(hostile.metadataHits, [], 'the metadata server was never called');

  // Every denial and failure is explained, by status code, limit or schema path.
  const reason = (name: string) => finished[name]!.status?.rejectedRevision?.reason ?? '';
  t.regex(reason('redirect'), /smoke: HTTP 307, expected 200/);
  t.regex(reason('huge'), /smoke: .*the answer is larger than the 1 MiB limit/);
  t.true(hostile.hugeBytesSent < 64 * 1024 * 1024, `the 200 MB answer was cut early (${hostile.hugeBytesSent} bytes sent)`);
  t.regex(reason('redos'), /smoke: response does not match the schema: \/label: must match the pattern \(#\/properties\/label\/pattern\)/);
  t.is(finished.ids!.status?.stableRevision?.hash, hashes.ids, 'a schema with an $id is promoted');
  t.is(finished['ids-too']!.status?.stableRevision?.hash, hashes['ids-too'], "and so is another tenant's with the same $id");
  t.regex(cond(metadataMd, 'Ready')?.message ?? '', /webhook\.url \(http:\/\/127\.0\.0\.2:\d+\): address 127\.0\.0\.2 is not in the operator's outbound allow list/);
  const kubeletMd = await waitFor('the node-address webhook explained', async () => {
    const m = await get(evil, 'kubelet');
    const r = m.status?.analysis?.results?.find((a) => a.check === 'nodes');
    return m.status?.canaryRevision?.hash === kubeletHash && r?.phase === 'Error' ? r : undefined;
  });
  t.regex(kubeletMd.message ?? '', /^http:\/\/127\.0\.0\.3:\d+: address 127\.0\.0\.3 is denied by the operator's outbound policy$/);
  t.deepEqual(hostile.kubeletHits, [], 'the node stand-in was never called');
  const hung = await get(slow, 'hang');
  t.is(hung.status?.canaryRevision?.hash, hashes.hang, 'the hung canary is still waiting for its answers');

  // The operator stayed up, responsive and bounded.
  t.true(sampler.samples > 20, `${sampler.samples} samples`);
  t.deepEqual(sampler.healthFailures, [], '/healthz never failed');
  t.true(sampler.lagP99MaxMs < 100, `event-loop lag p99 stayed under 100 ms (max of p99s ${sampler.lagP99MaxMs.toFixed(1)} ms, max ${sampler.lagMaxMs.toFixed(1)} ms)`);
  t.true(sampler.rssMaxBytes < 400 * 1024 * 1024, `RSS stayed bounded (max ${(sampler.rssMaxBytes / 2 ** 20).toFixed(0)} MiB)`);
  t.true(loaded <= alone * 1.5, `the benign rollout took ${(loaded / 1000).toFixed(1)} s beside the hostile tenant, ${(alone / 1000).toFixed(1)} s alone`);
  t.log(`benign rollout alone ${(alone / 1000).toFixed(1)} s, beside the hostile tenant ${(loaded / 1000).toFixed(1)} s (${(loaded / alone).toFixed(2)}×)`);
  t.log(`operator: RSS max ${(sampler.rssMaxBytes / 2 ** 20).toFixed(0)} MiB, event-loop lag p99 max ${sampler.lagP99MaxMs.toFixed(1)} ms, max ${sampler.lagMaxMs.toFixed(1)} ms, slowest /healthz ${sampler.healthSlowestMs} ms, ${sampler.samples} samples`);

  // An admin sees it per namespace: the hung calls in flight, and the cut and denied ones counted.
  t.true(await operator.metric('modelship_outbound_in_flight') >= 4, 'the hung calls show as in flight');
  t.true(await operator.metric('modelship_outbound_calls_total', { namespace: evil, trust: 'service', outcome: 'too_large' }) >= 1);
  t.true(await operator.metric('modelship_outbound_calls_total', { namespace: benign, outcome: 'ok' }) >= 2);

  // Nothing a tenant's endpoint answered comes back: not in status, Events or the operator's log.
  for (const ns of [benign, evil, other, slow]) {
    const list = await client.list<Md>(Resources.ModelDeployment, { namespace: ns });
    for (const m of list.items) t.false(JSON.stringify(m.status).includes(hostileMarker), `status of ${ns}/${m.metadata?.name}`);
    const events = await testCluster().core.listNamespacedEvent({ namespace: ns });
    const leaked = events.items.filter((e) => (e.message ?? '').includes(hostileMarker));
    t.deepEqual(leaked.map((e) => e.message), [], `Events in ${ns}`);
  }
  t.false(readFileSync(operator.logFile, 'utf8').includes(hostileMarker), 'the operator log');
});
